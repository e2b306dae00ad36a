package resolver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// Bursts of queries for listed names, their subdomains and unlisted names,
// read by the batch loop several at a time (blocked answers from the
// lists inside the batch, unlisted names through the chain), each get
// their own answer: NXDOMAIN with the SOA of the listed name, or the
// upstream's address.
func TestUDPBatchBlockedBursts(t *testing.T) {
	dir := t.TempDir()
	var list strings.Builder
	for i := range 500 {
		fmt.Fprintf(&list, "listed-%d.test\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	store := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quiet})
	if rep, err := store.Reload(context.Background(), "test"); err != nil || rep.Failed() {
		t.Fatalf("list: %v", err)
	}
	up, err := dnstest.Start(dnstest.Options{CatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	pool, err := upstream.New(upstream.Config{Addrs: []string{up.Addr}, Timeout: 5 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	blocker := &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}
	answer := &policy.Answer{Block: blocker}
	question := &policy.Question{Block: blocker, CountryKnown: answer.CountryKnown}
	c := cache.New(cache.Config{Snapshot: store.Current, Logger: quiet, Decider: &policy.Decider{Question: question, Answer: answer}})
	chain, err := query.Chain(c, question, answer, pool)
	if err != nil {
		t.Fatal(err)
	}
	s, err := resolver.NewServer(resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}, Handler: chain, Snapshot: store.Current,
		Logger: quiet, UDPSockets: 1, UDPBatch: resolver.DefaultUDPBatch})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	conn, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type want struct {
		name  string
		rcode int
		soa   string // the SOA owner of a block
	}
	var qs []want
	for i := range 400 {
		switch i % 4 {
		case 0:
			qs = append(qs, want{fmt.Sprintf("listed-%d.test.", i), dns.RcodeNameError, fmt.Sprintf("listed-%d.test.", i)})
		case 1:
			qs = append(qs, want{fmt.Sprintf("www.Listed-%d.TEST.", i), dns.RcodeNameError, fmt.Sprintf("listed-%d.test.", i)})
		case 2:
			qs = append(qs, want{fmt.Sprintf("free-%d.test.", i), dns.RcodeSuccess, ""})
		default:
			qs = append(qs, want{fmt.Sprintf("a.b.c.d.listed-%d.test.", i), dns.RcodeNameError, fmt.Sprintf("listed-%d.test.", i)})
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	buf := make([]byte, 4096)
	for start := 0; start < len(qs); start += 40 {
		burst := qs[start:min(start+40, len(qs))]
		for k, q := range burst {
			m := new(dns.Msg)
			m.SetQuestion(q.name, dns.TypeA)
			m.Id = uint16(start + k)
			pkt, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(pkt); err != nil {
				t.Fatal(err)
			}
		}
		for range burst {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("burst at %d: %v", start, err)
			}
			var r dns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if int(r.Id) < start || int(r.Id) >= start+len(burst) {
				t.Fatalf("answer id %d outside the burst at %d", r.Id, start)
			}
			w := qs[r.Id]
			if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, w.name) || r.Rcode != w.rcode {
				t.Fatalf("%s: answer %v", w.name, &r)
			}
			if w.soa != "" && (len(r.Ns) != 1 || !strings.EqualFold(r.Ns[0].Header().Name, w.soa)) {
				t.Fatalf("%s: authority %v, want the SOA of %s", w.name, r.Ns, w.soa)
			}
			if w.soa == "" && len(r.Answer) == 0 {
				t.Fatalf("%s: no upstream answer: %v", w.name, &r)
			}
		}
	}
}
