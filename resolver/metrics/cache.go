package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// CacheStats is a point-in-time view of the answer cache's counters, read
// at every scrape. Counters count since start and never go down.
type CacheStats struct {
	Hits       uint64 // answers served from the cache (stale ones included)
	Misses     uint64 // lookups that found no usable entry
	Evictions  uint64 // entries removed to make room (not expiries)
	Prefetches uint64 // entries refreshed from upstream before they expired
	Stale      uint64 // expired entries served because the upstreams failed (serve-stale)
	Entries    int    // entries held now
}

// cacheCollector exports the cache's counters; all zero until a cache is
// attached with SetCache (or when the cache is off).
type cacheCollector struct {
	stats atomic.Pointer[func() CacheStats]
}

func newCacheCollector() *cacheCollector { return &cacheCollector{} }

var (
	cacheHitsDesc = prometheus.NewDesc(namespace+"_cache_hits_total",
		"Queries answered from the cache (stale answers included).", nil, nil)
	cacheMissesDesc = prometheus.NewDesc(namespace+"_cache_misses_total",
		"Cache lookups that found no usable entry.", nil, nil)
	cacheEvictionsDesc = prometheus.NewDesc(namespace+"_cache_evictions_total",
		"Cache entries evicted to make room.", nil, nil)
	cachePrefetchesDesc = prometheus.NewDesc(namespace+"_cache_prefetches_total",
		"Cache entries refreshed from upstream before they expired.", nil, nil)
	cacheStaleDesc = prometheus.NewDesc(namespace+"_cache_stale_answers_total",
		"Expired cache entries served because no upstream answered (serve-stale).", nil, nil)
	cacheEntriesDesc = prometheus.NewDesc(namespace+"_cache_entries",
		"Entries in the cache.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHitsDesc, cacheMissesDesc, cacheEvictionsDesc, cachePrefetchesDesc, cacheStaleDesc, cacheEntriesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	var s CacheStats
	if f := c.stats.Load(); f != nil {
		s = (*f)()
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(cacheHitsDesc, s.Hits)
	counter(cacheMissesDesc, s.Misses)
	counter(cacheEvictionsDesc, s.Evictions)
	counter(cachePrefetchesDesc, s.Prefetches)
	counter(cacheStaleDesc, s.Stale)
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(s.Entries))
}

// SetCache attaches the cache: stats is called at every scrape and must be
// cheap and safe for concurrent use (atomic loads). Until it is called the
// cache metrics read zero.
func (m *Metrics) SetCache(stats func() CacheStats) {
	m.cache.stats.Store(&stats)
}
