package blocklist

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// u128 is an IPv6 address (IPv4 addresses are mapped into ::ffff:0:0/96) as
// a number, so one interval list serves both families.
type u128 struct{ hi, lo uint64 }

func addrU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) cmp(b u128) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) less(b u128) bool { return a.cmp(b) < 0 }

// inc returns a+1 and whether it overflowed.
func (a u128) inc() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, true
		}
	}
	return u128{hi, lo}, false
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

// prefixRange returns the first and last address of p in u128 space.
func prefixRange(p netip.Prefix) (u128, u128) {
	bitsLen := p.Bits()
	if p.Addr().Is4() {
		bitsLen += 96
		p = netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), bitsLen)
	}
	lo := addrU128(p.Masked().Addr())
	host := 128 - bitsLen
	hi := lo
	switch {
	case host >= 64:
		hi.lo = ^uint64(0)
		if host > 64 {
			hi.hi |= (uint64(1) << (host - 64)) - 1
		}
		if host == 128 {
			hi.hi = ^uint64(0)
		}
	case host > 0:
		hi.lo |= (uint64(1) << host) - 1
	}
	return lo, hi
}

// prefixSpan is one prefix to be flattened, with the rule id it stands for.
type prefixSpan struct {
	lo, hi u128
	bits   int
	id     uint32
}

// interval is a disjoint address range labelled with the most specific
// prefix rule that covers it.
type interval struct {
	lo, hi u128
	id     uint32
}

// intervalSet answers longest-prefix-match queries with a binary search
// over disjoint intervals. IPv4 addresses, the common case, are searched in
// their own 4-byte keys; the rest of the space in 16-byte keys. The keys
// (interval starts) are kept apart from the ends and ids so the search
// touches as little memory as possible. It does not allocate.
type intervalSet struct {
	v4lo, v4hi, v4id []uint32
	v6lo, v6hi       []u128
	v6id             []uint32
}

// The IPv4 addresses in u128 space: ::ffff:0.0.0.0 to ::ffff:255.255.255.255.
var (
	v4First = u128{0, 0xffff_0000_0000}
	v4Last  = u128{0, 0xffff_ffff_ffff}
)

// newIntervalSet splits sorted, disjoint intervals into the IPv4 and the
// other keys.
func newIntervalSet(ivs []interval) intervalSet {
	var s intervalSet
	add6 := func(lo, hi u128, id uint32) {
		if !hi.less(lo) {
			s.v6lo, s.v6hi, s.v6id = append(s.v6lo, lo), append(s.v6hi, hi), append(s.v6id, id)
		}
	}
	for _, iv := range ivs {
		if iv.lo.less(v4First) {
			add6(iv.lo, minU128(iv.hi, v4First.dec()), iv.id)
		}
		if lo, hi := maxU128(iv.lo, v4First), minU128(iv.hi, v4Last); !hi.less(lo) {
			s.v4lo, s.v4hi, s.v4id = append(s.v4lo, uint32(lo.lo)), append(s.v4hi, uint32(hi.lo)), append(s.v4id, iv.id)
		}
		if v4Last.less(iv.hi) {
			next, _ := v4Last.inc()
			add6(maxU128(iv.lo, next), iv.hi, iv.id)
		}
	}
	s.v4lo, s.v4hi, s.v4id = slices.Clip(s.v4lo), slices.Clip(s.v4hi), slices.Clip(s.v4id)
	s.v6lo, s.v6hi, s.v6id = slices.Clip(s.v6lo), slices.Clip(s.v6hi), slices.Clip(s.v6id)
	return s
}

func minU128(a, b u128) u128 {
	if a.less(b) {
		return a
	}
	return b
}

func maxU128(a, b u128) u128 {
	if a.less(b) {
		return b
	}
	return a
}

// len returns the number of intervals.
func (s *intervalSet) len() int { return len(s.v4lo) + len(s.v6lo) }

// heapBytes estimates the memory the set holds.
func (s *intervalSet) heapBytes() int { return len(s.v4lo)*12 + len(s.v6lo)*36 }

