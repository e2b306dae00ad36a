package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// An upstream that answers SERVFAIL, REFUSED, NOTIMP or FORMERR is passed
// over for the next one.
func TestBadAnswersFailOver(t *testing.T) {
	good := start(t, "x.test. 60 IN A 192.0.2.2")
	for _, f := range []struct {
		name  string
		fault dnstest.Fault
	}{
		{"SERVFAIL", dnstest.FaultServFail},
		{"REFUSED", dnstest.FaultRefused},
		{"NOTIMP", dnstest.FaultNotImp},
		{"FORMERR", dnstest.FaultFormErr},
	} {
		t.Run(f.name, func(t *testing.T) {
			bad := start(t, "x.test. 60 IN A 192.0.2.1")
			bad.SetFault("*", f.fault)
			p := newPool(t, upstream.Config{Addrs: []string{bad.Addr, good.Addr}, Timeout: time.Second})
			r, up, err := exchange(t, p, "x.test")
			if err != nil || up != good.Addr || firstA(r) != "192.0.2.2" || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("answer %v from %s, err %v; want 192.0.2.2 from the good upstream", r, up, err)
			}
			h := p.Health()[0]
			if h.BadAnswers != 1 || !h.Healthy || h.NoEDNS {
				t.Fatalf("bad upstream health %+v", h)
			}
			// FORMERR and NOTIMP to an EDNS query were asked again without
			// EDNS (and answered the same: not an EDNS problem).
			want := int64(1)
			if f.fault == dnstest.FaultFormErr || f.fault == dnstest.FaultNotImp {
				want = 2
			}
			if n := bad.QueriesFor("x.test"); n != want {
				t.Fatalf("bad upstream asked %d times, want %d", n, want)
			}
		})
	}
}

// When every upstream gives a bad answer the last one is returned, and a
// bad answer beats a silent upstream; only when none answered is the
// error EDE 22 or 23.
func TestAllBadAnswersGiveTheLast(t *testing.T) {
	servfail, refused := start(t), start(t)
	servfail.SetFault("*", dnstest.FaultServFail)
	refused.SetFault("*", dnstest.FaultRefused)
	silent, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, c := range []struct {
		name  string
		addrs []string
		rcode int
		from  string
	}{
		{"servfail then refused", []string{servfail.Addr, refused.Addr}, dns.RcodeRefused, refused.Addr},
		{"refused then servfail", []string{refused.Addr, servfail.Addr}, dns.RcodeServerFailure, servfail.Addr},
		{"refused then silent", []string{refused.Addr, silent.Addr}, dns.RcodeRefused, refused.Addr},
		{"silent then servfail", []string{silent.Addr, servfail.Addr}, dns.RcodeServerFailure, servfail.Addr},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPool(t, upstream.Config{Addrs: c.addrs, Timeout: 200 * time.Millisecond})
			r, up, err := exchange(t, p, "x.test")
			if err != nil || r.Rcode != c.rcode || up != c.from {
				t.Fatalf("got %v from %s, err %v; want %s from %s", r, up, err, dns.RcodeToString[c.rcode], c.from)
			}
		})
	}
	p := newPool(t, upstream.Config{Addrs: []string{silent.Addr}, Timeout: 200 * time.Millisecond})
	_, _, err = exchange(t, p, "x.test")
	var ede *query.EDEError
	if !errors.As(err, &ede) || ede.Code != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("silent upstream: error %v, want EDE 22", err)
	}
}

// An upstream that rejects EDNS (FORMERR or NOTIMP to queries with an OPT
// record) is asked again without it, and then without it for a while.
func TestEDNSFallback(t *testing.T) {
	for _, f := range []dnstest.Fault{dnstest.FaultNoEDNS, dnstest.FaultNoEDNSNotImp} {
		old := start(t, "a.test. 60 IN A 192.0.2.1", "b.test. 60 IN A 192.0.2.2", "c.test. 60 IN A 192.0.2.3")
		old.SetFault("*", f)
		p := newPool(t, upstream.Config{Addrs: []string{old.Addr}, Timeout: time.Second, NoEDNSMemory: 300 * time.Millisecond})
		r, _, err := exchange(t, p, "a.test")
		if err != nil || firstA(r) != "192.0.2.1" {
			t.Fatalf("fault %d: %v %v", f, r, err)
		}
		if n := old.QueriesFor("a.test"); n != 2 {
			t.Fatalf("fault %d: asked %d times, want 2 (with EDNS, then without)", f, n)
		}
		if h := p.Health()[0]; !h.NoEDNS || h.BadAnswers != 0 {
			t.Fatalf("fault %d: health %+v, want NoEDNS", f, h)
		}
		// Remembered: the next query goes without EDNS at once.
		if r, _, err := exchange(t, p, "b.test"); err != nil || firstA(r) != "192.0.2.2" {
			t.Fatalf("fault %d: %v %v", f, r, err)
		}
		if n, q := old.QueriesFor("b.test"), old.LastQuery("b.test"); n != 1 || q.IsEdns0() != nil {
			t.Fatalf("fault %d: b.test asked %d times, last %v; want once without EDNS", f, n, q)
		}
		// Forgotten after NoEDNSMemory: EDNS is tried again.
		time.Sleep(400 * time.Millisecond)
		if h := p.Health()[0]; h.NoEDNS {
			t.Fatalf("fault %d: still NoEDNS after the memory: %+v", f, h)
		}
		if r, _, err := exchange(t, p, "c.test"); err != nil || firstA(r) != "192.0.2.3" || old.QueriesFor("c.test") != 2 {
			t.Fatalf("fault %d: after the memory: %v %v, %d queries", f, r, err, old.QueriesFor("c.test"))
		}
	}
}

