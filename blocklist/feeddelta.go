package blocklist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Feed deltas. An RPZ feed (sinkhole as a secondary, resolver/rpz) keeps
// its zone as a file in a state directory the store loads. A full
// transfer replaces that file and reloads it; an incremental one (IXFR,
// a few records) is applied to the snapshot in service as a delta over
// its compiled rules, in time proportional to the change: the rules of
// the owner names whose records changed give way to the rules of their
// new records, through the same layer as a file delta (delta.go), merged
// into a new base in the background. The feed writes the file in the
// background afterwards (NoteFeedFile tells the store the file it writes
// holds rules already in service, so a reload does not parse it again).
//
// Rules keep naming their source: a feed rule is written on the line of
// the feed's file that holds its owner's first record, so explain output
// ("blocked by state/feed.rpz:LINE") points into the file the feed
// writes, before and after a restart.

// FeedOwner is one owner name of a feed's zone with all its records.
type FeedOwner struct {
	// Name is absolute and lower case.
	Name string
	// Line is the line of the owner's first record in the feed's file
	// (the rule's line); unused for an owner with no records.
	Line int
	// RRs are the owner's records (none: the owner is not in the zone).
	RRs []dns.RR
}

// FeedDelta is an incremental change of a feed's zone: the owners whose
// records changed, each before (Old) and after (New), in the same order.
type FeedDelta struct {
	// File is the store's name of the feed's zone file ("state/NAME.rpz").
	File string
	// Apex is the zone's name, absolute, lower case.
	Apex string
	// Old and New hold the changed owners: Old[i] and New[i] are one owner
	// before and after the change.
	Old, New []FeedOwner
	// Trigger names the change in the report ("rpz-feed NAME IXFR 12").
	Trigger string
}

// ErrNotDelta is returned by ApplyFeed for a change it cannot apply as a
// delta (the apex records, response-IP triggers or warnings changed, the
// file is not in service as the feed wrote it, the change is big, or it
// drops more of the file's rules than the shrink guard lets through):
// the caller writes the zone file and reloads it, and the reload decides
// as for any list file (a version past the shrink guard is held).
var ErrNotDelta = errors.New("the change cannot be applied as a delta")

// FeedRefusedError is returned by ApplyFeed when the new records do not
// make valid policy (a CNAME beside other records, for instance): the
// version must not go into service.
type FeedRefusedError struct{ Errors []*LineError }

func (e *FeedRefusedError) Error() string {
	msgs := make([]string, 0, 3)
	for _, le := range e.Errors[:min(len(e.Errors), 3)] {
		msgs = append(msgs, le.Error())
	}
	return strings.Join(msgs, "; ")
}

// maxFeedDelta is the largest number of changed owners applied as a delta
// beyond a quarter of the file's rules.
const maxFeedDelta = 16384

// feedFiles records the state files feeds wrote for rules they applied.
type feedFiles struct {
	mu     sync.Mutex
	hashes map[string]map[string]bool // store file name -> SHA-256s
}

// NoteFeedFile tells the store that the version of file (a store file
// name) with content hash sha holds rules of a feed that are in service
// already (applied by ApplyFeed, or older ones): a reload that finds it
// keeps the rules in service rather than parsing it. Call it before the
// version is renamed into place.
func (s *Store) NoteFeedFile(file, sha string) {
	s.feeds.mu.Lock()
	defer s.feeds.mu.Unlock()
	if s.feeds.hashes == nil {
		s.feeds.hashes = map[string]map[string]bool{}
	}
	m := s.feeds.hashes[file]
	if m == nil || len(m) > 16 {
		m = map[string]bool{}
		s.feeds.hashes[file] = m
	}
	m[sha] = true
}

// ForgetFeedFile drops what NoteFeedFile recorded for file: its next
// version is parsed (a full transfer replaced the rules).
func (s *Store) ForgetFeedFile(file string) {
	s.feeds.mu.Lock()
	defer s.feeds.mu.Unlock()
	delete(s.feeds.hashes, file)
}

