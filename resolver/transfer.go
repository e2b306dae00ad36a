package resolver

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NotifyHandler answers one NOTIFY message (RFC 1996). pkt is the message as
// received (for TSIG verification), m its parsed form. A nil answer sends
// nothing.
type NotifyHandler func(pkt []byte, m *dns.Msg, from netip.AddrPort) *dns.Msg

// TransferHandler serves one AXFR or IXFR request received over TCP. pkt is
// the request as received, m its parsed form. It calls send for each
// message of the response, in order; a refusal is one message. The
// server sets the message ID and the response bit of what is sent.
type TransferHandler func(ctx context.Context, pkt []byte, m *dns.Msg, from netip.AddrPort, send func(*dns.Msg) error) error

// transferTimeout bounds one zone transfer.
const transferTimeout = 10 * time.Minute

// isTransferQuery reads, without unpacking, whether pkt is a QUERY with one
// question of type AXFR or IXFR.
func isTransferQuery(pkt []byte) bool {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 || (pkt[2]>>3)&0xF != dns.OpcodeQuery || binary.BigEndian.Uint16(pkt[4:]) != 1 {
		return false
	}
	i := 12
	for i < len(pkt) {
		l := int(pkt[i])
		switch {
		case l == 0:
			i++
		case l&0xC0 == 0xC0:
			i += 2
		default:
			i += 1 + l
			continue
		}
		break
	}
	if i+2 > len(pkt) {
		return false
	}
	qt := binary.BigEndian.Uint16(pkt[i:])
	return qt == dns.TypeAXFR || qt == dns.TypeIXFR
}

// serveTransfer runs the Transfer handler for one request on a TCP
// connection, writing each message as a frame under wmu.
func (s *Server) serveTransfer(conn net.Conn, wmu *sync.Mutex, pkt []byte, from netip.AddrPort) {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil {
		return
	}
	send := func(r *dns.Msg) error {
		r.Id, r.Response = m.Id, true
		r.Compress = true
		out, err := r.Pack()
		if err != nil {
			return fmt.Errorf("pack transfer message: %w", err)
		}
		return s.writeFrame(conn, wmu, out)
	}
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "zone transfer panic", "client", from.String())
			conn.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), transferTimeout)
	defer cancel()
	if err := s.cfg.Transfer(ctx, pkt, m, from, send); err != nil {
		s.log.Warn("zone transfer failed", "client", from.String(), "zone", m.Question[0].Name, "err", err)
		conn.Close()
	}
}
