package rpz

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// What the export writes for a name is a function of the snapshot alone:
// the records at owner NAME come from the rules matching NAME itself, the
// records at *.NAME from those matching a name just below it ("#.NAME",
// which no rule can hold). A rule is written at an owner only when it is
// the rule sinkhole itself applies there (no exception covers the owner,
// no other rule for the same name wins); exceptions become rpz-passthru.
// So a change of the rules for NAME changes the records of NAME and
// *.NAME, and a change of an exception covering NAME's subdomains may
// change those of every name below it; nothing else. The export applies
// a delta of the lists by evaluating just those names again.

// evaluator computes owners' records from one snapshot.
type evaluator struct {
	snap     *blocklist.Snapshot
	o        BuildOptions
	codes    *codeTable
	passthru uint32
	bySect   map[*blocklist.Section]uint32
	buf      []byte
}

func newEvaluator(snap *blocklist.Snapshot, o BuildOptions, codes *codeTable) *evaluator {
	ev := &evaluator{snap: snap, o: o, codes: codes, bySect: map[*blocklist.Section]uint32{}}
	ev.passthru = codes.intern([]record{{rtype: dns.TypeCNAME, rdata: blocklist.RPZPassthru}}, o.TTL, false, [4]string{})
	return ev
}

// ruleAt reports whether rule id is a rule for name (any kind).
func (ev *evaluator) ruleAt(id blocklist.RuleID, name string) bool {
	ev.buf = ev.snap.AppendRuleText(ev.buf[:0], id)
	b := bytes.TrimPrefix(ev.buf, []byte("@@"))
	if bytes.HasPrefix(b, []byte("*.")) {
		b = b[2:]
	} else if len(b) > 0 && b[0] == '=' {
		b = b[1:]
	}
	return string(b) == name
}

// blockCode returns the records a block rule is exported with (0 when it
// is not: monitor mode, overseas scope, no records).
func (ev *evaluator) blockCode(id blocklist.RuleID) uint32 {
	sec := ev.snap.Section(id)
	if !sec.Action.Enforced() || sec.Scope == blocklist.ScopeOverseas {
		return 0
	}
	act := sec.Action
	if act == blocklist.ActionDefault {
		act = ev.o.Default
	}
	if act != blocklist.ActionLocalData {
		if c, ok := ev.bySect[sec]; ok {
			return c
		}
	}
	c := ev.codes.intern(policyRecords(ev.snap, id, sec.Action, ev.o), ev.o.TTL, true, whyOf(sec))
	if act != blocklist.ActionLocalData {
		ev.bySect[sec] = c
	}
	return c
}

func whyOf(sec *blocklist.Section) [4]string {
	return [4]string{sec.Platform, sec.Authority, sec.Order, sec.Contact}
}

// owner returns the code of the owner whose probe matched m (name's own
// rules only), and whether a rule for name took part.
func (ev *evaluator) owner(m blocklist.Match, name string) (code uint32, here bool) {
	if m.HasAllow && ev.ruleAt(m.Allow, name) {
		return ev.passthru, true
	}
	if m.HasRule && ev.ruleAt(m.Rule, name) {
		if m.HasAllow {
			return 0, true
		}
		return ev.blockCode(m.Rule), true
	}
	return 0, false
}

// eval returns whether name holds a rule, and the codes of owners name
// and *.name.
// The name is given in the form appendOwner writes, after the probe
// label: probe holds "#.NAME" (a full rebuild evaluates a million names;
// neither form is copied into a string).
func (ev *evaluator) eval(probe []byte) (exists bool, exact, wild uint32) {
	// MatchName neither keeps nor changes the name it is given.
	p := unsafe.String(unsafe.SliceData(probe), len(probe))
	name := p[len(probeLabel):]
	exact, e1 := ev.owner(ev.snap.MatchName(name), name)
	wild, e2 := ev.owner(ev.snap.MatchName(p), name)
	return e1 || e2, exact, wild
}

