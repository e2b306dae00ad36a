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

// Check accounts for resp being sent to client and says what to do with it.
func (r *RRL) Check(client netip.Addr, resp *dns.Msg) Verdict {
	if r == nil {
		return Send
	}
	k := rrlKey{net: networkOf(client, r.bits4, r.bits6)}
	var name string
	switch {
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		k.class = classAnswer
		if len(resp.Question) > 0 {
			name, k.qtype = resp.Question[0].Name, resp.Question[0].Qtype
		}
	case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
		k.class = classNoData
		if resp.Rcode == dns.RcodeNameError {
			k.class = classNXDomain
		}
		if len(resp.Question) > 0 {
			name = resp.Question[0].Name
		}
		for _, rr := range resp.Ns {
			if rr.Header().Rrtype == dns.TypeSOA {
				name = rr.Header().Name
				break
			}
		}
	default:
		k.class = classError
	}
	k.name = hashName(name)
	ok, limited := r.t.take(k, k.net.hash()^k.name)
	switch {
	case ok:
		return Send
	case r.slip > 0 && limited%r.slip == 0:
		return Slip
	}
	return Drop
}

// Tracked returns the number of entries with state.
func (r *RRL) Tracked() int {
	if r == nil {
		return 0
	}
	return r.t.len()
}

// hashName is FNV-1a over the lower-cased name without a trailing dot.
func hashName(s string) uint64 {
	if len(s) > 1 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
