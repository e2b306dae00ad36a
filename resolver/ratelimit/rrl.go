package ratelimit

import (
	"net/netip"

	"github.com/miekg/dns"
)

// RRLConfig configures response rate limiting.
type RRLConfig struct {
	// Rate is how many identical responses per second one client network
	// may receive.
	Rate float64
	// Burst is how many it may receive at once (default Rate, at least 1).
	Burst int
	// Slip sends every Slip-th limited response truncated (TC, no records)
	// instead of dropping it, so that a real client behind the network
	// retries over TCP; 0 never slips, 1 slips every limited response.
	Slip int
	// IPv4Prefix and IPv6Prefix are the client network sizes (default 24
	// and 56).
	IPv4Prefix, IPv6Prefix int
	// MaxEntries bounds the entries tracked (DefaultMaxEntries if 0).
	MaxEntries int
	// Now is the clock in nanoseconds (monotonic by default; for tests).
	Now func() int64
}

// Verdict is RRL's decision on one response.
type Verdict uint8

// Verdicts.
const (
	Send Verdict = iota // within the rate
	Drop                // limited: send nothing
	Slip                // limited: send a truncated response instead
)

// Response classes: responses of different classes never share an entry.
const (
	classAnswer   = iota + 1 // NOERROR with records, keyed by name and type
	classNoData              // NOERROR without records, keyed by the zone (SOA owner) or name
	classNXDomain            // keyed by the zone, so random subdomains share one entry
	classError               // every other rcode, keyed by the network alone
)

// rrlKey identifies "the same response to the same network".
type rrlKey struct {
	net   netKey
	name  uint64 // hash of the lower-cased name
	qtype uint16
	class uint8
}

// RRL limits identical responses to one client network, in the manner of
// BIND's response rate limiting: a flood of spoofed queries for one name
// turns into a trickle of responses at the victim. Safe for concurrent use.
type RRL struct {
	t            *table[rrlKey]
	slip         uint32
	bits4, bits6 int
}

// NewRRL returns a response rate limiter, or nil when cfg.Rate is not
// positive (no limit); a nil *RRL sends everything.
func NewRRL(cfg RRLConfig) *RRL {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(int(cfg.Rate), 1)
	}
	if cfg.IPv4Prefix <= 0 || cfg.IPv4Prefix > 32 {
		cfg.IPv4Prefix = 24
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 56
	}
	if cfg.Now == nil {
		cfg.Now = monotonic()
	}
	return &RRL{t: newTable[rrlKey](cfg.Rate, cfg.Burst, cfg.MaxEntries, cfg.Now), slip: uint32(max(cfg.Slip, 0)),
		bits4: cfg.IPv4Prefix, bits6: cfg.IPv6Prefix}
}

// Check accounts for resp, a packed response about to be sent to client,
// and says what to do with it. It reads the wire format directly (no
// unpacking), so that answers packed ahead of time, such as cached ones,
// are limited the same way; resp is neither modified nor retained.
func (r *RRL) Check(client netip.Addr, resp []byte) Verdict {
	if r == nil {
		return Send
	}
	k := responseKey(resp)
	k.net = networkOf(client, r.bits4, r.bits6)
	ok, limited := r.t.take(k, k.net.hash()^k.name)
	switch {
	case ok:
		return Send
	case r.slip > 0 && limited%r.slip == 0:
		return Slip
	}
	return Drop
}

// responseKey classifies a packed response (see the class constants).
// What it cannot parse it keys by as much as it could read.
func responseKey(m []byte) rrlKey {
	var k rrlKey
	if len(m) < 12 {
		k.class = classError
		return k
	}
	rcode := int(m[3] & 0x0f)
	qd, an, ns := be16(m[4:]), be16(m[6:]), be16(m[8:])
	off := 12
	var qname uint64
	if qd > 0 {
		h, end, ok := wireName(m, off)
		if ok && end+4 <= len(m) {
			qname, k.qtype = h, uint16(be16(m[end:]))
			off = end + 4
		} else {
			off = -1
		}
	}
	switch {
	case rcode == dns.RcodeSuccess && an > 0:
		k.class, k.name = classAnswer, qname
	case rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError:
		k.class, k.qtype = classNoData, 0
		if rcode == dns.RcodeNameError {
			k.class = classNXDomain
		}
		k.name = qname
		if zone, ok := soaOwner(m, off, an, ns); ok {
			k.name = zone
		}
	default:
		k.class, k.qtype = classError, 0
	}
	return k
}

// soaOwner returns the hash of the owner of the first SOA record in the
// authority section, which starts after an answer records at off.
func soaOwner(m []byte, off, an, ns int) (uint64, bool) {
	if off < 0 {
		return 0, false
	}
	for i := 0; i < an+ns; i++ {
		owner := off
		_, end, ok := wireName(m, off)
		if !ok || end+10 > len(m) {
			return 0, false
		}
		rrtype, rdlen := be16(m[end:]), be16(m[end+8:])
		if i >= an && rrtype == int(dns.TypeSOA) {
			h, _, _ := wireName(m, owner)
			return h, true
		}
		off = end + 10 + rdlen
	}
	return 0, false
}

// wireName hashes the (possibly compressed) name at m[off:], lower-cased,
// and returns the offset just past it where it starts.
func wireName(m []byte, off int) (h uint64, end int, ok bool) {
	h = 14695981039346656037
	end = -1
	for hops := 0; hops < 128; hops++ {
		if off >= len(m) {
			return 0, 0, false
		}
		c := int(m[off])
		switch {
		case c == 0:
			if end < 0 {
				end = off + 1
			}
			return h, end, true
		case c&0xc0 == 0xc0:
			if off+1 >= len(m) {
				return 0, 0, false
			}
			if end < 0 {
				end = off + 2
			}
			off = (c&0x3f)<<8 | int(m[off+1])
		case c&0xc0 != 0:
			return 0, 0, false // reserved label types
		default:
			if off+1+c > len(m) {
				return 0, 0, false
			}
			h = (h ^ uint64(c)) * 1099511628211
			for _, b := range m[off+1 : off+1+c] {
				if b >= 'A' && b <= 'Z' {
					b += 'a' - 'A'
				}
				h = (h ^ uint64(b)) * 1099511628211
			}
			off += 1 + c
		}
	}
	return 0, 0, false // a pointer loop
}

func be16(b []byte) int { return int(b[0])<<8 | int(b[1]) }

// Tracked returns the number of entries with state.
func (r *RRL) Tracked() int {
	if r == nil {
		return 0
	}
	return r.t.len()
}