// whyCounts counts, for each of the four directives, the owners (or
// address rules) exported with each value.
type whyCounts [4]map[string]int

func newWhyCounts() whyCounts {
	var w whyCounts
	for i := range w {
		w[i] = map[string]int{}
	}
	return w
}

func (w whyCounts) add(s *rset, n int) {
	if s == nil || !s.block {
		return
	}
	for i, v := range s.why {
		w[i][v] += n
		if w[i][v] == 0 {
			delete(w[i], v)
		}
	}
}

// txtRecords returns the apex TXT records of the directives every
// exported block shares (see whyKeys).
func txtRecords(ttl uint32, ws ...whyCounts) []record {
	var out []record
	for i, k := range whyKeys {
		distinct := map[string]bool{}
		for _, w := range ws {
			for v, n := range w[i] {
				if n > 0 {
					distinct[v] = true
				}
			}
		}
		if len(distinct) != 1 {
			continue
		}
		for v := range distinct {
			if v != "" {
				// The list parser forbids '"' and '\' in these values, so
				// quoting is enough.
				out = append(out, record{rtype: dns.TypeTXT, ttl: ttl, rdata: `"` + k + ": " + v + `"`})
			}
		}
	}
	slices.SortFunc(out, compareRecords)
	return out
}

// workState is the zone the exporter computes, with what it needs to
// change it: the code table and the counts behind the apex TXT and the
// skipped rules.
type workState struct {
	zone    *czone
	codes   *codeTable
	domWhy  whyCounts // over the codes in use at domain owners (refs)
	refs    []int32   // domain owners using each code
	ipWhy   whyCounts
	domSkip Skipped // Monitor and Overseas of domain rules
	ipSkip  Skipped // of address rules, and ASN
}

// use counts n (1 or -1) domain owners more using code.
func (w *workState) use(code uint32, n int32) {
	if code == 0 {
		return
	}
	for int(code) >= len(w.refs) {
		w.refs = append(w.refs, 0)
	}
	w.refs[code] += n
	if r := w.refs[code]; (n > 0 && r == 1) || (n < 0 && r == 0) {
		w.domWhy.add(w.codes.sets[code], int(n))
	}
}

func (w *workState) skipped() Skipped {
	return Skipped{Monitor: w.domSkip.Monitor + w.ipSkip.Monitor, Overseas: w.domSkip.Overseas + w.ipSkip.Overseas, ASN: w.ipSkip.ASN}
}

// fullBuild computes the zone of snap from scratch.
func fullBuild(snap *blocklist.Snapshot, o BuildOptions) *workState {
	w := &workState{codes: newCodeTable(), domWhy: newWhyCounts(), ipWhy: newWhyCounts()}
	ev := newEvaluator(snap, o, w.codes)
	// Every domain rule's name, as a sort key in an arena.
	var (
		arena []byte
		offs  []uint32
	)
	for t := range snap.Triggers() {
		if t.Type != blocklist.RuleDomain {
			break
		}
		if !t.Allow {
			countSkip(&w.domSkip, snap.Section(t.ID), 1)
		}
		offs = append(offs, uint32(len(arena)))
		arena = append(arena, 0)
		start := len(arena)
		arena = appendKey(arena, t.Name)
		arena[start-1] = byte(len(arena) - start)
	}
	keyAt := func(off uint32) []byte { return arena[off+1 : off+1+uint32(arena[off])] }
	slices.SortFunc(offs, func(a, b uint32) int { return bytes.Compare(keyAt(a), keyAt(b)) })
	var (
		bw    blockWriter
		prev  []byte
		first = true
		name  []byte
		wkey  []byte
	)
	z := &czone{}
	for _, off := range offs {
		k := keyAt(off)
		if !first && bytes.Equal(k, prev) {
			continue
		}
		first, prev = false, k
		name = appendOwner(append(name[:0], probeLabel...), k)
		exists, exact, wild := ev.eval(name)
		if !exists {
			continue
		}
		bw.add(k, exact)
		if exact != 0 {
			s := w.codes.sets[exact]
			z.records += len(s.recs)
			w.use(exact, 1)
		}
		if wild != 0 {
			wkey = append(append(append(wkey[:0], k...), 0), '*')
			bw.add(wkey, wild)
			s := w.codes.sets[wild]
			z.records += len(s.recs)
			w.use(wild, 1)
		}
	}
	bw.cut()
	z.blocks = bw.out
	w.zone = z
	w.setAddrs(ev)
	return w
}

