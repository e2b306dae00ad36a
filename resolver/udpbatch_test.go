package resolver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// In one batch, a query that takes the chain (a slow upstream) does not
// hold up the answers the fast path gives (cache hits): they arrive at
// once, the slow one later, over one socket with batching on and off.
func TestUDPBatchSlowQueryDoesNotHoldBatch(t *testing.T) {
	const slowFor = 1500 * time.Millisecond
	for _, batch := range []int{1, resolver.DefaultUDPBatch} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			s := startServer(t, resolver.ServerConfig{Handler: slowBehindCache(t, slowFor), UDPSockets: 1, UDPBatch: batch})
			conn, err := net.Dial("udp", s.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			const fast = 20
			pack := func(name string, id uint16) []byte {
				m := question(name)
				m.Id = id
				p, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			buf := make([]byte, 4096)
			for i := 0; i < fast; i++ { // fill the cache
				conn.Write(pack(fmt.Sprintf("fast%d.test", i), uint16(i+1)))
				if _, err := conn.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			conn.Write(pack("slow.test", 1000))
			for i := 0; i < fast; i++ {
				conn.Write(pack(fmt.Sprintf("fast%d.test", i), uint16(i+1)))
			}
			var fastDone time.Duration
			for got := 0; got <= fast; got++ {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("after %d answers: %v", got, err)
				}
				var r dns.Msg
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatal(err)
				}
				if r.Id == 1000 {
					if got != fast {
						t.Fatalf("the slow answer came after %d of %d fast ones", got, fast)
					}
					if time.Since(start) < slowFor {
						t.Fatalf("slow answer after %v, before the upstream's %v", time.Since(start), slowFor)
					}
					continue
				}
				fastDone = time.Since(start)
			}
			if fastDone >= slowFor {
				t.Fatalf("the cache hits took %v: held up by the slow query", fastDone)
			}
		})
	}
}

// slowBehindCache is a chain of a cache in front of a stage that answers
// every name with an A record, after slowFor for names starting "slow":
// cached names are answered by the fast path, slow ones take the chain.
func slowBehindCache(t *testing.T, slowFor time.Duration) *query.Pipeline {
	t.Helper()
	next := query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		if strings.HasPrefix(req.Name, "slow") {
			time.Sleep(slowFor)
		}
		return answerA(ctx, req)
	})
	c := cache.New(cache.Config{Snapshot: blocklist.Empty, Logger: slog.New(slog.DiscardHandler)})
	chain, err := query.Chain(c, next)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// A query answered in the batch loop (a cache hit) carries the time its
// batch was read as its start, and a lone query is answered without
// waiting for a batch to fill, with batching on and off.
func TestUDPBatchRequestStart(t *testing.T) {
	for _, batch := range []int{1, resolver.DefaultUDPBatch} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			starts := make(chan time.Time, 4)
			s := startServer(t, resolver.ServerConfig{Handler: slowBehindCache(t, 0), UDPSockets: 1, UDPBatch: batch,
				Observe: func(req *query.Request, _ *dns.Msg) { starts <- req.Start }})
			c := new(dns.Client)
			c.Timeout = 5 * time.Second
			for i := range 2 { // the first fills the cache, the second is a hit
				before := time.Now()
				r, _, err := c.Exchange(question("start.test"), s.Addrs()[0])
				after := time.Now()
				if err != nil || len(r.Answer) != 1 {
					t.Fatalf("query %d: %v %v", i, r, err)
				}
				select {
				case st := <-starts:
					if st.Before(before.Add(-time.Millisecond)) || st.After(after) {
						t.Fatalf("query %d: start %v outside its exchange [%v, %v]", i, st, before, after)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("query %d not observed", i)
				}
			}
		})
	}
}
