package rpz

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// SOA timers of an exported zone. NOTIFY carries changes at once; the
// refresh is the secondaries' fallback when a NOTIFY is lost. A secondary
// that cannot reach the primary keeps the zone for a week.
const (
	exportRefresh = 60
	exportRetry   = 10
	exportExpire  = 7 * 24 * 3600
	// exportMName is the primary named in the SOA and NS records.
	exportMName = "sinkhole.invalid."
	exportRName = "hostmaster.sinkhole.invalid."
)

// History bounds: IXFR can serve differences from this many versions
// back, as long as their changes add up to no more than the zone itself
// (beyond that a full transfer is as cheap).
const (
	maxDeltas      = 64
	minDeltaBudget = 10000
)

// DefaultAllowTransfer is who may transfer an exported zone when
// ExportConfig.AllowTransfer is empty: loopback only.
var DefaultAllowTransfer = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// ExportConfig configures an Exporter.
type ExportConfig struct {
	// Zone is the name of the exported zone, e.g. "rpz.regulator.example".
	Zone string
	// AllowTransfer lists the networks whose secondaries may transfer (and
	// query) the zone; DefaultAllowTransfer when empty.
	AllowTransfer []netip.Prefix
	// Notify lists host:port addresses sent a NOTIFY on every change.
	Notify []string
	// SerialFile keeps the last serial across restarts, so serials keep
	// rising; may be empty (serials then start from the clock).
	SerialFile string
	// NoZonemd leaves the ZONEMD (RFC 8976) out of every version: a
	// change goes out in time proportional to the change, and secondaries
	// cannot check that their copy is whole (the export admits secondaries
	// by address and signs no transfer, so nothing else checks it; a
	// secondary with --rpz-require-zonemd refuses such a zone). Each
	// version otherwise goes into service only with its ZONEMD records
	// (ZonemdSchemes).
	NoZonemd bool
	// ZonemdSchemes are the ZONEMD schemes each version carries, one
	// record each (SHA-384): ZonemdSchemeSimple, ZonemdSchemeMerkle3;
	// DefaultExportZonemd when empty. Unused with NoZonemd.
	//
	// SIMPLE hashes the whole zone per version at the primary (about 0.3 s
	// of CPU at 2M records; the zone's blocks keep their canonical bytes
	// for it, about 40 bytes per record) and again at every secondary that
	// checks it. MERKLE3 costs what changed, at the primary (its state
	// about 25 MB at 2M records, built whole at the first version and
	// after a rebuild: about 4 s of CPU on two goroutines) and at sinkhole
	// secondaries; resolvers that do not know the scheme ignore it.
	ZonemdSchemes []uint8
	// Build says how rules are written.
	Build BuildOptions
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// version is one serial of the exported zone.
type version struct {
	serial  uint32
	zone    *czone // without SOA, NS and ZONEMD
	created time.Time
	// zonemds are the apex ZONEMD records (RFC 8976, SHA-384, one per
	// scheme) of this version: their digests cover the SOA with this
	// serial, the NS and every record. A version is put in service only
	// with them.
	zonemds []dns.RR
}

// delta is the change from one serial to the next (RFC 1995).
type delta struct {
	from, to uint32
	del, add []record
	// fromMD and toMD are the ZONEMD records of both serials: every IXFR
	// difference replaces the apex ZONEMD.
	fromMD, toMD []dns.RR
}

// exportJob is one reload the exporter has to follow.
type exportJob struct {
	snap *blocklist.Snapshot
	rep  *blocklist.ReloadReport // nil: rebuild
}

// Exporter serves the lists as an RPZ zone: it answers AXFR and IXFR
// (TransferHandler), SOA and other queries for the zone (Stage), and
// sends NOTIFY when the zone changes. Update is called with every new
// snapshot.
type Exporter struct {
	cfg  ExportConfig
	apex string // FQDN, lower case
	wire []byte // apex in wire form, lower case
	name string // canonical (no trailing dot)
	log  *slog.Logger

	mu      sync.RWMutex
	cur     *version
	deltas  []delta // oldest first, chained; the last ends at cur.serial
	skipped Skipped

	// Reloads waiting to be followed, and the worker following them.
	qmu     sync.Mutex
	qcond   *sync.Cond
	queue   []exportJob
	running bool
	started bool // a reload was seen: the zone exists or is being built

	wmu  sync.Mutex // one worker at a time
	work *workState // the zone as last computed (== cur's unless a change made none)
	m3   *m3Export  // the MERKLE3 state of cur's zone (nil before it, or without MERKLE3)
	// m3Builds counts the MERKLE3 states built whole (the others follow
	// the version before).
	m3Builds int
	m3Keep   int // the bytes of leaves a MERKLE3 build keeps between its passes (see m3KeepBelow)
	// followed counts the batches of reloads followed as deltas and by
	// rebuilding.
	followed struct{ delta, rebuilt atomic.Uint64 }

	notify *notifier
}

// NewExporter validates cfg and returns an exporter with no zone yet.
func NewExporter(cfg ExportConfig) (*Exporter, error) {
	name, err := blocklist.NormalizeName(cfg.Zone)
	if err != nil {
		return nil, fmt.Errorf("export zone %q: %w", cfg.Zone, err)
	}
	if len(cfg.AllowTransfer) == 0 {
		cfg.AllowTransfer = DefaultAllowTransfer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Build.TTL == 0 {
		cfg.Build.TTL = 300
	}
	e := &Exporter{cfg: cfg, apex: dns.Fqdn(name), name: name, log: cfg.Logger}
	wire := make([]byte, 256)
	n, err := dns.PackDomainName(e.apex, wire, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("export zone %q: %w", cfg.Zone, err)
	}
	e.wire = wire[:n]
	e.notify = newNotifier(e.apex, cfg.Notify, e.log)
	e.qcond = sync.NewCond(&e.qmu)
	return e, nil
}

// Zone returns the exported zone's name (canonical, no trailing dot).
func (e *Exporter) Zone() string { return e.name }

// Serial returns the serial in service (0 before the first Update).
func (e *Exporter) Serial() uint32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.cur == nil {
		return 0
	}
	return e.cur.serial
}

// ExportStatus describes the exported zone.
type ExportStatus struct {
	Zone    string    `json:"zone"`
	Serial  uint32    `json:"serial"`
	Records int       `json:"records"`
	Changed time.Time `json:"changed"` // when the serial in service went into service (its ZONEMD computed)
	// IXFRFrom is the oldest serial IXFR can answer with differences.
	IXFRFrom uint32   `json:"ixfr_from"`
	Skipped  Skipped  `json:"skipped"` // rules RPZ cannot express
	Notify   []string `json:"notify,omitempty"`
	// Zonemd is whether every version carries a ZONEMD (false with
	// ExportConfig.NoZonemd), ZonemdSchemes which ("SIMPLE", "MERKLE3").
	Zonemd        bool     `json:"zonemd"`
	ZonemdSchemes []string `json:"zonemd_schemes,omitempty"`
}

// Status reports the zone in service.
func (e *Exporter) Status() ExportStatus {
	e.mu.RLock()
	defer e.mu.RUnlock()
	st := ExportStatus{Zone: e.name, Skipped: e.skipped, Notify: e.cfg.Notify, Zonemd: !e.cfg.NoZonemd}
	for _, sc := range e.schemes() {
		st.ZonemdSchemes = append(st.ZonemdSchemes, ZonemdSchemeName(sc))
	}
	if e.cur != nil {
		st.Serial, st.Records, st.Changed, st.IXFRFrom = e.cur.serial, e.cur.zone.records+len(e.cur.zone.txt), e.cur.created, e.cur.serial
		if len(e.deltas) > 0 {
			st.IXFRFrom = e.deltas[0].from
		}
	}
	return st
}

// Start begins sending NOTIFY messages; they stop when ctx ends.
func (e *Exporter) Start(ctx context.Context) { e.notify.start(ctx) }

// Observe follows one reload of the store (register it with
// blocklist.Store.OnReload). The first builds the zone before it returns;
// later ones are followed in the background, in order: a reload applied
// as a delta (ReloadReport.Delta, with every added and removed rule
// listed) changes the zone in time proportional to the change, any other
// is rebuilt from the snapshot. Reloads that arrive while one is followed
// are followed together. The zone in service changes when a new version
// is complete, its ZONEMD included; then the serial rises, the difference
// is kept for IXFR, and every notify target is told.
func (e *Exporter) Observe(snap *blocklist.Snapshot, rep *blocklist.ReloadReport) {
	e.qmu.Lock()
	if rep != nil && !rep.Changed && e.started {
		e.qmu.Unlock()
		return // nothing new was published
	}
	e.queue = append(e.queue, exportJob{snap: snap, rep: rep})
	if e.running {
		e.qmu.Unlock()
		return
	}
	e.running = true
	first := !e.started
	e.started = true
	e.qmu.Unlock()
	if first {
		e.drain()
		return
	}
	go e.drain()
}

// Wait returns once every reload Observe was given is followed.
func (e *Exporter) Wait() {
	e.qmu.Lock()
	for e.running || len(e.queue) > 0 {
		e.qcond.Wait()
	}
	e.qmu.Unlock()
}

// drain follows the queued reloads until there are none.
func (e *Exporter) drain() {
	for {
		e.qmu.Lock()
		jobs := e.queue
		e.queue = nil
		if len(jobs) == 0 {
			e.running = false
			e.qcond.Broadcast()
			e.qmu.Unlock()
			return
		}
		e.qmu.Unlock()
		e.wmu.Lock()
		e.follow(jobs)
		e.wmu.Unlock()
	}
}

// Update rebuilds the zone from snap and puts it in service before it
// returns (Observe follows reloads without rebuilding). It reports
// whether the zone changed.
func (e *Exporter) Update(snap *blocklist.Snapshot) bool {
	e.qmu.Lock()
	e.started = true
	e.qmu.Unlock()
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return e.follow([]exportJob{{snap: snap}})
}

// follow computes the zone after jobs (in order) and publishes it.
func (e *Exporter) follow(jobs []exportJob) bool {
	start := time.Now()
	latest := jobs[len(jobs)-1].snap
	var next *workState
	how := "rebuilt"
	if e.work != nil {
		d := newDeltaChange()
		ok := true
		for _, j := range jobs {
			if !d.add(j.rep) {
				ok = false
				break
			}
		}
		if ok {
			next, how = e.work.applyDelta(latest, e.cfg.Build, d), "delta"
		}
	}
	if next == nil {
		next = fullBuild(latest, e.cfg.Build)
		e.followed.rebuilt.Add(1)
	} else {
		e.followed.delta.Add(1)
	}
	e.work = next
	built := time.Since(start)
	changed := e.publish(next, how, built)
	if how == "rebuilt" && next.zone.records >= releaseRecords {
		// A rebuild leaves the names it sorted and the zone it replaced
		// as garbage: hand their pages back now, not minutes later.
		debug.FreeOSMemory()
	}
	return changed
}

// releaseRecords is the zone size from which a rebuild hands the memory
// it used back to the system.
const releaseRecords = 200000

// publish puts w's zone in service when it differs from the zone in
// service: a new serial, its ZONEMD, the difference for IXFR, NOTIFY.
func (e *Exporter) publish(w *workState, how string, built time.Duration) bool {
	e.mu.RLock()
	cur := e.cur
	e.mu.RUnlock()
	var del, add []record
	if cur != nil {
		del, add = diffZones(cur.zone, w.zone)
		if len(del) == 0 && len(add) == 0 {
			e.mu.Lock()
			e.skipped = w.skipped()
			e.mu.Unlock()
			return false
		}
	}
	serial := e.nextSerial()
	start := time.Now()
	next := &version{serial: serial, zone: w.zone}
	next.zonemds = e.zonemdsOf(w.zone, serial)
	digest := time.Since(start)
	next.created = time.Now() // in service from now (ExportStatus.Changed)
	e.mu.Lock()
	e.skipped = w.skipped()
	if cur != nil {
		e.deltas = append(e.deltas, delta{from: cur.serial, to: serial, del: del, add: add, fromMD: cur.zonemds, toMD: next.zonemds})
		e.trimDeltas(w.zone.records)
	}
	e.cur = next
	e.mu.Unlock()
	e.notify.kick(serial)
	// Saved after the NOTIFYs are on their way: a disk sync must not delay
	// them.
	e.saveSerial(serial)
	sk := w.skipped()
	e.log.Info("rpz export zone updated", "zone", e.name, "serial", serial, "records", w.zone.records+len(w.zone.txt),
		"change", how, "deleted", len(del), "added", len(add), "build", built.Round(time.Microsecond), "zonemd", digest.Round(time.Microsecond),
		"skipped_monitor", sk.Monitor, "skipped_overseas", sk.Overseas, "skipped_asn", sk.ASN)
	return true
}

// diffZones returns the records to delete from a and add to it to get b.
func diffZones(a, b *czone) (del, add []record) {
	var owner []byte
	emit := func(key []byte, sa, sb *rset) {
		if sa.sameRecords(sb) {
			return
		}
		owner = appendOwner(owner[:0], key)
		o := string(owner)
		for _, r := range sa.recs {
			r.owner = o
			del = append(del, r)
		}
		for _, r := range sb.recs {
			r.owner = o
			add = append(add, r)
		}
	}
	diffBlocks(a.blocks, b.blocks, func(key []byte, ca, cb uint32) { emit(key, a.sets[ca], b.sets[cb]) })
	i, j := 0, 0
	for i < len(a.ips) || j < len(b.ips) {
		switch {
		case j >= len(b.ips) || (i < len(a.ips) && a.ips[i].key < b.ips[j].key):
			emit([]byte(a.ips[i].key), a.sets[a.ips[i].code], b.sets[0])
			i++
		case i >= len(a.ips) || a.ips[i].key > b.ips[j].key:
			emit([]byte(b.ips[j].key), a.sets[0], b.sets[b.ips[j].code])
			j++
		default:
			emit([]byte(a.ips[i].key), a.sets[a.ips[i].code], b.sets[b.ips[j].code])
			i, j = i+1, j+1
		}
	}
	td, ta := diffRecords(a.txt, b.txt)
	return append(del, td...), append(add, ta...)
}

// nextSerial returns a serial above the current (and the saved) one: the
// Unix time when that is higher, else one more (RFC 1982 arithmetic).
func (e *Exporter) nextSerial() uint32 {
	var prev uint32
	have := false
	if e.cur != nil {
		prev, have = e.cur.serial, true
	} else if s, ok := e.loadSerial(); ok {
		prev, have = s, true
	}
	now := uint32(time.Now().Unix())
	if !have || serialLess(prev, now) {
		return now
	}
	return prev + 1
}

// serialLess compares serials with RFC 1982 arithmetic.
func serialLess(a, b uint32) bool { return a != b && int32(b-a) > 0 }

func (e *Exporter) loadSerial() (uint32, bool) {
	if e.cfg.SerialFile == "" {
		return 0, false
	}
	b, err := blocklist.ReadVerified(e.cfg.SerialFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, false
	case errors.Is(err, blocklist.ErrNoChecksum):
		// Written before checksums were recorded: use it, it only rises.
		e.log.Warn("rpz export serial file has no recorded SHA-256; using it", "file", e.cfg.SerialFile)
		b, err = os.ReadFile(e.cfg.SerialFile)
	case err != nil:
		e.log.Error("rpz export serial file is not the one written (its SHA-256 does not match); ignoring it, the serial comes from the clock", "file", e.cfg.SerialFile, "err", err)
		return 0, false
	}
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		e.log.Warn("ignoring unreadable rpz export serial file", "file", e.cfg.SerialFile, "err", err)
		return 0, false
	}
	return uint32(v), true
}