// countSkip counts a block rule RPZ cannot express (n = 1 or -1).
func countSkip(s *Skipped, sec *blocklist.Section, n int) {
	switch {
	case !sec.Action.Enforced():
		s.Monitor += n
	case sec.Scope == blocklist.ScopeOverseas:
		s.Overseas += n
	}
}

// setAddrs recomputes the address rules' owners (the rpz-ip subtree) and
// counts, and the apex TXT, into w.zone (which it owns).
func (w *workState) setAddrs(ev *evaluator) {
	snap := ev.snap
	w.ipWhy = newWhyCounts()
	w.ipSkip = Skipped{}
	allowIP := map[netip.Prefix]bool{}
	for t := range snap.AddrTriggers() {
		if t.Type == blocklist.RuleIP && t.Allow {
			allowIP[t.Prefix] = true
		}
	}
	byOwner := map[string]uint32{}
	var keys []string
	set := func(owner string, code uint32) {
		if _, ok := byOwner[owner]; ok || code == 0 {
			return
		}
		k := string(appendKey(nil, owner))
		// A domain rule of the same name was written first (the domain
		// rules come first).
		if c, ok := w.zone.lookup([]byte(k)); ok && c != 0 {
			byOwner[owner] = 0
			return
		}
		byOwner[owner] = code
		keys = append(keys, k)
	}
	for t := range snap.AddrTriggers() {
		switch t.Type {
		case blocklist.RuleASN:
			if !t.Allow {
				w.ipSkip.ASN++
			}
			continue
		case blocklist.RuleIP:
		default:
			continue
		}
		owner := blocklist.RPZIPName(t.Prefix)
		if t.Allow {
			set(owner, ev.passthru)
			continue
		}
		if coveredByAllow(t.Prefix, allowIP) {
			continue
		}
		sec := snap.Section(t.ID)
		if !sec.Action.Enforced() || sec.Scope == blocklist.ScopeOverseas {
			countSkip(&w.ipSkip, sec, 1)
			continue
		}
		c := ev.blockCode(t.ID)
		if c == 0 {
			continue
		}
		set(owner, c)
		w.ipWhy.add(w.codes.sets[c], 1)
	}
	z := w.zone
	for _, e := range z.ips {
		z.records -= len(w.codes.sets[e.code].recs)
	}
	z.ips = z.ips[:0:0]
	slices.Sort(keys)
	for _, k := range keys {
		owner := string(appendOwner(nil, []byte(k)))
		c := byOwner[owner]
		z.ips = append(z.ips, ipEntry{key: k, code: c})
		z.records += len(w.codes.sets[c].recs)
	}
	z.sets = w.codes.sets
	z.txt = txtRecords(ev.o.TTL, w.domWhy, w.ipWhy)
}

// deltaChange gathers what one or more delta reloads changed.
type deltaChange struct {
	names    map[string]bool // names whose own rules changed
	covering map[string]bool // names whose exception for subdomains changed
	addrs    bool            // an address rule changed (or a name in rpz-ip)
	domSkip  Skipped         // change of the domain rules' skipped counts
	asn      int
}

func newDeltaChange() *deltaChange {
	return &deltaChange{names: map[string]bool{}, covering: map[string]bool{}}
}

