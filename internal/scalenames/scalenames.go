// Package scalenames generates the lists of the scale benchmarks (make
// bench-scale and the blocklist package's load benchmarks): distinct,
// deterministic names of about 28 characters, "label-N.label.tld", as a
// native list or as an RPZ zone. A seed gives the same names everywhere,
// so a Go benchmark and make bench-scale measure the same lists.
package scalenames

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Zone is the apex of the generated RPZ zones.
const Zone = "rpz.bench."

var tlds = []string{"com", "net", "org", "io", "co", "info", "xyz", "app", "me", "cc", "tv", "id", "ru", "cn", "de", "uk"}

// Gen yields the names of one seed: a random label ending in the name's
// index (base 36, so no two names are equal), a second random label and a
// TLD.
type Gen struct {
	rng *rand.Rand
	buf []byte
}

// New returns the generator of seed.
func New(seed uint64) *Gen {
	return &Gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *Gen) label(lo, hi int) {
	n := lo + g.rng.IntN(hi-lo+1)
	for range n {
		g.buf = append(g.buf, byte('a'+g.rng.IntN(26)))
	}
}

// Name returns the i-th name; the slice is reused by the next call. A
// name that is a public suffix, or whose parent is one (a random label
// can hit one of the list's private suffixes, which sinkhole refuses to
// list), is drawn again.
func (g *Gen) Name(i int) []byte {
	for {
		g.buf = g.buf[:0]
		g.label(7, 14)
		g.buf = append(g.buf, '-')
		g.buf = strconv.AppendInt(g.buf, int64(i), 36)
		g.buf = append(g.buf, '.')
		g.label(4, 9)
		g.buf = append(g.buf, '.')
		g.buf = append(g.buf, tlds[g.rng.IntN(len(tlds))]...)
		if !isPublicSuffix(string(g.buf)) {
			return g.buf
		}
	}
}

// isPublicSuffix reports whether name, or the name without its first
// label, is a public suffix ("*.name CNAME ." lists the name's subtree).
func isPublicSuffix(name string) bool {
	ps, _ := publicsuffix.PublicSuffix(name)
	if ps == name {
		return true
	}
	_, parent, _ := strings.Cut(name, ".")
	ps, _ = publicsuffix.PublicSuffix(parent)
	return ps == parent && strings.Contains(parent, ".")
}

// Write writes the first n names of seed to w: as an RPZ zone relative to
// Zone (name CNAME . and *.name CNAME .) when rpz is set, else as a native
// list with a "# platform:" line every 10,000 names.
func Write(w io.Writer, n int, seed uint64, rpz bool) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if rpz {
		fmt.Fprintf(bw, "$ORIGIN %s\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n", Zone)
	}
	g := New(seed)
	for i := range n {
		name := g.Name(i)
		if rpz {
			bw.Write(name)
			bw.WriteString(" CNAME .\n*.")
			bw.Write(name)
			bw.WriteString(" CNAME .\n")
			continue
		}
		if i%10000 == 0 {
			fmt.Fprintf(bw, "# platform: P%d\n", i/10000)
		}
		bw.Write(name)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
