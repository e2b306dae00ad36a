package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Corpus is the generated benchmark data: the blocklist and the query
// names of each workload. The same seed always gives the same corpus.
type Corpus struct {
	// Listed are the blocklisted domains, unique, in generation order.
	Listed []string
	// Allowed are names neither listed nor under a listed domain; the
	// cached workload asks exactly these.
	Allowed []string
	// Blocked are query names blocked by the list: listed names and
	// subdomains of listed names.
	Blocked []string
	// Mix is allowed and blocked names interleaved, exactly MixBlockedPct
	// percent blocked.
	Mix []string
	// Probe is a listed name used to time the list load: the last one
	// generated, so a server that answers it has the whole list.
	Probe string
}

// Corpus sizes.
const (
	allowedNames   = 10_000  // distinct names of the cached workload
	maxBlockedQs   = 100_000 // distinct names of the blocked workload
	mixLines       = 50_000  // lines of the mix workload
	mixBlockedPct  = 20      // percent of the mix that is blocked
	subdomainShare = 2       // one blocked query in subdomainShare asks a subdomain
)

// tlds are common top-level domains, each repeated by its weight.
var tlds = weighted(map[string]int{
	"com": 45, "net": 8, "org": 6, "io": 6, "xyz": 4, "info": 4, "co": 3,
	"app": 3, "online": 3, "top": 3, "site": 2, "ru": 2, "de": 2, "me": 2,
	"cc": 2, "exchange": 1, "finance": 1, "trade": 1, "pro": 1, "biz": 1,
	"co.uk": 1, "com.br": 1, "com.au": 1,
})

// subLabels are the labels blocked-subdomain queries put in front of a
// listed name (a random label is used as often as these).
var subLabels = []string{"www", "api", "m", "app", "cdn", "static", "login", "wallet", "futures", "p2p"}

func weighted(w map[string]int) []string {
	var out []string
	// Iterate in a fixed order so the table (and every name drawn from it)
	// is the same on every run.
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for range w[k] {
			out = append(out, k)
		}
	}
	return out
}

// label draws a label of 3 to 18 characters, mostly letters, some digits
// and an occasional inner hyphen.
func label(r *rand.Rand) string {
	n := 3 + r.IntN(6) + r.IntN(6) + r.IntN(6)
	b := make([]byte, n)
	for i := range b {
		switch x := r.IntN(100); {
		case x < 8:
			b[i] = '0' + byte(r.IntN(10))
		case x < 10 && i > 0 && i < n-1 && b[i-1] != '-':
			b[i] = '-'
		default:
			b[i] = 'a' + byte(r.IntN(26))
		}
	}
	return string(b)
}

// domain draws a registrable-looking name: label.tld mostly, sometimes
// with a second label in front.
func domain(r *rand.Rand) string {
	d := label(r) + "." + tlds[r.IntN(len(tlds))]
	if r.IntN(10) == 0 {
		d = label(r) + "." + d
	}
	return d
}

// sized draws a listed name of exactly nameLen characters where it can:
// domain's name with its first label grown or cut to fit (3 to 63
// characters), so lists of long names can be measured.
func sized(r *rand.Rand, nameLen int) string {
	d := domain(r)
	first, rest, _ := strings.Cut(d, ".")
	n := min(max(nameLen-len(rest)-1, 3), 63)
	for len(first) < n {
		first += label(r)
	}
	first = strings.TrimRight(first[:n], "-")
	for len(first) < n {
		first += string(rune('a' + r.IntN(26)))
	}
	return first + "." + rest
}