// add takes the rules a delta reload added and removed (all of them,
// however many: the store applies a reload as a delta only up to a bound
// that scales with the file, see blocklist.ReloadReport.Delta); false when
// the report does not list them all (a full reload).
func (d *deltaChange) add(rep *blocklist.ReloadReport) bool {
	if rep == nil || !rep.Delta {
		return false
	}
	for i := range rep.Files {
		added, ok1 := rep.Files[i].AllAdded()
		removed, ok2 := rep.Files[i].AllRemoved()
		if !ok1 || !ok2 {
			return false
		}
		for _, r := range added {
			d.rule(r, 1)
		}
		for _, r := range removed {
			d.rule(r, -1)
		}
	}
	return true
}

func (d *deltaChange) rule(r blocklist.Rule, n int) {
	switch r.Type {
	case blocklist.RuleDomain:
		text := strings.TrimPrefix(r.Text, "@@")
		below := true
		if t, ok := strings.CutPrefix(text, "*."); ok {
			text = t
		} else if t, ok := strings.CutPrefix(text, "="); ok {
			text, below = t, false
		}
		d.names[text] = true
		if r.Allow && below {
			d.covering[text] = true
		}
		if text == "rpz-ip" || strings.HasSuffix(text, ".rpz-ip") {
			d.addrs = true
		}
		if !r.Allow {
			sec := blocklist.Section{Action: r.Action, Scope: r.Scope}
			countSkip(&d.domSkip, &sec, n)
		}
	case blocklist.RuleIP:
		d.addrs = true
	case blocklist.RuleASN:
		if !r.Allow {
			d.asn += n
		}
	}
}

// applyDelta evaluates the names d changed (and those under a changed
// exception) against snap and returns the new state, sharing the blocks
// that did not change with w's zone (which stays as it was; the code
// table and counts move to the new state).
func (w *workState) applyDelta(snap *blocklist.Snapshot, o BuildOptions, d *deltaChange) *workState {
	nw := &workState{codes: w.codes, domWhy: w.domWhy, refs: w.refs, ipWhy: w.ipWhy, domSkip: w.domSkip, ipSkip: w.ipSkip}
	nw.domSkip.Monitor += d.domSkip.Monitor
	nw.domSkip.Overseas += d.domSkip.Overseas
	nw.ipSkip.ASN += d.asn
	old := w.zone
	keys := map[string]bool{}
	for n := range d.names {
		keys[string(appendKey(nil, n))] = true
	}
	for n := range d.covering {
		old.below(appendKey(nil, n), func(k []byte, _ uint32) {
			if !bytes.HasSuffix(k, []byte{0, '*'}) {
				keys[string(k)] = true
			}
		})
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	ev := newEvaluator(snap, o, w.codes)
	z := &czone{ips: old.ips, records: old.records}
	edits := make([]edit, 0, 2*len(sorted))
	var name []byte
	change := func(k string, code uint32, keep bool) {
		oc, had := old.lookup([]byte(k))
		if had == keep && oc == code {
			return
		}
		if had && oc != 0 {
			s := w.codes.sets[oc]
			z.records -= len(s.recs)
			nw.use(oc, -1)
		}
		if keep && code != 0 {
			s := w.codes.sets[code]
			z.records += len(s.recs)
			nw.use(code, 1)
		}
		edits = append(edits, edit{key: k, code: code, del: !keep})
	}
	for _, k := range sorted {
		name = appendOwner(append(name[:0], probeLabel...), []byte(k))
		exists, exact, wild := ev.eval(name)
		change(k, exact, exists)
		change(k+"\x00*", wild, wild != 0)
	}
	slices.SortFunc(edits, func(a, b edit) int { return strings.Compare(a.key, b.key) })
	z.blocks = editBlocks(old.blocks, edits)
	nw.zone = z
	if d.addrs {
		nw.setAddrs(ev)
	} else {
		z.sets = w.codes.sets
		z.txt = txtRecords(o.TTL, nw.domWhy, nw.ipWhy)
	}
	return nw
}
