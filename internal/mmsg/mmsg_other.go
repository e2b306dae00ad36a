//go:build !linux

package mmsg

import (
	"errors"
	"net"
	"net/netip"
)

// Supported reports whether batched I/O is available on this platform.
const Supported = false

// ErrUnsupported is returned by New where batched I/O is not available.
var ErrUnsupported = errors.New("mmsg: batched UDP I/O is not supported on this platform")

// Conn is not available on this platform.
type Conn struct{}

// New returns ErrUnsupported.
func New(c *net.UDPConn, batch, bufSize int) (*Conn, error) { return nil, ErrUnsupported }

// Read is not available on this platform.
func (m *Conn) Read() (int, error) { return 0, ErrUnsupported }

// Packet is not available on this platform.
func (m *Conn) Packet(i int) (pkt []byte, from netip.AddrPort, truncated, ok bool) {
	return nil, netip.AddrPort{}, false, false
}

// Queue is not available on this platform.
func (m *Conn) Queue(i int, out []byte) error { return ErrUnsupported }

// Flush is not available on this platform.
func (m *Conn) Flush() error { return ErrUnsupported }
