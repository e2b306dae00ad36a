package resolver_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// manyA answers every query with n A records, enough to need truncation.
func manyA(n int) query.HandlerFunc {
	return func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		m := query.Reply(req.Msg, dns.RcodeSuccess)
		for i := 0; i < n; i++ {
			rr, _ := dns.NewRR(req.Msg.Question[0].Name + " 60 IN A 198.18.0." + strconv.Itoa(i))
			m.Answer = append(m.Answer, rr)
		}
		return m, nil
	}
}

func TestHandlePacket(t *testing.T) {
	var mu sync.Mutex
	protos := map[string]int{}
	s := startServer(t, resolver.ServerConfig{
		Handler: manyA(100),
		Admit: func(c netip.AddrPort, proto string) resolver.Admission {
			mu.Lock()
			protos[proto]++
			mu.Unlock()
			switch c.Port() {
			case 1:
				return resolver.Refuse
			case 2:
				return resolver.Drop
			}
			return resolver.Admit
		},
	})
	pack := func(name string) []byte {
		m := question(name)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := netip.MustParseAddrPort("127.0.0.1:5000")
	full, send := s.HandlePacket(ctx, pack("big.test."), client, "doh", 65535)
	if !send {
		t.Fatal("no answer")
	}
	var r dns.Msg
	if err := r.Unpack(full); err != nil || r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("full answer: tc=%v answers=%d err=%v", r.Truncated, len(r.Answer), err)
	}
	kept := append([]byte(nil), full...)
	small, send := s.HandlePacket(ctx, pack("big.test."), client, "doq", 512)
	if !send || len(small) > 512 {
		t.Fatalf("small answer: send=%v %d bytes", send, len(small))
	}
	if err := r.Unpack(small); err != nil || !r.Truncated {
		t.Fatalf("small answer not truncated: %v", err)
	}
	if string(kept) != string(full) {
		t.Fatal("a retained answer changed under the next query")
	}
	out, send := s.HandlePacket(ctx, pack("big.test."), netip.MustParseAddrPort("127.0.0.1:1"), "doh", 65535)
	if err := r.Unpack(out); !send || err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("refused client: send=%v rcode=%d err=%v", send, r.Rcode, err)
	}
	if _, send := s.HandlePacket(ctx, pack("big.test."), netip.MustParseAddrPort("127.0.0.1:2"), "doh", 65535); send {
		t.Fatal("dropped client got an answer")
	}
	if _, send := s.HandlePacket(ctx, []byte{1, 2, 3}, client, "doh", 65535); send {
		t.Fatal("a runt packet got an answer")
	}
	mu.Lock()
	defer mu.Unlock()
	if protos["doh"] != 3 || protos["doq"] != 1 {
		t.Fatalf("admission saw protos %v", protos)
	}
}

func TestServeConn(t *testing.T) {
	var mu sync.Mutex
	protos := map[string]int{}
	s := startServer(t, resolver.ServerConfig{
		TCPMaxConnsPerClient: 1,
		Admit: func(_ netip.AddrPort, proto string) resolver.Admission {
			mu.Lock()
			protos[proto]++
			mu.Unlock()
			return resolver.Admit
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConn(c, "dot")
		}
	}()
	c := client("tcp", "", 3*time.Second)
	conn, err := c.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Pipelined on one connection.
	for i := 0; i < 3; i++ {
		q := question("pipe" + strconv.Itoa(i) + ".test.")
		r, _, err := c.ExchangeWithConn(q, conn)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("query %d over the connection: %v", i, err)
		}
	}
	// The per-client cap of the TCP listener applies: a second connection
	// from the same address is closed.
	second, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("second connection over the per-client cap was served")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("second connection over the per-client cap was left open")
	}
	if s.TCPRejected() != 1 {
		t.Fatalf("TCPRejected = %d, want 1", s.TCPRejected())
	}
	mu.Lock()
	defer mu.Unlock()
	if protos["dot"] != 3 {
		t.Fatalf("admission saw protos %v", protos)
	}
}
