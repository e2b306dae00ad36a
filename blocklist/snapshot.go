package blocklist

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"iter"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// RuleID names one rule inside a Snapshot. The top two bits hold the rule
// type, the rest an index. IDs are only meaningful within their snapshot.
type RuleID uint32

const ruleIndexMask = 1<<30 - 1

func makeRuleID(t RuleType, i int) RuleID { return RuleID(uint32(t)<<30 | uint32(i)) }

// Type returns the kind of trigger the rule holds.
func (id RuleID) Type() RuleType { return RuleType(id >> 30) }

func (id RuleID) index() int { return int(id & ruleIndexMask) }

// Match is the outcome of matching a name, an address or an ASN. The zero
// value means nothing matched.
type Match struct {
	Rule     RuleID // most specific block rule (valid when HasRule)
	Allow    RuleID // exception that applies (valid when HasAllow)
	HasRule  bool
	HasAllow bool
	// At is, for a name's block rule, where in the matched name the
	// rule's own name begins (0: the name itself), so that an answer
	// can point at the listed domain without looking the rule up again.
	At int
}

// Blocked reports whether a block rule applies and no exception overrides it.
func (m Match) Blocked() bool { return m.HasRule && !m.HasAllow }

// ipRule is one IP or prefix entry.
type ipRule struct {
	prefix netip.Prefix
	line   uint32
	sect   uint16
	allow  bool
}

// asnRule is one "AS<number>" entry.
type asnRule struct {
	asn   uint32
	line  uint32
	sect  uint16
	allow bool
}

// FileStatus describes one list file as the snapshot serves it.
type FileStatus struct {
	Name     string    `json:"name"`            // display name used in reasons
	Path     string    `json:"path"`            // path on disk
	SHA256   string    `json:"sha256"`          // of the version being served
	Size     int64     `json:"size"`            // bytes of the version being served
	LoadedAt time.Time `json:"loaded_at"`       // when the served version was parsed
	Domains  int       `json:"domains"`         // domain rules (blocks and exceptions)
	IPs      int       `json:"ips"`             // IP and prefix rules
	ASNs     int       `json:"asns"`            // ASN rules
	Stale    bool      `json:"stale,omitempty"` // the file on disk is broken; the last good version serves
	// Errors holds the problems of the version on disk when it failed to load.
	Errors []*LineError `json:"errors,omitempty"`
	// Warnings holds problems of the version being served that did not stop
	// it from loading, such as RPZ triggers sinkhole does not support.
	Warnings []*LineError `json:"warnings,omitempty"`
	// Withheld describes the version on disk when it is not in service
	// (held by the shrink guard, refused by a verifier, or still being
	// written); the version described above serves meanwhile (none when
	// SHA256 is empty).
	Withheld *Withheld `json:"withheld,omitempty"`

	// Signature is who signed the version being served (with Options.Verify).
	Signature *Signature `json:"signature,omitempty"`
	// Refused is set while the version on disk is refused by Options.Verify
	// (Stale is set too; Errors says why).
	Refused *Refusal `json:"refused,omitempty"`

	badHash  string       // hash of the broken version, to skip re-parsing it
	badSig   string       // the Verifier's fingerprint of the broken version's signature
	sigPrint string       // the Verifier's fingerprint of the served version's signature
	fp       *fingerprint // of the version in service, for reading the next one (fingerprint.go)
	dom      [2]int       // rule index ranges inside the snapshot
	ip       [2]int
	asn      [2]int
	sect     [2]int

	// rpz is the state of an RPZ zone the streaming parser read, for its
	// deltas (nil for other files).
	rpz *rpzFileState
}

// Rules returns the file's total rule count.
func (f *FileStatus) Rules() int { return f.Domains + f.IPs + f.ASNs }

