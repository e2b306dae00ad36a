package metrics

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Label bounds of the block counters. Platforms and files come from the
// list files, so they are bounded by the lists; these caps keep a runaway
// list (or a feed with a platform per entry) from flooding Prometheus.
// Values past a cap are counted under "other".
const (
	MaxPlatformLabels = 1000
	MaxFileLabels     = 256
	// maxBlockKeys caps the remembered (platform, file) pairs; past it the
	// labels are resolved under a lock on every block.
	maxBlockKeys = 4 * MaxPlatformLabels
)

// NoPlatform is the platform label of rules in sections without
// "# platform:".
const NoPlatform = "(none)"

// OtherLabel is the label value past a cap.
const OtherLabel = "other"

type blockKey struct{ platform, file string }

// blockPair holds the resolved counters of one (platform, file).
type blockPair struct{ enforced, monitored prometheus.Counter }

// blockCounters counts blocks by platform and list file. The counters of a
// pair are looked up once and kept in a sync.Map, and the pair of each
// list section the snapshot in service blocks with is kept in bySection,
// by the section's address: a block then costs a pointer compare and one
// atomic add (the sync.Map's hash of two strings and its compare were
// about 110 ns a block).
type blockCounters struct {
	enforced  *prometheus.CounterVec
	monitored *prometheus.CounterVec
	pairs     sync.Map // blockKey -> *blockPair
	bySection [sectionSlots]atomic.Pointer[sectionPair]

	mu        sync.Mutex // guards the fields below and pair creation
	npairs    int
	platforms map[string]bool
	files     map[string]bool
}

func newBlockCounters() *blockCounters {
	return &blockCounters{
		enforced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "blocks_total",
			Help: "Queries blocked (an enforced rule answered), by the rule's platform and list file.",
		}, []string{"platform", "file"}),
		monitored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "monitored_blocks_total",
			Help: "Would-be blocks of rules in monitor mode (action log, or serve --dry-run): answered normally and audited, by platform and list file.",
		}, []string{"platform", "file"}),
		platforms: map[string]bool{},
		files:     map[string]bool{},
	}
}

func (b *blockCounters) register(reg *prometheus.Registry) {
	reg.MustRegister(b.enforced, b.monitored)
}

// sectionPair is the counter pair of one list section (sections are
// immutable, and a snapshot's stay where they are while it is in use). A
// slot may keep a replaced snapshot's sections (their strings) alive until
// another section takes it: at most sectionSlots small arrays.
type sectionPair struct {
	sec *blocklist.Section
	p   *blockPair
}

// sectionSlots is the size of blockCounters.bySection, direct-mapped by
// the section's address: a miss (a section not seen, or two sharing a
// slot) takes the sync.Map and allocates the slot's new entry.
const sectionSlots = 64

func sectionSlot(sec *blocklist.Section) int {
	return int(uintptr(unsafe.Pointer(sec)) / unsafe.Sizeof(blocklist.Section{}) % sectionSlots)
}

func (b *blockCounters) inc(d *query.Decision) {
	sec := d.Snapshot.Section(d.Rule)
	var p *blockPair
	slot := &b.bySection[sectionSlot(sec)]
	if sp := slot.Load(); sp != nil && sp.sec == sec {
		p = sp.p
	} else {
		k := blockKey{sec.Platform, sec.File}
		if v, ok := b.pairs.Load(k); ok {
			p = v.(*blockPair)
		} else {
			p = b.pair(k)
		}
		slot.Store(&sectionPair{sec, p})
	}
	if d.Enforced {
		p.enforced.Inc()
	} else {
		p.monitored.Inc()
	}
}

// pair resolves the counters of k, folding labels past their caps into
// "other".
func (b *blockCounters) pair(k blockKey) *blockPair {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.pairs.Load(k); ok {
		return v.(*blockPair)
	}
	platform := k.platform
	if platform == "" {
		platform = NoPlatform
	}
	platform = bounded(b.platforms, platform, MaxPlatformLabels)
	file := bounded(b.files, k.file, MaxFileLabels)
	p := &blockPair{
		enforced:  b.enforced.WithLabelValues(platform, file),
		monitored: b.monitored.WithLabelValues(platform, file),
	}
	if b.npairs < maxBlockKeys {
		b.pairs.Store(k, p)
		b.npairs++
	}
	return p
}

// bounded returns v when it is already known or there is room for it in
// seen, else OtherLabel.
func bounded(seen map[string]bool, v string, limit int) string {
	if seen[v] {
		return v
	}
	if len(seen) >= limit {
		return OtherLabel
	}
	seen[v] = true
	return v
}
