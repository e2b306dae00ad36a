// Package ratelimit holds the resolver's rate limiters: a token bucket per
// client network (Clients) and response rate limiting (RRL) for identical
// responses sent to one network. Both keep their state in a sharded table
// of GCRA entries with bounded memory: no global lock on the query path,
// no allocation for a known key, and idle entries evicted.
package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries bounds a table unless configured otherwise: about
// 60 MB at the worst (measured), under a flood of distinct sources. Only
// clients inside their burst window need an entry: an idle one is evicted
// at no cost.
const DefaultMaxEntries = 1 << 19

// shardCount is the number of independently locked parts of a table.
const shardCount = 64

// entry is one key's state in the generic cell rate algorithm: tat is the
// theoretical arrival time of the next conforming event. An entry whose
// tat has passed is indistinguishable from a new one (its bucket is full),
// so it can be evicted at no cost in accuracy.
type entry struct {
	tat     int64  // nanoseconds on the table's clock
	limited uint32 // events limited so far (for RRL's slip)
}

// table is a sharded map from K to entries with one rate and burst.
type table[K comparable] struct {
	interval  int64 // nanoseconds per event at the sustained rate
	tolerance int64 // burst * interval
	perShard  int
	now       func() int64
	shards    [shardCount]shard[K]
	evicted   atomic.Uint64
}

type shard[K comparable] struct {
	mu sync.Mutex
	m  map[K]entry
	_  [40]byte // keep shards on separate cache lines
}

// newTable returns a table allowing rate events per second with bursts of
// burst events, holding at most maxEntries keys.
func newTable[K comparable](rate float64, burst, maxEntries int, now func() int64) *table[K] {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if burst < 1 {
		burst = 1
	}
	iv := int64(float64(time.Second) / rate)
	if iv < 1 {
		iv = 1
	}
	t := &table[K]{interval: iv, tolerance: iv * int64(burst), perShard: max(maxEntries/shardCount, 1), now: now}
	for i := range t.shards {
		t.shards[i].m = make(map[K]entry)
	}
	return t
}

// take records one event for k (whose hash is h) and reports whether it
// conforms to the rate; when it does not, it also returns how many events
// of k have been limited in a row, counting this one.
func (t *table[K]) take(k K, h uint64) (ok bool, limited uint32) {
	now := t.now()
	sh := &t.shards[h%shardCount]
	sh.mu.Lock()
	e, found := sh.m[k]
	if !found && len(sh.m) >= t.perShard {
		t.evict(sh, now)
	}
	tat := max(e.tat, now) + t.interval
	if tat-now > t.tolerance {
		e.limited++
		sh.m[k] = e
		sh.mu.Unlock()
		return false, e.limited
	}
	e.tat, e.limited = tat, 0
	sh.m[k] = e
	sh.mu.Unlock()
	return true, 0
}

// evict makes room in a full shard: first every idle entry goes (no
// change in behaviour); if the shard is still over seven eighths full,
// arbitrary entries go too, which lets their owners start with a full
// bucket again: under a flood of distinct sources, bounded memory wins
// over exactness. sh.mu is held.
func (t *table[K]) evict(sh *shard[K], now int64) {
	n := 0
	for k, e := range sh.m {
		if e.tat <= now {
			delete(sh.m, k)
			n++
		}
	}
	keep := t.perShard - t.perShard/8
	for k := range sh.m {
		if len(sh.m) <= keep-1 {
			break
		}
		delete(sh.m, k)
		n++
	}
	t.evicted.Add(uint64(n))
}

// len returns the number of entries.
func (t *table[K]) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// netKey is a client network: an address masked to a prefix length, as a
// 128-bit number (IPv4 in its IPv4-mapped form).
type netKey struct{ hi, lo uint64 }

// networkOf masks a (unmapped first) to bits4 or bits6.
func networkOf(a netip.Addr, bits4, bits6 int) netKey {
	a = a.Unmap()
	b := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[i+8])
	}
	bits := bits6
	if a.Is4() {
		bits = 96 + bits4
	}
	switch {
	case bits <= 0:
		hi, lo = 0, 0
	case bits < 64:
		hi &= ^uint64(0) << (64 - bits)
		lo = 0
	case bits < 128:
		lo &= ^uint64(0) << (128 - bits)
	}
	return netKey{hi, lo}
}

// hash mixes a network key for shard selection.
func (k netKey) hash() uint64 { return mix(k.hi*0x9e3779b97f4a7c15 ^ k.lo) }

// mix is the finalizer of SplitMix64.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// monotonic returns a clock in nanoseconds since its creation.
func monotonic() func() int64 {
	start := time.Now()
	return func() int64 { return int64(time.Since(start)) + 1 }
}
