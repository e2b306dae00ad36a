package blocklist

import (
	"hash/maphash"
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
	if !pslCandidate(name) {
		return false
	}
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

// Most names cannot be public suffixes, and pslCandidate says so without
// a lookup by name. For a name with a dot, isPublicSuffix is true only
// when the walk ends with the whole name as the suffix: the name is a node
// of the list (of the normal type), or its parent (the name without its
// first label) is a node with a wildcard rule; an exception rule always
// leaves a label before the suffix. So a name that is neither a node nor
// under a wildcard node is not a public suffix, and pslCandidate checks
// exactly that on hashes: the name and its parent are hashed and looked up
// in pslHashes, a small table of every node's hash. A hash that matches by
// chance only sends the name to the full check. Single labels and names
// that may be addresses (a last digit or a colon) always go to it.

// Before the hashes, two bitmaps of pslQuickBits bits (16 KiB each, in
// the first-level cache) filter on a key of a few bytes of the name: its
// length, first, middle and last bytes (pslQuickKey). A bit is set for
// every node (nodes), and for every node with a wildcard rule (wild): a
// clear bit means no node has that key, so the name is not one; a set bit
// (about one name in twelve, or a real node) takes the hash lookup.

// pslHashSet is an open-addressing set of the nodes' name hashes: a slot
// holds the upper 32 bits of a hash with its low two bits replaced by
// pslHashNode and pslHashWildcard (0: empty).
type pslHashSet struct {
	seed  maphash.Seed
	slots []uint32
	mask  uint32
	// nodes and wild are the bitmaps of the quick keys of every node and
	// of the nodes with a wildcard rule.
	nodes, wild [1 << pslQuickBits / 64]uint64
}

// pslQuickBits is the size of the quick keys (and bitmaps) in bits.
const pslQuickBits = 17

// pslQuickKey is the bitmap key of name: its length with its first,
// middle and last bytes, multiplied and shifted (a Fibonacci hash).
func pslQuickKey(name string) uint32 {
	n := len(name)
	if n == 0 {
		return 0
	}
	k := uint32(n) | uint32(name[0])<<8 | uint32(name[n/2])<<16 | uint32(name[n-1])<<24
	return (k * 0x9e3779b1) >> (32 - pslQuickBits)
}

// has reports whether key's bit is set in bits.
func pslQuickHas(bits *[1 << pslQuickBits / 64]uint64, key uint32) bool {
	return bits[key/64]&(1<<(key%64)) != 0
}

// Flags of a pslHashSet slot.
const (
	pslHashNode     = 1 // some node has this hash
	pslHashWildcard = 2 // some node with a wildcard rule has this hash
)

// pslHashes holds the hash of every node of pslNodes.
var pslHashes = sync.OnceValue(func() *pslHashSet {
	n := strings.Count(pslNodes, "\n") + 1
	size := 1
	for size < 3*n {
		size <<= 1
	}
	s := &pslHashSet{seed: maphash.MakeSeed(), slots: make([]uint32, size), mask: uint32(size - 1)}
	for line := range strings.SplitSeq(strings.TrimSpace(pslNodes), "\n") {
		f := uint32(pslHashNode)
		if pslNode(line[0]-'a')&pslWildcard != 0 {
			f |= pslHashWildcard
		}
		k := pslQuickKey(line[2:])
		s.nodes[k/64] |= 1 << (k % 64)
		if f&pslHashWildcard != 0 {
			s.wild[k/64] |= 1 << (k % 64)
		}
		h := maphash.String(s.seed, line[2:])
		key := uint32(h>>32) &^ 3
		for i := uint32(h) & s.mask; ; i = (i + 1) & s.mask {
			if v := s.slots[i]; v == 0 || v&^3 == key {
				s.slots[i] |= key | f
				break
			}
		}
	}
	return s
})

// get returns the flags of name's hash (0: no node has it).
func (s *pslHashSet) get(name string) uint32 {
	h := maphash.String(s.seed, name)
	key := uint32(h>>32) &^ 3
	for i := uint32(h) & s.mask; ; i = (i + 1) & s.mask {
		v := s.slots[i]
		if v == 0 || v&^3 == key {
			return v & 3
		}
	}
}

// pslCandidate reports whether name may be a public suffix (see above):
// false means isPublicSuffix(name) is false.
func pslCandidate(name string) bool {
	dot := strings.IndexByte(name, '.')
	if dot < 0 || name[len(name)-1] <= '9' || strings.IndexByte(name, ':') >= 0 {
		// A single label, or what netip.ParseAddr may take: an IPv4
		// address ends with a digit, an IPv6 one has a colon ('.', '-'
		// and the digits sort at or below '9').
		return true
	}
	set := pslHashes()
	if pslQuickHas(&set.nodes, pslQuickKey(name)) && set.get(name)&pslHashNode != 0 {
		return true
	}
	parent := name[dot+1:]
	return pslQuickHas(&set.wild, pslQuickKey(parent)) && set.get(parent)&pslHashWildcard != 0
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

// A whole file's names are checked on the goroutine that feeds them to
// the sink (parsepipe.go). suffixChecker checks the names of a file parsed
// in a window (a delta's changed lines): the names that pass pslCandidate
// are handed over in batches, beside the parser, and the offenders are
// collected when the file ends.

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
	if len(name) == 0 || !pslCandidate(unsafe.String(&name[0], len(name))) {
		return // not a public suffix (isPublicSuffix would say so too)
	}
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
