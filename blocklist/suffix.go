package blocklist

import (
	"net/netip"
	"strings"
	"sync"
	"unsafe"
)

//go:generate go run ./internal/pslgen

// A rule on a public suffix (com, co.uk, github.io: a name under which
// anyone can register their own) blocks every name of every owner under
// it, which no regulator's list means to do; it is an error with its line
// unless the file says "# allow-public-suffix" before it. Rules on one
// name only (=com, an RPZ trigger without "*.") are not over-broad.
//
// The list is the public suffix list golang.org/x/net/publicsuffix
// compiles in, decoded into psltable.go by internal/pslgen (go generate),
// and the check is x/net's PublicSuffix walk over a hash table of the
// list's nodes by whole name: a name whose top-level domain is listed
// costs one or two lookups (its parent is not a node) instead of a binary
// search per label in x/net's packed trie. TestPublicSuffixTable holds it
// to x/net's answers.

// allowPublicSuffixDirective is the comment line that lets the rules after
// it be public suffixes.
const allowPublicSuffixDirective = "allow-public-suffix"

// pslNode is one node of the public suffix list's trie.
type pslNode uint8

const (
	pslTypeMask  pslNode = 3 // node type: pslNormal, pslException or a parent only
	pslNormal    pslNode = 0
	pslException pslNode = 1
	pslICANN     pslNode = 4
	pslWildcard  pslNode = 8 // "*." under this node is a rule
)

// pslTable maps every node's whole name ("co.uk") to its flags.
var pslTable = sync.OnceValue(func() map[string]pslNode {
	m := make(map[string]pslNode, strings.Count(pslNodes, "\n"))
	for line := range strings.SplitSeq(strings.TrimSpace(pslNodes), "\n") {
		m[line[2:]] = pslNode(line[0] - 'a')
	}
	return m
})

// isPublicSuffix reports whether name is a public suffix as
// publicsuffix.PublicSuffix decides it (the suffix it returns is the whole
// name) and the suffix is ICANN's or has a dot: single labels that are not
// top-level domains (wpad, intranet) match only the list's default rule
// and are not public suffixes. name is canonical (lower case, punycode, no
// trailing dot).
func isPublicSuffix(name string) bool {
	if looksLikeIP(name) {
		if _, err := netip.ParseAddr(name); err == nil {
			return strings.Contains(name, ".") // x/net: the address is its own suffix, not ICANN's
		}
	}
	// x/net's PublicSuffix, with a node found by its whole name instead
	// of a search among its parent's children.
	t := pslTable()
	s, suffix, icann, icannNode, wildcard := name, len(name), false, false, false
	for {
		dot := strings.LastIndexByte(s, '.')
		if wildcard {
			icann = icannNode
			suffix = 1 + dot
		}
		n, ok := t[name[1+dot:]]
		if !ok {
			break
		}
		icannNode = n&pslICANN != 0
		if typ := n & pslTypeMask; typ == pslNormal {
			suffix = 1 + dot
		} else if typ == pslException {
			suffix = 1 + len(s)
			break
		}
		wildcard = n&pslWildcard != 0
		if !wildcard {
			icann = icannNode
		}
		if dot == -1 {
			break
		}
		s = s[:dot]
	}
	if suffix == len(name) {
		// No rule matched: the prevailing rule "*" makes the last label
		// the suffix, which is the whole name only for a single label.
		return !strings.Contains(name, ".") && icann
	}
	return suffix == 0 && (icann || strings.Contains(name, "."))
}

// looksLikeIP reports whether s has a colon or only digits and dots (what
// netip.ParseAddr may accept).
func looksLikeIP(s string) bool {
	if strings.IndexByte(s, ':') >= 0 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// publicSuffixMsg returns why a rule covering name and its subdomains is
// over-broad, or "" when it is not. name is canonical (lower case,
// punycode, no trailing dot).
func publicSuffixMsg(name []byte, hint string) string {
	if len(name) == 0 {
		return ""
	}
	// The lookup keeps nothing of its argument past the call: no copy.
	if !isPublicSuffix(unsafe.String(&name[0], len(name))) {
		return ""
	}
	return "\"" + string(name) + "\" is a public suffix: the rule would block every name registered under it (" + hint + ")"
}

// Hints of publicSuffixMsg.
const (
	suffixHintList = "write \"# allow-public-suffix\" above it if that is meant"
	suffixHintRPZ  = "list the names under it instead"
)

// The lookup costs about as much as parsing the line, so a big file's
// names are checked beside the parser, on another core: the parser hands
// them over in batches and collects the offenders when the file ends.

// suffixBatchLen is how many names make a batch; a file with fewer names
// is checked on the parser's own goroutine.
const suffixBatchLen = 4096

// suffixBatch is a batch of names to check, with their lines.
type suffixBatch struct {
	names []byte
	ends  []int32 // end of each name in names
	lines []int32
}

// suffixHit is a rule found to be on a public suffix.
type suffixHit struct {
	line int
	name string
	msg  string
}

// suffixChecker checks the names of one file.
type suffixChecker struct {
	hint string
	cur  *suffixBatch
	ch   chan *suffixBatch // nil until the first batch is full
	done chan []suffixHit
}

func (c *suffixChecker) add(name []byte, line int) {
	if c.cur == nil {
		c.cur = &suffixBatch{names: make([]byte, 0, suffixBatchLen*16)}
	}
	b := c.cur
	b.names = append(b.names, name...)
	b.ends = append(b.ends, int32(len(b.names)))
	b.lines = append(b.lines, int32(line))
	if len(b.ends) < suffixBatchLen {
		return
	}
	if c.ch == nil {
		c.ch, c.done = make(chan *suffixBatch, 4), make(chan []suffixHit, 1)
		go func() {
			var hits []suffixHit
			for b := range c.ch {
				hits = b.check(c.hint, hits)
			}
			c.done <- hits
		}()
	}
	c.ch <- b
	c.cur = nil
}

// finish returns every offender, in line order.
func (c *suffixChecker) finish() []suffixHit {
	var hits []suffixHit
	if c.ch != nil {
		if c.cur != nil {
			c.ch <- c.cur
		}
		close(c.ch)
		hits = <-c.done
	} else if c.cur != nil {
		hits = c.cur.check(c.hint, nil)
	}
	c.cur = nil
	return hits
}

func (b *suffixBatch) check(hint string, hits []suffixHit) []suffixHit {
	start := int32(0)
	for i, end := range b.ends {
		name := b.names[start:end]
		start = end
		if msg := publicSuffixMsg(name, hint); msg != "" {
			hits = append(hits, suffixHit{line: int(b.lines[i]), name: string(name), msg: msg})
		}
	}
	return hits
}