// Snapshot is one immutable, compiled generation of every list file. It is
// safe for concurrent use without locks.
type Snapshot struct {
	Generation uint64
	Created    time.Time
	Files      []*FileStatus

	sections []Section
	dom      domainTable
	ips      []ipRule
	asns     []asnRule
	ipBlock  intervalSet
	ipAllow  intervalSet
	asnBlock map[uint32]uint32 // ASN -> index into asns
	asnAllow map[uint32]uint32
	overseas bool // some rule has scope overseas
	// local holds the records of RPZ local-data rules, by rule.
	local map[RuleID][]dns.RR
	// layer, when set, holds a delta over the compiled domain rules in dom
	// (see delta.go): rules taken out, rules added, lines moved.
	layer *domainLayer
}

// Empty returns a snapshot with no rules (generation 0).
func Empty() *Snapshot { return &Snapshot{Created: time.Now()} }

// RuleCount returns the number of rules of every type.
func (s *Snapshot) RuleCount() int { return s.domainCount() + len(s.ips) + len(s.asns) }

// domainCount is the number of domain rules in service.
func (s *Snapshot) domainCount() int {
	if l := s.layer; l != nil {
		return s.dom.len() - l.nremoved + l.add.len()
	}
	return s.dom.len()
}

// domRule returns the table holding domain rule id and its index there.
func (s *Snapshot) domRule(id uint32) (*domainTable, uint32) {
	if l := s.layer; l != nil && id >= uint32(s.dom.len()) {
		return &l.add, id - uint32(s.dom.len())
	}
	return &s.dom, id
}

// domLine returns domain rule id's line in the file as it is now.
func (s *Snapshot) domLine(id uint32) int {
	t, j := s.domRule(id)
	line := t.line(j)
	if l := s.layer; l != nil && t == &s.dom {
		line = l.shifted(s.sections[t.sect(j)].File, line)
	}
	return line
}

// HasIPRules reports whether any IP or prefix rule is loaded (so answers
// need address checks).
func (s *Snapshot) HasIPRules() bool { return len(s.ips) > 0 }

// HasASNRules reports whether any ASN rule is loaded (so answers need an ASN
// lookup).
func (s *Snapshot) HasASNRules() bool { return len(s.asns) > 0 }

// HasOverseasRules reports whether any rule is scoped to overseas answers.
func (s *Snapshot) HasOverseasRules() bool { return s.overseas }

// MatchName matches a canonical name (lower-case, no trailing dot; see
// NormalizeName) against the domain rules. It does not allocate.
func (s *Snapshot) MatchName(name string) Match {
	if s.layer != nil {
		return s.matchLayered(name)
	}
	nm := s.dom.match(name)
	var m Match
	if nm.hasBlock {
		m.Rule, m.HasRule, m.At = makeRuleID(RuleDomain, int(s.pickRule(nm.block, nm.blockBits))), true, int(nm.blockAt)
	}
	if nm.hasAllow {
		m.Allow, m.HasAllow = makeRuleID(RuleDomain, int(s.pickRule(nm.allow, nm.allowBits))), true
	}
	return m
}

// pickRule chooses, among the rules sharing head's name, one whose kind is in
// bits, preferring enforced over monitor-only and "any" over "overseas".
func (s *Snapshot) pickRule(head uint32, bits uint8) uint32 {
	k := s.dom.kindAt(head)
	if k&kindNext != 0 {
		next := head + 1
		if s.dom.kindAt(next)&bits == 0 {
			return head
		}
		if s.dom.ownKind(head)&bits == 0 || s.ruleScore(next) > s.ruleScore(head) {
			return next
		}
		return head
	}
	if k&kindMore == 0 {
		return head
	}
	best, bestScore := head, -1
	for _, d := range s.dom.dups[head] {
		if d.kind&bits == 0 {
			continue
		}
		if score := s.ruleScore(d.id); score > bestScore {
			best, bestScore = d.id, score
		}
	}
	return best
}

