package resolver

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// questionName spells the question name as the fast path does
// (query.ParseWireQuery then DottedName) for every name the fast path
// matches, and declines what it cannot read without panicking.
func TestQuestionName(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	var names []string
	for range 5000 {
		labels := make([]string, 1+rng.IntN(6))
		for i := range labels {
			b := make([]byte, 1+rng.IntN(20))
			for j := range b {
				b[j] = chars[rng.IntN(len(chars))]
			}
			labels[i] = string(b)
		}
		names = append(names, strings.Join(labels, ".")+".")
	}
	names = append(names, "Example.COM.", "a.", "xn--bcher-kva.example.")
	var key [262]byte
	dst := make([]byte, 255)
	for _, name := range names {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		pkt, err := m.Pack()
		if err != nil {
			t.Fatal(name, err)
		}
		var q query.WireQuery
		if err := query.ParseWireQuery(pkt, key[:0], &q); err != nil {
			t.Fatal(name, err)
		}
		var nb [256]byte
		want, ok := q.DottedName(nb[:0])
		if !ok {
			continue
		}
		n, ok := questionName(pkt, dst)
		if !ok || string(dst[:n]) != string(want) {
			t.Fatalf("%s: got %q %v, want %q", name, dst[:n], ok, want)
		}
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"header only", make([]byte, 12)},
		{"root name", append(make([]byte, 12), 0, 0, 1, 0, 1)},
		{"label past the end", append(make([]byte, 12), 10, 'a', 'b')},
		{"no terminating zero", append(make([]byte, 12), 1, 'a')},
		{"compression pointer", append(make([]byte, 12), 0xC0, 12)},
		{"too long for dst", append(append(make([]byte, 12), 63), make([]byte, 64)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n, ok := questionName(tc.pkt, make([]byte, 16)); ok {
				t.Fatalf("read %d bytes of a name from %v", n, tc.pkt)
			}
		})
	}
}
