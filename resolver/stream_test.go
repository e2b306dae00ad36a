package resolver_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver"
)

// Over one TCP connection, pipelined queries that the fast path answers
// (cache hits, sent in one write) are all answered, in full, and a query
// that takes the chain (a slow upstream) in the middle of them holds none
// of them up: RFC 7766 6.2.1.1 lets answers leave out of order.
func TestStreamPipelinedFastAndSlow(t *testing.T) {
	const slowFor = 1500 * time.Millisecond
	s := startServer(t, resolver.ServerConfig{Handler: slowBehindCache(t, slowFor)})
	conn, err := net.Dial("tcp", s.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	frame := func(name string, id uint16) []byte {
		m := question(name)
		m.Id = id
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...)
	}
	read := func() *dns.Msg {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatal(err)
		}
		var r dns.Msg
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	const fast = 40
	var warm []byte
	for i := 0; i < fast; i++ {
		warm = append(warm, frame(fmt.Sprintf("fast%d.test", i), uint16(i+1))...)
	}
	conn.Write(warm) // fills the cache: these take the chain
	for i := 0; i < fast; i++ {
		read()
	}
	var burst []byte
	for i := 0; i < fast; i++ {
		if i == fast/2 {
			burst = append(burst, frame("slow.test", 1000)...)
		}
		burst = append(burst, frame(fmt.Sprintf("fast%d.test", i), uint16(i+1))...)
	}
	start := time.Now()
	if _, err := conn.Write(burst); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for len(seen) <= fast {
		r := read()
		if r.Id == 1000 {
			if len(seen) != fast {
				t.Fatalf("the slow answer came before %d of the %d cache hits", fast-len(seen), fast)
			}
		} else if time.Since(start) >= slowFor {
			t.Fatalf("cache hit %d after %v: held up by the slow query", r.Id, time.Since(start))
		}
		if seen[r.Id] || len(r.Answer) != 1 {
			t.Fatalf("answer %d: duplicate or %d records", r.Id, len(r.Answer))
		}
		seen[r.Id] = true
	}
}
