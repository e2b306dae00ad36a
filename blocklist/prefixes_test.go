package blocklist

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// randPrefixes makes n prefixes, mixed IPv4 and IPv6, clustered so that many
// nest inside each other: each is a random narrowing of one of a few roots
// or of an earlier prefix.
func randPrefixes(rnd *rand.Rand, n int) []netip.Prefix {
	roots := []netip.Prefix{
		netip.MustParsePrefix("198.51.0.0/16"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("2400::/12"),
	}
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var parent netip.Prefix
		if len(out) > 0 && rnd.IntN(3) > 0 {
			parent = out[rnd.IntN(len(out))]
		} else {
			parent = roots[rnd.IntN(len(roots))]
		}
		maxBits := parent.Addr().BitLen()
		if parent.Bits() == maxBits {
			out = append(out, parent)
			continue
		}
		bits := parent.Bits() + 1 + rnd.IntN(min(maxBits-parent.Bits(), 24))
		out = append(out, randInside(rnd, parent, bits))
	}
	return out
}

// randInside returns a random prefix of length bits inside p (bits >= p.Bits()).
func randInside(rnd *rand.Rand, p netip.Prefix, bits int) netip.Prefix {
	a := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 96
	}
	for i := off + p.Bits(); i < off+bits; i++ {
		if rnd.IntN(2) == 1 {
			a[i/8] |= 1 << (7 - i%8)
		}
	}
	addr := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		addr = addr.Unmap()
	}
	return netip.PrefixFrom(addr, bits).Masked()
}

// randAddrIn returns a random address inside p.
func randAddrIn(rnd *rand.Rand, p netip.Prefix) netip.Addr {
	return randInside(rnd, p, p.Addr().BitLen()).Addr()
}

type testIPRule struct {
	p     netip.Prefix
	allow bool
	log   bool
}

