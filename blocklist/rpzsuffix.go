package blocklist

import (
	"bytes"
	"hash/maphash"
	"strings"
	"sync"
)

// The public suffix check of an RPZ zone's "*.name" triggers, on the
// parser's own goroutine: a zone of a million names has a million of them,
// and the hash table lookups of isPublicSuffix cost more than reading the
// line. Almost every name is not a suffix, which a filter in front of the
// lookup proves from two bit tests.
//
// A name of two or more labels is a public suffix (isPublicSuffix) only
// when it is itself a node of the list or its parent is a node with a
// wildcard rule ("*.ck" makes "anything.ck" a suffix): the walk of
// isPublicSuffix makes the whole name the suffix in no other way. The
// filter keeps a bit per hash of every node's name and of every wildcard
// node's name; a name neither of whose bits is set is not a suffix. Names
// of one label, and names ending in a digit (isPublicSuffix takes an
// address as its own suffix), always take the lookup.

// The filters' sizes: 2^18 bits (32 KiB) for the list's 10,500 nodes, a
// false positive (which only costs the lookup) for about one name in 25;
// 2^14 bits for its 280 wildcard nodes.
const (
	suffixNodeBits = 18
	suffixWildBits = 14
)

type suffixFilter struct {
	seed  maphash.Seed
	nodes [1 << suffixNodeBits / 64]uint64
	wild  [1 << suffixWildBits / 64]uint64
}

// bit returns the word and bit of name's hash in a filter of 2^bits bits.
func (f *suffixFilter) bit(name []byte, bits uint) (int, uint64) {
	b := maphash.Bytes(f.seed, name) & (1<<bits - 1)
	return int(b >> 6), 1 << (b & 63)
}

var theSuffixFilter = sync.OnceValue(func() *suffixFilter {
	f := &suffixFilter{seed: maphash.MakeSeed()}
	for line := range strings.SplitSeq(strings.TrimSpace(pslNodes), "\n") {
		name, flags := line[2:], pslNode(line[0]-'a')
		w, bit := f.bit([]byte(name), suffixNodeBits)
		f.nodes[w] |= bit
		if flags&pslWildcard != 0 {
			w, bit := f.bit([]byte(name), suffixWildBits)
			f.wild[w] |= bit
		}
	}
	return f
})

// maybePublicSuffix reports false only for a name that isPublicSuffix
// says is not a public suffix. name is canonical (lower case, punycode, no
// trailing dot: no colon either), so it can be an address only when it
// ends in a digit.
func (f *suffixFilter) maybePublicSuffix(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	if c := name[len(name)-1]; c >= '0' && c <= '9' {
		return true
	}
	dot := bytes.IndexByte(name, '.')
	if dot < 0 {
		return true
	}
	w, bit := f.bit(name, suffixNodeBits)
	pw, pbit := f.bit(name[dot+1:], suffixWildBits)
	return f.nodes[w]&bit != 0 || f.wild[pw]&pbit != 0
}

// wildcardSuffixMsg is publicSuffixMsg(name, suffixHintRPZ) for the name
// of an RPZ "*.name" trigger, with the filter in front of the lookup.
func wildcardSuffixMsg(name []byte) string {
	if !theSuffixFilter().maybePublicSuffix(name) {
		return ""
	}
	return publicSuffixMsg(name, suffixHintRPZ)
}