func (e *Exporter) saveSerial(serial uint32) {
	if e.cfg.SerialFile == "" {
		return
	}
	data := []byte(strconv.FormatUint(uint64(serial), 10) + "\n")
	if err := errors.Join(writeFileAtomic(e.cfg.SerialFile, data), blocklist.RecordChecksum(e.cfg.SerialFile, data)); err != nil {
		e.log.Error("cannot save rpz export serial; after a restart secondaries may ignore the zone until the clock passes it", "file", e.cfg.SerialFile, "err", err)
	}
}

// trimDeltas drops the oldest differences beyond the history bounds.
func (e *Exporter) trimDeltas(zoneSize int) {
	budget := max(zoneSize, minDeltaBudget)
	total := 0
	for _, d := range e.deltas {
		total += len(d.del) + len(d.add)
	}
	for len(e.deltas) > 0 && (len(e.deltas) > maxDeltas || total > budget) {
		total -= len(e.deltas[0].del) + len(e.deltas[0].add)
		e.deltas = e.deltas[1:]
	}
}

func (e *Exporter) soa(serial uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: e.apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: e.cfg.Build.TTL},
		Ns:      exportMName,
		Mbox:    exportRName,
		Serial:  serial,
		Refresh: exportRefresh,
		Retry:   exportRetry,
		Expire:  exportExpire,
		Minttl:  e.cfg.Build.TTL,
	}
}

