package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

var genTLDs = []string{"com", "net", "org", "io", "co", "info", "xyz", "app", "me", "cc", "tv", "id", "ru", "cn", "de", "uk"}

// nameGen yields n distinct, deterministic names of about 28 characters: a
// random label ending in the name's index (base 36, so no two names are
// equal), a second random label and a TLD.
type nameGen struct {
	rng *rand.Rand
	buf []byte
}

func newNameGen(seed uint64) *nameGen {
	return &nameGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *nameGen) label(lo, hi int) {
	const alpha = "abcdefghijklmnopqrstuvwxyz"
	n := lo + g.rng.IntN(hi-lo+1)
	for range n {
		g.buf = append(g.buf, alpha[g.rng.IntN(len(alpha))])
	}
}

// name returns the i-th name; the slice is reused by the next call. A
// name that is itself a public suffix (a random label can hit one of the
// list's private suffixes, which sinkhole refuses to list) is drawn again.
func (g *nameGen) name(i int) []byte {
	for {
		g.buf = g.buf[:0]
		g.label(7, 14)
		g.buf = append(g.buf, '-')
		g.buf = strconv.AppendInt(g.buf, int64(i), 36)
		g.buf = append(g.buf, '.')
		g.label(4, 9)
		g.buf = append(g.buf, '.')
		g.buf = append(g.buf, genTLDs[g.rng.IntN(len(genTLDs))]...)
		if s := string(g.buf); !isPublicSuffix(s) {
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

// rpzZone is the apex of the generated RPZ zones.
const rpzZone = "rpz.bench."

// writeList writes n names as a native list (format "native") or as an RPZ
// zone ("rpz": name CNAME . and *.name CNAME ., relative to rpzZone).
func writeList(path, format string, n int, seed uint64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if format == "rpz" {
		fmt.Fprintf(w, "$ORIGIN %s\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n", rpzZone)
	}
	g := newNameGen(seed)
	for i := range n {
		name := g.name(i)
		if format == "rpz" {
			w.Write(name)
			w.WriteString(" CNAME .\n*.")
			w.Write(name)
			w.WriteString(" CNAME .\n")
			continue
		}
		if i%10000 == 0 {
			fmt.Fprintf(w, "# platform: P%d\n", i/10000)
		}
		w.Write(name)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}

// appendName appends one new listed name to a generated list (an edit at
// the end of the file) and returns it.
func appendName(path, format string, k int) (string, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("added-%d.bench-change.example", k)
	line := name + "\n"
	if format == "rpz" {
		line = name + " CNAME .\n"
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}
