//go:build linux

package mmsg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Supported reports whether batched I/O is available on this platform.
const Supported = true

// ErrUnsupported is returned by New where batched I/O is not available
// (never on Linux).
var ErrUnsupported = errors.New("mmsg: batched UDP I/O is not supported on this platform")

// Conn reads and writes one UDP socket in batches. It is not safe for
// concurrent use: one read loop owns it. Other goroutines may still write
// to the underlying *net.UDPConn directly.
type Conn struct {
	rc      syscall.RawConn
	bufSize int

	// read side: one header, iovec, buffer and source address per slot
	rhdrs  []unix.Mmsghdr
	riov   []unix.Iovec
	rnames []unix.RawSockaddrInet6 // large enough for either family
	bufs   []byte                  // len(rhdrs) * bufSize
	nread  int

	// write side: answers queued by Queue, sent by Flush
	whdrs  []unix.Mmsghdr
	wiov   []unix.Iovec
	wnames []unix.RawSockaddrInet6
	arena  []byte // queued answer bytes
	used   int    // bytes of arena in use
	queued int
	wfrom  int // first queued message not yet sent, for writeFn

	// results of the syscall closures (made once, so a call allocates nothing)
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	rn, wn  int
	rerr    syscall.Errno
	werr    syscall.Errno
}

// arenaSize bounds the bytes of answers queued between two flushes: one
// answer of the largest DNS message always fits.
const arenaSize = 64 << 10

// New returns a batching reader and writer for c with batch slots of
// bufSize bytes each. A datagram longer than bufSize is reported truncated.
func New(c *net.UDPConn, batch, bufSize int) (*Conn, error) {
	if batch < 1 || bufSize < 512 {
		return nil, fmt.Errorf("mmsg: batch %d and buffer %d: want >= 1 and >= 512", batch, bufSize)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mmsg: %w", err)
	}
	m := &Conn{
		rc:      rc,
		bufSize: bufSize,
		rhdrs:   make([]unix.Mmsghdr, batch),
		riov:    make([]unix.Iovec, batch),
		rnames:  make([]unix.RawSockaddrInet6, batch),
		bufs:    make([]byte, batch*bufSize),
		whdrs:   make([]unix.Mmsghdr, batch),
		wiov:    make([]unix.Iovec, batch),
		wnames:  make([]unix.RawSockaddrInet6, batch),
		arena:   make([]byte, arenaSize),
	}
	for i := range m.rhdrs {
		m.riov[i].Base = &m.bufs[i*bufSize]
		m.rhdrs[i].Hdr.Iov = &m.riov[i]
		m.rhdrs[i].Hdr.SetIovlen(1)
		m.rhdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.rnames[i]))
		m.whdrs[i].Hdr.Iov = &m.wiov[i]
		m.whdrs[i].Hdr.SetIovlen(1)
		m.whdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.wnames[i]))
	}
	m.readFn = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rhdrs[0])), uintptr(len(m.rhdrs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller for the socket to be readable
			}
			m.rn, m.rerr = int(r), e
			return true
		}
	}
	m.writeFn = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.whdrs[m.wfrom])), uintptr(m.queued-m.wfrom), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // the send buffer is full: wait until writable
			}
			m.wn, m.werr = int(r), e
			return true
		}
	}
	return m, nil
}

// Read blocks until at least one datagram has arrived and returns how many
// (at most the batch size) are now available through Packet. It returns as
// soon as one is there: it never waits for a batch to fill. The packets
// stay valid until the next Read.
func (m *Conn) Read() (int, error) {
	for i := range m.rhdrs {
		h := &m.rhdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Flags = 0
		h.Len = 0
		m.riov[i].SetLen(m.bufSize)
	}
	m.nread = 0
	if err := m.rc.Read(m.readFn); err != nil {
		return 0, err
	}
	if m.rerr != 0 {
		return 0, m.rerr
	}
	m.nread = m.rn
	return m.rn, nil
}

// Packet returns datagram i of the last Read, its sender, and whether it
// was longer than the slot (truncated: the caller should not answer it as
// if whole). ok is false for a sender address of an unknown family.
func (m *Conn) Packet(i int) (pkt []byte, from netip.AddrPort, truncated, ok bool) {
	h := &m.rhdrs[i]
	n := int(h.Len)
	truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0 || n > m.bufSize
	n = min(n, m.bufSize)
	pkt = m.bufs[i*m.bufSize : i*m.bufSize+n : (i+1)*m.bufSize]
	from, ok = addrPort(&m.rnames[i])
	return pkt, from, truncated, ok
}

// Queue queues out as the answer to the sender of datagram i of the last
// Read (out is copied, so it may be reused at once). When the batch is full
// it flushes first. Queued answers are sent by Flush, which the read loop
// calls before its next Read.
func (m *Conn) Queue(i int, out []byte) error {
	if len(out) > len(m.arena) {
		return fmt.Errorf("mmsg: answer of %d bytes: over %d", len(out), len(m.arena))
	}
	var err error
	if m.queued == len(m.whdrs) || m.used+len(out) > len(m.arena) {
		err = m.Flush()
	}
	k := m.queued
	copy(m.arena[m.used:], out)
	m.wiov[k].Base = &m.arena[m.used]
	m.wiov[k].SetLen(len(out))
	m.used += len(out)
	m.wnames[k] = m.rnames[i]
	m.whdrs[k].Hdr.Namelen = m.rhdrs[i].Hdr.Namelen
	m.queued++
	return err
}

// Flush sends every queued answer, as few system calls as the kernel
// allows. A message the kernel refuses (an unreachable destination, say)
// is skipped; the first such error is returned after the rest are sent.
func (m *Conn) Flush() error {
	var first error
	m.wfrom = 0
	for m.wfrom < m.queued {
		if err := m.rc.Write(m.writeFn); err != nil {
			first = err // the socket itself failed (closed): give up on the batch
			break
		}
		if m.werr != 0 {
			if first == nil {
				first = m.werr
			}
			m.wfrom++ // sendmmsg stopped at this message: skip it
			continue
		}
		m.wfrom += m.wn
	}
	m.queued, m.used, m.wfrom = 0, 0, 0
	return first
}

// addrPort decodes a raw socket address without allocating (a zone is
// looked up by name only for scoped IPv6 senders, as the net package does).
func addrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port := uint16(p[0])<<8 | uint16(p[1])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port), true
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, port), true
	}
	return netip.AddrPort{}, false
}

func zoneName(index int) string {
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(index)
}