// ruleScore ranks rules sharing a name: enforced over monitor-only, then
// scope any over overseas.
func (s *Snapshot) ruleScore(id uint32) int {
	sec := s.sections[s.dom.sect(id)]
	score := 0
	if sec.Action.Enforced() {
		score += 2
	}
	if sec.Scope == ScopeAny {
		score++
	}
	return score
}

// MatchIP matches an answer address against the IP and prefix rules.
func (s *Snapshot) MatchIP(a netip.Addr) Match {
	var m Match
	if len(s.ips) == 0 {
		return m
	}
	if i, ok := s.ipBlock.lookup(a); ok {
		m.Rule, m.HasRule = makeRuleID(RuleIP, int(i)), true
	}
	if i, ok := s.ipAllow.lookup(a); ok {
		m.Allow, m.HasAllow = makeRuleID(RuleIP, int(i)), true
	}
	return m
}

// MatchASN matches the ASN announcing an answer address.
func (s *Snapshot) MatchASN(asn uint32) Match {
	var m Match
	if i, ok := s.asnBlock[asn]; ok {
		m.Rule, m.HasRule = makeRuleID(RuleASN, int(i)), true
	}
	if i, ok := s.asnAllow[asn]; ok {
		m.Allow, m.HasAllow = makeRuleID(RuleASN, int(i)), true
	}
	return m
}

// Section returns the directives in force for a rule.
func (s *Snapshot) Section(id RuleID) *Section {
	i := id.index()
	switch id.Type() {
	case RuleDomain:
		t, j := s.domRule(uint32(i))
		return &s.sections[t.sect(j)]
	case RuleIP:
		return &s.sections[s.ips[i].sect]
	case RuleASN:
		return &s.sections[s.asns[i].sect]
	}
	return &Section{}
}

// Rule describes a rule for people.
func (s *Snapshot) Rule(id RuleID) Rule {
	sec := s.Section(id)
	r := Rule{Type: id.Type(), File: sec.File, Platform: sec.Platform, Action: sec.Action, Scope: sec.Scope, Why: sec.Why}
	i := id.index()
	switch id.Type() {
	case RuleDomain:
		t, j := s.domRule(uint32(i))
		k, allow := kindOf(t.ownKind(j))
		name := string(t.name(j))
		switch k {
		case MatchWildcard:
			name = "*." + name
		case MatchExact:
			name = "=" + name
		}
		r.Text, r.Line, r.Allow = name, s.domLine(uint32(i)), allow
	case RuleIP:
		ip := s.ips[i]
		if ip.prefix.IsSingleIP() {
			r.Text = ip.prefix.Addr().String()
		} else {
			r.Text = ip.prefix.String()
		}
		r.Line, r.Allow = int(ip.line), ip.allow
	case RuleASN:
		a := s.asns[i]
		r.Text, r.Line, r.Allow = "AS"+strconv.FormatUint(uint64(a.asn), 10), int(a.line), a.allow
	}
	if r.Allow {
		r.Text = "@@" + r.Text
	}
	return r
}

// RulePlace returns where a rule is written and its platform, without
// building a Rule (for the per-query paths).
func (s *Snapshot) RulePlace(id RuleID) (file string, line int, platform string) {
	sec := s.Section(id)
	i := id.index()
	switch id.Type() {
	case RuleDomain:
		line = s.domLine(uint32(i))
	case RuleIP:
		line = int(s.ips[i].line)
	case RuleASN:
		line = int(s.asns[i].line)
	}
	return sec.File, line, sec.Platform
}

