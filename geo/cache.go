package geo

import "sync/atomic"

// cacheSlots is the size of a database's record cache. Many networks share
// one data record (every network of a country, of an AS), so a small cache
// keyed by record offset answers most lookups without decoding.
const (
	cacheBits  = 12
	cacheSlots = 1 << cacheBits
)

// cacheEntry is one decoded record.
type cacheEntry struct {
	off     uintptr
	country string
	asn     uint32
	org     string
}

// recordCache is a direct-mapped, lock-free cache of decoded records. A slot
// holds an immutable entry; a miss decodes and overwrites the slot.
type recordCache struct {
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

func slotOf(off uintptr) int {
	return int((uint64(off) * 0x9E3779B97F4A7C15) >> (64 - cacheBits))
}

func (c *recordCache) get(off uintptr) *cacheEntry {
	if e := c.slots[slotOf(off)].Load(); e != nil && e.off == off {
		return e
	}
	return nil
}

func (c *recordCache) put(e *cacheEntry) { c.slots[slotOf(e.off)].Store(e) }