// lookup returns the rule id labelling a, if any.
func (s *intervalSet) lookup(a netip.Addr) (uint32, bool) {
	if a.Is4() || a.Is4In6() {
		return s.lookup4(a.Unmap().As4())
	}
	return s.lookup6(addrU128(a))
}

// better reports whether rule a should label a range both a and b cover
// with the same prefix length (identical prefixes listed twice).
type tieBreak func(a, b uint32) bool

// buildIntervals flattens nested prefixes into disjoint intervals where each
// address is labelled by the longest prefix containing it.
func buildIntervals(spans []prefixSpan, better tieBreak) intervalSet {
	if len(spans) == 0 {
		return intervalSet{}
	}
	slices.SortFunc(spans, func(a, b prefixSpan) int {
		if c := a.lo.cmp(b.lo); c != 0 {
			return c
		}
		if c := cmp.Compare(a.bits, b.bits); c != 0 {
			return c // broader first
		}
		return cmp.Compare(a.id, b.id) // the same prefix twice: the earlier rule first
	})
	// Collapse identical prefixes, keeping the preferred rule (the earliest
	// one among equals, so reasons do not depend on the sort).
	uniq := spans[:0]
	for _, s := range spans {
		if n := len(uniq); n > 0 && uniq[n-1].lo == s.lo && uniq[n-1].bits == s.bits {
			if better != nil && better(s.id, uniq[n-1].id) {
				uniq[n-1].id = s.id
			}
			continue
		}
		uniq = append(uniq, s)
	}
	var out []interval
	emit := func(lo, hi u128, id uint32) {
		if hi.less(lo) {
			return
		}
		if n := len(out); n > 0 && out[n-1].id == id {
			if next, of := out[n-1].hi.inc(); !of && next == lo {
				out[n-1].hi = hi
				return
			}
		}
		out = append(out, interval{lo, hi, id})
	}
	var stack []prefixSpan
	var cur u128  // first address not yet emitted
	done := false // cur overflowed past the top of the space
	closeTop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !done && !top.hi.less(cur) {
			emit(cur, top.hi, top.id)
			var of bool
			cur, of = top.hi.inc()
			done = of
		}
	}
	for _, s := range uniq {
		for len(stack) > 0 && stack[len(stack)-1].hi.less(s.lo) {
			closeTop()
		}
		if len(stack) > 0 && !done && cur.less(s.lo) {
			emit(cur, s.lo.dec(), stack[len(stack)-1].id)
		}
		cur, done = s.lo, false
		stack = append(stack, s)
	}
	for len(stack) > 0 {
		closeTop()
	}
	return newIntervalSet(out)
}

// The searches halve a window [base, base+n) until one key is left: the
// loop has a fixed trip count for a given set, and the one branch per step
// lets the CPU fetch ahead speculatively.

func (s *intervalSet) lookup4(b [4]byte) (uint32, bool) {
	a := binary.BigEndian.Uint32(b[:])
	keys := s.v4lo
	n := len(keys)
	if n == 0 {
		return 0, false
	}
	base := 0
	for n > 1 {
		half := n >> 1
		mid := base + half
		if keys[mid] <= a {
			base = mid
		}
		n -= half
	}
	// base is the last start <= a, if any start is.
	if keys[base] > a || s.v4hi[base] < a {
		return 0, false
	}
	return s.v4id[base], true
}

func (s *intervalSet) lookup6(a u128) (uint32, bool) {
	keys := s.v6lo
	n := len(keys)
	if n == 0 {
		return 0, false
	}
	base := 0
	for n > 1 {
		half := n >> 1
		mid := base + half
		if k := keys[mid]; k.hi < a.hi || (k.hi == a.hi && k.lo <= a.lo) {
			base = mid
		}
		n -= half
	}
	if a.less(keys[base]) || s.v6hi[base].less(a) {
		return 0, false
	}
	return s.v6id[base], true
}
