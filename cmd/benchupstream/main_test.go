package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestAnswersEveryName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var a [2]string
	var done chan error
	// Port 0 draws a UDP port that may be taken for TCP: retry.
	for attempt := 0; ; attempt++ {
		addrs := make(chan [2]string, 1)
		done = make(chan error, 1)
		go func() {
			done <- run(ctx, "127.0.0.1:0", "127.0.0.1:0", func(d, s string) { addrs <- [2]string{d, s} })
		}()
		select {
		case a = <-addrs:
		case err := <-done:
			if attempt < 10 {
				continue
			}
			t.Fatalf("run: %v", err)
		case <-ctx.Done():
			t.Fatal("not ready")
		}
		break
	}
	for _, tc := range []struct {
		net   string
		qtype uint16
		want  string
	}{{"udp", dns.TypeA, "192.0.2.53"}, {"tcp", dns.TypeAAAA, "2001:db8::53"}} {
		c := &dns.Client{Net: tc.net, Timeout: 2 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion("any-name.bench.test.", tc.qtype)
		r, _, err := c.ExchangeContext(ctx, m, a[0])
		if err != nil {
			t.Fatalf("%s: %v", tc.net, err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), tc.want) {
			t.Fatalf("%s: answer %v", tc.net, r)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a[1]+"/queries", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "2" {
		t.Fatalf("queries %q, want 2", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
