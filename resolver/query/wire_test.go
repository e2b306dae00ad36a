package query_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// TestParseWireQueryKey packs random queries with miekg/dns (names in
// mixed case with every byte value a label may hold, with and without
// EDNS, DO, CD and AD) and checks what ParseWireQuery reads from each: the
// cache key is the lower-cased wire name, type, class and the flags, and
// the rest of the question is as sent.
func TestParseWireQueryKey(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 3))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_@[`{\\"
	key := make([]byte, 0, 262)
	for i := 0; i < 5000; i++ {
		labels := make([]string, 1+r.IntN(5))
		for j := range labels {
			b := make([]byte, 1+r.IntN(20))
			for k := range b {
				b[k] = chars[r.IntN(len(chars))]
				if r.IntN(50) == 0 {
					b[k] = byte(r.IntN(256)) // any byte, escaped in the text form
				}
			}
			labels[j] = escapeLabel(b)
		}
		name := strings.Join(labels, ".") + "."
		m := new(dns.Msg)
		m.SetQuestion(name, []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT}[r.IntN(4)])
		m.Id = uint16(r.IntN(65536))
		m.CheckingDisabled, m.AuthenticatedData = r.IntN(2) == 0, r.IntN(2) == 0
		edns, do := r.IntN(2) == 0, r.IntN(2) == 0
		if edns {
			m.SetEdns0(uint16(512+r.IntN(4000)), do)
		}
		pkt, err := m.Pack()
		if err != nil {
			continue // a name too long once escaped
		}
		var q query.WireQuery
		if err := query.ParseWireQuery(pkt, key[:0], &q); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		wire := make([]byte, 256)
		n, err := dns.PackDomainName(name, wire, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		wantName := bytes.Clone(wire[:n])
		for k, c := range wantName { // label lengths are under 64: never A-Z
			if c >= 'A' && c <= 'Z' {
				wantName[k] = c + 'a' - 'A'
			}
		}
		if !bytes.HasPrefix(q.Key, wantName) || len(q.Key) != len(wantName)+5 {
			t.Fatalf("%q: key % x, want the name % x then 5 bytes", name, q.Key, wantName)
		}
		if !bytes.Equal(q.Question[:n], wire[:n]) || q.Qtype != m.Question[0].Qtype || q.Qclass != dns.ClassINET {
			t.Fatalf("%q: question % x, type %d", name, q.Question, q.Qtype)
		}
		gotDO, gotCD, gotAD := query.KeyFlags(q.Key)
		if q.ID != m.Id || q.HasEDNS != edns || gotDO != (edns && do) || gotCD != m.CheckingDisabled || gotAD != m.AuthenticatedData {
			t.Fatalf("%q: id %d edns %v flags %v %v %v", name, q.ID, q.HasEDNS, gotDO, gotCD, gotAD)
		}
	}
}

// escapeLabel writes a label in the text form miekg/dns reads: letters,
// digits, '-' and '_' as they are, every other byte as \DDD.
func escapeLabel(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "\\%03d", c)
		}
	}
	return sb.String()
}

// BenchmarkParseWireQuery reads a query for a 28-character name in mixed
// case with EDNS, as the fast path does for every UDP query.
func BenchmarkParseWireQuery(b *testing.B) {
	m := new(dns.Msg)
	m.SetQuestion("W7lvhdsnc-uzhsnt.YVLhsaqm6.net.", dns.TypeA)
	m.SetEdns0(1232, false)
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 0, 262)
	var q query.WireQuery
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := query.ParseWireQuery(pkt, key[:0], &q); err != nil {
			b.Fatal(err)
		}
	}
}