// A query without EDNS answered FORMERR is not an EDNS problem: the next
// upstream is asked, and nothing is remembered.
func TestFormErrWithoutEDNS(t *testing.T) {
	bad, good := start(t), start(t, "x.test. 60 IN A 192.0.2.2")
	bad.SetFault("*", dnstest.FaultFormErr)
	p := newPool(t, upstream.Config{Addrs: []string{bad.Addr, good.Addr}, Timeout: time.Second})
	q := new(dns.Msg)
	q.SetQuestion("x.test.", dns.TypeA)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, up, err := p.Exchange(ctx, q)
	if err != nil || up != good.Addr || firstA(r) != "192.0.2.2" {
		t.Fatalf("%v from %s: %v", r, up, err)
	}
	if h := p.Health()[0]; h.NoEDNS || h.BadAnswers != 1 || bad.QueriesFor("x.test") != 1 {
		t.Fatalf("health %+v, %d queries", h, bad.QueriesFor("x.test"))
	}
}

// A burst of answers with wrong IDs ahead of the real one loses nothing:
// they are dropped from the header, and should the real answer be lost in
// the burst, the query is asked again within the try.
func TestWrongIDBurst(t *testing.T) {
	var recs []string
	for i := 0; i < 5; i++ {
		recs = append(recs, fmt.Sprintf("x%d.test. 60 IN A 192.0.2.2", i))
	}
	up := start(t, recs...)
	up.Burst = 3000
	up.SetFault("*", dnstest.FaultIDBurst)
	p := newPool(t, upstream.Config{Addrs: []string{up.Addr}, Timeout: 2 * time.Second})
	for i := 0; i < 5; i++ {
		start := time.Now()
		name := fmt.Sprintf("x%d.test", i)
		r, _, err := exchange(t, p, name)
		if err != nil || firstA(r) != "192.0.2.2" {
			t.Fatalf("%s: %v %v", name, r, err)
		}
		t.Logf("%s: answered in %s after %d queries, %d mismatched so far", name, time.Since(start).Round(time.Millisecond),
			up.QueriesFor(name), p.Health()[0].Mismatched)
	}
	if h := p.Health()[0]; h.Mismatched == 0 || h.Failures != 0 {
		t.Fatalf("health %+v", h)
	}

	// The real answer lost: the first query gets only the burst, the
	// second (sent half-way through the try) the burst and the answer.
	lossy := start(t, "y.test. 60 IN A 192.0.2.3")
	lossy.Burst = 50
	lossy.SetFault("y.test", dnstest.FaultIDBurst)
	// The burst is sent once; the first answer is dropped by the script.
	var seen atomic.Int32
	lossy.SetScript("y.test", func(req, m *dns.Msg) *dns.Msg {
		if seen.Add(1) == 1 {
			return nil
		}
		return m
	})
	p = newPool(t, upstream.Config{Addrs: []string{lossy.Addr}, Timeout: 2 * time.Second})
	r, _, err := exchange(t, p, "y.test")
	if err != nil || firstA(r) != "192.0.2.3" || lossy.QueriesFor("y.test") != 2 {
		t.Fatalf("lost answer: %v %v, %d queries", r, err, lossy.QueriesFor("y.test"))
	}
}

// Records that do not belong to the question never leave the pool, and
// are counted by section.
func TestInjectedRecordsScrubbed(t *testing.T) {
	up := start(t, "inj1.test. 60 IN A 192.0.2.1")
	victim, _ := dns.NewRR("victim.test. 60 IN A 6.6.6.6")
	up.SetScript("inj1.test", func(req, m *dns.Msg) *dns.Msg {
		m.Answer = append(m.Answer, dns.Copy(victim))
		m.Ns = append(m.Ns, dns.Copy(victim))
		m.Extra = append(m.Extra, dns.Copy(victim))
		return m
	})
	p := newPool(t, upstream.Config{Addrs: []string{up.Addr}, Timeout: time.Second})
	r, _, err := exchange(t, p, "inj1.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			if rr.Header().Name == "victim.test." {
				t.Fatalf("injected record reached the answer: %v", r)
			}
		}
	}
	if len(r.Answer) != 1 || r.IsEdns0() == nil {
		t.Fatalf("scrubbed too much: %v", r)
	}
	if s := p.Health()[0].Scrubbed; s != (upstream.Scrubbed{Answer: 1, Authority: 1, Additional: 1}) {
		t.Fatalf("scrubbed %+v", s)
	}
}
