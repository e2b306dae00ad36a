package policy

import (
	"encoding/binary"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// maxReason caps the EDE text of a wire block answer.
const maxReason = 400

// maxBlockWire bounds the bytes Offer writes (the caller's out must hold
// them): header, question, an answer or the SOA, and the OPT record.
const maxBlockWire = 12 + 260 + 28 + 12 + 10 + len("sinkhole.invalid.hostmaster.sinkhole.invalid.") + 4 + 20 + 17 + maxReason + 64

// Offer is the question stage's fast path: it answers, straight from the
// packet, the queries whose name a list blocks outright, writing the answer
// Blocker.Response builds without building a dns.Msg and without
// allocating. Everything else (names no rule blocks, exceptions, overseas
// scope, monitor-only rules, RPZ local data, odd names) declines and takes
// the full chain.
func (qs *Question) Offer(q *query.WireQuery, o *query.Offered) query.Verdict {
	name, ok := q.DottedName(o.NameBuf[:0])
	if !ok {
		return query.Decline
	}
	o.Name = unsafe.String(unsafe.SliceData(name), len(name)) // observers never keep it
	n, ok := qs.blockWire(q, o.Name, o.Snapshot, o.Out, &o.Decision)
	if !ok {
		return query.Decline
	}
	o.N, o.Cached = n, false
	o.Info = query.Info{Decision: &o.Decision}
	return query.Answered
}

// blockWire writes into out the block answer for q when its name
// (canonical form) is blocked outright under snap, filling d with the
// decision. It returns the answer's length (0 for the drop action) and
// whether it answered.
func (qs *Question) blockWire(q *query.WireQuery, name string, snap *blocklist.Snapshot, out []byte, d *query.Decision) (int, bool) {
	m := snap.MatchName(name)
	if !m.Blocked() {
		return 0, false
	}
	sec := snap.Section(m.Rule)
	note := ""
	if sec.Scope == blocklist.ScopeOverseas {
		if qs.CountryKnown != nil && qs.CountryKnown() {
			return 0, false // the answer's addresses decide
		}
		note = noCountryNote
	}
	act := qs.Block.Resolve(sec.Action)
	*d = query.Decision{Snapshot: snap, Rule: m.Rule, Action: act, Enforced: act.Enforced(), Trigger: query.TriggerQName, Note: note}
	if !d.Enforced {
		return 0, false
	}
	b := qs.Block
	rcode, answer, soa := dns.RcodeNameError, false, true
	switch d.Action {
	case blocklist.ActionDrop:
		return 0, true
	case blocklist.ActionRefused:
		rcode, soa = dns.RcodeRefused, false
	case blocklist.ActionNoData:
		rcode = dns.RcodeSuccess
	case blocklist.ActionSinkhole:
		rcode = dns.RcodeSuccess
		if q.Qclass == dns.ClassINET && ((q.Qtype == dns.TypeA && b.SinkholeV4.Is4()) || (q.Qtype == dns.TypeAAAA && b.SinkholeV6.IsValid())) {
			answer, soa = true, false
		}
	case blocklist.ActionNXDomain:
	default:
		return 0, false // RPZ local data and anything new: the full path
	}
	if len(out) < maxBlockWire || len(q.Question) < 5 {
		return 0, false
	}
	// Header.
	binary.BigEndian.PutUint16(out, q.ID)
	out[2] = 0x80 // QR, opcode QUERY
	if q.RD {
		out[2] |= 0x01
	}
	out[3] = 0x80 | byte(rcode) // RA
	if q.CD {
		out[3] |= 0x10
	}
	binary.BigEndian.PutUint16(out[4:], 1)
	var an, ns, ar uint16
	n := 12 + copy(out[12:], q.Question)
	if answer {
		an = 1
		binary.BigEndian.PutUint16(out[n:], 0xC00C) // the question's name
		binary.BigEndian.PutUint16(out[n+2:], q.Qtype)
		binary.BigEndian.PutUint16(out[n+4:], dns.ClassINET)
		binary.BigEndian.PutUint32(out[n+6:], b.TTL)
		n += 10
		if q.Qtype == dns.TypeA {
			a := b.SinkholeV4.As4()
			binary.BigEndian.PutUint16(out[n:], 4)
			n += 2 + copy(out[n+2:], a[:])
		} else {
			a := b.SinkholeV6.As16()
			binary.BigEndian.PutUint16(out[n:], 16)
			n += 2 + copy(out[n+2:], a[:])
		}
	}
	if soa {
		ns = 1
		owner := 0 // the question's name; a subtree rule's zone starts at m.At (a label start: the dotted name's offsets are the wire name's)
		if snap.CoversSubtree(m.Rule) {
			owner = m.At
		}
		binary.BigEndian.PutUint16(out[n:], 0xC000|uint16(12+owner))
		binary.BigEndian.PutUint16(out[n+2:], dns.TypeSOA)
		binary.BigEndian.PutUint16(out[n+4:], dns.ClassINET)
		binary.BigEndian.PutUint32(out[n+6:], b.TTL)
		rd := n + 10
		n = rd + 2
		n += copy(out[n:], soaNames)
		for _, v := range [5]uint32{uint32(snap.Generation), 3600, 600, 86400, b.TTL} {
			binary.BigEndian.PutUint32(out[n:], v)
			n += 4
		}
		binary.BigEndian.PutUint16(out[rd:], uint16(n-rd-2))
	}
	if q.HasEDNS {
		ar = 1
		out[n] = 0
		binary.BigEndian.PutUint16(out[n+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(out[n+3:], query.ServerUDPSize)
		out[n+5], out[n+6], out[n+7], out[n+8] = 0, 0, 0, 0
		if q.DO {
			out[n+7] = 0x80
		}
		// Appended in place: out has room (maxBlockWire) for maxReason bytes.
		reason := d.AppendReason(out[n+17 : n+17])
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		binary.BigEndian.PutUint16(out[n+9:], uint16(6+len(reason)))
		binary.BigEndian.PutUint16(out[n+11:], dns.EDNS0EDE)
		binary.BigEndian.PutUint16(out[n+13:], uint16(2+len(reason)))
		binary.BigEndian.PutUint16(out[n+15:], dns.ExtendedErrorCodeCensored)
		n += 17 + len(reason)
	}
	binary.BigEndian.PutUint16(out[6:], an)
	binary.BigEndian.PutUint16(out[8:], ns)
	binary.BigEndian.PutUint16(out[10:], ar)
	if n > q.Limit {
		return 0, false // does not fit: the full path truncates
	}
	return n, true
}

// soaNames is the wire form of the synthesized SOA's MNAME and RNAME.
var soaNames = func() []byte {
	b := make([]byte, 64)
	n, _ := dns.PackDomainName("sinkhole.invalid.", b, 0, nil, false)
	n, _ = dns.PackDomainName("hostmaster.sinkhole.invalid.", b, n, nil, false)
	return b[:n]
}()