// AppendRuleText appends the rule's canonical text (Rule(id).Text) to dst
// without allocating.
func (s *Snapshot) AppendRuleText(dst []byte, id RuleID) []byte {
	i := id.index()
	switch id.Type() {
	case RuleDomain:
		t, j := s.domRule(uint32(i))
		k, allow := kindOf(t.ownKind(j))
		if allow {
			dst = append(dst, "@@"...)
		}
		switch k {
		case MatchWildcard:
			dst = append(dst, "*."...)
		case MatchExact:
			dst = append(dst, '=')
		}
		return t.appendName(dst, j)
	case RuleIP:
		ip := s.ips[i]
		if ip.allow {
			dst = append(dst, "@@"...)
		}
		if ip.prefix.IsSingleIP() {
			return ip.prefix.Addr().AppendTo(dst)
		}
		return ip.prefix.AppendTo(dst)
	case RuleASN:
		a := s.asns[i]
		if a.allow {
			dst = append(dst, "@@"...)
		}
		return strconv.AppendUint(append(dst, "AS"...), uint64(a.asn), 10)
	}
	return dst
}

// AppendReason appends the reason text of a rule, as Rule(id).Reason()
// gives it ("blocked by file:line (platform)"), without allocating.
func (s *Snapshot) AppendReason(dst []byte, id RuleID) []byte {
	file, line, platform := s.RulePlace(id)
	allow := false
	switch id.Type() {
	case RuleDomain:
		t, j := s.domRule(uint32(id.index()))
		_, allow = kindOf(t.ownKind(j))
	case RuleIP:
		allow = s.ips[id.index()].allow
	case RuleASN:
		allow = s.asns[id.index()].allow
	}
	if allow {
		dst = append(dst, "allowed by "...)
	} else {
		dst = append(dst, "blocked by "...)
	}
	dst = strconv.AppendInt(append(append(dst, file...), ':'), int64(line), 10)
	if platform != "" {
		dst = append(append(append(dst, " ("...), platform...), ')')
	}
	return s.Section(id).Why.AppendText(dst)
}

// RuleWhy returns the authority, order and contact of a rule (from its
// section's directives), without building a Rule.
func (s *Snapshot) RuleWhy(id RuleID) Why { return s.Section(id).Why }

// SubtreeLabels returns, for a domain rule that covers its name and every
// subdomain, the number of labels of its name (the zone a negative answer
// is for); 0 for any other rule.
func (s *Snapshot) SubtreeLabels(id RuleID) int {
	if id.Type() != RuleDomain {
		return 0
	}
	t, i := s.domRule(uint32(id.index()))
	if t.ownKind(i) != kindSubtree {
		return 0
	}
	return encodedLabels(t.enc(i))
}

// CoversSubtree reports whether a rule is a domain rule that covers its
// name and every subdomain (the negative answer is then for its zone,
// which starts at Match.At in the matched name).
func (s *Snapshot) CoversSubtree(id RuleID) bool {
	if id.Type() != RuleDomain {
		return false
	}
	t, i := s.domRule(uint32(id.index()))
	return t.ownKind(i) == kindSubtree
}

