package rpz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
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
	// it returns.
	OnUpdate func()
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
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
}

// zoneCopy is a secondary's copy of the zone.
type zoneCopy struct {
	soa *dns.SOA
	rrs map[string]dns.RR // by rrKey, SOA excluded
}

// rrKey identifies a record regardless of TTL and name case, as IXFR
// deletions name them.
func rrKey(rr dns.RR) string {
	h := rr.Header()
	return strings.ToLower(h.Name) + " " + dns.ClassToString[h.Class] + " " + dns.TypeToString[h.Rrtype] + " " + rdataOf(rr)
}

func (z *zoneCopy) clone() *zoneCopy {
	c := &zoneCopy{soa: z.soa, rrs: make(map[string]dns.RR, len(z.rrs))}
	for k, v := range z.rrs {
		c.rrs[k] = v
	}
	return c
}

// Secondary keeps a copy of one RPZ zone from its primary: AXFR at start,
// then, on each SOA refresh and on NOTIFY, an SOA check and IXFR (AXFR
// when the primary cannot give differences). Every new version is checked
// like a list file and written atomically to Dir/Name.rpz, where the list
// store loads it; a version that does not load is not written, so the last
// good zone stays on disk for a cold start.
type Secondary struct {
	cfg  FeedConfig
	apex string
	path string
	log  *slog.Logger
	kick chan struct{}

	zone *zoneCopy // owned by the Run goroutine

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
	s := &Secondary{
		cfg:  cfg,
		apex: dns.Fqdn(name),
		path: filepath.Join(cfg.Dir, cfg.Name+".rpz"),
		log:  cfg.Logger.With("feed", cfg.Name, "zone", name),
		kick: make(chan struct{}, 1),
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

// Run keeps the zone up to date until ctx ends.
func (s *Secondary) Run(ctx context.Context) {
	if z, err := readZoneFile(s.path, s.apex); err == nil {
		s.zone = z
		s.setZone(z, "", time.Time{})
		s.log.Info("rpz feed: serving the zone kept on disk until the primary answers", "serial", z.soa.Serial, "file", s.path)
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Error("rpz feed: zone on disk unusable (not served); transferring it again", "file", s.path, "err", err)
	}
	full := true // AXFR at start
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
			if verr := blocklist.VerifyCopy(s.path); verr == nil {
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
			next, err = s.ixfr(ctx)
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
	if next == nil || (s.zone != nil && !serialLess(s.zone.soa.Serial, next.soa.Serial) && !full) {
		s.checked("up-to-date", nil)
		return nil
	}
	if s.zone != nil && next.soa.Serial == s.zone.soa.Serial && sameZone(s.zone, next) && blocklist.VerifyCopy(s.path) == nil {
		s.zone = next
		s.setZone(next, kind, time.Now())
		s.checked("up-to-date", nil)
		return nil
	}
	sync, err := s.install(next)
	if err != nil {
		s.checked("failed", err)
		return err
	}
	prev := uint32(0)
	if s.zone != nil {
		prev = s.zone.soa.Serial
	}
	s.zone = next
	s.log.Info("rpz feed: zone transferred", "type", kind, "serial", next.soa.Serial, "previous_serial", prev, "records", len(next.rrs))
	// Reload before publishing the status, so that a serial in the status
	// is a serial in service.
	if s.cfg.OnUpdate != nil {
		s.cfg.OnUpdate()
	}
	s.setZone(next, kind, time.Now())
	s.checked("transferred", nil)
	if err := sync(); err != nil {
		s.log.Warn("rpz feed: zone file not synced to disk", "file", s.path, "err", err)
	}
	return nil
}

func sameZone(a, b *zoneCopy) bool {
	if len(a.rrs) != len(b.rrs) {
		return false
	}
	for k := range a.rrs {
		if _, ok := b.rrs[k]; !ok {
			return false
		}
	}
	return true
}

func (s *Secondary) setZone(z *zoneCopy, kind string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Serial, s.st.Loaded, s.st.Records = z.soa.Serial, true, len(z.rrs)
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

// transfer runs one AXFR or IXFR and returns every record received.
func (s *Secondary) transfer(ctx context.Context, m *dns.Msg) ([]dns.RR, error) {
	s.cfg.Key.sign(m)
	tr := &dns.Transfer{DialTimeout: xfrTimeout, ReadTimeout: xfrTimeout, WriteTimeout: xfrTimeout, TsigSecret: s.cfg.Key.secrets()}
	ch, err := tr.In(m, s.cfg.Primary.String())
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { tr.Close() })
	defer stop()
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			for range ch {
			}
			return nil, env.Error
		}
		rrs = append(rrs, env.RR...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, errors.New("empty transfer")
	}
	soa, ok := rrs[0].(*dns.SOA)
	if !ok || !strings.EqualFold(soa.Hdr.Name, s.apex) {
		return nil, errors.New("transfer does not start with the zone's SOA")
	}
	return rrs, nil
}

func (s *Secondary) axfr(ctx context.Context) (*zoneCopy, error) {
	m := new(dns.Msg)
	m.SetAxfr(s.apex)
	rrs, err := s.transfer(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("AXFR: %w", err)
	}
	z, err := s.fullZone(rrs)
	if err != nil {
		return nil, fmt.Errorf("AXFR: %w", err)
	}
	return z, nil
}

// fullZone reads an AXFR-form answer: SOA, records, SOA.
func (s *Secondary) fullZone(rrs []dns.RR) (*zoneCopy, error) {
	if len(rrs) < 2 {
		return nil, errors.New("transfer ended before the closing SOA")
	}
	if _, ok := rrs[len(rrs)-1].(*dns.SOA); !ok {
		return nil, errors.New("transfer does not end with the SOA")
	}
	z := &zoneCopy{soa: rrs[0].(*dns.SOA), rrs: make(map[string]dns.RR, len(rrs))}
	for _, rr := range rrs[1 : len(rrs)-1] {
		if err := s.inZone(rr); err != nil {
			return nil, err
		}
		z.rrs[rrKey(rr)] = rr
	}
	return z, nil
}

func (s *Secondary) inZone(rr dns.RR) error {
	if _, ok := rr.(*dns.SOA); ok {
		return fmt.Errorf("unexpected SOA inside the transfer: %s", rr)
	}
	if !dns.IsSubDomain(s.apex, strings.ToLower(rr.Header().Name)) {
		return fmt.Errorf("record outside the zone: %s", rr)
	}
	return nil
}

// ixfr asks for the differences since our serial (RFC 1995) and applies
// them to a copy of the zone. A primary may answer with the full zone.
func (s *Secondary) ixfr(ctx context.Context) (*zoneCopy, error) {
	m := new(dns.Msg)
	m.SetIxfr(s.apex, s.zone.soa.Serial, s.zone.soa.Ns, s.zone.soa.Mbox)
	rrs, err := s.transfer(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("IXFR: %w", err)
	}
	newSOA := rrs[0].(*dns.SOA)
	if len(rrs) == 1 {
		return nil, nil // up to date
	}
	if _, ok := rrs[1].(*dns.SOA); !ok {
		z, err := s.fullZone(rrs) // AXFR-style answer
		if err != nil {
			return nil, fmt.Errorf("IXFR: %w", err)
		}
		return z, nil
	}
	z := s.zone.clone()
	// Sequences of: SOA(old) deletions... SOA(new) additions...; the whole
	// ends with the new SOA again.
	i := 1
	for i < len(rrs)-1 {
		old, ok := rrs[i].(*dns.SOA)
		if !ok {
			return nil, fmt.Errorf("IXFR: want the SOA of a difference sequence, got %s", rrs[i])
		}
		if old.Serial != z.soa.Serial {
			return nil, fmt.Errorf("IXFR: difference from serial %d, but we hold %d", old.Serial, z.soa.Serial)
		}
		i++
		for ; i < len(rrs) && rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			delete(z.rrs, rrKey(rrs[i]))
		}
		if i >= len(rrs) {
			return nil, errors.New("IXFR: difference sequence without its new SOA")
		}
		z.soa = rrs[i].(*dns.SOA)
		i++
		for ; i < len(rrs) && rrs[i].Header().Rrtype != dns.TypeSOA; i++ {
			if err := s.inZone(rrs[i]); err != nil {
				return nil, fmt.Errorf("IXFR: %w", err)
			}
			z.rrs[rrKey(rrs[i])] = rrs[i]
		}
	}
	if last, ok := rrs[len(rrs)-1].(*dns.SOA); !ok || last.Serial != newSOA.Serial || z.soa.Serial != newSOA.Serial {
		return nil, errors.New("IXFR: differences do not end at the primary's serial")
	}
	return z, nil
}

// install checks a new zone version as the list store will load it and,
// when it loads, puts it in place atomically. It returns the function that
// syncs it to disk, to call once the lists are reloaded (a sync can take
// long on a busy disk; the reload should not wait for it).
func (s *Secondary) install(z *zoneCopy) (func() error, error) {
	if err := s.checkZonemd(z); err != nil {
		return nil, err
	}
	problems, sync, err := blocklist.InstallFile(s.cfg.Dir, s.cfg.Name+".rpz", zoneText(z, s.cfg.Name, s.cfg.Primary.String()))
	if err != nil {
		return nil, fmt.Errorf("write zone: %w", err)
	}
	if len(problems) > 0 {
		msgs := make([]string, 0, 3)
		for _, e := range problems[:min(len(problems), 3)] {
			msgs = append(msgs, e.Error())
		}
		return nil, fmt.Errorf("serial %d does not load; keeping serial %s: %s", z.soa.Serial, s.servingSerial(), strings.Join(msgs, "; "))
	}
	return sync, nil
}

// checkZonemd verifies a new version against its ZONEMD (RFC 8976).
func (s *Secondary) checkZonemd(z *zoneCopy) error {
	rrs := make([]dns.RR, 0, len(z.rrs)+1)
	rrs = append(rrs, z.soa)
	for _, rr := range z.rrs {
		rrs = append(rrs, rr)
	}
	err := VerifyZonemd(s.apex, rrs)
	result := "verified"
	switch {
	case errors.Is(err, ErrNoZonemd) && s.cfg.RequireZonemd:
		return fmt.Errorf("serial %d refused: %w, and --rpz-require-zonemd is set for this feed; keeping serial %s", z.soa.Serial, err, s.servingSerial())
	case errors.Is(err, ErrNoZonemd):
		result = "absent"
	case err != nil:
		return fmt.Errorf("serial %d refused: %w; keeping serial %s", z.soa.Serial, err, s.servingSerial())
	}
	s.mu.Lock()
	s.st.Zonemd = result
	s.mu.Unlock()
	return nil
}

func (s *Secondary) servingSerial() string {
	if s.zone == nil {
		return "none"
	}
	return fmt.Sprint(s.zone.soa.Serial)
}

// zoneText writes a zone as a master file: a comment, the SOA, the apex
// records, then every other record in name order, all names absolute.
func zoneText(z *zoneCopy, feed, primary string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "; rpz feed %s: zone %s from %s, serial %d, written %s by sinkhole\n",
		feed, z.soa.Hdr.Name, primary, z.soa.Serial, time.Now().UTC().Format(time.RFC3339))
	b.WriteString(z.soa.String())
	b.WriteByte('\n')
	apex := strings.ToLower(z.soa.Hdr.Name)
	keys := make([]string, 0, len(z.rrs))
	for k := range z.rrs {
		keys = append(keys, k)
	}
	atApex := apex + " " // keys of apex records start with it
	slices.SortFunc(keys, func(a, c string) int {
		aa, ca := strings.HasPrefix(a, atApex), strings.HasPrefix(c, atApex)
		if aa != ca {
			if aa {
				return -1
			}
			return 1
		}
		return strings.Compare(a, c)
	})
	for _, k := range keys {
		b.WriteString(z.rrs[k].String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readZoneFile loads a zone file this package wrote, if it is the version
// written (its recorded SHA-256 matches).
func readZoneFile(path, apex string) (*zoneCopy, error) {
	data, err := blocklist.ReadVerified(path)
	if err != nil {
		return nil, err
	}
	zp := dns.NewZoneParser(bytes.NewReader(data), apex, path)
	z := &zoneCopy{rrs: map[string]dns.RR{}}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			if z.soa != nil || !strings.EqualFold(soa.Hdr.Name, apex) {
				return nil, fmt.Errorf("unexpected SOA %s", soa)
			}
			z.soa = soa
			continue
		}
		z.rrs[rrKey(rr)] = rr
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	if z.soa == nil {
		return nil, errors.New("no SOA record")
	}
	return z, nil
}
