package resolver

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Stats counts queries by outcome since start, for status output. Safe for
// concurrent use; Observe is an Observer.
type Stats struct {
	Queries   atomic.Uint64
	Blocked   atomic.Uint64 // enforced blocks
	Monitored atomic.Uint64 // would-be blocks under action log
	Cached    atomic.Uint64
	ServFail  atomic.Uint64
	Refused   atomic.Uint64 // REFUSED answers that were not blocks
	Dropped   atomic.Uint64

	platforms sync.Map // platform name -> *atomic.Uint64
}

// Observe counts one answered query. resp may be nil (answers served from
// the cache's wire fast path); req.Info.Rcode holds the response code.
func (s *Stats) Observe(req *query.Request, resp *dns.Msg) {
	s.Queries.Add(1)
	if req.Info.Cached {
		s.Cached.Add(1)
	}
	if req.Info.Dropped {
		s.Dropped.Add(1)
	}
	if d := req.Info.Decision; d != nil {
		if d.Enforced {
			s.Blocked.Add(1)
		} else {
			s.Monitored.Add(1)
		}
		if d.Enforced {
			p := d.Snapshot.Section(d.Rule).Platform
			if p == "" {
				p = "(none)"
			}
			v, ok := s.platforms.Load(p)
			if !ok {
				v, _ = s.platforms.LoadOrStore(p, new(atomic.Uint64))
			}
			v.(*atomic.Uint64).Add(1)
			return
		}
	}
	switch req.Info.Rcode {
	case dns.RcodeServerFailure:
		s.ServFail.Add(1)
	case dns.RcodeRefused:
		s.Refused.Add(1)
	}
}

// PlatformCount is the number of blocks for one platform.
type PlatformCount struct {
	Platform string
	Blocks   uint64
}

// TopPlatforms returns up to n platforms with the most blocks, most first.
func (s *Stats) TopPlatforms(n int) []PlatformCount {
	var out []PlatformCount
	s.platforms.Range(func(k, v any) bool {
		out = append(out, PlatformCount{k.(string), v.(*atomic.Uint64).Load()})
		return true
	})
	slices.SortFunc(out, func(a, b PlatformCount) int {
		if c := cmp.Compare(b.Blocks, a.Blocks); c != 0 {
			return c
		}
		return cmp.Compare(a.Platform, b.Platform)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
