package scrub_test

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/scrub"
)

// Each record is written "+ RR" (kept) or "- RR" (dropped).
type scrubCase struct {
	name       string
	qname      string
	qtype      uint16
	qclass     uint16 // IN if 0
	answer     []string
	authority  []string
	additional []string
}

// rrsig writes an RRSIG record for owner covering typ, signed by signer.
func rrsig(sign, owner, typ, signer string) string {
	return sign + " " + owner + " 60 IN RRSIG " + typ + " 8 2 60 20300101000000 20200101000000 12345 " + signer + " AAAA"
}

var cases = []scrubCase{
	{
		name: "injected records in every section", qname: "inj1.test.", qtype: dns.TypeA,
		answer:     []string{"+ inj1.test. 60 IN A 192.0.2.1", "- victim.test. 60 IN A 6.6.6.6"},
		authority:  []string{"- victim.test. 60 IN A 6.6.6.6", "- victim.test. 60 IN NS ns.evil.", "+ test. 60 IN NS ns.test."},
		additional: []string{"- victim.test. 60 IN A 6.6.6.6", "+ ns.test. 60 IN A 192.0.2.53", "- ns.evil. 60 IN A 6.6.6.6"},
	},
	{
		name: "CNAME chain written out of order", qname: "www.example.", qtype: dns.TypeA,
		answer: []string{
			"+ c.example.net. 60 IN A 192.0.2.3",
			"+ b.example.org. 60 IN CNAME c.example.net.",
			"+ www.example. 60 IN CNAME b.example.org.",
			"- d.example.net. 60 IN A 192.0.2.4",
			"- b.example.org. 60 IN A 192.0.2.5", // data beside a CNAME: the chain goes on past it
		},
	},
	{
		name: "DNAME and its synthesized CNAME", qname: "x.old.example.", qtype: dns.TypeA,
		answer: []string{
			"+ old.example. 60 IN DNAME new.example.",
			"+ x.old.example. 60 IN CNAME x.new.example.",
			"+ x.new.example. 60 IN A 192.0.2.7",
			"- y.new.example. 60 IN A 192.0.2.8",
			"- other.example. 60 IN DNAME victim.test.",
		},
	},
	{
		name: "DNAME without synthesized CNAME", qname: "a.b.old.example.", qtype: dns.TypeAAAA,
		answer: []string{
			"+ old.example. 60 IN DNAME new.example.",
			"+ a.b.new.example. 60 IN AAAA 2001:db8::1",
		},
	},
	{
		name: "NXDOMAIN with NSEC proof", qname: "nope.signed.test.", qtype: dns.TypeA,
		authority: []string{
			"+ signed.test. 60 IN SOA ns.signed.test. h.signed.test. 1 60 60 60 60",
			rrsig("+", "signed.test.", "SOA", "signed.test."),
			"+ mail.signed.test. 60 IN NSEC www.signed.test. A RRSIG NSEC",
			rrsig("+", "mail.signed.test.", "NSEC", "signed.test."),
			"+ signed.test. 60 IN NSEC a.signed.test. NS SOA RRSIG NSEC DNSKEY",
			rrsig("+", "signed.test.", "NSEC", "signed.test."),
			"- victim.test. 60 IN NSEC zz.victim.test. A",
			rrsig("-", "victim.test.", "NSEC", "victim.test."),
			"- victim.test. 60 IN SOA ns.victim.test. h.victim.test. 1 60 60 60 60",
			"- victim.test. 60 IN NS ns.victim.test.",
			rrsig("-", "victim.test.", "NS", "victim.test."),
			"- victim.test. 60 IN A 6.6.6.6",
		},
	},
	{
		name: "NSEC3 wildcard proof without SOA", qname: "any.wild.child.test.", qtype: dns.TypeTXT,
		answer: []string{
			"+ any.wild.child.test. 60 IN TXT \"wild\"",
			rrsig("+", "any.wild.child.test.", "TXT", "child.test."),
			rrsig("-", "any.wild.child.test.", "A", "child.test."),
		},
		authority: []string{
			"+ 2vptu5timamqttgl4luu9kg21e0aor3s.child.test. 60 IN NSEC3 1 0 0 - 2vptu5timamqttgl4luu9kg21e0aor3t A RRSIG",
			rrsig("+", "2vptu5timamqttgl4luu9kg21e0aor3s.child.test.", "NSEC3", "child.test."),
			// An NSEC3 signed by a zone the chain is not in.
			"- 3vptu5timamqttgl4luu9kg21e0aor3s.victim.test. 60 IN NSEC3 1 0 0 - 3vptu5timamqttgl4luu9kg21e0aor3t A RRSIG",
			rrsig("-", "3vptu5timamqttgl4luu9kg21e0aor3s.victim.test.", "NSEC3", "victim.test."),
			// One whose signer does not hold it.
			"- 4vptu5timamqttgl4luu9kg21e0aor3s.victim.test. 60 IN NSEC3 1 0 0 - 4vptu5timamqttgl4luu9kg21e0aor3t A RRSIG",
			rrsig("-", "4vptu5timamqttgl4luu9kg21e0aor3s.victim.test.", "NSEC3", "child.test."),
			// Unsigned, and no SOA: nothing ties it to the question.
			"- 5vptu5timamqttgl4luu9kg21e0aor3s.child.test. 60 IN NSEC3 1 0 0 - 5vptu5timamqttgl4luu9kg21e0aor3t A RRSIG",
		},
	},
	{
		name: "referral with DS and glue", qname: "www.sub.test.", qtype: dns.TypeA,
		authority: []string{
			"+ sub.test. 60 IN NS ns1.sub.test.",
			"+ sub.test. 60 IN NS ns.elsewhere.",
			"+ sub.test. 60 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE",
			rrsig("+", "sub.test.", "DS", "test."),
			"- other.test. 60 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE",
			"- other.test. 60 IN NS ns.evil.",
		},
		additional: []string{
			"+ ns1.sub.test. 60 IN A 192.0.2.10",
			"+ ns1.sub.test. 60 IN AAAA 2001:db8::10",
			"+ ns.elsewhere. 60 IN A 192.0.2.11",
			"- ns.evil. 60 IN A 6.6.6.6",
			"- ns1.sub.test. 60 IN TXT \"not an address\"",
		},
	},
	{
		name: "MX and SRV targets' addresses", qname: "example.", qtype: dns.TypeANY,
		answer: []string{
			"+ example. 60 IN MX 10 mx.example.",
			"+ example. 60 IN SRV 0 0 443 svc.example.",
			"+ example. 60 IN A 192.0.2.1",
			"- www.example. 60 IN A 192.0.2.2",
		},
		additional: []string{
			"+ mx.example. 60 IN A 192.0.2.25",
			rrsig("+", "mx.example.", "A", "example."),
			rrsig("-", "mx.example.", "AAAA", "example."),
			"+ svc.example. 60 IN AAAA 2001:db8::443",
			"- www.example. 60 IN A 192.0.2.2",
		},
	},
	{
		name: "a query for CNAME does not follow it", qname: "alias.example.", qtype: dns.TypeCNAME,
		answer: []string{
			"+ alias.example. 60 IN CNAME target.example.",
			"- target.example. 60 IN CNAME victim.test.",
			"- target.example. 60 IN A 6.6.6.6",
		},
	},
	{
		name: "mixed case question (0x20)", qname: "WwW.ExAmPlE.", qtype: dns.TypeA,
		answer: []string{"+ www.example. 60 IN A 192.0.2.1", "+ WWW.EXAMPLE. 60 IN A 192.0.2.2"},
		authority: []string{
			"+ EXAMPLE. 60 IN NS ns.example.",
		},
		additional: []string{"+ NS.example. 60 IN A 192.0.2.53"},
	},
	{
		name: "another class is dropped", qname: "www.example.", qtype: dns.TypeA,
		answer:     []string{"+ www.example. 60 IN A 192.0.2.1", "- www.example. 60 CH A 192.0.2.1"},
		authority:  []string{"- example. 60 CH SOA ns.example. h.example. 1 60 60 60 60"},
		additional: []string{},
	},
	{
		name: "NODATA: SOA of the zone the chain ends in", qname: "www.example.", qtype: dns.TypeAAAA,
		answer: []string{"+ www.example. 60 IN CNAME host.example.net."},
		authority: []string{
			"+ example.net. 60 IN SOA ns.example.net. h.example.net. 1 60 60 60 60",
			"- example. 60 IN SOA ns.example. h.example. 1 60 60 60 60",
			"- www.example. 60 IN CNAME host.example.net.",
		},
	},
	{
		name: "signatures go with what they sign", qname: "s.example.", qtype: dns.TypeA,
		answer: []string{
			"+ s.example. 60 IN A 192.0.2.1",
			rrsig("+", "s.example.", "A", "example."),
			rrsig("-", "s.example.", "AAAA", "example."),
			rrsig("-", "victim.test.", "A", "test."),
		},
	},
	{
		name: "a query for RRSIG keeps the name's signatures", qname: "s.example.", qtype: dns.TypeRRSIG,
		answer: []string{
			rrsig("+", "s.example.", "A", "example."),
			rrsig("+", "s.example.", "NSEC", "example."),
			rrsig("-", "t.example.", "A", "example."),
		},
	},
	{
		name: "a query for DNAME", qname: "old.example.", qtype: dns.TypeDNAME,
		answer: []string{"+ old.example. 60 IN DNAME new.example.", "- new.example. 60 IN A 192.0.2.1"},
	},
	{
		name: "class ANY question", qname: "www.example.", qtype: dns.TypeA, qclass: dns.ClassANY,
		answer: []string{"+ www.example. 60 IN A 192.0.2.1", "- victim.test. 60 IN A 6.6.6.6"},
	},
	{
		name: "DNAME at the root", qname: "a.b.example.", qtype: dns.TypeA,
		answer: []string{"+ . 60 IN DNAME x.test.", "+ a.b.example.x.test. 60 IN A 192.0.2.1", "- a.b.example. 60 IN A 6.6.6.6"},
	},
	{
		name: "DNAME loop is bounded", qname: "a.loop.example.", qtype: dns.TypeA,
		answer: []string{"+ loop.example. 60 IN DNAME a.loop.example."},
	},
}

