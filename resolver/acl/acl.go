// Package acl decides which clients the resolver serves. A Set is an
// immutable set of IP prefixes flattened into sorted, disjoint address
// ranges, so a check is a short binary search with no allocation. The
// package also holds the open-resolver rule (Guard): which listen
// addresses are public and which allow lists admit too much of the
// Internet for them.
package acl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultAllow is the allow list when none is configured: loopback, the
// RFC 1918 private ranges, the RFC 6598 shared (CGNAT) range and IPv6
// unique local addresses.
var DefaultAllow = []string{
	"127.0.0.0/8", "::1/128",
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"100.64.0.0/10", "fc00::/7",
}

// Set is an immutable set of IP prefixes. The zero value is empty.
type Set struct {
	prefixes []netip.Prefix
	v4       []span4
	v6       []span6
	// any4 and any6 are set when 0.0.0.0/0 or ::/0 was given as such (not
	// as ::ffff:0:0/96, which maps the same addresses): the open-resolver
	// rule's "said in so many words".
	any4, any6 bool
}

// span4 is an inclusive IPv4 range.
type span4 struct{ lo, hi uint32 }

// span6 is an inclusive IPv6 range.
type span6 struct{ lo, hi u128 }

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

// next returns a+1 and whether it did not wrap.
func (a u128) next() (u128, bool) {
	a.lo++
	if a.lo == 0 {
		a.hi++
		return a, a.hi != 0
	}
	return a, true
}

func (a u128) prev() u128 {
	if a.lo == 0 {
		a.hi--
	}
	a.lo--
	return a
}

func (a u128) sub(b u128) u128 {
	lo := a.lo - b.lo
	borrow := uint64(0)
	if a.lo < b.lo {
		borrow = 1
	}
	return u128{a.hi - b.hi - borrow, lo}
}

// float returns a as a float64 (rounded).
func (a u128) float() float64 { return float64(a.hi)*(1<<64) + float64(a.lo) }

func addr6(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// ParsePrefix parses one allow-list entry: a prefix in CIDR notation or a
// single address (a /32 or /128). It rejects what is most likely a typo: a
// prefix with bits set past its length ("10.0.0.0/0", "192.168.1.1/16"),
// a zone, and the unspecified address as a single client. An IPv4-mapped
// IPv6 prefix (::ffff:0:0/96 and longer) becomes the IPv4 prefix it maps.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := parsePrefix(s)
	return unmapPrefix(p), err
}

// parsePrefix is ParsePrefix without the unmapping.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty prefix")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: want an address or a prefix such as 192.0.2.0/24 or 2001:db8::/32", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past /%d (did you mean %s?)", s, p.Bits(), m)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: want an address or a prefix such as 192.0.2.0/24 or 2001:db8::/32", s)
		}
		if a.IsUnspecified() {
			return netip.Prefix{}, fmt.Errorf("%q is no client address (%s/0 admits every client of its family)", s, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p, nil
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:0:0/96 and longer)
// into the IPv4 prefix it maps: IPv4 clients are matched as IPv4.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// Parse parses an allow list (see ParsePrefix). The error names the entry.
func Parse(entries []string) (*Set, error) {
	ps := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		p, err := parsePrefix(e) // New unmaps, and knows what was written
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return New(ps...), nil
}

// MustParse is Parse for lists known to be valid; it panics on error.
func MustParse(entries ...string) *Set {
	s, err := Parse(entries)
	if err != nil {
		panic(err)
	}
	return s
}

// New returns the set of the given prefixes (each taken masked, IPv4-mapped
// ones as IPv4). An IPv6 prefix never admits IPv4 clients, even ::/0.
func New(prefixes ...netip.Prefix) *Set {
	s := &Set{}
	for _, p := range prefixes {
		if p.Bits() == 0 && p.Addr().Is4() {
			s.any4 = true
		} else if p.Bits() == 0 && p.Addr().Is6() {
			s.any6 = true
		}
		p = unmapPrefix(p.Masked())
		if !p.IsValid() {
			continue
		}
		s.prefixes = append(s.prefixes, p)
		a := p.Addr()
		if a.Is4() {
			lo := addr4(a)
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, span4{lo, hi})
			continue
		}
		lo := addr6(a)
		hi := lo
		if host := 128 - p.Bits(); host >= 64 {
			hi.lo = ^uint64(0)
			hi.hi |= uint64(1)<<(host-64) - 1 // all ones for host == 128
		} else {
			hi.lo |= uint64(1)<<host - 1
		}
		s.v6 = append(s.v6, span6{lo, hi})
	}
	s.v4 = merge4(s.v4)
	s.v6 = merge6(s.v6)
	return s
}

func merge4(sp []span4) []span4 {
	slices.SortFunc(sp, func(a, b span4) int {
		if a.lo != b.lo {
			if a.lo < b.lo {
				return -1
			}
			return 1
		}
		return 0
	})
	out := sp[:0]
	for _, r := range sp {
		if n := len(out); n > 0 && (r.lo <= out[n-1].hi || out[n-1].hi != ^uint32(0) && r.lo == out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(sp []span6) []span6 {
	slices.SortFunc(sp, func(a, b span6) int { return a.lo.cmp(b.lo) })
	out := sp[:0]
	for _, r := range sp {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, ok := last.hi.next()
			if r.lo.cmp(last.hi) <= 0 || ok && r.lo == next {
				if r.hi.cmp(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// Contains reports whether a is in the set. An IPv4-mapped IPv6 address
// (a v4 client on a dual-stack socket) is checked as the IPv4 address.
func (s *Set) Contains(a netip.Addr) bool {
	if a.Is4In6() {
		a = a.Unmap()
	}
	if a.Is4() {
		v := addr4(a)
		sp := s.v4
		i, j := 0, len(sp)
		for i < j {
			h := int(uint(i+j) >> 1)
			if sp[h].hi < v {
				i = h + 1
			} else {
				j = h
			}
		}
		return i < len(sp) && sp[i].lo <= v
	}
	if !a.Is6() {
		return false
	}
	v := addr6(a)
	sp := s.v6
	i, j := 0, len(sp)
	for i < j {
		h := int(uint(i+j) >> 1)
		if sp[h].hi.cmp(v) < 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(sp) && sp[i].lo.cmp(v) <= 0
}

// Prefixes returns the prefixes the set was built from, in the given order.
func (s *Set) Prefixes() []netip.Prefix { return slices.Clone(s.prefixes) }

// String lists the prefixes, comma-separated.
func (s *Set) String() string {
	parts := make([]string, len(s.prefixes))
	for i, p := range s.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}
