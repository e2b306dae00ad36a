package ratelimit

import (
	"net/netip"
)

// ClientsConfig configures the per-client query limit.
type ClientsConfig struct {
	// QPS is the sustained queries per second one client may send.
	QPS float64
	// Burst is how many queries a client may send at once after a quiet
	// spell (default 2 * QPS, at least 1).
	Burst int
	// IPv6Prefix is the prefix length IPv6 clients are aggregated by
	// (default 56: one customer site). IPv4 clients are limited per
	// address.
	IPv6Prefix int
	// MaxEntries bounds the clients tracked (DefaultMaxEntries if 0).
	MaxEntries int
	// Now is the clock in nanoseconds (monotonic by default; for tests).
	Now func() int64
}

// Clients is a token bucket per client network. Safe for concurrent use.
type Clients struct {
	t     *table[netKey]
	bits6 int
}

// NewClients returns a limiter, or nil when cfg.QPS is not positive (no
// limit); a nil *Clients allows everything.
func NewClients(cfg ClientsConfig) *Clients {
	if cfg.QPS <= 0 {
		return nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(int(2*cfg.QPS), 1)
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 56
	}
	if cfg.Now == nil {
		cfg.Now = monotonic()
	}
	return &Clients{t: newTable[netKey](cfg.QPS, cfg.Burst, cfg.MaxEntries, cfg.Now), bits6: cfg.IPv6Prefix}
}

// Allow takes a token from client's bucket and reports whether it had one.
func (c *Clients) Allow(client netip.Addr) bool {
	if c == nil {
		return true
	}
	k := networkOf(client, 32, c.bits6)
	ok, _ := c.t.take(k, k.hash())
	return ok
}

// Tracked returns the number of client networks with state.
func (c *Clients) Tracked() int {
	if c == nil {
		return 0
	}
	return c.t.len()
}

// Evicted returns how many entries were evicted to bound memory.
func (c *Clients) Evicted() uint64 {
	if c == nil {
		return 0
	}
	return c.t.evicted.Load()
}
