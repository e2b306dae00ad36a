//go:build linux

package mmsg

import (
	"bytes"
	"unsafe"

	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"net/netip"
	"testing"
	"time"
)

// echo reads batches on srv and answers each datagram with its own bytes
// prefixed by "re:" until it has answered want datagrams.
func echo(t *testing.T, m *Conn, want int) <-chan error {
	done := make(chan error, 1)
	go func() {
		answered := 0
		for answered < want {
			n, err := m.Read()
			if err != nil {
				done <- err
				return
			}
			for i := 0; i < n; i++ {
				pkt, _, trunc, ok := m.Packet(i)
				if !ok {
					done <- fmt.Errorf("packet %d: unknown address family", i)
					return
				}
				if trunc {
					pkt = []byte("truncated")
				}
				if err := m.Queue(i, append([]byte("re:"), pkt...)); err != nil {
					done <- err
					return
				}
				answered++
			}
			if err := m.Flush(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

func TestRoundTrip(t *testing.T) {
	cases := []struct{ name, listen, dial string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "[::1]:0", "::1"},
		{"dual-stack socket, IPv4 client", "[::]:0", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			srv := pc.(*net.UDPConn)
			defer srv.Close()
			m, err := New(srv, 8, 512)
			if err != nil {
				t.Fatal(err)
			}
			port := srv.LocalAddr().(*net.UDPAddr).Port
			cl, err := net.Dial("udp", net.JoinHostPort(tc.dial, fmt.Sprint(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			const total = 50 // more than one batch
			done := echo(t, m, total)
			cl.SetDeadline(time.Now().Add(10 * time.Second))
			for i := 0; i < total; i++ {
				if _, err := fmt.Fprintf(cl, "q%d", i); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]bool{}
			buf := make([]byte, 1024)
			for len(got) < total {
				n, err := cl.Read(buf)
				if err != nil {
					t.Fatalf("after %d answers: %v", len(got), err)
				}
				got[string(buf[:n])] = true
			}
			for i := 0; i < total; i++ {
				if !got[fmt.Sprintf("re:q%d", i)] {
					t.Errorf("no answer to q%d", i)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The sender's address decodes as the net package decodes it.
func TestSenderAddress(t *testing.T) {
	srv, m, cl := loopback(t, 4)
	cl.Write([]byte("x"))
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := m.Read()
	if err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	_, from, _, ok := m.Packet(0)
	want := cl.LocalAddr().(*net.UDPAddr).AddrPort()
	if !ok || from != want {
		t.Fatalf("sender %v (ok %v), want %v", from, ok, want)
	}
}

// A lone datagram is returned at once: Read does not wait for a batch.
func TestLoneDatagram(t *testing.T) {
	_, m, cl := loopback(t, 64)
	got := make(chan int, 1)
	go func() { n, _ := m.Read(); got <- n }()
	cl.Write([]byte("alone"))
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("Read returned %d datagrams, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return a lone datagram")
	}
}

// A datagram longer than its slot is reported truncated, and does not
// spill into the next slot.
func TestTruncated(t *testing.T) {
	srv, m, cl := loopback(t, 4)
	cl.Write(bytes.Repeat([]byte{'a'}, 2000))
	cl.Write([]byte("small"))
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	seen := 0
	for seen < 2 {
		n, err := m.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			pkt, _, trunc, _ := m.Packet(i)
			switch seen {
			case 0:
				if !trunc || len(pkt) != 512 {
					t.Errorf("long datagram: truncated %v, %d bytes", trunc, len(pkt))
				}
			case 1:
				if trunc || string(pkt) != "small" {
					t.Errorf("second datagram: truncated %v, %q", trunc, pkt)
				}
			}
			seen++
		}
	}
}

// An answer to an address the kernel refuses does not stop the rest of
// the batch.
func TestFlushSkipsRefused(t *testing.T) {
	srv, m, cl := loopback(t, 4)
	cl.Write([]byte("a"))
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := m.Read(); err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	m.Queue(0, []byte("first"))
	// An IPv4 socket cannot send to port 0: the kernel refuses this one.
	m.Queue(0, []byte("bad"))
	m.wnames[1].Port = 0
	m.Queue(0, []byte("third"))
	err := m.Flush()
	cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	var got []string
	for len(got) < 2 {
		n, rerr := cl.Read(buf)
		if rerr != nil {
			t.Fatalf("got %v, then %v (flush: %v)", got, rerr, err)
		}
		got = append(got, string(buf[:n]))
	}
	if got[0] != "first" || got[1] != "third" {
		t.Fatalf("answers %v, want [first third]", got)
	}
	if err == nil {
		t.Fatal("Flush reported no error for the refused message")
	}
}

func TestAddrPortDecode(t *testing.T) {
	cases := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:53"),
		netip.MustParseAddrPort("[2001:db8::1]:65535"),
		netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"),
	}
	for _, want := range cases {
		sa := rawOf(want)
		got, ok := addrPort(&sa)
		if !ok || got != want {
			t.Errorf("addrPort(%v) = %v, %v", want, got, ok)
		}
	}
}

// rawOf encodes a as the kernel writes a sender address.
func rawOf(a netip.AddrPort) unix.RawSockaddrInet6 {
	var sa unix.RawSockaddrInet6
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
	if a.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = a.Addr().As4()
		return sa
	}
	sa.Family = unix.AF_INET6
	sa.Addr = a.Addr().As16()
	return sa
}

// loopback returns a batching server socket on 127.0.0.1 with batch slots
// of 512 bytes and a client connected to it, closed when the test ends.
func loopback(t *testing.T, batch int) (*net.UDPConn, *Conn, *net.UDPConn) {
	t.Helper()
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	m, err := New(srv, batch, 512)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, m, cl
}