// DefaultExportZonemd is ExportConfig.ZonemdSchemes' default: SIMPLE,
// which every ZONEMD verifier knows, and MERKLE3, which sinkhole
// secondaries check in time proportional to the change.
var DefaultExportZonemd = []uint8{ZonemdSchemeSimple, ZonemdSchemeMerkle3}

// schemes returns the ZONEMD schemes the export publishes (none with
// NoZonemd).
func (e *Exporter) schemes() []uint8 {
	switch {
	case e.cfg.NoZonemd:
		return nil
	case len(e.cfg.ZonemdSchemes) == 0:
		return DefaultExportZonemd
	}
	return e.cfg.ZonemdSchemes
}

// zonemdsOf computes the ZONEMD records of zone z with the given serial,
// one per scheme (none when the export publishes none). A scheme whose
// digest fails is left out, and said so.
func (e *Exporter) zonemdsOf(z *czone, serial uint32) []dns.RR {
	var out []dns.RR
	for _, scheme := range e.schemes() {
		var d []byte
		var err error
		switch scheme {
		case ZonemdSchemeMerkle3:
			if d, err = e.merkle3Of(z, serial); err != nil {
				e.m3 = nil // built again next time
			}
		default:
			d, err = e.exportDigest(z, serial)
		}
		if err != nil {
			e.log.Error("rpz export: cannot compute the zone's ZONEMD; the version goes out without it", "zone", e.name, "serial", serial,
				"scheme", ZonemdSchemeName(scheme), "err", err)
			continue
		}
		out = append(out, &dns.ZONEMD{
			Hdr:    dns.RR_Header{Name: e.apex, Rrtype: dns.TypeZONEMD, Class: dns.ClassINET, Ttl: e.cfg.Build.TTL},
			Serial: serial, Scheme: scheme, Hash: ZonemdHashSHA384, Digest: hex.EncodeToString(d),
		})
	}
	return out
}

