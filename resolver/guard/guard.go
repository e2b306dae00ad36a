// Package guard is the resolver's front door: it puts the client ACL, the
// per-client rate limit and response rate limiting behind the server's two
// hooks (resolver.ServerConfig.Admit and LimitResponse) and counts every
// query it turns away.
package guard

import (
	"net/netip"
	"sync/atomic"

	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/acl"
	"github.com/sinkhole-dns/sinkhole/resolver/ratelimit"
)

// Config configures a Guard.
type Config struct {
	// Allow is the client ACL; nil admits every client.
	Allow *acl.Set
	// Drop, when set, sends nothing to clients outside Allow instead of
	// REFUSED.
	Drop bool
	// Clients is the per-client query limit; nil for none. It applies to
	// clients outside the ACL that are answered REFUSED too.
	Clients *ratelimit.Clients
	// RRL limits identical UDP responses per client network; nil for none.
	RRL *ratelimit.RRL
}

// Counters are the queries and responses a Guard turned away, since start.
type Counters struct {
	ACLRefused  atomic.Uint64 // clients outside the ACL answered REFUSED
	ACLDropped  atomic.Uint64 // clients outside the ACL sent nothing (refuse action drop)
	RateLimited atomic.Uint64 // queries dropped by the per-client limit
	RRLDropped  atomic.Uint64 // UDP responses dropped by RRL
	RRLSlipped  atomic.Uint64 // UDP responses sent truncated by RRL
}

// Guard decides which queries the server serves. Safe for concurrent use.
type Guard struct {
	cfg Config
	Counters
}

// New returns a guard.
func New(cfg Config) *Guard { return &Guard{cfg: cfg} }

// Admit is the server's admission hook. A client outside the ACL is
// dropped under the drop action; otherwise a client over its rate is
// dropped (REFUSED answers count against the rate too, so they cannot be
// used for reflection); then a client outside the ACL is refused.
func (g *Guard) Admit(client netip.AddrPort, proto string) resolver.Admission {
	a := client.Addr()
	inside := g.cfg.Allow == nil || g.cfg.Allow.Contains(a)
	if !inside && g.cfg.Drop {
		g.ACLDropped.Add(1)
		return resolver.Drop
	}
	if !g.cfg.Clients.Allow(a) {
		g.RateLimited.Add(1)
		return resolver.Drop
	}
	if !inside {
		g.ACLRefused.Add(1)
		return resolver.Refuse
	}
	return resolver.Admit
}

// LimitResponse is the server's response hook: response rate limiting of
// a packed UDP response.
func (g *Guard) LimitResponse(client netip.AddrPort, resp []byte) resolver.Limit {
	switch g.cfg.RRL.Check(client.Addr(), resp) {
	case ratelimit.Drop:
		g.RRLDropped.Add(1)
		return resolver.Suppress
	case ratelimit.Slip:
		g.RRLSlipped.Add(1)
		return resolver.Slip
	}
	return resolver.Send
}

// Hooks installs the guard's hooks in cfg, leaving out those with nothing
// to do.
func (g *Guard) Hooks(cfg *resolver.ServerConfig) {
	if g.cfg.Allow != nil || g.cfg.Clients != nil {
		cfg.Admit = g.Admit
	}
	if g.cfg.RRL != nil {
		cfg.LimitResponse = g.LimitResponse
	}
}
