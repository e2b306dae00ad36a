package acl

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzSet parses an arbitrary allow list and checks the flattened set
// against netip.Prefix.Contains for an arbitrary address: the ranges must
// agree with the prefixes they were built from, IPv4-mapped addresses
// being IPv4 clients.
func FuzzSet(f *testing.F) {
	f.Add("10.0.0.0/8,192.0.2.7,2001:db8::/32", []byte{10, 1, 2, 3})
	f.Add("0.0.0.0/1,128.0.0.0/1", []byte{255, 255, 255, 255})
	f.Add("::/0,::ffff:192.0.2.0/120", []byte{32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("fc00::/7,fe80::/10,::1", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1})
	f.Add("10.0.0.0/0,,x", []byte{})
	f.Fuzz(func(t *testing.T, list string, raw []byte) {
		var ps []netip.Prefix
		for _, e := range strings.Split(list, ",") {
			if p, err := ParsePrefix(e); err == nil {
				if p.Masked() != p || (p.Addr().Is4In6() && p.Bits() >= 96) {
					t.Fatalf("ParsePrefix(%q) = %v: not canonical", e, p)
				}
				ps = append(ps, p)
			}
		}
		s := New(ps...)
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		// An IPv4-mapped address is an IPv4 client: ::/0 does not admit
		// it, 0.0.0.0/0 does.
		want := false
		for _, p := range ps {
			if p.Contains(a.Unmap()) {
				want = true
			}
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("set %s contains %s = %v, prefixes say %v", s, a, got, want)
		}
		v4, v6 := s.PublicSize()
		if v4 < 0 || v4 > 1<<32 || v6 < 0 {
			t.Fatalf("public sizes %g, %g", v4, v6)
		}
		CheckOpen([]string{"0.0.0.0:53"}, s)
	})
}
