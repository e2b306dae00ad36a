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
// over disjoint intervals. It does not allocate.
type intervalSet struct {
	iv []interval
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
		return cmp.Compare(a.bits, b.bits) // broader first
	})
	// Collapse identical prefixes, keeping the preferred rule.
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
	return intervalSet{iv: slices.Clip(out)}
}

// lookup returns the rule id labelling a, if any.
func (s *intervalSet) lookup(a u128) (uint32, bool) {
	iv := s.iv
	lo, hi := 0, len(iv)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.less(iv[m].lo) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return 0, false
	}
	if e := &iv[lo-1]; !e.hi.less(a) {
		return e.id, true
	}
	return 0, false
}