// File returns the status of the named list file, or nil.
func (s *Snapshot) File(name string) *FileStatus {
	for _, f := range s.Files {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Errors returns every file's current errors.
func (s *Snapshot) Errors() []*LineError {
	var out []*LineError
	for _, f := range s.Files {
		out = append(out, f.Errors...)
	}
	return out
}

// Warnings returns every file's current warnings.
func (s *Snapshot) Warnings() []*LineError {
	var out []*LineError
	for _, f := range s.Files {
		out = append(out, f.Warnings...)
	}
	return out
}

// LocalData returns the records an RPZ local-data rule answers with, in
// zone-file order with the owner names of the zone, or nil. The records are
// shared: copy them before changing anything.
func (s *Snapshot) LocalData(id RuleID) []dns.RR {
	if l := s.layer; l != nil && id.Type() == RuleDomain && id.index() >= s.dom.len() {
		return l.local[uint32(id.index()-s.dom.len())]
	}
	return s.local[id]
}

// MemoryBytes estimates the heap held by the compiled rules.
func (s *Snapshot) MemoryBytes() int {
	n := s.dom.heapBytes() + len(s.ips)*40 + len(s.asns)*16 + s.ipBlock.heapBytes() + s.ipAllow.heapBytes()
	if l := s.layer; l != nil {
		n += l.add.heapBytes() + 8*len(l.removed)
	}
	return n
}

// builder accumulates the rules of several files into one snapshot. It is
// the entrySink the parsers write to.
type builder struct {
	s         *Snapshot
	sectErr   bool
	cur       uint16       // section of the entries being added
	fileStart mark         // where the file being parsed began (see startFile)
	last      RuleID       // the rule added last, for setLocalData
	warns     []*LineError // warnings of the file being parsed
	nwarns    int

	rpz *rpzFileState // of the RPZ zone parsed last, for its deltas

	touch uint32 // see repeatedOwner
}

func newBuilder(domainHint, nameBytesHint int) *builder {
	b := &builder{s: &Snapshot{Created: time.Now()}}
	b.s.dom.grow(domainHint, nameBytesHint)
	return b
}

func (b *builder) beginSection(sec Section) {
	if len(b.s.sections) >= 1<<16 {
		b.sectErr = true
		return
	}
	b.s.sections = append(b.s.sections, sec)
	b.cur = uint16(len(b.s.sections) - 1)
	if sec.Scope == ScopeOverseas {
		b.s.overseas = true
	}
}

func (b *builder) useSection(sec Section) {
	for i := len(b.s.sections) - 1; i >= b.fileStart.sect; i-- {
		if b.s.sections[i] == sec {
			b.cur = uint16(i)
			return
		}
	}
	b.beginSection(sec)
}

func (b *builder) curSect() uint16 { return b.cur }

// startFile marks the start of a file's entries, for rollback, restart and
// repeatedOwner.
func (b *builder) startFile() mark {
	b.fileStart, b.rpz = b.mark(), nil
	return b.fileStart
}

func (b *builder) restart() {
	b.rollback(b.fileStart)
	b.warns, b.nwarns, b.rpz = nil, 0, nil
}

// repeatedOwner reports whether two domain rules of the file being parsed
// have the same name and match kind (whatever their allow bit), using a
// transient hash set of the file's distinct names.
//
// A rule that shares the previous rule's name (lens 0: an RPZ zone's
// "*.name" after "name") adds its kind to that name's entry without a
// lookup. Names are hashed on their encoding (equal names have equal
// encodings) a batch at a time, and the batch's slots are loaded in a
// tight loop before the inserts, so their cache misses overlap.
func (b *builder) repeatedOwner() bool {
	d := &b.s.dom
	start, end := b.fileStart.dom, d.len()
	if end-start < 2 {
		return false
	}
	size := (end-start)*3/2 + 1
	slots := make([]uint32, size) // rule index + 1 of each distinct name
	masks := make([]uint8, size)  // match kinds seen for that name
	seed := maphash.MakeSeed()
	var (
		homes [buildBatch]int
		encs  [buildBatch][]byte
		touch uint32
	)
	last := -1 // slot of the previous rule's name
	for b0 := start; b0 < end; {
		b1 := min((b0/nameBlock+1)*nameBlock, end) // to the end of b0's block
		v := d.encStart(uint32(b0))
		page, off := d.pages[v>>pageBits], int(v&pageMask)
		for i := b0; i < b1; i++ {
			if l := int(d.lens[i]); l != 0 {
				e := page[off : off+l]
				off += l
				homes[i-b0], encs[i-b0] = fastrange(maphash.Bytes(seed, e), size), e
			} else {
				encs[i-b0] = nil
			}
		}
		for i := b0; i < b1; i++ {
			if encs[i-b0] != nil {
				touch += slots[homes[i-b0]]
			}
		}
		for i := b0; i < b1; i++ {
			id := uint32(i)
			k, _ := kindOf(d.kindAt(id))
			bit := uint8(1) << k
			if encs[i-b0] == nil && last >= 0 {
				if masks[last]&bit != 0 {
					return true
				}
				masks[last] |= bit
				continue
			}
			name := encs[i-b0]
			if name == nil {
				name = d.enc(id) // the file's first rule shares the name of the rule before the file
				homes[i-b0] = fastrange(maphash.Bytes(seed, name), size)
			}
			s := homes[i-b0]
			for {
				v := slots[s]
				if v == 0 {
					slots[s], masks[s] = id+1, bit
					break
				}
				if bytes.Equal(d.enc(v-1), name) {
					if masks[s]&bit != 0 {
						return true
					}
					masks[s] |= bit
					break
				}
				if s++; s == size {
					s = 0
				}
			}
			last = s
		}
		b0 = b1
	}
	b.touch = touch // keeps the loads ahead of the inserts
	return false
}

// hasDomainRule reports whether a domain rule of the file being parsed
// has name (canonical) and kind, whatever its allow bit: a scan of the
// file's rules, for the few owners an RPZ zone yields no rule for.
func (b *builder) hasDomainRule(name []byte, kind MatchKind) bool {
	d := &b.s.dom
	want := appendEncoded(nil, name)
	var e []byte
	for b0, end := b.fileStart.dom, d.len(); b0 < end; {
		b1 := min((b0/nameBlock+1)*nameBlock, end) // to the end of b0's block
		v := d.encStart(uint32(b0))
		page, off := d.pages[v>>pageBits], int(v&pageMask)
		for i := b0; i < b1; i++ {
			if l := int(d.lens[i]); l != 0 {
				e = page[off : off+l]
				off += l
			} else if e == nil {
				e = d.enc(uint32(i)) // the file's first rule shares the name of the rule before the file
			}
			if k, _ := kindOf(d.kindAt(uint32(i))); k == kind && bytes.Equal(e, want) {
				return true
			}
		}
		b0 = b1
	}
	return false
}

func (b *builder) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	b.s.dom.add(name, kindBit(kind, allow), line, b.curSect())
	b.last = makeRuleID(RuleDomain, b.s.dom.len()-1)
}

// ruleRoom is how many more domain rules the builder holds without
// growing: when a file is parsed, about its lines (the store sizes the
// builder for them).
func (b *builder) ruleRoom() int { return cap(b.s.dom.lens) - len(b.s.dom.lens) }

// addDomainAgain is addDomain for the name of the domain rule added last.
func (b *builder) addDomainAgain(name []byte, kind MatchKind, allow bool, line int) {
	b.s.dom.addAgain(name, kindBit(kind, allow), line, b.curSect())
	b.last = makeRuleID(RuleDomain, b.s.dom.len()-1)
}

func (b *builder) addPrefix(p netip.Prefix, allow bool, line int) {
	b.s.ips = append(b.s.ips, ipRule{prefix: p, line: uint32(line), sect: b.curSect(), allow: allow})
	b.last = makeRuleID(RuleIP, len(b.s.ips)-1)
}

func (b *builder) setLocalData(rrs []dns.RR) {
	if b.s.local == nil {
		b.s.local = make(map[RuleID][]dns.RR)
	}
	b.s.local[b.last] = rrs
}

func (b *builder) warn(e *LineError) {
	b.nwarns++
	if len(b.warns) < maxErrorsPerFile {
		b.warns = append(b.warns, e)
	}
}

// takeWarnings returns the warnings collected since the last call, capped
// like errors, and starts a new collection.
func (b *builder) takeWarnings(file string) []*LineError {
	w := b.warns
	if b.nwarns > len(w) {
		w = append(w, &LineError{File: file, Msg: strconv.Itoa(b.nwarns-len(w)) + " more warnings not shown"})
	}
	b.warns, b.nwarns = nil, 0
	return w
}

func (b *builder) addASN(asn uint32, allow bool, line int) {
	b.s.asns = append(b.s.asns, asnRule{asn: asn, line: uint32(line), sect: b.curSect(), allow: allow})
}

// mark records the current sizes, to roll back a file that fails.
type mark struct{ dom, ip, asn, sect int }

func (b *builder) mark() mark {
	return mark{b.s.dom.len(), len(b.s.ips), len(b.s.asns), len(b.s.sections)}
}

func (b *builder) rollback(m mark) {
	for id := range b.s.local {
		if (id.Type() == RuleDomain && id.index() >= m.dom) || (id.Type() == RuleIP && id.index() >= m.ip) {
			delete(b.s.local, id)
		}
	}
	b.s.dom.truncate(m.dom)
	b.s.ips = b.s.ips[:m.ip]
	b.s.asns = b.s.asns[:m.asn]
	b.s.sections = b.s.sections[:m.sect]
	b.cur = uint16(max(m.sect-1, 0))
	b.sectErr = false
}

// finishFile fills f's ranges and counts from the mark taken before it.
func (b *builder) finishFile(f *FileStatus, m mark) {
	e := b.mark()
	f.dom = [2]int{m.dom, e.dom}
	f.ip = [2]int{m.ip, e.ip}
	f.asn = [2]int{m.asn, e.asn}
	f.sect = [2]int{m.sect, e.sect}
	f.Domains, f.IPs, f.ASNs = e.dom-m.dom, e.ip-m.ip, e.asn-m.asn
}

// copyFile appends the rules f held in the old snapshot, unchanged.
func (b *builder) copyFile(old *Snapshot, f *FileStatus) {
	if old.layer != nil {
		b.copyFileLayered(old, f)
		return
	}
	sectBase := len(b.s.sections) - f.sect[0]
	b.s.sections = append(b.s.sections, old.sections[f.sect[0]:f.sect[1]]...)
	for _, sec := range old.sections[f.sect[0]:f.sect[1]] {
		if sec.Scope == ScopeOverseas {
			b.s.overseas = true
		}
	}
	d := &b.s.dom
	domBase, ipBase := d.len()-f.dom[0], len(b.s.ips)-f.ip[0]
	b.copyLocalData(old, f, domBase, ipBase)
	for i := f.dom[0]; i < f.dom[1]; i++ {
		id := uint32(i)
		d.addEnc(old.dom.enc(id), old.dom.ownKind(id), old.dom.line(id), uint16(int(old.dom.sect(id))+sectBase))
	}
	for _, r := range old.ips[f.ip[0]:f.ip[1]] {
		r.sect = uint16(int(r.sect) + sectBase)
		b.s.ips = append(b.s.ips, r)
	}
	for _, r := range old.asns[f.asn[0]:f.asn[1]] {
		r.sect = uint16(int(r.sect) + sectBase)
		b.s.asns = append(b.s.asns, r)
	}
}

// copyLocalData carries f's local-data records over from old, with rule
// indexes moved by the given bases.
func (b *builder) copyLocalData(old *Snapshot, f *FileStatus, domBase, ipBase int) {
	if len(old.local) == 0 {
		return
	}
	put := func(t RuleType, i int, rrs []dns.RR) {
		if t == RuleDomain {
			b.last = makeRuleID(t, i+domBase)
		} else {
			b.last = makeRuleID(t, i+ipBase)
		}
		b.setLocalData(rrs)
	}
	if n := f.dom[1] - f.dom[0] + f.ip[1] - f.ip[0]; n < len(old.local) {
		// Few rules in this file: look each one up.
		for i := f.dom[0]; i < f.dom[1]; i++ {
			if rrs, ok := old.local[makeRuleID(RuleDomain, i)]; ok {
				put(RuleDomain, i, rrs)
			}
		}
		for i := f.ip[0]; i < f.ip[1]; i++ {
			if rrs, ok := old.local[makeRuleID(RuleIP, i)]; ok {
				put(RuleIP, i, rrs)
			}
		}
		return
	}
	for id, rrs := range old.local {
		switch i := id.index(); {
		case id.Type() == RuleDomain && i >= f.dom[0] && i < f.dom[1]:
			put(RuleDomain, i, rrs)
		case id.Type() == RuleIP && i >= f.ip[0] && i < f.ip[1]:
			put(RuleIP, i, rrs)
		}
	}
}

// compile builds the matchers and returns the finished snapshot.
func (b *builder) compile(gen uint64, files []*FileStatus) (*Snapshot, error) {
	s := b.s
	if s.dom.len() > maxDomainRuleIDs || len(s.ips) > ruleIndexMask || len(s.asns) > ruleIndexMask {
		return nil, fmt.Errorf("too many rules: %d domains, %d IPs, %d ASNs", s.dom.len(), len(s.ips), len(s.asns))
	}
	s.Generation = gen
	s.Files = files
	s.dom.shrink()
	s.dom.build()
	s.compileAddrs()
	return s, nil
}

// compileAddrs builds the IP and ASN matchers from s.ips and s.asns.
func (s *Snapshot) compileAddrs() {
	var block, allow []prefixSpan
	for i, r := range s.ips {
		lo, hi := prefixRange(r.prefix)
		span := prefixSpan{lo: lo, hi: hi, bits: r.prefix.Bits(), id: uint32(i)}
		if r.prefix.Addr().Is4() {
			span.bits += 96
		}
		if r.allow {
			allow = append(allow, span)
		} else {
			block = append(block, span)
		}
	}
	prefer := func(a, c uint32) bool {
		return s.sections[s.ips[a].sect].Action.Enforced() && !s.sections[s.ips[c].sect].Action.Enforced()
	}
	s.ipBlock = buildIntervals(block, prefer)
	s.ipAllow = buildIntervals(allow, nil)
	s.asnBlock, s.asnAllow = map[uint32]uint32{}, map[uint32]uint32{}
	for i, r := range s.asns {
		m := s.asnBlock
		if r.allow {
			m = s.asnAllow
		}
		if prev, ok := m[r.asn]; ok && (r.allow || !s.sections[r.sect].Action.Enforced() || s.sections[s.asns[prev].sect].Action.Enforced()) {
			continue
		}
		m[r.asn] = uint32(i)
	}
}

// Trigger is one rule's match condition in structured form, for exporters
// (the RPZ primary) that must rewrite every rule in another syntax.
type Trigger struct {
	ID    RuleID
	Type  RuleType
	Allow bool // an exception
	// Name and Kind hold a domain rule's canonical name and match kind.
	Name string
	Kind MatchKind
	// Prefix holds an IP rule's prefix (a single address is a full-length
	// prefix).
	Prefix netip.Prefix
	// ASN holds an ASN rule's number.
	ASN uint32
}

// Triggers yields every rule of the snapshot: domain rules, then IP rules,
// then ASN rules, each in file order. Section and LocalData give the rest
// of a rule.
func (s *Snapshot) Triggers() iter.Seq[Trigger] {
	return func(yield func(Trigger) bool) {
		n := s.dom.len()
		if s.layer != nil {
			n += s.layer.add.len()
		}
		var buf []byte
		for i := 0; i < n; i++ {
			if s.layer.isRemoved(uint32(i)) {
				continue
			}
			t, j := s.domRule(uint32(i))
			k, allow := kindOf(t.ownKind(j))
			buf = t.appendName(buf[:0], j)
			tr := Trigger{ID: makeRuleID(RuleDomain, i), Type: RuleDomain, Allow: allow, Name: string(buf), Kind: k}
			if !yield(tr) {
				return
			}
		}
		for i, r := range s.ips {
			if !yield(Trigger{ID: makeRuleID(RuleIP, i), Type: RuleIP, Allow: r.allow, Prefix: r.prefix}) {
				return
			}
		}
		for i, r := range s.asns {
			if !yield(Trigger{ID: makeRuleID(RuleASN, i), Type: RuleASN, Allow: r.allow, ASN: r.asn}) {
				return
			}
		}
	}
}
