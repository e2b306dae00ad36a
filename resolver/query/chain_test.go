package query_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// stage is a test stage: its offer gives verdict, its full path records
// its name and hands on (or answers, when last).
type stage struct {
	name    string
	verdict query.Verdict
	offer   bool // has an offer
	next    query.Handler
	log     *[]string
}

func (s *stage) Link(next query.Handler) { s.next = next }

func (s *stage) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	*s.log = append(*s.log, s.name)
	if s.next == nil {
		return query.Reply(req.Msg, dns.RcodeSuccess), nil
	}
	return s.next.ServeDNS(ctx, req)
}

// offering is a stage with an offer.
type offering struct{ *stage }

func (s offering) Offer(q *query.WireQuery, o *query.Offered) query.Verdict {
	*s.log = append(*s.log, "offer "+s.name)
	if s.verdict == query.Answered {
		o.N = 12
	}
	return s.verdict
}

func TestChainOrder(t *testing.T) {
	var log []string
	mk := func(name string, v query.Verdict, offer bool) query.Handler {
		s := &stage{name: name, verdict: v, log: &log}
		if offer {
			return offering{s}
		}
		return s
	}
	var absent *stage
	cases := []struct {
		stages []query.Handler
		want   query.Verdict
		offers string
	}{
		{[]query.Handler{mk("a", query.Pass, true), mk("b", query.Answered, true), mk("c", query.Pass, true)}, query.Answered, "offer a,offer b"},
		{[]query.Handler{mk("a", query.Pass, true), mk("b", query.Decline, true), mk("c", query.Answered, true)}, query.Decline, "offer a,offer b"},
		{[]query.Handler{mk("a", query.Pass, true), mk("b", query.Pass, true)}, query.Decline, "offer a,offer b"},
		// The fast path ends at the first stage without an offer: a later
		// offer is never asked.
		{[]query.Handler{mk("a", query.Pass, true), mk("b", 0, false), mk("c", query.Answered, true)}, query.Decline, "offer a"},
		// Parts not configured are left out.
		{[]query.Handler{nil, absent, mk("a", query.Answered, true)}, query.Answered, "offer a"},
	}
	for i, c := range cases {
		p, err := query.Chain(c.stages...)
		if err != nil {
			t.Fatal(err)
		}
		log = nil
		if v := p.Offer(&query.WireQuery{}, &query.Offered{}); v != c.want || strings.Join(log, ",") != c.offers {
			t.Fatalf("case %d: verdict %d after %v, want %d after %s", i, v, log, c.want, c.offers)
		}
		log = nil
		m := new(dns.Msg)
		m.SetQuestion("x.test.", dns.TypeA)
		if _, err := p.ServeDNS(context.Background(), query.NewRequest(m, netip.AddrPort{}, "udp", nil)); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, h := range p.Stages() {
			switch s := h.(type) {
			case *stage:
				want = append(want, s.name)
			case offering:
				want = append(want, s.name)
			}
		}
		if strings.Join(log, ",") != strings.Join(want, ",") {
			t.Fatalf("case %d: full path ran %v, want %v", i, log, want)
		}
	}
	if _, err := query.Chain(query.HandlerFunc(func(context.Context, *query.Request) (*dns.Msg, error) { return nil, nil }), mk("a", 0, false)); err == nil {
		t.Fatal("a stage that cannot hand on was put before another")
	}
}
