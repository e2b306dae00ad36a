package resolver

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
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
	// bySection keeps each list section's platform counter, by the
	// section's address (a pointer compare per block instead of the
	// sync.Map's string hash and compare).
	bySection [statsSlots]atomic.Pointer[sectionCount]
}

// sectionCount is the platform counter of one (immutable) list section. A
// slot may keep a replaced snapshot's sections alive until another
// section takes it (at most statsSlots small arrays).
type sectionCount struct {
	sec *blocklist.Section
	n   *atomic.Uint64
}

// statsSlots is the size of Stats.bySection, direct-mapped by address.
const statsSlots = 64

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
			sec := d.Snapshot.Section(d.Rule)
			slot := &s.bySection[uintptr(unsafe.Pointer(sec))/unsafe.Sizeof(blocklist.Section{})%statsSlots]
			if sc := slot.Load(); sc != nil && sc.sec == sec {
				sc.n.Add(1)
				return
			}
			p := sec.Platform
			if p == "" {
				p = "(none)"
			}
			v, ok := s.platforms.Load(p)
			if !ok {
				v, _ = s.platforms.LoadOrStore(p, new(atomic.Uint64))
			}
			n := v.(*atomic.Uint64)
			slot.Store(&sectionCount{sec, n})
			n.Add(1)
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
