package blocklist

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDomainRulesCompactAttributes checks the run-length sections and the
// byte-delta line numbers against plain arrays, across big line jumps, file
// boundaries (lines restart) and rollbacks.
func TestDomainRulesCompactAttributes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var d domainRules
	var lines []int
	var sects []uint16
	line, sect := 1, uint16(0)
	add := func() {
		switch r := rng.IntN(100); {
		case r < 2:
			line = 1 + rng.IntN(3) // a new file: lines restart
		case r < 5:
			line += 200 + rng.IntN(2000) // a long comment block
		default:
			line += 1 + rng.IntN(4)
		}
		if rng.IntN(50) == 0 {
			sect++
		}
		d.add([]byte(fmt.Sprintf("n%d.test", len(lines))), kindSubtree, line, sect)
		lines = append(lines, line)
		sects = append(sects, sect)
	}
	check := func(stage string) {
		t.Helper()
		if d.len() != len(lines) {
			t.Fatalf("%s: len %d want %d", stage, d.len(), len(lines))
		}
		for i := range lines {
			if got := d.line(uint32(i)); got != lines[i] {
				t.Fatalf("%s: rule %d line %d want %d", stage, i, got, lines[i])
			}
			if got := d.sect(uint32(i)); got != sects[i] {
				t.Fatalf("%s: rule %d section %d want %d", stage, i, got, sects[i])
			}
			if got := string(d.name(uint32(i))); got != fmt.Sprintf("n%d.test", i) {
				t.Fatalf("%s: rule %d name %s", stage, i, got)
			}
		}
	}
	for i := 0; i < 5000; i++ {
		add()
	}
	check("built")
	for _, n := range []int{4999, 3210, 3200, 17, 0} {
		d.truncate(n)
		lines, sects = lines[:n], sects[:n]
		if n > 0 {
			sect = sects[n-1]
		}
		check(fmt.Sprintf("truncated to %d", n))
		for i := 0; i < 300; i++ {
			add()
		}
		check(fmt.Sprintf("regrown after %d", n))
	}
}