// feedApplied reports whether the version of file with hash sha holds
// rules a feed applied (see NoteFeedFile).
func (s *Store) feedApplied(file, sha string) bool {
	s.feeds.mu.Lock()
	defer s.feeds.mu.Unlock()
	return s.feeds.hashes[file][sha]
}

// ApplyFeed applies d to the snapshot in service as a delta and publishes
// the result, as a reload does (listeners run with its report). It
// returns ErrNotDelta when the change needs the full reload, and a
// *FeedRefusedError when the new records are not valid policy; in both
// cases nothing changed.
func (s *Store) ApplyFeed(ctx context.Context, d *FeedDelta) (*ReloadReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	old := s.cur.Load()
	if !s.loaded.Load() {
		return nil, ErrNotDelta
	}
	f := old.File(d.File)
	if f == nil || f.Stale || f.Withheld != nil || f.SHA256 == "" || len(old.sections) > 60000 {
		return nil, ErrNotDelta
	}
	if len(d.Old) != len(d.New) || len(d.Old) > max(maxFeedDelta, f.Rules()/4) {
		return nil, ErrNotDelta
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The zone's directives are in every section of the file.
	var zone rpzZoneDirectives
	if f.sect[1] > f.sect[0] {
		sec := old.sections[f.sect[0]]
		zone.platform, zone.why = sec.Platform, sec.Why
	} else if f.Rules() > 0 {
		return nil, ErrNotDelta
	}
	var oldRules, newRules []rpzRule
	var sink feedSink
	for i := range d.Old {
		o, n := d.Old[i], d.New[i]
		if o.Name != n.Name || o.Name == d.Apex {
			return nil, ErrNotDelta
		}
		for k, ow := range []FeedOwner{o, n} {
			if len(ow.RRs) == 0 {
				continue
			}
			p := &rpzParser{file: d.File, sink: &sink, zone: zone}
			r, ok := p.rule(&rpzOwner{name: ow.Name, line: ow.Line, rrs: ow.RRs}, d.Apex)
			if k == 1 && len(p.errs) > 0 {
				return nil, &FeedRefusedError{Errors: p.errs}
			}
			if len(p.errs) > 0 || sink.warned || (ok && r.ip) {
				return nil, ErrNotDelta // the full reload reports it as it does
			}
			if !ok {
				continue
			}
			if k == 0 {
				oldRules = append(oldRules, r)
			} else {
				newRules = append(newRules, r)
			}
		}
	}
	if _, held := shrinkGuard(s.opts.MaxShrink, f.Rules(), f.Rules()-len(oldRules)+len(newRules)); held {
		// The reload of the file the caller falls back to holds it, as a
		// list file's reload would: logged, in status and metrics, the
		// rules in service kept until a reload with Accept.
		return nil, ErrNotDelta
	}
	nb := newBuilder(len(newRules), 0)
	nb.startFile()
	slices.SortStableFunc(newRules, func(a, b rpzRule) int { return a.line - b.line })
	for _, r := range newRules {
		emitRule(nb, d.File, zone, r)
	}
	s.gen++
	next, removed, added, _, _, err := applyFeedDelta(old, f, oldRules, nb, s.gen)
	if err != nil {
		s.gen--
		return nil, err
	}
	rep := &ReloadReport{Trigger: d.Trigger, Generation: next.Generation, Changed: true, Delta: true}
	for _, fs := range next.Files {
		if fs.Name == d.File {
			fc := FileChange{Name: fs.Name, Change: ChangeUpdated, Rules: fs.Rules(), PreviousRules: f.Rules()}
			fc.setDeltaChanges(removed, added)
			rep.Files = append(rep.Files, fc)
			continue
		}
		rep.Files = append(rep.Files, FileChange{Name: fs.Name, Change: ChangeUnchanged, Rules: fs.Rules(), PreviousRules: fs.Rules()})
	}
	s.cur.Store(next)
	if next.layer != nil {
		s.compactSoon(next)
	}
	rep.Rules, rep.Duration = next.RuleCount(), time.Since(start)
	s.logReport(rep)
	s.reloads.Add(1)
	for _, fn := range s.listeners {
		fn(next, rep)
	}
	return rep, nil
}

// emitRule adds one rule to b under its policy's section, as the
// streaming RPZ parser does.
func emitRule(b *builder, file string, zone rpzZoneDirectives, r rpzRule) {
	allow := r.policy == rpzPassthru
	act := ActionNXDomain // exceptions' sections never decide an answer
	if !allow {
		act = rpzActions[r.policy]
	}
	b.useSection(Section{File: file, Action: act, Platform: zone.platform, Why: zone.why})
	b.addDomain(r.name, r.kind, allow, r.line)
	if r.policy == rpzLocalData {
		b.setLocalData(r.local)
	}
}

// feedSink notes whether a rule of a changed owner warned (an unsupported
// trigger or action): such changes take the full reload, which reports
// the file's warnings.
type feedSink struct{ warned bool }

func (k *feedSink) beginSection(Section)                   {}
func (k *feedSink) useSection(Section)                     {}
func (k *feedSink) restart()                               {}
func (k *feedSink) repeatedOwner() bool                    { return false }
func (k *feedSink) addDomain([]byte, MatchKind, bool, int) {}
func (k *feedSink) addPrefix(netip.Prefix, bool, int)      {}
func (k *feedSink) addASN(uint32, bool, int)               {}
func (k *feedSink) setLocalData([]dns.RR)                  {}
func (k *feedSink) warn(*LineError)                        { k.warned = true }

// findFeedRule returns the id (in s) of the rule of file f in service
// with r's name and kind, if any, skipping the rules gone says are gone.
func (s *Snapshot) findFeedRule(f *FileStatus, r rpzRule, gone func(uint32) bool) (uint32, bool) {
	want := kindBit(r.kind, r.policy == rpzPassthru)
	h := hashName(r.name)
	name := string(r.name)
	check := func(t *domainTable, base uint32, lo, hi int, isRemoved func(uint32) bool) (uint32, bool) {
		head, ok := t.lookup(h, name)
		if !ok {
			return 0, false
		}
		var ids []uint32
		switch k := t.kindAt(head); {
		case k&kindNext != 0:
			ids = []uint32{head, head + 1}
		case k&kindMore != 0:
			for _, dr := range t.dups[head] {
				ids = append(ids, dr.id)
			}
		default:
			ids = []uint32{head}
		}
		for _, id := range ids {
			if int(id) < lo || int(id) >= hi || t.ownKind(id) != want || isRemoved(base+id) {
				continue
			}
			return base + id, true
		}
		return 0, false
	}
	if id, ok := check(&s.dom, 0, f.dom[0], f.dom[1], gone); ok {
		return id, true
	}
	if l := s.layer; l != nil {
		ar := l.addRange[f.Name]
		return check(&l.add, uint32(s.dom.len()), ar[0], ar[1], gone)
	}
	return 0, false
}

// applyFeedDelta returns a snapshot of cur's rules with the rules old of
// file f taken out and the rules of nb (one file's worth, sections of nb)
// added, and the rules removed and added for the report. Its cost is the
// change plus the rules layered over cur's base; the base is shared.
func applyFeedDelta(cur *Snapshot, f *FileStatus, old []rpzRule, nb *builder, gen uint64) (next *Snapshot, rem, add []Rule, nrem, nadd int, err error) {
	next = &Snapshot{Generation: gen, Created: time.Now(), dom: cur.dom, overseas: cur.overseas}
	ol := cur.layer
	l := nextLayer(cur)
	next.layer = l
	base := uint32(cur.dom.len())
	var removedIDs []RuleID         // in cur
	droppedAdd := map[uint32]bool{} // indexes in cur's add table
	gone := func(id uint32) bool {
		if id >= base {
			return droppedAdd[id-base]
		}
		return l.removed[id>>6]&(1<<(id&63)) != 0
	}
	for _, r := range old {
		id, ok := cur.findFeedRule(f, r, gone)
		if !ok {
			return nil, nil, nil, 0, 0, ErrNotDelta // the file does not hold what the feed applied
		}
		removedIDs = append(removedIDs, makeRuleID(RuleDomain, int(id)))
		if id < base {
			l.removed[id>>6] |= 1 << (id & 63)
			l.nremoved++
		} else {
			droppedAdd[id-base] = true
		}
	}
	next.sections = append(cur.sections[:len(cur.sections):len(cur.sections)], nb.s.sections...)
	newSect := uint16(len(cur.sections))
	for _, sec := range nb.s.sections {
		if sec.Scope == ScopeOverseas {
			next.overseas = true
		}
	}
	// The added rules, file by file in order: cur's (less those taken
	// out), then, for f, the new ones, in line order.
	type addRule struct {
		name  []byte
		kind  uint8
		line  int
		sect  uint16
		local []dns.RR
	}
	next.local = cur.local // base rules' (the layer holds the added rules')
	nd := &nb.s.dom
	var rules []addRule
	for pos, fs := range cur.Files {
		l.filePos[fs.Name] = pos
		rules = rules[:0]
		if ol != nil {
			ar := ol.addRange[fs.Name]
			for i := ar[0]; i < ar[1]; i++ {
				id := uint32(i)
				if fs.Name == f.Name && droppedAdd[id] {
					continue
				}
				rules = append(rules, addRule{ol.add.name(id), ol.add.ownKind(id), ol.add.line(id), ol.add.sect(id), ol.local[id]})
			}
		}
		if fs.Name == f.Name {
			for j := 0; j < nd.len(); j++ {
				id := uint32(j)
				rules = append(rules, addRule{nd.name(id), nd.kindAt(uint32(j)), nd.line(id), nd.sect(id) + newSect,
					nb.s.local[makeRuleID(RuleDomain, j)]})
			}
			slices.SortStableFunc(rules, func(a, b addRule) int { return a.line - b.line })
		}
		start := l.add.len()
		for _, r := range rules {
			if r.local != nil {
				if l.local == nil {
					l.local = map[uint32][]dns.RR{}
				}
				l.local[uint32(l.add.len())] = r.local
			}
			l.add.add(r.name, r.kind, r.line, r.sect)
		}
		if l.add.len() > start {
			l.addRange[fs.Name] = [2]int{start, l.add.len()}
		}
	}
	l.add.build()
	var addedIDs []RuleID // in nb.s
	for i := 0; i < nd.len(); i++ {
		addedIDs = append(addedIDs, makeRuleID(RuleDomain, i))
	}
	next.Files = make([]*FileStatus, len(cur.Files))
	for i, fs := range cur.Files {
		if fs.Name == f.Name {
			st := *fs
			st.LoadedAt = time.Now()
			st.Domains = fs.Domains - len(old) + nd.len()
			st.fp = nil // the next version on disk is compared whole
			fs = &st
		}
		next.Files[i] = fs
	}
	next.ips, next.asns = cur.ips, cur.asns
	next.ipBlock, next.ipAllow, next.asnBlock, next.asnAllow = cur.ipBlock, cur.ipAllow, cur.asnBlock, cur.asnAllow
	rem, add, nrem, nadd = diffRuleIDs(cur, removedIDs, nb.s, addedIDs, -1)
	if l.nremoved == 0 && l.add.len() == 0 && len(l.shifts) == 0 {
		next.layer = nil
	}
	if next.domainCount() > maxDomainRuleIDs {
		return nil, nil, nil, 0, 0, fmt.Errorf("too many rules: %d domains", next.domainCount())
	}
	return next, rem, add, nrem, nadd, nil
}
