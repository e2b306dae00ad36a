// Package mmsg reads and writes a UDP socket in batches with the Linux
// recvmmsg and sendmmsg system calls: one call moves up to a batch of
// datagrams each way, where net.UDPConn needs one call (and one trip
// through the Go scheduler) per datagram.
//
// A Conn is owned by one read loop: Read waits for at least one datagram
// (never for a batch to fill), Packet gives each datagram and its sender,
// Queue copies an answer to a datagram's sender into the write batch, and
// Flush sends the queued answers. Sender addresses stay in their raw
// socket form from the read to the write, and nothing allocates per
// datagram. Elsewhere than Linux, New returns ErrUnsupported and the
// caller keeps its one-datagram-at-a-time loop.
package mmsg
