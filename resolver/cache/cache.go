// Package cache is the resolver's answer cache: a chain stage that keeps
// final, already-policed answers in wire form, keyed by the lower-cased
// question and the DO, CD and AD bits, tied to the list generation they
// were decided under.
//
// Hits are served by its offer (the fast path) by patching the stored
// bytes (message ID, the client's question spelling, TTLs counted down,
// sinkhole's OPT record for EDNS clients), with no dns.Msg built. Entries
// of an older list generation are decided again from the upstream answer
// they hold, through Config.Decider, without asking upstream. The cache clamps TTLs, caches negative answers for
// the SOA minimum (RFC 2308), evicts with CLOCK (second chance: entries hit
// since the hand last passed survive), coalesces concurrent misses into one
// upstream query, prefetches popular entries shortly before they expire,
// and serves stale answers (RFC 8767) when every upstream fails.
package cache

import (
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

const numShards = 64

// Defaults.
const (
	DefaultSize   = 100_000
	DefaultMaxTTL = 24 * time.Hour
	// prefetchWindow: an entry hit in the last tenth of its TTL is refreshed
	// in the background, if it has been hit at least prefetchHits times.
	prefetchDiv  = 10
	prefetchHits = 2
	// minPrefetchTTL: short-lived entries are not prefetched.
	minPrefetchTTL = 10
)

// Config configures a Cache.
type Config struct {
	// Size is the most entries kept (DefaultSize if 0).
	Size int
	// MinTTL and MaxTTL clamp record TTLs (MaxTTL: DefaultMaxTTL if 0).
	MinTTL, MaxTTL time.Duration
	// ServeStale keeps expired entries this long to answer when every
	// upstream fails (0: off).
	ServeStale time.Duration
	// Prefetch refreshes popular entries before they expire.
	Prefetch bool
	// Next is the rest of the chain (set by query.Chain through Link).
	Next query.Handler
	// Decider decides again, under a new list generation, an upstream
	// answer an entry holds (policy.Decider): the entry is then served
	// without asking upstream. Without one such entries are fetched again.
	Decider query.Decider
	// Snapshot gives the list snapshot in service (for prefetches).
	Snapshot func() *blocklist.Snapshot
	// Epoch, when set, changes whenever data other than the lists that
	// decisions depend on changes (the GeoIP databases): entries decided
	// under another epoch are decided again, like those of another list
	// generation.
	Epoch  func() uint64
	Logger *slog.Logger
	// Now is the clock (time.Now if nil); tests move it. When nil, the
	// hit path (Offer) takes the time from Offered.Now when it is set (the
	// server reads the clock once per UDP batch), a clock read per hit less.
	Now func() time.Time
}

// Stats are the cache's counters since start.
type Stats struct {
	Hits       atomic.Uint64
	Misses     atomic.Uint64
	Evictions  atomic.Uint64
	Prefetches atomic.Uint64
	Stale      atomic.Uint64
	Coalesced  atomic.Uint64 // misses that waited for another query's upstream trip
}

// Cache is the answer cache, a chain stage: a query.Handler (the full
// path: misses, and hits the fast path could not take) and a
// query.Offerer (the hit path).
type Cache struct {
	cfg    Config
	minTTL uint32
	maxTTL uint32
	stale  int64 // nanoseconds
	now    func() time.Time
	log    *slog.Logger
	seed   maphash.Seed // of shardOf
	shards [numShards]shard
	stats  Stats
}

type shard struct {
	mu    sync.RWMutex
	m     map[string]*entry
	ring  []*entry // CLOCK; nil slots are free
	free  []int
	hand  int
	max   int
	calls map[string]*call
}

// call is one upstream trip that concurrent identical misses wait for.
type call struct {
	done chan struct{}
}

// New returns a cache in front of cfg.Next.
func New(cfg Config) *Cache {
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cache{cfg: cfg, minTTL: uint32(cfg.MinTTL / time.Second), maxTTL: uint32(cfg.MaxTTL / time.Second),
		stale: int64(cfg.ServeStale), now: cfg.Now, log: cfg.Logger, seed: maphash.MakeSeed()}
	if c.now == nil {
		c.now = time.Now
	}
	per := (cfg.Size + numShards - 1) / numShards
	for i := range c.shards {
		c.shards[i] = shard{m: make(map[string]*entry), max: per, calls: make(map[string]*call)}
	}
	return c
}

// version combines a list generation with the epoch into the value
// entries are tagged with.
func (c *Cache) version(gen uint64) uint64 {
	if c.cfg.Epoch == nil {
		return gen
	}
	return gen ^ c.cfg.Epoch()<<40
}

// Stats returns the counters.
func (c *Cache) Stats() *Stats { return &c.stats }

// Len returns the number of entries held.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// shardOf picks the shard of a key (maphash, which hashes a key of 30
// bytes several times faster than a byte-at-a-time FNV loop).
func (c *Cache) shardOf(key []byte) *shard {
	return &c.shards[maphash.Bytes(c.seed, key)%numShards]
}

// get returns the entry for key (nil if none). It marks it visited.
func (c *Cache) get(key []byte) *entry {
	s := c.shardOf(key)
	s.mu.RLock()
	e := s.m[string(key)]
	s.mu.RUnlock()
	if e != nil && !e.visited.Load() {
		e.visited.Store(true) // a popular entry's line is not written on every hit
	}
	return e
}

// put stores e, evicting with CLOCK when the shard is full.
func (c *Cache) put(e *entry) {
	s := c.shardOf([]byte(e.key))
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[e.key]; old != nil {
		e.slot = old.slot
		s.ring[e.slot] = e
		s.m[e.key] = e
		return
	}
	switch {
	case len(s.free) > 0:
		e.slot = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		s.ring[e.slot] = e
	case len(s.ring) < s.max:
		e.slot = len(s.ring)
		s.ring = append(s.ring, e)
	default:
		now := c.now().UnixNano()
		for {
			v := s.ring[s.hand]
			// Second chance for entries hit since the hand last came by,
			// unless they are past any use.
			if v.visited.Load() && now < v.expires+c.stale {
				v.visited.Store(false)
				s.hand = (s.hand + 1) % len(s.ring)
				continue
			}
			delete(s.m, v.key)
			c.stats.Evictions.Add(1)
			e.slot = s.hand
			s.ring[s.hand] = e
			s.hand = (s.hand + 1) % len(s.ring)
			break
		}
	}
	s.m[e.key] = e
}

// remove drops e if it is still the entry for its key.
func (c *Cache) remove(e *entry) {
	s := c.shardOf([]byte(e.key))
	s.mu.Lock()
	if s.m[e.key] == e {
		delete(s.m, e.key)
		s.ring[e.slot] = nil
		s.free = append(s.free, e.slot)
	}
	s.mu.Unlock()
}

// Link makes next the rest of the chain (query.Chain calls it).
func (c *Cache) Link(next query.Handler) { c.cfg.Next = next }

// Offer answers q from the cache when a fresh entry decided under the
// snapshot in service exists and its answer fits q.Limit. A miss passes:
// the cache keeps nothing the later stages' offers answer (blocks on the
// query name are never stored), so they may answer it. An answer too
// large declines: the full path truncates it.
func (c *Cache) Offer(q *query.WireQuery, o *query.Offered) query.Verdict {
	e := c.get(q.Key)
	if e == nil || e.gen != c.version(o.Snapshot.Generation) {
		return query.Pass
	}
	var now int64
	if c.cfg.Now == nil && !o.Now.IsZero() {
		now = o.Now.UnixNano() // the read's clock (one read per UDP batch)
	} else {
		now = c.now().UnixNano()
	}
	if now >= e.expires {
		return query.Pass
	}
	if e.renderedSize() > len(o.Out) || (e.renderedSize() > q.Limit && len(e.wire)+11+len(e.opts) > q.Limit) {
		return query.Decline // needs truncation: the full path does it
	}
	o.N = e.render(o.Out, q, now, false)
	o.Info, o.Name, o.Cached = e.info, e.name, true
	c.stats.Hits.Add(1)
	c.maybePrefetch(e, now)
	return query.Answered
}
