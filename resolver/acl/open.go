package acl

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// nonPublic holds the addresses a client on the public Internet cannot
// have: the default allow list plus link-local.
var nonPublic = MustParse(append(append([]string{}, DefaultAllow...), "169.254.0.0/16", "fe80::/10")...)

// Thresholds of the open-resolver rule: an allow list admitting more public
// addresses than a /8 (IPv4) or a /16 (IPv6) is open. No single access
// network served by one resolver is that large; a list that wide is, for
// reflection attacks, as good as 0.0.0.0/0.
const (
	OpenIPv4 = float64(1 << 24)
	OpenIPv6 = float64(1<<64) * float64(1<<48)
)

// IsPublic reports whether a is an address a client on the public Internet
// can have: not loopback, private, shared (CGNAT), unique local or
// link-local.
func IsPublic(a netip.Addr) bool { return !nonPublic.Contains(a) }

// PublicListen reports whether a server listening on addr (host:port) can
// be reached from the public Internet: its host is empty, the unspecified
// address (every interface), a name other than localhost, or a public
// address.
func PublicListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return true
	}
	if strings.EqualFold(host, "localhost") {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.IsUnspecified() {
		return true
	}
	return IsPublic(a.WithZone(""))
}

// PublicSize returns how many public IPv4 and IPv6 addresses s admits.
func (s *Set) PublicSize() (v4, v6 float64) {
	for _, r := range s.v4 {
		n := float64(r.hi-r.lo) + 1
		for _, np := range nonPublic.v4 {
			lo, hi := max(r.lo, np.lo), min(r.hi, np.hi)
			if lo <= hi {
				n -= float64(hi-lo) + 1
			}
		}
		v4 += n
	}
	for _, r := range s.v6 {
		n := r.hi.sub(r.lo).float() + 1
		for _, np := range nonPublic.v6 {
			lo, hi := r.lo, r.hi
			if np.lo.cmp(lo) > 0 {
				lo = np.lo
			}
			if np.hi.cmp(hi) < 0 {
				hi = np.hi
			}
			if lo.cmp(hi) <= 0 {
				n -= hi.sub(lo).float() + 1
			}
		}
		v6 += n
	}
	return v4, v6
}

// OpenError is the open-resolver rule's refusal.
type OpenError struct {
	Listen string  // the public listen address
	Family string  // "IPv4" or "IPv6"
	Public float64 // public addresses admitted
	Any    string  // the prefix that says "open" explicitly: 0.0.0.0/0 or ::/0
}

func (e *OpenError) Error() string {
	wide := "/8"
	if e.Family == "IPv6" {
		wide = "/16"
	}
	return fmt.Sprintf("the allow list admits %.4g public %s addresses (more than a %s) and %s is a public address: that is an open resolver",
		e.Public, e.Family, wide, e.Listen)
}

// CheckOpen applies the open-resolver rule to a server listening on
// listen with allow list s. It returns an *OpenError when a listen address
// is public (PublicListen) and, for IPv4 or IPv6, s admits more public
// addresses than OpenIPv4 or OpenIPv6 without listing that family's /0
// (0.0.0.0/0, ::/0) itself: running an open resolver must be said in so
// many words (::ffff:0:0/96 admits every IPv4 client but does not say it). Listening only on loopback or private addresses, any allow
// list is accepted.
func CheckOpen(listen []string, s *Set) error {
	public := ""
	for _, l := range listen {
		if PublicListen(l) {
			public = l
			break
		}
	}
	if public == "" {
		return nil
	}
	// An IPv4-mapped prefix counts as the IPv4 prefix it maps (it admits
	// those clients), but only 0.0.0.0/0 written as such opens IPv4.
	v4, v6 := s.PublicSize()
	any4, any6 := s.any4, s.any6
	if v4 > OpenIPv4 && !any4 {
		return &OpenError{Listen: public, Family: "IPv4", Public: v4, Any: "0.0.0.0/0"}
	}
	if v6 > OpenIPv6 && !any6 {
		return &OpenError{Listen: public, Family: "IPv6", Public: v6, Any: "::/0"}
	}
	return nil
}
