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
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Bounds on the timers a primary's SOA sets for its secondaries.
const (
	minRefresh = time.Second
	maxRefresh = 24 * time.Hour
	minRetry   = time.Second
	maxRetry   = time.Hour
	// noZoneRetryMax caps the backoff while no zone was ever transferred.
	noZoneRetryMax = 30 * time.Second
	// xfrTimeout bounds one message of a transfer and one SOA query.
	xfrTimeout = 5 * time.Second
)

// FeedConfig configures one RPZ feed: sinkhole as a secondary for a zone.
type FeedConfig struct {
	// Name names the feed; its zone is kept in Dir as Name.rpz.
	Name string
	// Zone is the RPZ zone's name.
	Zone string
	// Primary is the server to transfer from (and to accept NOTIFY from).
	Primary netip.AddrPort
	// Key, when set, signs transfers and SOA queries and lets a NOTIFY
	// signed with it in from any address.
	Key *TSIGKey
	// Dir holds the zone file, the one the list store loads.
	Dir string
	// RequireZonemd refuses versions of the zone without a ZONEMD record
	// (RFC 8976). A version whose ZONEMD does not match is refused
	// whether or not this is set.
	RequireZonemd bool
	// OnUpdate is called after a new version of the zone file is in place
	// (the caller reloads the lists); the status shows the new serial once
	// it returns. Unused when Store is set.
	OnUpdate func()
	// Store, when set, is the list store that loads Dir: an IXFR is
	// applied to it as a delta (the zone file follows in the background),
	// a full transfer writes the file and reloads it.
	Store FeedStore
	// WriteDelay is how long the zone file's rewrite after an IXFR waits,
	// so that the versions of a burst of changes are written once
	// (DefaultWriteDelay if 0; negative: at once). The lists in service
	// never wait for it; a restart reads the file and asks for the
	// differences since its serial; the last version is written when Run
	// ends.
	WriteDelay time.Duration
	// CompactMin is the fewest records taken out (an IXFR's removals and
	// changes leave each as a bit in the copy and a blank line in the zone
	// file, so that the other rules keep their lines) at which the copy
	// is rebuilt without them, once they are also a quarter of the live
	// records or more: the zone file is rewritten in canonical order and
	// the lists reloaded whole, as after a full transfer, but without one.
	// So a feed that churns keeps at most about 1.25 times its records.
	// DefaultCompactMin if 0.
	CompactMin int
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// DefaultWriteDelay is FeedConfig.WriteDelay's default. Each rewrite costs
// the whole zone (about 0.5 s of CPU at 1M names), whatever the IXFR.
const DefaultWriteDelay = 5 * time.Second

// DefaultCompactMin is FeedConfig.CompactMin's default.
const DefaultCompactMin = 4096

// FeedStore is what a secondary needs of the list store
// (*blocklist.Store).
type FeedStore interface {
	Reload(ctx context.Context, trigger string) (*blocklist.ReloadReport, error)
	ApplyFeed(ctx context.Context, d *blocklist.FeedDelta) (*blocklist.ReloadReport, error)
	NoteFeedFile(file, sha string)
	ForgetFeedFile(file string)
	FileName(dir, file string) string
	// OnReload registers a function run after every reload and delta.
	OnReload(fn func(*blocklist.Snapshot, *blocklist.ReloadReport))
}

// FeedStatus describes one feed for status output.
type FeedStatus struct {
	Name    string `json:"name"`
	Zone    string `json:"zone"`
	Primary string `json:"primary"`
	TSIG    string `json:"tsig,omitempty"` // key name
	File    string `json:"file"`
	// Serial of the zone being served; 0 with Loaded false when none is.
	Serial  uint32 `json:"serial"`
	Loaded  bool   `json:"loaded"`
	Records int    `json:"records"`
	// Removed is how many records the copy holds taken out (blank lines
	// in the zone file) until its next rebuild: a full transfer, or the
	// compaction that follows an IXFR once they reach FeedConfig.CompactMin
	// and a quarter of Records.
	Removed int `json:"removed"`
	// LastCompaction is when the copy was last rebuilt without them.
	LastCompaction time.Time `json:"last_compaction,omitzero"`
	// LastTransfer is when the zone last changed by transfer, of the type
	// in LastTransferType ("AXFR", "IXFR"); zero when the zone in service
	// came from disk at start.
	LastTransfer     time.Time `json:"last_transfer,omitzero"`
	LastTransferType string    `json:"last_transfer_type,omitempty"`
	// LastCheck is the last contact attempt with the primary, LastResult
	// its outcome: "transferred", "up-to-date" or "failed".
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	// NextCheck is when the SOA refresh (or retry) timer fires next.
	NextCheck time.Time `json:"next_check,omitzero"`
	// Zonemd is how the zone in service was checked: "verified" (its
	// ZONEMD matched), "absent" (the primary publishes none), or empty
	// for a zone read from disk at start.
	Zonemd string `json:"zonemd,omitempty"`
	// ZonemdScheme is the scheme of the ZONEMD that verified it: "MERKLE3"
	// (preferred when the zone has one: it costs what changed) or
	// "SIMPLE"; empty unless Zonemd is "verified".
	ZonemdScheme string `json:"zonemd_scheme,omitempty"`
	// Held, when set, is why the list store holds the zone file's newest
	// version (Serial) out of service: the shrink guard (--max-shrink) found
	// it drops too many rules. The rules of the last version it accepted
	// serve until "sinkhole reload --accept" (or a version that passes).
	Held string `json:"held,omitempty"`
}

// Secondary keeps a copy of one RPZ zone from its primary: at start the
// zone file it kept (read once, streamed, its SHA-256 checked) and an
// IXFR from that file's serial, or an AXFR without one; then, on each SOA
// refresh and on NOTIFY, an SOA check and IXFR (AXFR when the primary
// cannot give differences). A full transfer is written
// atomically to Dir/Name.rpz, where the list store loads it; a version
// that does not load is not kept, so the last good zone stays on disk for
// a cold start. With a Store, an IXFR is applied to the lists in service
// as a delta and the file is rewritten in the background.
type Secondary struct {
	cfg  FeedConfig
	apex string
	path string
	file string // the store's name of the zone file
	log  *slog.Logger
	kick chan struct{}

	zone *zoneCopy // owned by the Run goroutine

	// The background writer of the zone file.
	writeMu  sync.Mutex // held while the file is written
	pendMu   sync.Mutex
	pending  *zoneView // the newest version not yet written
	pendHdr  string
	writeReq chan struct{}
	writing  sync.WaitGroup

	mu sync.Mutex
	st FeedStatus
}

// NewSecondary returns a secondary for cfg; Run starts it.
func NewSecondary(cfg FeedConfig) (*Secondary, error) {
	name, err := blocklist.NormalizeName(cfg.Zone)
	if err != nil {
		return nil, fmt.Errorf("feed %s: zone %q: %w", cfg.Name, cfg.Zone, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WriteDelay == 0 {
		cfg.WriteDelay = DefaultWriteDelay
	}
	if cfg.CompactMin <= 0 {
		cfg.CompactMin = DefaultCompactMin
	}
	s := &Secondary{
		cfg:      cfg,
		apex:     dns.Fqdn(name),
		path:     filepath.Join(cfg.Dir, cfg.Name+".rpz"),
		file:     cfg.Name + ".rpz",
		log:      cfg.Logger.With("feed", cfg.Name, "zone", name),
		kick:     make(chan struct{}, 1),
		writeReq: make(chan struct{}, 1),
	}
	if cfg.Store != nil {
		s.file = cfg.Store.FileName(cfg.Dir, cfg.Name+".rpz")
		cfg.Store.OnReload(s.storeReloaded)
	}
	s.st = FeedStatus{Name: cfg.Name, Zone: name, Primary: cfg.Primary.String(), File: s.path}
	if cfg.Key != nil {
		s.st.TSIG = cfg.Key.Name
	}
	return s, nil
}

// Status returns the feed's state.
func (s *Secondary) Status() FeedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Notified asks for an SOA check now (a NOTIFY arrived).
func (s *Secondary) Notified() {
	s.log.Debug("rpz feed: NOTIFY queued a check")
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run keeps the zone up to date until ctx ends. The zone file's last
// version is written before it returns.
func (s *Secondary) Run(ctx context.Context) {
	s.writing.Add(1)
	go s.writer(ctx)
	defer s.writing.Wait()
	if z, err := readZoneFile(s.path, s.apex); err == nil {
		s.zone = z
		s.setZone(z, "", time.Time{})
		s.log.Info("rpz feed: serving the zone kept on disk until the primary answers", "serial", z.soa.Serial, "file", s.path)
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Error("rpz feed: zone on disk unusable (not served); transferring it again", "file", s.path, "err", err)
	}
	// With the zone file's copy, the first check asks for the differences
	// since its serial (IXFR), as any later one; AXFR only without it.
	full := s.zone == nil
	backoff := minRetry
	var wait time.Duration
	for {
		s.mu.Lock()
		s.st.NextCheck = time.Now().Add(wait)
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.kick:
			t.Stop()
		}
		err := s.refresh(ctx, full)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			full = false
			backoff = minRetry
			wait = s.timer(func(soa *dns.SOA) uint32 { return soa.Refresh }, minRefresh, maxRefresh, minRefresh)
		default:
			s.log.Warn("rpz feed: refresh failed; keeping the zone in service", "primary", s.cfg.Primary.String(), "err", err)
			if s.zone == nil {
				wait, backoff = backoff, min(2*backoff, noZoneRetryMax)
			} else {
				wait = s.timer(func(soa *dns.SOA) uint32 { return soa.Retry }, minRetry, maxRetry, minRetry)
			}
		}
	}
}

// timer reads a timer from the SOA, clamped; def without a zone.
func (s *Secondary) timer(field func(*dns.SOA) uint32, lo, hi, def time.Duration) time.Duration {
	if s.zone == nil {
		return def
	}
	d := time.Duration(field(s.zone.soa)) * time.Second
	return min(max(d, lo), hi)
}

// refresh checks the primary and transfers what changed.
func (s *Secondary) refresh(ctx context.Context, full bool) error {
	var (
		next *zoneCopy
		diff *ixfrDiff
		kind string
		err  error
	)
	if full || s.zone == nil {
		kind = "AXFR"
		next, err = s.axfr(ctx)
	} else {
		var serial uint32
		serial, err = s.primarySerial(ctx)
		if err == nil && !serialLess(s.zone.soa.Serial, serial) {
			if verr := blocklist.VerifyCopy(s.path); verr == nil || s.writePending() {
				s.checked("up-to-date", nil)
				return nil
			} else {
				// The serial is current but the copy on disk is not the
				// one written: never trust it, transfer it whole.
				s.log.Error("rpz feed: zone copy on disk does not match what was written; transferring it again", "file", s.path, "err", verr)
				full = true
			}
		}
		if full {
			kind = "AXFR"
			next, err = s.axfr(ctx)
		} else if err == nil {
			kind = "IXFR"
			next, diff, err = s.ixfr(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Info("rpz feed: IXFR failed; trying AXFR", "err", err)
				kind = "AXFR"
				next, err = s.axfr(ctx)
			}
		}
	}
	if err != nil {
		s.checked("failed", err)
		return err
	}
	if diff != nil {
		err := s.applyIXFR(ctx, diff)
		if err == nil {
			s.compactIfWorth(ctx)
			s.buildMerkle3After(s.zone)
			return nil
		}
		var bad *badIXFRError
		if !errors.As(err, &bad) || ctx.Err() != nil {
			return err
		}
		// Differences we cannot apply to our copy: take the whole zone.
		s.log.Info("rpz feed: IXFR does not apply; trying AXFR", "err", err)
		kind, full = "AXFR", true
		if next, err = s.axfr(ctx); err != nil {
			s.checked("failed", err)
			return err
		}
	}
	if next == nil || (s.zone != nil && !serialLess(s.zone.soa.Serial, next.soa.Serial) && !full) {
		s.checked("up-to-date", nil)
		return nil
	}
	if s.zone != nil && next.soa.Serial == s.zone.soa.Serial && next.live == s.zone.live && next.sum == s.zone.sum && blocklist.VerifyCopy(s.path) == nil {
		// The same zone: keep the copy whose record numbers the file has.
		s.zone.soa = next.soa
		s.setZone(s.zone, kind, time.Now())
		s.checked("up-to-date", nil)
		return nil
	}
	if err := s.installFull(ctx, next, kind); err != nil {
		s.checked("failed", err)
		return err
	}
	s.buildMerkle3After(next)
	return nil
}

// buildMerkle3After builds the MERKLE3 state of z, the version in
// service, when its zone carries a MERKLE3 ZONEMD and the check that let
// it in used SIMPLE (a full transfer, or a change after the state was
// dropped): the version is served first (SIMPLE is one pass, the build
// hashes every RRset, several times the CPU), and the next IXFR then
// costs what it changes. It runs on the refresh goroutine, so a NOTIFY
// meanwhile waits for it, never a query. A MERKLE3 digest that differs
// from the record is logged; the version stays (RFC 8976 section 4: one
// matching ZONEMD verifies the zone), and the next IXFR is checked
// against MERKLE3 first, SIMPLE after.
func (s *Secondary) buildMerkle3After(z *zoneCopy) {
	alg, ok := z.merkle3Wanted()
	if !ok {
		return
	}
	// The build runs beside the lists this version just loaded: first hand
	// the transfer's garbage back (the records as received, the zone
	// file's buffers), and the build's own after it, so that neither
	// stacks on the other in the secondary's resident memory (as the
	// export does after a rebuild).
	big := z.live >= releaseRecords
	if big {
		debug.FreeOSMemory()
	}
	// The version is already in service, so the build trades CPU for
	// memory: it keeps none of pass 1's leaves (24 MB at 2M RRsets) and
	// hashes them again in pass 2 (about 0.25 s more CPU), since its peak
	// is on top of the lists the version loaded.
	keep := z.m3Keep
	if keep == 0 {
		z.m3Keep = -1
	}
	start := time.Now()
	d, err := z.merkle3(alg)
	z.m3Keep = keep
	if big {
		debug.FreeOSMemory()
	}
	if err != nil {
		s.log.Warn("rpz feed: MERKLE3 state not built", "serial", z.soa.Serial, "err", err)
		return
	}
	mds, _ := z.zonemds()
	for _, md := range mds {
		if md.Scheme == ZonemdSchemeMerkle3 && md.Hash == alg && !strings.EqualFold(md.Digest, hex.EncodeToString(d)) {
			s.log.Warn("rpz feed: the zone's MERKLE3 ZONEMD does not match its records (its SIMPLE one did)", "serial", z.soa.Serial,
				"zonemd", short(md.Digest), "computed", short(hex.EncodeToString(d)))
		}
	}
	s.log.Debug("rpz feed: MERKLE3 state built", "serial", z.soa.Serial, "took", time.Since(start).Round(time.Millisecond))
}

func (s *Secondary) setZone(z *zoneCopy, kind string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Serial, s.st.Loaded, s.st.Records, s.st.Removed = z.soa.Serial, true, z.live, z.records()-z.live
	if kind != "" {
		s.st.LastTransfer, s.st.LastTransferType = at, kind
	}
}

func (s *Secondary) checked(result string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.LastCheck, s.st.LastResult, s.st.LastError = time.Now(), result, ""
	if err != nil {
		s.st.LastError = err.Error()
	}
}

// primarySerial asks the primary for the zone's SOA: over UDP with a
// doubling timeout (a lost datagram costs little), over TCP when the
// answer is truncated or UDP gets none.
func (s *Secondary) primarySerial(ctx context.Context) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(s.apex, dns.TypeSOA)
	s.cfg.Key.sign(m)
	exchange := func(proto string, timeout time.Duration) (*dns.Msg, error) {
		c := &dns.Client{Net: proto, Timeout: timeout, TsigSecret: s.cfg.Key.secrets()}
		r, _, err := c.ExchangeContext(ctx, m, s.cfg.Primary.String())
		return r, err
	}
	var (
		r   *dns.Msg
		err error
	)
	for _, timeout := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if r, err = exchange("udp", timeout); err == nil || ctx.Err() != nil {
			break
		}
		s.log.Debug("rpz feed: SOA query over UDP failed; retrying", "timeout", timeout, "err", err)
	}
	if (err != nil && ctx.Err() == nil) || (err == nil && r.Truncated) {
		r, err = exchange("tcp", xfrTimeout)
	}
	if err != nil {
		return 0, fmt.Errorf("SOA query: %w", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("SOA query: %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, s.apex) {
			return soa.Serial, nil
		}
	}
	return 0, errors.New("SOA query: no SOA in the answer")
}

// transfer runs one AXFR or IXFR and hands every record to fn as it
// arrives (nothing is collected here); an error from fn ends it.
func (s *Secondary) transfer(ctx context.Context, m *dns.Msg, fn func(dns.RR) error) error {
	s.cfg.Key.sign(m)
	tr := &dns.Transfer{DialTimeout: xfrTimeout, ReadTimeout: xfrTimeout, WriteTimeout: xfrTimeout, TsigSecret: s.cfg.Key.secrets()}
	ch, err := tr.In(m, s.cfg.Primary.String())
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { tr.Close() })
	defer stop()
	var ferr error
	for env := range ch {
		if ferr != nil {
			continue // drain
		}
		if env.Error != nil {
			ferr = env.Error
			tr.Close()
			continue
		}
		for _, rr := range env.RR {
			if ferr = fn(rr); ferr != nil {
				tr.Close()
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ferr
}

// axfrReader builds a zone copy from an AXFR-form answer (SOA, records,
// SOA), record by record.
type axfrReader struct {
	s       *Secondary
	z       *zoneCopy
	ended   bool
	scratch []byte
}

func (a *axfrReader) add(rr dns.RR) error {
	soa, isSOA := rr.(*dns.SOA)
	switch {
	case a.ended:
		return fmt.Errorf("record after the closing SOA: %s", rr)
	case a.z == nil:
		if !isSOA || !strings.EqualFold(soa.Hdr.Name, a.s.apex) {
			return errors.New("transfer does not start with the zone's SOA")
		}
		a.z = newZoneCopy(a.s.apex, soa)
		return nil
	case isSOA:
		if !strings.EqualFold(soa.Hdr.Name, a.s.apex) {
			return fmt.Errorf("unexpected SOA inside the transfer: %s", rr)
		}
		a.ended = true
		return nil
	}
	var err error
	if a.scratch, err = a.z.encode(rr, a.scratch); err != nil {
		return err
	}
	if !a.z.extendsOrder(a.scratch) {
		if i, dup := a.z.find(a.scratch); dup {
			a.z.kill(i, true) // the same record again: the last TTL counts
		}
	}
	a.z.add(a.scratch)
	return nil
}

func (a *axfrReader) finish() (*zoneCopy, error) {
	if a.z == nil {
		return nil, errors.New("empty transfer")
	}
	if !a.ended {
		return nil, errors.New("transfer ended before the closing SOA")
	}
	return a.z, nil
}

func (s *Secondary) axfr(ctx context.Context) (*zoneCopy, error) {
	m := new(dns.Msg)
	m.SetAxfr(s.apex)
	a := &axfrReader{s: s}
	if err := s.transfer(ctx, m, a.add); err != nil {
		return nil, fmt.Errorf("AXFR: %w", err)
	}
	z, err := a.finish()
	if err != nil {
		return nil, fmt.Errorf("AXFR: %w", err)
	}
	z.canonicalLayout()
	return z, nil
}

// ixfrDiff is an IXFR's difference sequences (RFC 1995): SOA(old)
// deletions... SOA(new) additions..., for each step; they are small.
type ixfrDiff struct {
	final *dns.SOA
	rrs   []dns.RR // from the first old SOA to the last new one
}

// ixfr asks for the differences since our serial (RFC 1995). A primary
// may answer with the full zone, which is read as a transfer (next).
func (s *Secondary) ixfr(ctx context.Context) (next *zoneCopy, diff *ixfrDiff, err error) {
	m := new(dns.Msg)
	m.SetIxfr(s.apex, s.zone.soa.Serial, s.zone.soa.Ns, s.zone.soa.Mbox)
	var (
		first *dns.SOA
		n     int
		full  *axfrReader
		d     *ixfrDiff
	)
	err = s.transfer(ctx, m, func(rr dns.RR) error {
		n++
		switch {
		case n == 1:
			soa, ok := rr.(*dns.SOA)
			if !ok || !strings.EqualFold(soa.Hdr.Name, s.apex) {
				return errors.New("transfer does not start with the zone's SOA")
			}
			first = soa
			return nil
		case n == 2:
			if _, ok := rr.(*dns.SOA); !ok {
				full = &axfrReader{s: s} // AXFR-style answer
				if err := full.add(first); err != nil {
					return err
				}
				return full.add(rr)
			}
			d = &ixfrDiff{final: first}
		case full != nil:
			return full.add(rr)
		}
		d.rrs = append(d.rrs, rr)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("IXFR: %w", err)
	}
	switch {
	case first == nil:
		return nil, nil, errors.New("IXFR: empty transfer")
	case full != nil:
		z, err := full.finish()
		if err != nil {
			return nil, nil, fmt.Errorf("IXFR: %w", err)
		}
		z.canonicalLayout()
		return z, nil, nil
	case d == nil:
		return nil, nil, nil // up to date
	}
	return nil, d, nil
}

// badIXFRError is an IXFR whose differences do not apply to the copy
// (another starting serial, a broken sequence): the zone is transferred
// whole instead.
type badIXFRError struct{ err error }

func (e *badIXFRError) Error() string { return e.err.Error() }
func (e *badIXFRError) Unwrap() error { return e.err }

// ownerChange is one owner's records before and after an IXFR.
type ownerChange struct {
	owner  []byte   // relative wire form
	oldIdx []int    // its records in the copy before
	cur    [][]byte // its records after (encoded)
}

// applyIXFR applies difference sequences: to the copy (undone if the
// version is refused), then to the lists in service as a delta, or, when
// the store cannot take it as one, by writing the file and reloading it.
func (s *Secondary) applyIXFR(ctx context.Context, d *ixfrDiff) error {
	z := s.zone
	changes := map[string]*ownerChange{}
	var order []*ownerChange
	get := func(owner []byte) *ownerChange {
		if c := changes[string(owner)]; c != nil {
			return c
		}
		c := &ownerChange{owner: slices.Clone(owner)}
		z.owner(owner, func(i int, r []byte) {
			c.oldIdx = append(c.oldIdx, i)
			c.cur = append(c.cur, slices.Clone(r))
		})
		changes[string(owner)] = c
		order = append(order, c)
		return c
	}
	serial := z.soa.Serial
	newSOA := z.soa
	rrs := d.rrs
	i := 0
	var scratch []byte
	for i < len(rrs)-1 {
		old, ok := rrs[i].(*dns.SOA)
		if !ok {
			return &badIXFRError{fmt.Errorf("IXFR: want the SOA of a difference sequence, got %s", rrs[i])}
		}
		if old.Serial != serial {
			return &badIXFRError{fmt.Errorf("IXFR: difference from serial %d, but we hold %d", old.Serial, serial)}
		}
		i++
		for ; i < len(rrs) && rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			r, err := z.encode(rrs[i], scratch[:0])
			if err != nil {
				return &badIXFRError{fmt.Errorf("IXFR: %w", err)}
			}
			c := get(recOwner(r))
			c.cur = slices.DeleteFunc(c.cur, func(x []byte) bool { return sameKey(x, r) })
		}
		if i >= len(rrs) {
			return &badIXFRError{errors.New("IXFR: difference sequence without its new SOA")}
		}
		newSOA = rrs[i].(*dns.SOA)
		serial = newSOA.Serial
		i++
		for ; i < len(rrs) && rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			r, err := z.encode(rrs[i], nil)
			if err != nil {
				return s.failed(fmt.Errorf("IXFR: %w", err))
			}
			c := get(recOwner(r))
			c.cur = slices.DeleteFunc(c.cur, func(x []byte) bool { return sameKey(x, r) })
			c.cur = append(c.cur, r)
		}
	}
	if last, ok := rrs[len(rrs)-1].(*dns.SOA); !ok || last.Serial != d.final.Serial || serial != d.final.Serial {
		return &badIXFRError{errors.New("IXFR: differences do not end at the primary's serial")}
	}
	// Apply to the copy, remembering how to undo it.
	u := z.mark()
	oldSOA := z.soa
	z.soa = newSOA
	var killed []int
	newIdx := make([][]int, len(order))
	for k, c := range order {
		for _, i := range c.oldIdx {
			if !slices.ContainsFunc(c.cur, func(x []byte) bool { return bytes.Equal(x, z.rec(i)) }) {
				z.kill(i, true)
				killed = append(killed, i)
			} else {
				newIdx[k] = append(newIdx[k], i)
			}
		}
		for _, r := range c.cur {
			if !slices.ContainsFunc(c.oldIdx, func(i int) bool { return bytes.Equal(r, z.rec(i)) }) {
				newIdx[k] = append(newIdx[k], z.add(r))
			}
		}
	}
	undo := func() {
		z.soa = oldSOA
		z.undo(u, killed)
	}
	if err := s.checkZonemd(z); err != nil {
		undo()
		return s.failed(err)
	}
	if s.cfg.Store == nil {
		return s.installIXFRFile(ctx, undo)
	}
	fd := &blocklist.FeedDelta{File: s.file, Apex: strings.ToLower(s.apex), Trigger: fmt.Sprintf("rpz-feed %s IXFR %d", s.cfg.Name, newSOA.Serial)}
	for k, c := range order {
		if len(c.owner) == 0 && sameApexTXT(z, c.oldIdx, newIdx[k]) {
			continue // SOA, NS, ZONEMD: zone data, no rules
		}
		name := string(appendWireName(nil, c.owner)) + strings.ToLower(s.apex)
		o := blocklist.FeedOwner{Name: name}
		for _, i := range c.oldIdx {
			rr, err := z.rr(z.at(i))
			if err != nil {
				undo()
				return s.failed(err)
			}
			o.RRs = append(o.RRs, rr)
		}
		if len(c.oldIdx) > 0 {
			o.Line = z.minLine(c.oldIdx)
		}
		n := blocklist.FeedOwner{Name: name}
		for _, i := range newIdx[k] {
			rr, err := z.rr(z.at(i))
			if err != nil {
				undo()
				return s.failed(err)
			}
			n.RRs = append(n.RRs, rr)
		}
		if len(newIdx[k]) > 0 {
			n.Line = z.minLine(newIdx[k])
		}
		fd.Old, fd.New = append(fd.Old, o), append(fd.New, n)
	}
	_, err := s.cfg.Store.ApplyFeed(ctx, fd)
	var refused *blocklist.FeedRefusedError
	switch {
	case errors.As(err, &refused):
		undo()
		return s.failed(fmt.Errorf("serial %d does not load; keeping serial %d: %w", newSOA.Serial, oldSOA.Serial, err))
	case errors.Is(err, blocklist.ErrNotDelta):
		return s.installIXFRFile(ctx, undo)
	case err != nil:
		undo()
		return s.failed(err)
	}
	s.log.Info("rpz feed: zone transferred", "type", "IXFR", "serial", newSOA.Serial, "previous_serial", oldSOA.Serial,
		"records", z.live, "changed_owners", len(order), "applied", "delta")
	s.setZone(z, "IXFR", time.Now())
	s.checked("transferred", nil)
	s.scheduleWrite(z)
	return nil
}

// sameApexTXT reports whether the apex's TXT records (the zone's
// directives, the only apex records that make rules) are the same before
// and after.
func sameApexTXT(z *zoneCopy, before, after []int) bool {
	txt := func(idx []int) []string {
		var out []string
		for _, i := range idx {
			if r := z.rec(i); recType(r) == dns.TypeTXT {
				out = append(out, string(r[1:]))
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(txt(before), txt(after))
}

// compactIfWorth rebuilds the copy without the records taken out once
// they reach CompactMin and a quarter of the live ones (see
// FeedConfig.CompactMin). The zone stays the same version: the rebuilt
// copy is written as the zone file and the lists reloaded whole, as after
// a full transfer. A version the store holds out of service (the shrink
// guard) is left as it is; so is the copy when the rewrite fails.
func (s *Secondary) compactIfWorth(ctx context.Context) {
	z := s.zone
	removed := z.records() - z.live
	if removed < s.cfg.CompactMin || removed*4 < z.live || s.Status().Held != "" {
		return
	}
	start := time.Now()
	c := z.compacted()
	if err := s.writeAndReload(ctx, c, nil); err != nil {
		s.log.Error("rpz feed: rebuilding the zone copy without its removed records failed; keeping the copy", "err", err)
		return
	}
	s.zone = c
	s.setZone(c, "", time.Time{})
	s.mu.Lock()
	s.st.LastCompaction = time.Now()
	s.mu.Unlock()
	s.log.Info("rpz feed: zone copy rebuilt without its removed records", "serial", c.soa.Serial, "records", c.live,
		"removed", removed, "took", time.Since(start).Round(time.Millisecond))
}

// installIXFRFile puts a version the store could not take as a delta in
// service the full way: the file written now, then reloaded.
func (s *Secondary) installIXFRFile(ctx context.Context, undo func()) error {
	z := s.zone
	if err := s.writeAndReload(ctx, z, nil); err != nil {
		undo()
		return s.failed(err)
	}
	s.log.Info("rpz feed: zone transferred", "type", "IXFR", "serial", z.soa.Serial, "records", z.live, "applied", "reload")
	s.setZone(z, "IXFR", time.Now())
	s.checked("transferred", nil)
	return nil
}

func (s *Secondary) failed(err error) error {
	s.checked("failed", err)
	return err
}

// installFull puts a fully transferred version in service. Its ZONEMD is
// checked while the zone file is written (each is a pass over the copy,
// on its own core); the file replaces the one on disk only once the
// digest matched, so a refused version never reaches the disk or the
// store.
func (s *Secondary) installFull(ctx context.Context, z *zoneCopy, kind string) error {
	prev := s.zone
	if err := s.writeAndReload(ctx, z, func() error { return s.checkZonemd(z) }); err != nil {
		return err
	}
	s.zone = z
	p := uint32(0)
	if prev != nil {
		p = prev.soa.Serial
	}
	s.log.Info("rpz feed: zone transferred", "type", kind, "serial", z.soa.Serial, "previous_serial", p, "records", z.live)
	s.setZone(z, kind, time.Now())
	s.checked("transferred", nil)
	return nil
}

// writeAndReload writes version z of the zone file now (superseding a
// background write) and reloads the lists. A version the store does not
// load is taken back: the file before it is put back on disk. verify, if
// not nil, runs beside the write (it may read z, and change what only a
// digest uses); its error refuses the version before the written file
// replaces the one on disk.
func (s *Secondary) writeAndReload(ctx context.Context, z *zoneCopy, verify func() error) error {
	s.pendMu.Lock()
	s.pending = nil
	s.pendMu.Unlock()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	view := z.view()
	verified := func() error { return nil }
	if verify != nil {
		done := make(chan error, 1)
		go func() { done <- verify() }()
		var once sync.Once
		var verr error
		verified = func() error {
			once.Do(func() { verr = <-done })
			return verr
		}
		// Every way out waits for verify: it must not outlive the call.
		defer verified()
	}
	var check func(string) error
	if s.cfg.Store == nil {
		check = func(tmp string) error {
			if err := verified(); err != nil {
				return err
			}
			if _, problems := blocklist.CheckFile(tmp, 0); len(problems) > 0 {
				for i, e := range problems {
					cp := *e
					cp.File = filepath.Base(s.path) // not the temporary name
					problems[i] = &cp
				}
				return s.doesNotLoad(z, problems)
			}
			return nil
		}
	} else {
		check = func(string) error {
			if err := verified(); err != nil {
				return err
			}
			s.cfg.Store.ForgetFeedFile(s.file)
			return nil
		}
	}
	// The version on disk, to put back if the new one does not load.
	keep := filepath.Join(s.cfg.Dir, "."+s.cfg.Name+".rpz.prev")
	os.Remove(keep)
	kept := os.Link(s.path, keep) == nil
	defer os.Remove(keep)
	_, err := writeZoneFile(s.path, view, stateHeader(s.cfg.Name, s.apex, s.cfg.Primary.String(), z.soa.Serial), check, nil)
	if verr := verified(); verr != nil {
		return verr // the refusal, whatever the write did
	}
	if err != nil {
		return fmt.Errorf("write zone: %w", err)
	}
	if s.cfg.Store == nil {
		if s.cfg.OnUpdate != nil {
			s.cfg.OnUpdate()
		}
		return nil
	}
	rep, err := s.cfg.Store.Reload(ctx, "rpz-feed "+s.cfg.Name)
	if err != nil {
		return err
	}
	for _, fc := range rep.Files {
		if fc.Name != s.file {
			continue
		}
		if fc.Change != blocklist.ChangeFailed {
			continue
		}
		if kept {
			if sha, herr := blocklist.HashFile(keep); herr == nil {
				if rerr := blocklist.ReplaceVerified(keep, s.path, sha); rerr != nil {
					s.log.Error("rpz feed: could not put the previous zone file back", "file", s.path, "err", rerr)
				}
			}
		} else {
			os.Remove(s.path)
			os.Remove(blocklist.ChecksumPath(s.path))
		}
		return s.doesNotLoad(z, fc.Errors)
	}
	return nil
}

// storeReloaded follows what the list store does with the zone file (it
// runs after every reload and delta): whether it holds the newest version
// (the shrink guard), logged when that starts and ends.
func (s *Secondary) storeReloaded(_ *blocklist.Snapshot, rep *blocklist.ReloadReport) {
	for _, fc := range rep.Files {
		if fc.Name != s.file {
			continue
		}
		reason := ""
		if fc.Withheld != nil && fc.Withheld.State == blocklist.StateHeld {
			reason = fc.Withheld.Reason
		}
		s.mu.Lock()
		was := s.st.Held
		s.st.Held = reason
		s.mu.Unlock()
		switch {
		case reason != "" && was == "":
			s.log.Error("rpz feed: the list store holds the zone's new version (shrink guard); the rules of the last version it accepted stay in service until \"sinkhole reload --accept\"",
				"reason", reason, "rules_in_service", fc.Rules, "trigger", rep.Trigger)
		case reason == "" && was != "":
			s.log.Info("rpz feed: the zone file's version is in service again", "rules", fc.Rules, "trigger", rep.Trigger)
		}
	}
}

func (s *Secondary) doesNotLoad(z *zoneCopy, problems []*blocklist.LineError) error {
	msgs := make([]string, 0, 3)
	for _, e := range problems[:min(len(problems), 3)] {
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("serial %d does not load; keeping serial %s: %s", z.soa.Serial, s.servingSerial(), strings.Join(msgs, "; "))
}

// scheduleWrite asks the writer to write version z of the zone file (the
// newest asked for is written; versions in between are skipped).
func (s *Secondary) scheduleWrite(z *zoneCopy) {
	s.pendMu.Lock()
	s.pending = z.view()
	s.pendHdr = stateHeader(s.cfg.Name, s.apex, s.cfg.Primary.String(), z.soa.Serial)
	s.pendMu.Unlock()
	select {
	case s.writeReq <- struct{}{}:
	default:
	}
}

func (s *Secondary) writePending() bool {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	return s.pending != nil
}

// writer writes the zone file in the background after deltas, until ctx
// ends (then the last version asked for is written). A write waits
// WriteDelay after the first version asked for, so that the versions that
// follow within it are written once.
func (s *Secondary) writer(ctx context.Context) {
	defer s.writing.Done()
	for {
		select {
		case <-s.writeReq:
		case <-ctx.Done():
			s.writeOne()
			return
		}
		if d := s.cfg.WriteDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				s.writeOne()
				return
			}
		}
		s.writeOne()
	}
}

func (s *Secondary) writeOne() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.pendMu.Lock()
	v, hdr := s.pending, s.pendHdr
	s.pendMu.Unlock()
	if v == nil {
		return
	}
	start := time.Now()
	note := func(sha string) { s.cfg.Store.NoteFeedFile(s.file, sha) }
	_, err := writeZoneFile(s.path, v, hdr, nil, note)
	s.pendMu.Lock()
	if s.pending == v {
		s.pending = nil
	}
	s.pendMu.Unlock()
	if err != nil {
		s.log.Error("rpz feed: writing the zone file failed; the lists in service are not affected, a restart transfers the zone again", "file", s.path, "err", err)
		return
	}
	s.log.Debug("rpz feed: zone file written", "file", s.path, "serial", v.z.soa.Serial, "took", time.Since(start))
}

// checkZonemd verifies a new version against its ZONEMD (RFC 8976).
func (s *Secondary) checkZonemd(z *zoneCopy) error {
	scheme, err := z.verifyZonemd()
	result, name := "verified", ZonemdSchemeName(scheme)
	switch {
	case errors.Is(err, ErrNoZonemd) && s.cfg.RequireZonemd:
		return fmt.Errorf("serial %d refused: %w, and --rpz-require-zonemd is set for this feed; keeping serial %s", z.soa.Serial, err, s.servingSerial())
	case errors.Is(err, ErrNoZonemd):
		result, name = "absent", ""
	case err != nil:
		return fmt.Errorf("serial %d refused: %w; keeping serial %s", z.soa.Serial, err, s.servingSerial())
	}
	s.mu.Lock()
	s.st.Zonemd, s.st.ZonemdScheme = result, name
	s.mu.Unlock()
	return nil
}

func (s *Secondary) servingSerial() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.st.Loaded {
		return "none"
	}
	return fmt.Sprint(s.st.Serial)
}