// Generate builds the corpus of n listed domains from seed; with nameLen
// over 0 the listed names are about nameLen characters long.
func Generate(n int, seed uint64, nameLen int) (*Corpus, error) {
	if n < 1 {
		return nil, fmt.Errorf("need at least 1 listed domain, got %d", n)
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	c := &Corpus{Listed: make([]string, 0, n)}
	listed := make(map[string]struct{}, n)
	for len(c.Listed) < n {
		d := domain(r)
		if nameLen > 0 {
			d = sized(r, nameLen)
		}
		if _, dup := listed[d]; dup {
			continue
		}
		listed[d] = struct{}{}
		c.Listed = append(c.Listed, d)
	}
	c.Probe = c.Listed[len(c.Listed)-1]

	seen := make(map[string]struct{}, allowedNames)
	for len(c.Allowed) < allowedNames {
		a := domain(r)
		if r.IntN(2) == 0 {
			a = "www." + a
		}
		if _, dup := seen[a]; dup || underListed(a, listed) {
			continue
		}
		seen[a] = struct{}{}
		c.Allowed = append(c.Allowed, a)
	}

	nb := min(n, maxBlockedQs)
	for _, i := range r.Perm(n)[:nb] {
		name := c.Listed[i]
		if r.IntN(subdomainShare) == 0 {
			sub := subLabels[r.IntN(len(subLabels))]
			if r.IntN(2) == 0 {
				sub = label(r)
			}
			name = sub + "." + name
		}
		c.Blocked = append(c.Blocked, name)
	}

	blockedLines := mixLines * mixBlockedPct / 100
	c.Mix = make([]string, 0, mixLines)
	for i := range mixLines - blockedLines {
		c.Mix = append(c.Mix, c.Allowed[i%len(c.Allowed)])
	}
	for i := range blockedLines {
		c.Mix = append(c.Mix, c.Blocked[i%len(c.Blocked)])
	}
	r.Shuffle(len(c.Mix), func(i, j int) { c.Mix[i], c.Mix[j] = c.Mix[j], c.Mix[i] })
	return c, nil
}

// underListed reports whether name or any of its parents is listed.
func underListed(name string, listed map[string]struct{}) bool {
	for {
		if _, ok := listed[name]; ok {
			return true
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return false
		}
		name = name[i+1:]
	}
}

// Files are the paths of the written corpus.
type Files struct {
	ListDir     string // sinkhole --lists directory
	RPZZone     string // Unbound RPZ zone file
	DnsmasqConf string // dnsmasq address=/name/ config
	Queries     map[string]string
}

// rpzOrigin is the name of the RPZ zone given to Unbound.
const rpzOrigin = "rpz.bench."

// Write writes the corpus under dir: the list in the three servers'
// formats and one dnsperf query file per workload.
func (c *Corpus) Write(dir string) (*Files, error) {
	f := &Files{
		ListDir:     filepath.Join(dir, "lists"),
		RPZZone:     filepath.Join(dir, "rpz.zone"),
		DnsmasqConf: filepath.Join(dir, "dnsmasq-block.conf"),
		Queries:     map[string]string{},
	}
	if err := os.MkdirAll(f.ListDir, 0o755); err != nil {
		return nil, err
	}
	err := writeLines(filepath.Join(f.ListDir, "bench.txt"), func(w *bufio.Writer) {
		fmt.Fprintf(w, "# %d generated domains; each blocks itself and its subdomains\n", len(c.Listed))
		for _, d := range c.Listed {
			w.WriteString(d)
			w.WriteByte('\n')
		}
	})
	if err != nil {
		return nil, err
	}
	err = writeLines(f.RPZZone, func(w *bufio.Writer) {
		fmt.Fprintf(w, "$ORIGIN %s\n$TTL 300\n", rpzOrigin)
		fmt.Fprintf(w, "@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n")
		for _, d := range c.Listed {
			// CNAME to the root is RPZ's NXDOMAIN action; the wildcard
			// covers the subdomains.
			fmt.Fprintf(w, "%s CNAME .\n*.%s CNAME .\n", d, d)
		}
	})
	if err != nil {
		return nil, err
	}
	err = writeLines(f.DnsmasqConf, func(w *bufio.Writer) {
		for _, d := range c.Listed {
			// No address: NXDOMAIN for the name and every subdomain.
			fmt.Fprintf(w, "address=/%s/\n", d)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, wl := range []struct {
		name  string
		names []string
	}{{"cached", c.Allowed}, {"blocked", c.Blocked}, {"mix", c.Mix}} {
		p := filepath.Join(dir, "queries-"+wl.name+".txt")
		err := writeLines(p, func(w *bufio.Writer) {
			for _, n := range wl.names {
				w.WriteString(n)
				w.WriteString(" A\n")
			}
		})
		if err != nil {
			return nil, err
		}
		f.Queries[wl.name] = p
	}
	return f, nil
}

func writeLines(path string, fill func(*bufio.Writer)) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	fill(w)
	if err := w.Flush(); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