// addZonemd adds a version's ZONEMD records to the transfer.
func (w *xfrWriter) addZonemd(mds []dns.RR) {
	for _, md := range mds {
		w.add(md)
	}
}

func (e *Exporter) ns() *dns.NS {
	return &dns.NS{Hdr: dns.RR_Header{Name: e.apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: e.cfg.Build.TTL}, Ns: exportMName}
}

// allowed reports whether a client may transfer and query the zone.
func (e *Exporter) allowed(from netip.AddrPort) bool {
	a := from.Addr().Unmap()
	for _, p := range e.cfg.AllowTransfer {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// inZoneWire reports whether a lower-cased wire-form name is the apex or
// below it.
func (e *Exporter) inZoneWire(name []byte) bool {
	for off := 0; off < len(name); off += 1 + int(name[off]) {
		if len(name)-off == len(e.wire) && string(name[off:]) == string(e.wire) {
			return true
		}
		if name[off] == 0 {
			break
		}
	}
	return false
}

// inZone reports whether a canonical name is the apex or below it.
func (e *Exporter) inZone(name string) bool {
	return name == e.name || strings.HasSuffix(name, "."+e.name)
}

// ServeTransfer answers an AXFR or IXFR request for the exported zone. It
// is a resolver.TransferHandler.
func (e *Exporter) ServeTransfer(ctx context.Context, _ []byte, m *dns.Msg, from netip.AddrPort, send func(*dns.Msg) error) error {
	q := m.Question[0]
	refuse := func(rcode int) error {
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		return send(r)
	}
	if !strings.EqualFold(q.Name, e.apex) || q.Qclass != dns.ClassINET {
		return refuse(dns.RcodeNotAuth)
	}
	if !e.allowed(from) {
		e.log.Warn("rpz zone transfer refused: client not in --rpz-allow-transfer", "client", from.Addr().String(), "zone", e.name)
		return refuse(dns.RcodeRefused)
	}
	e.mu.RLock()
	cur := e.cur
	var chain []delta
	kind := "AXFR"
	if q.Qtype == dns.TypeIXFR && cur != nil {
		kind = "IXFR"
		if len(m.Ns) == 1 {
			if soa, ok := m.Ns[0].(*dns.SOA); ok {
				chain = e.chainFrom(soa.Serial, cur.serial)
			}
		}
	}
	e.mu.RUnlock()
	if cur == nil {
		return refuse(dns.RcodeServerFailure) // no zone loaded yet
	}
	w := &xfrWriter{e: e, send: send, ctx: ctx, q: q}
	soa := e.soa(cur.serial)
	switch {
	case kind == "IXFR" && chain != nil && len(chain) == 0:
		// The client is up to date: the SOA alone (RFC 1995 section 2).
		w.add(soa)
	case kind == "IXFR" && chain != nil:
		w.add(soa)
		for _, d := range chain {
			w.add(e.soa(d.from))
			w.addZonemd(d.fromMD)
			w.addRecords(d.del)
			w.add(e.soa(d.to))
			w.addZonemd(d.toMD)
			w.addRecords(d.add)
		}
		w.add(soa)
	default:
		// AXFR, or IXFR from a serial too old to have differences for: the
		// whole zone in AXFR form (RFC 1995 section 4), in RFC 4034
		// canonical order but for the SOA, which goes first (RFC 5936): the
		// apex NS, TXT and ZONEMD, then the owners.
		w.add(soa)
		w.add(e.ns())
		for _, rr := range e.apexTXT(cur.zone) {
			w.add(rr)
		}
		w.addZonemd(cur.zonemds)
		cur.zone.eachOwner(func(key []byte, code uint32) bool {
			w.addOwner(key, cur.zone.set(code))
			return w.err == nil
		})
		w.add(soa)
		if kind == "IXFR" {
			kind = "IXFR (full)"
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	e.log.Info("rpz zone transferred", "zone", e.name, "type", kind, "serial", cur.serial, "client", from.Addr().String(), "records", w.n)
	return nil
}

// apexTXT returns the apex TXT records of z in canonical order (by their
// RDATA in wire form, where each string's length comes first).
func (e *Exporter) apexTXT(z *czone) []dns.RR {
	type txt struct {
		rr   dns.RR
		wire []byte
	}
	var out []txt
	for _, r := range z.txt {
		rr, err := r.rr(e.apex)
		if err != nil {
			continue
		}
		buf := make([]byte, dns.Len(rr)+16)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			continue
		}
		out = append(out, txt{rr, buf[len(e.wire)+10 : n]})
	}
	slices.SortFunc(out, func(a, b txt) int { return bytes.Compare(a.wire, b.wire) })
	rrs := make([]dns.RR, len(out))
	for i, t := range out {
		rrs[i] = t.rr
	}
	return rrs
}

// chainFrom returns the deltas leading from serial to cur: nil when there
// is no such chain, empty when serial is current.
func (e *Exporter) chainFrom(serial, cur uint32) []delta {
	if serial == cur {
		return []delta{}
	}
	for i, d := range e.deltas {
		if d.from == serial {
			return e.deltas[i:]
		}
	}
	return nil
}

// xfrWriter packs records into transfer messages of at most ~60 KB,
// one message at a time: a zone is streamed from its compact form, each
// message's records made (from slabs, with their owner names in one
// string) as it fills.
type xfrWriter struct {
	e    *Exporter
	send func(*dns.Msg) error
	ctx  context.Context
	q    dns.Question
	msg  *dns.Msg
	size int
	n    int
	err  error

	names      []byte    // owner names of the message's streamed records
	fixes      []nameFix // where they go
	owner      [2]int    // the current owner's name in names
	ownerValid bool      // ... is in this message's names
	cnames     []dns.CNAME
	as         []dns.A
	aaaas      []dns.AAAA
}

type nameFix struct {
	hdr        *dns.RR_Header
	start, end int
}

const xfrMessageBudget = 60000

// room makes sure the message has room for l more bytes.
func (w *xfrWriter) room(l int) {
	if w.msg != nil && w.size+l > xfrMessageBudget {
		w.err = w.flush()
	}
	if w.msg == nil {
		w.msg = &dns.Msg{}
		w.msg.Authoritative = true
		w.msg.Opcode = dns.OpcodeQuery
		w.msg.Question = []dns.Question{w.q}
		w.size = 12 + len(w.q.Name) + 6
	}
}

func (w *xfrWriter) add(rr dns.RR) {
	if w.err != nil {
		return
	}
	l := dns.Len(rr)
	w.room(l)
	if w.err != nil {
		return
	}
	w.msg.Answer = append(w.msg.Answer, rr)
	w.size += l
	w.n++
}

// addOwner adds the records of set at the owner of key.
func (w *xfrWriter) addOwner(key []byte, set *rset) {
	w.ownerValid = false
	for i, tmpl := range set.rrs {
		if w.err != nil {
			return
		}
		// The owner is compressed against the question (the apex) at
		// least: its own labels and a pointer.
		l := len(key) + 3 + len(set.tails[i])
		w.room(l)
		if w.err != nil {
			return
		}
		if !w.ownerValid {
			w.owner[0] = len(w.names)
			w.names = appendOwner(w.names, key)
			w.names = append(w.names, '.')
			w.names = append(w.names, w.e.apex...)
			w.owner[1] = len(w.names)
			w.ownerValid = true
		}
		rr := w.clone(tmpl)
		w.fixes = append(w.fixes, nameFix{hdr: rr.Header(), start: w.owner[0], end: w.owner[1]})
		w.msg.Answer = append(w.msg.Answer, rr)
		w.size += l
		w.n++
	}
}

// clone copies a record template: the common types from slabs (never
// reused, so a message kept by the caller stays whole).
func (w *xfrWriter) clone(tmpl dns.RR) dns.RR {
	const slab = 256
	switch t := tmpl.(type) {
	case *dns.CNAME:
		if len(w.cnames) == cap(w.cnames) {
			w.cnames = make([]dns.CNAME, 0, slab)
		}
		w.cnames = append(w.cnames, *t)
		return &w.cnames[len(w.cnames)-1]
	case *dns.A:
		if len(w.as) == cap(w.as) {
			w.as = make([]dns.A, 0, slab)
		}
		w.as = append(w.as, *t)
		return &w.as[len(w.as)-1]
	case *dns.AAAA:
		if len(w.aaaas) == cap(w.aaaas) {
			w.aaaas = make([]dns.AAAA, 0, slab)
		}
		w.aaaas = append(w.aaaas, *t)
		return &w.aaaas[len(w.aaaas)-1]
	}
	return dns.Copy(tmpl)
}

func (w *xfrWriter) addRecords(recs []record) {
	for _, r := range recs {
		rr, err := r.rr(w.e.apex)
		if err != nil {
			w.e.log.Error("rpz export: unwritable record skipped", "owner", r.owner, "rdata", r.rdata, "err", err)
			continue
		}
		w.add(rr)
	}
}

func (w *xfrWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	if w.msg == nil {
		return nil
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if len(w.fixes) > 0 {
		names := string(w.names)
		for _, f := range w.fixes {
			f.hdr.Name = names[f.start:f.end]
		}
		w.fixes, w.names = w.fixes[:0], w.names[:0]
	}
	w.ownerValid = false
	m := w.msg
	w.msg, w.size = nil, 0
	return w.send(m)
}

// Stage returns the export's chain stage: it answers queries for the
// exported zone (its SOA for refresh checks, NS, and the policy records)
// to the clients AllowTransfer admits, refuses them to others, and passes
// every other query on. It goes first in the chain: names of the zone get
// the zone's authoritative answer for every type, whatever the lists
// block, and are never cached.
func (e *Exporter) Stage() *ExportStage { return &ExportStage{e: e} }

// ExportStage is the export's chain stage (Exporter.Stage).
type ExportStage struct {
	e    *Exporter
	next query.Handler
}

// Link makes next the rest of the chain (query.Chain calls it).
func (s *ExportStage) Link(next query.Handler) { s.next = next }

// ServeDNS answers names of the zone and passes the others on.
func (s *ExportStage) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	if !s.e.inZone(req.Name) {
		return s.next.ServeDNS(ctx, req)
	}
	return s.e.answer(req), nil
}

// Offer declines names of the zone (the full path answers them) and
// passes every other name.
func (s *ExportStage) Offer(q *query.WireQuery, _ *query.Offered) query.Verdict {
	if s.e.inZoneWire(query.WireName(q.Key)) {
		return query.Decline
	}
	return query.Pass
}

// answer answers a query inside the zone authoritatively.
func (e *Exporter) answer(req *query.Request) *dns.Msg {
	if !e.allowed(req.Client) {
		return query.ErrorReply(req.Msg, dns.RcodeRefused)
	}
	e.mu.RLock()
	cur := e.cur
	e.mu.RUnlock()
	if cur == nil {
		return query.Reply(req.Msg, dns.RcodeServerFailure)
	}
	m := query.Reply(req.Msg, dns.RcodeSuccess)
	m.Authoritative, m.RecursionAvailable = true, false
	q := req.Msg.Question[0]
	soa := e.soa(cur.serial)
	if req.Name == e.name {
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = []dns.RR{soa}
		case dns.TypeNS:
			m.Answer = []dns.RR{e.ns()}
		case dns.TypeTXT:
			for _, r := range cur.zone.txt {
				if rr, err := r.rr(e.apex); err == nil {
					m.Answer = append(m.Answer, rr)
				}
			}
			if len(m.Answer) == 0 {
				m.Ns = []dns.RR{soa}
			}
		case dns.TypeZONEMD:
			if len(cur.zonemds) > 0 {
				m.Answer = slices.Clone(cur.zonemds)
			} else {
				m.Ns = []dns.RR{soa}
			}
		case dns.TypeANY:
			m.Answer = []dns.RR{soa, e.ns()}
			m.Answer = append(m.Answer, cur.zonemds...)
		default:
			m.Ns = []dns.RR{soa}
		}
		return m
	}
	owner := strings.TrimSuffix(req.Name, "."+e.name)
	code := cur.zone.ownerCode(appendKey(nil, owner))
	found := code != 0
	set := cur.zone.set(code)
	for i, tmpl := range set.rrs {
		rtype := set.recs[i].rtype
		if rtype != q.Qtype && q.Qtype != dns.TypeANY && rtype != dns.TypeCNAME {
			continue
		}
		rr := dns.Copy(tmpl)
		rr.Header().Name = q.Name
		m.Answer = append(m.Answer, rr)
	}
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa}
	}
	return m
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over it.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
