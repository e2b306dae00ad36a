package chaos

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

func TestStage(t *testing.T) {
	long := strings.Repeat("x", 300)
	st := &Stage{Identity: `res\olver "7"`, Version: long}
	forwarded := 0
	st.Link(query.HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		forwarded++
		return query.Reply(req.Msg, dns.RcodeSuccess), nil
	}))
	var wire []byte
	ask := func(name string, qtype, qclass uint16) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		q.Question[0].Qclass = qclass
		q.RecursionDesired = true
		r, err := st.ServeDNS(context.Background(), query.NewRequest(q, netip.AddrPort{}, "udp", nil))
		if err != nil {
			t.Fatal(err)
		}
		// What the client receives: packed and read back.
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		wire = b
		var out dns.Msg
		if err := out.Unpack(b); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	txt := func(r *dns.Msg) string {
		t.Helper()
		if len(r.Answer) != 1 {
			t.Fatalf("no TXT answer: %v", r)
		}
		var b strings.Builder
		for _, s := range r.Answer[0].(*dns.TXT).Txt {
			b.WriteString(s)
		}
		return b.String()
	}
	if r := ask("ID.SERVER.", dns.TypeTXT, dns.ClassCHAOS); r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 ||
		!strings.Contains(string(wire), "\x0d"+`res\olver "7"`) {
		t.Fatalf("id.server: the text is not sent byte for byte: %q", wire)
	}
	if r := ask("version.bind.", dns.TypeANY, dns.ClassCHAOS); len(r.Answer[0].(*dns.TXT).Txt) != 2 || txt(r) != long {
		t.Fatalf("a 300-byte version is two strings: %v", r)
	}
	if r := ask("version.bind.", dns.TypeA, dns.ClassCHAOS); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("version.bind CH A: %v", r)
	}
	if r := ask("authors.bind.", dns.TypeTXT, dns.ClassCHAOS); r.Rcode != dns.RcodeRefused || r.RecursionAvailable || !r.RecursionDesired {
		t.Fatalf("authors.bind: %v", r)
	}
	if forwarded != 0 {
		t.Fatal("a CHAOS query was passed on")
	}
	if r := ask("version.bind.", dns.TypeTXT, dns.ClassINET); r.Rcode != dns.RcodeSuccess || forwarded != 1 {
		t.Fatalf("IN class not passed on: %v", r)
	}
	for _, c := range []struct {
		class uint16
		want  query.Verdict
	}{{dns.ClassCHAOS, query.Decline}, {dns.ClassINET, query.Pass}} {
		if v := st.Offer(&query.WireQuery{Qclass: c.class}, &query.Offered{}); v != c.want {
			t.Fatalf("offer for class %d: %v", c.class, v)
		}
	}
}
