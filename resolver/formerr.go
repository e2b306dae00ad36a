package resolver

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// malformed reports why a query packet must be answered FORMERR although
// miekg/dns would parse it ("" when it need not): more than one OPT record
// (RFC 6891 6.1.1), an OPT record outside the additional section or with
// an owner other than the root, record counts larger than the records the
// packet holds, or a question of type 0, OPT or TSIG (meta types that are
// never asked for). It reads the packet in place.
func malformed(pkt []byte) string {
	if len(pkt) < 12 {
		return "shorter than a header"
	}
	qd := int(binary.BigEndian.Uint16(pkt[4:]))
	counts := [3]int{int(binary.BigEndian.Uint16(pkt[6:])), int(binary.BigEndian.Uint16(pkt[8:])), int(binary.BigEndian.Uint16(pkt[10:]))}
	off := 12
	for i := 0; i < qd; i++ {
		end := skipName(pkt, off)
		if end < 0 || end+4 > len(pkt) {
			return "QDCOUNT larger than the questions"
		}
		if i == 0 {
			switch qt := binary.BigEndian.Uint16(pkt[end:]); qt {
			case dns.TypeNone, dns.TypeOPT, dns.TypeTSIG:
				return fmt.Sprintf("question of type %d", qt)
			}
		}
		off = end + 4
	}
	opts := 0
	sections := [3]string{"answer", "authority", "additional"}
	for sec, n := range counts {
		for i := 0; i < n; i++ {
			start := off
			end := skipName(pkt, off)
			if end < 0 || end+10 > len(pkt) {
				return sections[sec] + " count larger than the records"
			}
			rtype := binary.BigEndian.Uint16(pkt[end:])
			rdlen := int(binary.BigEndian.Uint16(pkt[end+8:]))
			if end+10+rdlen > len(pkt) {
				return sections[sec] + " record cut short"
			}
			if rtype == dns.TypeOPT {
				switch {
				case sec != 2:
					return "OPT record in the " + sections[sec] + " section"
				case pkt[start] != 0:
					return "OPT record with an owner other than the root"
				}
				if opts++; opts > 1 {
					return "more than one OPT record"
				}
			}
			off = end + 10 + rdlen
		}
	}
	return ""
}

// formErr answers a malformed query from its packet, when its header
// reads: the ID, opcode and RD bit, the question when it can be read, no
// other header bit, and sinkhole's OPT only when the query's one OPT
// record was sound (a malformed query's EDNS is not to be trusted).
func formErr(pkt []byte) *dns.Msg {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil
	}
	m := new(dns.Msg)
	m.Id = binary.BigEndian.Uint16(pkt)
	m.Response = true
	m.Opcode = int(pkt[2]>>3) & 0xF
	m.RecursionDesired = pkt[2]&0x01 != 0
	m.Rcode = dns.RcodeFormatError
	if binary.BigEndian.Uint16(pkt[4:]) == 1 {
		if name, off, err := dns.UnpackDomainName(pkt, 12); err == nil && off+4 <= len(pkt) {
			m.Question = []dns.Question{{Name: name, Qtype: binary.BigEndian.Uint16(pkt[off:]), Qclass: binary.BigEndian.Uint16(pkt[off+2:])}}
		}
	}
	if why := malformed(pkt); why == "" || isQuestionType(why) {
		var q dns.Msg
		if q.Unpack(pkt) == nil {
			if opt := q.IsEdns0(); opt != nil {
				m.SetEdns0(query.ServerUDPSize, opt.Do())
			}
		}
	}
	return m
}

// isQuestionType reports whether malformed's reason is the question's
// type (the rest of the query, its OPT included, is sound).
func isQuestionType(why string) bool { return strings.HasPrefix(why, "question of type") }