// buildIPSnapshot compiles rules into a snapshot: section 0 enforces,
// section 1 is monitor-only (action log).
func buildIPSnapshot(t testing.TB, rules []testIPRule) *Snapshot {
	b := newBuilder(0, 0)
	b.beginSection(Section{File: "enforce.txt"})
	b.beginSection(Section{File: "log.txt", Action: ActionLog})
	for i, r := range rules {
		b.addPrefix(r.p, r.allow, i+1)
		sect := uint16(0)
		if r.log {
			sect = 1
		}
		b.s.ips[len(b.s.ips)-1].sect = sect
	}
	s, err := b.compile(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bruteMatch is the specification MatchIP must meet: the longest prefix
// containing a wins; for the same prefix listed twice an enforced rule
// beats a monitor-only one, then the earlier line wins.
func bruteMatch(rules []testIPRule, a netip.Addr, allow bool) (int, bool) {
	best, bestBits := -1, -1
	a = a.Unmap()
	for i, r := range rules {
		if r.allow != allow || !r.p.Contains(a) {
			continue
		}
		bits := r.p.Bits()
		if r.p.Addr().Is4() {
			bits += 96
		}
		switch {
		case bits > bestBits:
		case bits == bestBits && !allow && rules[best].log && !r.log:
		default:
			continue
		}
		best, bestBits = i, bits
	}
	return best, best >= 0
}

// TestMatchIPAgainstBruteForce checks longest-prefix semantics over random
// nested prefixes, IPv4 and IPv6, blocks and exceptions, duplicates with
// different actions.
func TestMatchIPAgainstBruteForce(t *testing.T) {
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, 99))
		ps := randPrefixes(rnd, 50+rnd.IntN(300))
		var rules []testIPRule
		for _, p := range ps {
			rules = append(rules, testIPRule{p: p, allow: rnd.IntN(8) == 0, log: rnd.IntN(5) == 0})
			if rnd.IntN(10) == 0 { // the same prefix again, maybe with another action
				rules = append(rules, testIPRule{p: p, log: rnd.IntN(2) == 0})
			}
		}
		s := buildIPSnapshot(t, rules)
		for range 3000 {
			var a netip.Addr
			switch rnd.IntN(4) {
			case 0: // an edge of a rule
				p := ps[rnd.IntN(len(ps))]
				if a = p.Addr(); rnd.IntN(2) == 0 {
					a = lastAddr(p)
				}
				if n := a.Next(); rnd.IntN(3) == 0 && n.IsValid() {
					a = n
				}
			case 1: // anywhere
				if rnd.IntN(2) == 0 {
					a = randAddrIn(rnd, netip.MustParsePrefix("0.0.0.0/0"))
				} else {
					a = randAddrIn(rnd, netip.MustParsePrefix("::/0"))
				}
			default: // inside a rule
				a = randAddrIn(rnd, ps[rnd.IntN(len(ps))])
			}
			m := s.MatchIP(a)
			for _, allow := range []bool{false, true} {
				want, ok := bruteMatch(rules, a, allow)
				id, has := m.Rule, m.HasRule
				if allow {
					id, has = m.Allow, m.HasAllow
				}
				if has != ok || (ok && id.index() != want) {
					t.Fatalf("seed %d, %s (allow=%v): got %v/%d want %v/%d (%v)", seed, a, allow, has, id.index(), ok, want, rules[max(want, 0)])
				}
			}
			// An IPv4 answer carried in an AAAA as ::ffff:a.b.c.d matches alike.
			if a.Is4() {
				if m2 := s.MatchIP(netip.AddrFrom16(a.As16())); m2 != m {
					t.Fatalf("%s: mapped form matched %+v, plain %+v", a, m2, m)
				}
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 96
	}
	for i := off + p.Bits(); i < 128; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	if p.Addr().Is4() {
		return netip.AddrFrom16(a).Unmap()
	}
	return netip.AddrFrom16(a)
}

// TestMatchIPDuplicatesDeterministic: the same prefix listed twice with the
// same action reports the earlier line, whatever the sort did.
func TestMatchIPDuplicatesDeterministic(t *testing.T) {
	st, _ := load(t, map[string]string{"a.txt": "# platform: First\n192.0.2.0/24\n# platform: Second\n192.0.2.0/24\n# platform: Third\n# action: log\n2001:db8::/32\n# platform: Fourth\n# action: default\n2001:db8::/32\n"})
	s := st.Current()
	for ip, want := range map[string]string{"192.0.2.9": "First", "2001:db8::9": "Fourth"} {
		for range 3 {
			if r := s.Rule(s.MatchIP(netip.MustParseAddr(ip)).Rule); r.Platform != want {
				t.Fatalf("%s: platform %q want %q", ip, r.Platform, want)
			}
		}
	}
}

// TestMatchIPNoAlloc holds MatchIP to zero allocations.
func TestMatchIPNoAlloc(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 1))
	var rules []testIPRule
	for _, p := range randPrefixes(rnd, 1000) {
		rules = append(rules, testIPRule{p: p, allow: rnd.IntN(10) == 0})
	}
	s := buildIPSnapshot(t, rules)
	a := randAddrIn(rnd, rules[0].p)
	if n := testing.AllocsPerRun(1000, func() { s.MatchIP(a) }); n != 0 {
		t.Fatalf("MatchIP allocates %.1f times", n)
	}
}

// BenchmarkMatchIP matches answer addresses against 100,000 prefix rules
// (mixed IPv4 and IPv6, nested, one in ten an exception); three queries in
// four fall inside some rule.
func BenchmarkMatchIP(b *testing.B) {
	rnd := rand.New(rand.NewPCG(42, 42))
	ps := randPrefixes(rnd, 100_000)
	rules := make([]testIPRule, len(ps))
	for i, p := range ps {
		rules[i] = testIPRule{p: p, allow: rnd.IntN(10) == 0}
	}
	s := buildIPSnapshot(b, rules)
	addrs := make([]netip.Addr, 1<<14)
	for i := range addrs {
		if i%4 == 0 {
			addrs[i] = randAddrIn(rnd, netip.MustParsePrefix("0.0.0.0/0"))
		} else {
			addrs[i] = randAddrIn(rnd, ps[rnd.IntN(len(ps))])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		s.MatchIP(addrs[i&(len(addrs)-1)])
		i++
	}
	b.ReportMetric(float64(s.ipBlock.len()+s.ipAllow.len()), "intervals")
}
