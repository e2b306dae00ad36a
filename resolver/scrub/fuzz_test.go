package scrub_test

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/scrub"
)

// FuzzMessage scrubs any message that parses: it never panics, only
// removes records, counts what it removed, and a second pass removes
// nothing more.
func FuzzMessage(f *testing.F) {
	for _, c := range cases {
		m := new(dns.Msg)
		m.SetQuestion(c.qname, c.qtype)
		for _, sec := range []struct {
			lines []string
			dst   *[]dns.RR
		}{{c.answer, &m.Answer}, {c.authority, &m.Ns}, {c.additional, &m.Extra}} {
			for _, l := range sec.lines {
				if rr, err := dns.NewRR(l[2:]); err == nil {
					*sec.dst = append(*sec.dst, rr)
				}
			}
		}
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil || len(m.Question) != 1 {
			return
		}
		before := len(m.Answer) + len(m.Ns) + len(m.Extra)
		c := scrub.Message(m.Question[0], m)
		after := len(m.Answer) + len(m.Ns) + len(m.Extra)
		if c.Total() != before-after || c.Answer < 0 || c.Authority < 0 || c.Additional < 0 {
			t.Fatalf("counted %+v, removed %d", c, before-after)
		}
		if again := scrub.Message(m.Question[0], m); again.Total() != 0 {
			t.Fatalf("a second pass removed %+v more", again)
		}
	})
}

// BenchmarkMessage scrubs a typical signed answer: a CNAME, four
// addresses, their signatures, the zone's NS and glue, and one injected
// record in each section.
func BenchmarkMessage(b *testing.B) {
	rrs := func(lines ...string) []dns.RR {
		var out []dns.RR
		for _, l := range lines {
			rr, err := dns.NewRR(l)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, rr)
		}
		return out
	}
	q := dns.Question{Name: "www.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	ans := rrs("www.example. 60 IN CNAME cdn.example.", rrsig("", "www.example.", "CNAME", "example.")[1:],
		"cdn.example. 60 IN A 192.0.2.1", "cdn.example. 60 IN A 192.0.2.2", "cdn.example. 60 IN A 192.0.2.3",
		"cdn.example. 60 IN A 192.0.2.4", rrsig("", "cdn.example.", "A", "example.")[1:], "victim.test. 60 IN A 6.6.6.6")
	ns := rrs("example. 60 IN NS ns1.example.", "example. 60 IN NS ns2.example.", "victim.test. 60 IN NS ns.evil.")
	extra := rrs("ns1.example. 60 IN A 192.0.2.53", "ns2.example. 60 IN A 192.0.2.54", "ns.evil. 60 IN A 6.6.6.6")
	m := new(dns.Msg)
	b.ReportAllocs()
	for b.Loop() {
		m.Answer = append(m.Answer[:0], ans...)
		m.Ns = append(m.Ns[:0], ns...)
		m.Extra = append(m.Extra[:0], extra...)
		if c := scrub.Message(q, m); c.Total() != 3 {
			b.Fatalf("scrubbed %+v", c)
		}
	}
}
