package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

func TestAsk(t *testing.T) {
	srv := startDNS(t, dnstest.Options{Records: []string{"known.example. 60 IN A 192.0.2.1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rc, err := Ask(ctx, srv.Addr, "known.example", time.Second); err != nil || rc != rcodeNoError {
		t.Fatalf("known: rcode %d, %v", rc, err)
	}
	if rc, err := Ask(ctx, srv.Addr, "unknown.example.", time.Second); err != nil || rc != rcodeNXDomain {
		t.Fatalf("unknown: rcode %d, %v", rc, err)
	}
	if _, err := Ask(ctx, srv.Addr, "bad..name", time.Second); err == nil {
		t.Fatal("empty label accepted")
	}
	at, err := WaitNXDomain(ctx, srv.Addr, "unknown.example", 5*time.Second, func() error { return nil })
	if err != nil || at.IsZero() {
		t.Fatalf("WaitNXDomain: %v", err)
	}
}

func TestWaitNXDomainGivesUp(t *testing.T) {
	srv := startDNS(t, dnstest.Options{CatchAll: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := WaitNXDomain(ctx, srv.Addr, "listed.example", 300*time.Millisecond, func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "rcode 0") {
		t.Fatalf("err %v, want a timeout naming rcode 0", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("gave up after %s", time.Since(start))
	}
	dead := errors.New("exited")
	if _, err := WaitNXDomain(ctx, srv.Addr, "listed.example", 5*time.Second, func() error { return dead }); !errors.Is(err, dead) {
		t.Fatalf("err %v, want the alive error", err)
	}
}

// startDNS starts a dnstest server, retrying when the UDP port it drew is
// taken for TCP.
func startDNS(t *testing.T, o dnstest.Options) *dnstest.Server {
	t.Helper()
	var err error
	for range 10 {
		var srv *dnstest.Server
		if srv, err = dnstest.Start(o); err == nil {
			t.Cleanup(srv.Close)
			return srv
		}
	}
	t.Fatal(err)
	return nil
}