func parse(t *testing.T, lines []string) (all, kept []dns.RR) {
	t.Helper()
	for _, l := range lines {
		mark, text, _ := strings.Cut(l, " ")
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		all = append(all, rr)
		if mark == "+" {
			kept = append(kept, rr)
		}
	}
	return all, kept
}

func TestMessage(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := new(dns.Msg)
			class := c.qclass
			if class == 0 {
				class = dns.ClassINET
			}
			q := dns.Question{Name: c.qname, Qtype: c.qtype, Qclass: class}
			m.Question = []dns.Question{q}
			var want [3][]dns.RR
			m.Answer, want[0] = parse(t, c.answer)
			m.Ns, want[1] = parse(t, c.authority)
			m.Extra, want[2] = parse(t, c.additional)
			m.SetEdns0(1232, true)
			opt := m.Extra[len(m.Extra)-1]
			want[2] = append(want[2], opt)
			total := len(m.Answer) + len(m.Ns) + len(m.Extra)
			got := scrub.Message(q, m)
			for i, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
				if !sameRRs(sec, want[i]) {
					t.Errorf("section %d:\n got %v\nwant %v", i, sec, want[i])
				}
			}
			if kept := len(m.Answer) + len(m.Ns) + len(m.Extra); got.Total() != total-kept {
				t.Errorf("counted %d dropped, dropped %d", got.Total(), total-kept)
			}
			if got.Answer != len(c.answer)-len(want[0]) || got.Authority != len(c.authority)-len(want[1]) {
				t.Errorf("counts %+v", got)
			}
		})
	}
}

func sameRRs(a, b []dns.RR) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].String() != b[i].String() {
			return false
		}
	}
	return true
}
