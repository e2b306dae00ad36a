package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// The streaming RPZ parser. Big policy zones are almost entirely records
// of a handful of forms (name CNAME ., *.name CNAME ., CNAME *.,
// CNAME rpz-passthru., CNAME rpz-drop., A/AAAA local data, rpz-ip
// triggers), so those are read straight from the line into the same
// compiled structures as the native format, with no dns.RR and no copy of
// the file. Any other record (parentheses, quotes, escapes, other types,
// TTL units, other classes) is handed, with the $ORIGIN, $TTL and owner in
// force, to miekg/dns's zone parser. A zone whose structure the stream
// cannot decide alone (records before the SOA, an owner whose records are
// not consecutive, $INCLUDE, $GENERATE, unknown directives) is parsed
// again from the start by the general parser (parseRPZGeneral), which
// reads the zone whole; the result is the same either way.
//
// The commonest line of all, "name CNAME ACTION" relative to an origin
// that is the apex, takes one pass over its bytes (quick): the owner is
// checked and lower-cased as it is read and becomes its rule without being
// normalized again, made absolute only when an error's text needs it; a
// "*.name" after "name" shares the name stored for "name" (addDomainAgain)
// and rules under the same policy skip the section lookup. The wildcards'
// public suffix check has a bit filter in front of it (rpzsuffix.go), and
// the check for owners spread over the zone runs beside the parser, on
// another core (rpzdups.go). The reading, the cutting into lines and
// quick's stateless part (quickScan) run on a goroutine of their own
// ahead of the parser (rpzpipe.go).
// TestRPZQuickLines and TestRPZQuickMatchesGeneral hold the stream to the
// general parser.

// errRPZGeneral is returned (alone) by the streaming parser when the zone
// needs the general parser.
var errRPZGeneral = errors.New("zone needs the general parser")

// parseRPZ parses one RPZ zone file and feeds its triggers to sink, with
// the streaming parser when it can. When the general parser must take
// over, everything fed so far is taken back (sink.restart) and the zone is
// read again: from the start when r can seek, else from a copy.
func parseRPZ(file string, r io.Reader, sink entrySink) []*LineError {
	seeker, canSeek := r.(io.Seeker)
	var data []byte
	if !canSeek {
		var err error
		if data, err = io.ReadAll(r); err != nil {
			return []*LineError{{File: file, Msg: "read: " + err.Error()}}
		}
		r = bytes.NewReader(data)
	}
	errs, err := parseRPZStream(file, r, sink)
	if !errors.Is(err, errRPZGeneral) {
		return errs
	}
	sink.restart()
	if canSeek {
		if _, err := seeker.Seek(0, io.SeekStart); err != nil {
			return []*LineError{{File: file, Msg: "read: " + err.Error()}}
		}
		return parseRPZGeneral(file, r, sink)
	}
	return parseRPZData(file, data, sink)
}

// rpzRec is one record of the owner being collected: either a CNAME whose
// target was read from the line (rr nil) or any record parsed by miekg/dns.
type rpzRec struct {
	line   int
	target string // CNAME target, absolute, as written (rr == nil)
	ttl    uint32
	rr     dns.RR
}

type rpzStream struct {
	zone  rpzZoneDirectives // the apex's TXT directives, for every rule after them
	file  string
	sink  entrySink
	errs  []*LineError
	nerrs int

	origin       string // absolute, "" when unknown
	ttl          uint32 // default TTL
	haveTTL      bool
	ttlDirective bool   // ttl came from $TTL
	owner        []byte // owner of the last record, absolute, as written (curRaw while ownerCur)
	ownerCur     bool
	curRawRel    bool
	apex         string // lower case; "" before the SOA
	apexDot      []byte // "." + apex ("" for the root)
	soaLine      int
	records      int // records seen, SOA included

	// The owner being collected: its records are consecutive in the file.
	cur     []byte // lower case
	curRaw  []byte // absolute, as written (relative while curRawRel: see rawOwner)
	curLine int
	recs    []rpzRec
	abs     []byte // scratch for absolute names
	name    []byte // scratch for normalized names
	// curQuick is set when quick read the owner: cur is its relative
	// name, already lower case and valid, followed by apexDot.
	curQuick bool
	// curNotSuffix is quickLine.notSuffix of the owner quick read, and
	// curEnc its name encoded, when curEncOK (see quickApply).
	curNotSuffix bool
	curEncOK     bool
	curEnc       []byte
	qname        []byte // quick's scratch for the relative owner

	// originApex is set when the origin is the apex (the names quick
	// reads are relative to it).
	originApex bool
	// The section the last rule was emitted under (sectSet false before
	// the first): a rule under the same policy and zone directives needs
	// no section lookup.
	sectSet bool
	sectPol rpzPolicy
	zoneGen int // counts apex flushes, which may change the directives
	sectGen int
	// The name of the last domain rule fed (haveLast), which the next
	// rule may share (an RPZ zone's "*.name" after "name").
	lastName     []byte
	haveLast     bool
	again        againSink
	againChecked bool
	enc          encodedSink
	encChecked   bool
	// dups checks the QNAME rules fed for an owner spread over the zone
	// beside the parser (nil: the sink's repeatedOwner alone, at the end).
	dups *dupCheck

	ipOwners    map[netip.Prefix]bool
	needGeneral bool // an owner's records are spread over the zone
	// Owners whose records yielded a warning and no rule (lower case,
	// absolute), and the QNAME triggers among them: if their owners have
	// other records elsewhere, repeatedOwner cannot tell.
	warned      map[string]bool
	warnedRules []rpzOwnerRule
	local       map[string][]dns.RR
	fields      [][]byte
	apexGroups  int // runs of apex records flushed (their TXT directives apply from there on)
	dirs        []rpzDirective

	chunk     []byte // a record spread over lines by parentheses
	chunkLine int
	depth     int
}

// parseRPZStream is the streaming parser. It returns errRPZGeneral when
// the zone must be parsed by parseRPZGeneral instead.
func parseRPZStream(file string, r io.Reader, sink entrySink) ([]*LineError, error) {
	p := &rpzStream{file: file, sink: sink, origin: defaultOrigin(file), dups: &dupCheck{}}
	if r, ok := sink.(interface{ ruleRoom() int }); ok {
		p.dups.hint = r.ruleRoom()
	}
	defer p.dups.stop()
	var gerr error
	if rpzPipelined {
		gerr = p.readPiped(r)
	} else {
		gerr = p.read(r)
	}
	if gerr != nil {
		return nil, gerr
	}
	if gerr := p.endInput(); gerr != nil {
		return nil, gerr
	}
	if p.apex == "" {
		if p.records > 0 && len(p.errs) == 0 {
			return nil, errRPZGeneral // records but no SOA yet: let the general parser report it
		}
		if len(p.errs) == 0 {
			p.fail(0, "", "no SOA record: an RPZ zone file needs the zone's SOA, whose owner is the zone apex")
		}
		return p.finish(), nil
	}
	p.flush()
	if len(p.errs) == 0 && (p.needGeneral || p.warnedRepeated() || p.dups.finish() && p.sink.repeatedOwner()) {
		return nil, errRPZGeneral // an owner's records are spread over the zone
	}
	if z, ok := p.sink.(rpzStateSink); ok && len(p.errs) == 0 {
		z.rpzState(&rpzFileState{apex: p.apex, apexDot: p.apexDot, soaLine: p.soaLine, zone: p.zone, apexGroups: p.apexGroups, dirs: p.dirs})
	}
	return p.finish(), nil
}

// read feeds the lines of r to the parser, on this goroutine; readPiped
// (rpzpipe.go) is the same with the reading on another.
func (p *rpzStream) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, rpzMaxLine)
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return errRPZGeneral // a line over 64 KiB: let the general parser judge it
		}
		if len(line) > 0 {
			lineNo++
			if gerr := p.feed(lineNo, line); gerr != nil {
				return gerr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.fail(0, "", "read: "+err.Error())
			}
			return nil
		}
	}
}

// rpzMaxLine is the longest line the streaming parser reads; a zone with
// a longer one is the general parser's.
const rpzMaxLine = 64 << 10

// feed parses one line (with its newline, if any) of the zone.
func (p *rpzStream) feed(lineNo int, line []byte) error {
	if p.depth == 0 {
		return p.line(lineNo, line, &p.chunk, &p.chunkLine, &p.depth)
	}
	p.chunk = append(p.chunk, line...)
	p.depth = parenDepth(line, p.depth)
	if p.depth > 0 {
		return nil
	}
	err := p.slow(p.chunkLine, p.chunk)
	p.chunk = p.chunk[:0]
	return err
}

// endInput ends a record left open by unbalanced parentheses (the zone
// parser says what is wrong).
func (p *rpzStream) endInput() error {
	if p.depth == 0 {
		return nil
	}
	p.depth = 0
	return p.slow(p.chunkLine, p.chunk)
}

func (p *rpzStream) finish() []*LineError {
	if p.nerrs > len(p.errs) {
		p.errs = append(p.errs, &LineError{File: p.file, Msg: strconv.Itoa(p.nerrs-len(p.errs)) + " more errors not shown"})
	}
	return p.errs
}

func (p *rpzStream) fail(line int, text, msg string) {
	p.nerrs++
	if len(p.errs) < maxErrorsPerFile {
		p.errs = append(p.errs, &LineError{File: p.file, Line: line, Text: text, Msg: msg})
	}
}

// parenDepth returns the parenthesis depth after line, outside quotes and
// comments, from depth before it; a ")" with none open is ignored.
func parenDepth(line []byte, depth int) int {
	net, low := parenWalk(line)
	return depth + net - min(0, depth+low)
}

// line handles one line outside parentheses.
func (p *rpzStream) line(n int, raw []byte, chunk *[]byte, chunkLine, depth *int) error {
	if p.originApex && p.haveTTL && p.quick(n, raw) {
		return nil
	}
	return p.lineRest(n, raw, chunk, chunkLine, depth)
}

// feedScanned is feed for a line quickScan read already (as q; enc as
// quickApply takes it).
func (p *rpzStream) feedScanned(n int, raw []byte, q quickLine, enc []byte) error {
	if p.depth != 0 {
		return p.feed(n, raw)
	}
	if q.tok > 0 && p.originApex && p.haveTTL && p.quickApply(n, raw, q, enc) {
		return nil
	}
	return p.lineRest(n, raw, &p.chunk, &p.chunkLine, &p.depth)
}

// lineRest is line for a line quick did not read.
func (p *rpzStream) lineRest(n int, raw []byte, chunk *[]byte, chunkLine, depth *int) error {
	body := trimSpace(bytes.TrimSuffix(raw, []byte{'\n'}))
	if len(body) == 0 || body[0] == ';' {
		return nil
	}
	if body[0] == '$' {
		return p.directive(n, body)
	}
	if hasZoneSpecial(body) {
		if d := parenDepth(raw, 0); d > 0 {
			*chunk = append((*chunk)[:0], raw...)
			*chunkLine, *depth = n, d
			return nil
		}
		return p.slow(n, raw)
	}
	if i := bytes.IndexByte(body, ';'); i >= 0 {
		body = trimSpace(body[:i])
	}
	p.fields = appendFields(p.fields[:0], body)
	f := p.fields
	inherit := isSpace(raw[0])
	var ownerTok []byte
	if !inherit {
		ownerTok, f = f[0], f[1:]
	} else if len(p.ownerName()) == 0 {
		return p.slow(n, raw)
	}
	ttl, hasTTL := uint32(0), false
	for range 2 {
		if len(f) == 0 {
			break
		}
		if t, ok := decimalTTL(f[0]); ok && !hasTTL {
			ttl, hasTTL, f = t, true, f[1:]
		} else if len(f[0]) == 2 && (f[0][0]|0x20) == 'i' && (f[0][1]|0x20) == 'n' {
			f = f[1:]
		}
	}
	if len(f) != 2 {
		return p.slow(n, raw)
	}
	typ, rdata := f[0], f[1]
	var rrtype uint16
	switch {
	case asciiEqualFold(typ, "CNAME"):
		rrtype = dns.TypeCNAME
	case asciiEqualFold(typ, "A"):
		rrtype = dns.TypeA
	case asciiEqualFold(typ, "AAAA"):
		rrtype = dns.TypeAAAA
	default:
		return p.slow(n, raw)
	}
	if !hasTTL {
		if !p.haveTTL {
			return p.slow(n, raw) // "missing TTL with no previous value"
		}
		ttl = p.ttl
	}
	owner := p.ownerName()
	if !inherit {
		var ok bool
		if p.abs, ok = p.absolute(p.abs[:0], ownerTok); !ok {
			return p.slow(n, raw)
		}
		owner = p.abs
	}
	rec := rpzRec{line: n, ttl: ttl}
	switch rrtype {
	case dns.TypeCNAME:
		switch string(rdata) { // the RPZ actions, without allocating
		case RPZNXDomain, RPZNoData, RPZPassthru, RPZDrop:
			rec.target = rpzActionTarget(rdata)
		default:
			target, ok := p.absolute(nil, rdata)
			if !ok {
				return p.slow(n, raw)
			}
			rec.target = string(target)
		}
	case dns.TypeA:
		a, err := netip.ParseAddr(string(rdata))
		if err != nil || !a.Is4() {
			return p.slow(n, raw)
		}
		b := a.As4()
		rec.rr = &dns.A{Hdr: dns.RR_Header{Name: string(owner), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IP(b[:])}
	case dns.TypeAAAA:
		a, err := netip.ParseAddr(string(rdata))
		if err != nil || a.Zone() != "" || bytes.IndexByte(rdata, ':') < 0 {
			return p.slow(n, raw)
		}
		b := a.As16()
		rec.rr = &dns.AAAA{Hdr: dns.RR_Header{Name: string(owner), Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(b[:])}
	}
	if !p.ttlDirective {
		p.ttl, p.haveTTL = ttl, true
	}
	p.owner, p.ownerCur = append(p.owner[:0], owner...), false
	return p.record(p.owner, rec)
}

// quick reads the commonest line of a big policy zone in one pass over
// its bytes: "name CNAME ACTION" with name relative to an origin that is
// the apex, no TTL or class, ACTION one of ., *., rpz-passthru. and
// rpz-drop. (as written by the exporters of big zones), and, after a
// blank, nothing but blanks or a comment. The owner is lower-cased and
// checked as it is read (what normalizeName's table pass checks), so its
// rule needs no second pass. It reports false, having changed nothing,
// for any other line, for a name normalizeName's table pass would not
// take or the trigger rules judge (a last label "rpz-...", "*" alone, a
// "*" anywhere but a leading "*."), and for a second record of the owner
// being collected: the general line path reads those.
func (p *rpzStream) quick(n int, raw []byte) bool {
	q := quickScanLine(raw)
	return q.tok > 0 && p.quickApply(n, raw, q, nil)
}

// quickLine is what quickScan read of a line: the length of its owner
// token (0: not a line quick reads), whether the owner has an upper-case
// letter, and its action (an index into quickTargets).
type quickLine struct {
	tok    int32
	upper  bool
	target uint8
	// notSuffix is set for a "*.name" owner whose name is certainly not
	// a public suffix (wildcardSuffixMsg has nothing to say of it): the
	// check is done where quickScan runs. Unset, the parser checks.
	notSuffix bool
}

// quickTargets are the actions quick reads.
var quickTargets = [...]string{RPZNXDomain, RPZNoData, RPZPassthru, RPZDrop}

// quickScan is the part of quick that reads the line's bytes alone (no
// parser state), so that it can run ahead of the parser, on another
// goroutine (rpzpipe.go).
func quickScan(raw []byte) quickLine {
	q := quickScanLine(raw)
	if q.tok > 2 && !q.upper && raw[0] == '*' && !theSuffixFilter().maybePublicSuffix(raw[2:q.tok]) {
		q.notSuffix = true
	}
	return q
}

// quickScanLine is quickScan without the public suffix check.
func quickScanLine(raw []byte) quickLine {
	// The owner: its bytes are classed by one table (a letter, digit, '-'
	// or '_'; an upper-case letter; a dot); the labels are checked only
	// when the name has a dot and over 63 bytes, or an empty label.
	i, star := 0, 0
	if len(raw) > 2 && raw[0] == '*' && raw[1] == '.' {
		i, star = 2, 2
	}
	var seen uint8
	dot, empty := star-1, false // the last dot; an empty label seen
	for i < len(raw) {
		c := quickOwner[raw[i]]
		if c == 0 {
			break
		}
		if c == quickDot {
			empty = empty || i == dot+1
			dot = i
		}
		seen |= c
		i++
	}
	tok, name := raw[:i], raw[star:i]
	if len(name) == 0 || i == len(raw) || !isSpace(raw[i]) || len(tok) > 253 {
		return quickLine{} // no name, or another byte after it
	}
	if empty || dot == i-1 {
		return quickLine{} // an empty label, or a trailing dot (absolute)
	}
	lastDot := dot - star // in name; -1 when it has no dot
	if len(name) > 63 && (seen&quickDot == 0 || !labelsFit(name)) {
		return quickLine{}
	}
	if l := name[lastDot+1:]; len(l) >= 4 && l[0]|0x20 == 'r' && l[1]|0x20 == 'p' && l[2]|0x20 == 'z' && l[3] == '-' {
		return quickLine{} // a special trigger
	}
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	if len(raw)-i < 7 || raw[i]|0x20 != 'c' || raw[i+1]|0x20 != 'n' || raw[i+2]|0x20 != 'a' || raw[i+3]|0x20 != 'm' || raw[i+4]|0x20 != 'e' || !isSpace(raw[i+5]) {
		return quickLine{} // the type is not CNAME
	}
	for i += 6; i < len(raw) && isSpace(raw[i]); i++ {
	}
	j := i
	for j < len(raw) && !isSpace(raw[j]) && raw[j] != '\n' && raw[j] != ';' {
		j++
	}
	var target uint8
	switch string(raw[i:j]) {
	case RPZNXDomain:
		target = 0
	case RPZNoData:
		target = 1
	case RPZPassthru:
		target = 2
	case RPZDrop:
		target = 3
	default:
		return quickLine{}
	}
	for j < len(raw) && isSpace(raw[j]) {
		j++
	}
	switch {
	case j == len(raw), raw[j] == '\n':
	case raw[j] == ';' && !hasZoneSpecial(raw[j:]):
	default:
		return quickLine{}
	}
	return quickLine{tok: int32(len(tok)), upper: seen&quickUpper != 0, target: target}
}

// quickApply is the part of quick that needs the parser's state: raw is
// a line quickScan read as q (q.tok > 0), and enc, when not nil, the
// owner's name encoded (appendEncoded), for an owner that is not "*.name"
// and has no upper-case letter. It reports false, having changed
// nothing, for a second record of the owner being collected.
func (p *rpzStream) quickApply(n int, raw []byte, q quickLine, enc []byte) bool {
	tok := raw[:q.tok]
	rel := tok
	if q.upper {
		p.qname = appendLower(p.qname[:0], tok)
		rel = p.qname
	}
	// The owner is rel + "." + origin, whose lower case is rel + apexDot.
	if len(p.cur) == len(rel)+len(p.apexDot) && bytes.Equal(p.cur[:len(rel)], rel) && bytes.Equal(p.cur[len(rel):], p.apexDot) {
		return false // the same owner again
	}
	p.records++
	p.flush()
	p.cur = append(append(p.cur[:0], rel...), p.apexDot...)
	p.curRaw, p.curRawRel, p.ownerCur = append(p.curRaw[:0], tok...), true, true
	p.curLine, p.curQuick, p.curNotSuffix = n, true, q.notSuffix
	p.curEnc, p.curEncOK = append(p.curEnc[:0], enc...), enc != nil
	p.recs = append(p.recs, rpzRec{line: n, ttl: p.ttl, target: quickTargets[q.target]})
	return true
}

// Classes of owner bytes for quick.
const (
	quickName  = 1 // a lower-case letter, a digit, '-' or '_'
	quickUpper = 2 // an upper-case letter
	quickDot   = 4
)

var quickOwner = func() (t [256]uint8) {
	for c := range 256 {
		switch l := nameLower[c]; {
		case l == '.':
			t[c] = quickDot
		case l != 0 && l != byte(c):
			t[c] = quickUpper
		case l != 0:
			t[c] = quickName
		}
	}
	return t
}()

// labelsFit reports whether no label of name is over 63 bytes.
func labelsFit(name []byte) bool {
	for len(name) > 0 {
		i := bytes.IndexByte(name, '.')
		if i < 0 {
			return len(name) <= 63
		}
		if i > 63 {
			return false
		}
		name = name[i+1:]
	}
	return true
}

// rawOwner returns the owner being collected as written, absolute: quick
// keeps it relative until it is asked for (an error's text, a directive
// that may change the origin).
func (p *rpzStream) rawOwner() []byte {
	if p.curRawRel {
		p.curRaw, p.curRawRel = append(append(p.curRaw, '.'), p.origin...), false
	}
	return p.curRaw
}

// ownerName returns the owner of the last record, absolute, as written.
func (p *rpzStream) ownerName() []byte {
	if p.ownerCur {
		return p.rawOwner()
	}
	return p.owner
}

// setOriginApex notes whether the origin is the apex.
func (p *rpzStream) setOriginApex() {
	p.originApex = p.apex != "" && p.apex != "." && len(p.origin) == len(p.apex) && equalFoldLower([]byte(p.origin), []byte(p.apex))
}

// zoneSpecial marks the bytes that make a line the zone parser's: quotes,
// escapes and parentheses.
var zoneSpecial = [256]bool{'"': true, '\\': true, '(': true, ')': true}

// hasZoneSpecial reports whether b holds a zoneSpecial byte (what
// bytes.ContainsAny(b, "\"\\()") says, without building its set per call).
func hasZoneSpecial(b []byte) bool {
	for _, c := range b {
		if zoneSpecial[c] {
			return true
		}
	}
	return false
}

// rpzActionTarget returns the constant for an RPZ action target.
func rpzActionTarget(b []byte) string {
	for _, t := range [...]string{RPZNXDomain, RPZNoData, RPZPassthru, RPZDrop} {
		if string(b) == t {
			return t
		}
	}
	return string(b)
}

// appendFields splits b at blanks.
func appendFields(dst [][]byte, b []byte) [][]byte {
	for len(b) > 0 {
		i := 0
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		b = b[i:]
		if len(b) == 0 {
			break
		}
		j := 0
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		dst = append(dst, b[:j])
		b = b[j:]
	}
	return dst
}

func asciiEqualFold(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// decimalTTL reads a TTL written as plain digits (other spellings, "1h",
// take the general path).
func decimalTTL(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// absolute appends a name token as an absolute name, as written, to dst;
// ok is false for anything the fast path does not judge (escapes, odd
// characters, empty labels, no origin).
func (p *rpzStream) absolute(dst, tok []byte) ([]byte, bool) {
	if len(tok) == 1 && tok[0] == '@' {
		return append(dst, p.origin...), p.origin != ""
	}
	if len(tok) == 1 && tok[0] == '.' {
		return append(dst, '.'), true
	}
	prevDot := true
	for i, c := range tok {
		switch ownerByte[c] {
		case 1:
			prevDot = false
		case 2:
			if prevDot && !(i == 0 && len(tok) == 1) {
				return dst, false
			}
			prevDot = true
		default:
			return dst, false
		}
	}
	if len(tok) > 254 {
		return dst, false
	}
	dst = append(dst, tok...)
	if tok[len(tok)-1] == '.' {
		return dst, true
	}
	switch p.origin {
	case "":
		return dst, false
	case ".":
		return append(dst, '.'), true
	}
	return append(append(dst, '.'), p.origin...), true
}

// ownerByte classes the bytes of a name token for absolute: 1 for a
// letter, digit, '-', '_' or '*', 2 for a dot, 0 for anything else.
var ownerByte = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '*':
			t[c] = 1
		case c == '.':
			t[c] = 2
		}
	}
	return t
}()

// directive handles a $ line.
func (p *rpzStream) directive(n int, body []byte) error {
	p.rawOwner() // made absolute with the origin it was read under
	if i := bytes.IndexByte(body, ';'); i >= 0 {
		body = trimSpace(body[:i])
	}
	f := bytes.Fields(body)
	switch {
	case len(f) == 2 && asciiEqualFold(f[0], "$ORIGIN"):
		o, ok := p.absolute(nil, f[1])
		if !ok {
			return errRPZGeneral
		}
		p.origin = string(o)
		p.setOriginApex()
	case len(f) == 2 && asciiEqualFold(f[0], "$TTL"):
		t, ok := decimalTTL(f[1])
		if !ok {
			return errRPZGeneral
		}
		p.ttl, p.haveTTL, p.ttlDirective = t, true, true
	default:
		return errRPZGeneral // $INCLUDE, $GENERATE, anything else
	}
	p.dirs = append(p.dirs, rpzDirective{line: n, origin: p.origin, ttl: p.ttl, ttlDirective: p.ttlDirective})
	return nil
}

// slow parses one record (text, starting on line n) with miekg/dns's zone
// parser, given the origin, default TTL and previous owner in force.
func (p *rpzStream) slow(n int, text []byte) error {
	var b bytes.Buffer
	pre := 0
	if p.origin != "" {
		b.WriteString("$ORIGIN " + p.origin + "\n")
		pre++
	}
	if p.haveTTL {
		b.WriteString("$TTL " + strconv.FormatUint(uint64(p.ttl), 10) + "\n")
		pre++
	}
	if owner := p.ownerName(); len(text) > 0 && isSpace(text[0]) && len(owner) > 0 {
		b.Write(owner)
	}
	b.Write(text)
	zp := dns.NewZoneParser(&b, "", p.file)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		var pe *dns.ParseError
		if errors.As(err, &pe) {
			if m := parseErrorRE.FindStringSubmatch(err.Error()); m != nil {
				l, _ := strconv.Atoi(m[3])
				tok, _ := strconv.Unquote(m[2])
				p.fail(n+max(l-pre-1, 0), tok, m[1])
				return nil
			}
		}
		p.fail(n, "", err.Error())
		return nil
	}
	if len(rrs) != 1 {
		return errRPZGeneral
	}
	rr := rrs[0]
	h := rr.Header()
	if !p.ttlDirective {
		p.ttl, p.haveTTL = h.Ttl, true
	}
	p.owner, p.ownerCur = append(p.owner[:0], h.Name...), false
	if h.Class != dns.ClassINET {
		p.records++
		p.fail(n, rrText(rr), "only class IN records are allowed")
		return nil
	}
	if strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String())) == "" {
		p.records++
		p.fail(n, rrText(rr), "record has no data")
		return nil
	}
	return p.record([]byte(h.Name), rpzRec{line: n, ttl: h.Ttl, rr: rr})
}

// record adds one record to the owner being collected. owner is only
// valid during the call.
func (p *rpzStream) record(owner []byte, rec rpzRec) error {
	p.records++
	if rec.rr != nil && rec.rr.Header().Rrtype == dns.TypeSOA {
		lower := strings.ToLower(string(owner))
		if p.apex != "" {
			p.fail(rec.line, rrText(rec.rr), "second SOA record (the first is on line "+strconv.Itoa(p.soaLine)+")")
			return nil
		}
		if p.records > 1 {
			return errRPZGeneral // the SOA after other records: the general parser reads the zone whole
		}
		if lower == "." {
			p.fail(rec.line, "", "the root cannot be a policy zone")
		}
		p.apex, p.soaLine = lower, rec.line
		if lower != "." {
			p.apexDot = []byte("." + lower)
		}
		p.setOriginApex()
		return nil
	}
	if p.apex == "" {
		return errRPZGeneral
	}
	if !equalFoldLower(owner, p.cur) {
		p.flush()
		p.curRaw, p.curRawRel = append(p.curRaw[:0], owner...), false
		p.cur = appendLower(p.cur[:0], owner)
		p.curLine, p.curQuick = rec.line, false
	}
	p.recs = append(p.recs, rec)
	return nil
}

// equalFoldLower reports whether b equals lower, a lower-case name, ASCII
// case-insensitively.
func equalFoldLower(b, lower []byte) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// rrOf returns the record as a dns.RR (building it for a CNAME read from
// the line).
func (p *rpzStream) rrOf(r rpzRec) dns.RR {
	if r.rr != nil {
		return r.rr
	}
	return &dns.CNAME{Hdr: dns.RR_Header{Name: string(p.rawOwner()), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: r.ttl}, Target: r.target}
}

func (p *rpzStream) text(r rpzRec) string { return rrText(p.rrOf(r)) }

// flush turns the collected owner into a rule.
func (p *rpzStream) flush() {
	recs := p.recs
	p.recs = p.recs[:0]
	if len(recs) == 0 {
		return
	}
	line := p.curLine
	if string(p.cur) == p.apex {
		p.apexGroups++
		p.zoneGen++
		for _, r := range recs {
			if msg := p.zone.apexRecord(r.rr); msg != "" {
				p.sink.warn(&LineError{File: p.file, Line: r.line, Text: p.text(r), Msg: msg})
			}
		}
		return
	}
	if p.warned != nil && p.warned[string(p.cur)] {
		// The owner's records are spread over the zone, and an earlier
		// run of them was not fed to the sink (so repeatedOwner cannot
		// see it).
		p.needGeneral = true
		return
	}
	if len(p.cur) == 0 {
		// No owner name (the zone parser read a record without one):
		// the general parser judges the zone.
		p.needGeneral = true
		return
	}
	// Owner names are absolute: below the apex means ending in ".apex.".
	rel := p.cur[:len(p.cur)-1]
	if p.apex != "." {
		if !bytes.HasSuffix(p.cur, p.apexDot) {
			p.fail(line, p.text(recs[0]), "owner name is outside the zone "+p.apex)
			return
		}
		rel = p.cur[:len(p.cur)-len(p.apexDot)]
	}
	var (
		r         rpzRule
		warn, msg string
	)
	if p.curQuick {
		// A QNAME trigger whose name quick lower-cased and checked.
		r.name, r.kind = rel, MatchExact
		if rel[0] == '*' {
			r.name, r.kind = rel[2:], MatchWildcard
			if !p.curNotSuffix {
				msg = wildcardSuffixMsg(r.name)
			}
		}
	} else if last := rel[bytes.LastIndexByte(rel, '.')+1:]; bytes.HasPrefix(last, []byte("rpz-")) || (len(rel) == 1 && rel[0] == '*') {
		r, warn, msg = rpzTrigger(string(rel))
	} else {
		// A QNAME trigger, without the allocations of rpzTrigger.
		name := rel
		r.kind = MatchExact
		if len(name) > 2 && name[0] == '*' && name[1] == '.' {
			r.kind, name = MatchWildcard, name[2:]
		}
		p.name, msg = normalizeName(p.name[:0], name)
		r.name = p.name
		if msg == "" && r.kind == MatchWildcard {
			msg = wildcardSuffixMsg(r.name)
		}
	}
	r.line = line
	switch {
	case msg != "":
		p.fail(line, p.text(recs[0]), msg)
		return
	case warn != "":
		p.sink.warn(&LineError{File: p.file, Line: line, Text: p.text(recs[0]), Msg: warn})
		p.noteWarned()
		return
	}
	// The policy, as rpzParser.policy reads it.
	cname := -1
	for i, rec := range recs {
		t := dns.TypeCNAME
		if rec.rr != nil {
			t = rec.rr.Header().Rrtype
		}
		switch t {
		case dns.TypeCNAME:
			if cname >= 0 {
				p.fail(line, p.text(rec), "more than one CNAME for one trigger")
				return
			}
			cname = i
		case dns.TypeNS, dns.TypeDNAME:
			p.fail(line, p.text(rec), dns.TypeToString[t]+" records cannot be policy data")
			return
		}
	}
	if cname >= 0 && len(recs) > 1 {
		p.fail(line, p.text(recs[0]), "a CNAME cannot share its name with other records")
		return
	}
	local := true
	if cname >= 0 {
		target := recs[cname].target
		if recs[cname].rr != nil {
			target = recs[cname].rr.(*dns.CNAME).Target
		}
		var (
			pol rpzPolicy
			w   string
		)
		switch lt := lowerASCII(target); lt {
		case RPZNXDomain:
			pol = rpzNXDomain
		case RPZNoData:
			pol = rpzNoData
		case RPZPassthru:
			pol = rpzPassthru
		case RPZDrop:
			pol = rpzDrop
		default:
			pol, w = rpzCNAMEPolicy(lt, string(rel), r)
		}
		switch {
		case w != "":
			p.sink.warn(&LineError{File: p.file, Line: line, Text: p.text(recs[cname]), Msg: w})
			p.noteWarned()
			switch {
			case r.ip && p.ipOwners[r.prefix]:
				p.needGeneral = true
			case r.ip:
				if p.ipOwners == nil {
					p.ipOwners = map[netip.Prefix]bool{}
				}
				p.ipOwners[r.prefix] = true
			default:
				p.warnedRules = append(p.warnedRules, rpzOwnerRule{name: string(r.name), kind: r.kind})
			}
			return
		case pol != rpzLocalData:
			r.policy, local = pol, false
		}
	}
	if local {
		rrs := make([]dns.RR, len(recs))
		for i, rec := range recs {
			rrs[i] = p.rrOf(rec)
		}
		r.policy, r.local = rpzLocalData, internLocal(&p.local, rrs)
	}
	if r.ip {
		if p.ipOwners == nil {
			p.ipOwners = map[netip.Prefix]bool{}
		}
		if p.ipOwners[r.prefix] {
			// The same trigger again, apart from its first records: only
			// the general parser can group them.
			p.needGeneral = true
			return
		}
		p.ipOwners[r.prefix] = true
	}
	p.emit(r)
}

// noteWarned notes the owner being flushed as one whose records yield a
// warning and no rule.
func (p *rpzStream) noteWarned() {
	if p.warned == nil {
		p.warned = map[string]bool{}
	}
	p.warned[string(p.cur)] = true
}

// rpzOwnerRule is the rule an owner would have been without its warning.
type rpzOwnerRule struct {
	name string
	kind MatchKind
}

// ruleFinder is a sink that can say whether the file being parsed has a
// domain rule of a name and kind (whatever its allow bit).
type ruleFinder interface {
	hasDomainRule(name []byte, kind MatchKind) bool
}

// maxWarnedRules is how many warned QNAME triggers the streaming parser
// looks up among the rules fed (a scan of the file's rules each); a zone
// with more is read by the general parser.
const maxWarnedRules = 16

// warnedRepeated reports whether an owner that yielded a warning is also
// the owner of a rule fed earlier (its records spread over the zone).
func (p *rpzStream) warnedRepeated() bool {
	if len(p.warnedRules) == 0 {
		return false
	}
	f, ok := p.sink.(ruleFinder)
	if !ok || len(p.warnedRules) > maxWarnedRules {
		return true
	}
	for _, r := range p.warnedRules {
		if f.hasDomainRule([]byte(r.name), r.kind) {
			return true
		}
	}
	return false
}

// emit feeds one rule to the sink under its policy's section.
func (p *rpzStream) emit(r rpzRule) {
	allow := r.policy == rpzPassthru
	act := ActionNXDomain // exceptions' sections never decide an answer
	if !allow {
		act = rpzActions[r.policy]
	}
	if !p.sectSet || p.sectPol != r.policy || p.sectGen != p.zoneGen {
		p.sink.useSection(Section{File: p.file, Action: act, Platform: p.zone.platform, Why: p.zone.why})
		p.sectSet, p.sectPol, p.sectGen = true, r.policy, p.zoneGen
	}
	switch {
	case r.ip:
		p.sink.addPrefix(r.prefix, allow, r.line)
	case p.haveLast && bytes.Equal(r.name, p.lastName) && p.againSink() != nil:
		p.again.addDomainAgain(r.name, r.kind, allow, r.line)
		if p.dups != nil {
			p.dups.add(r.name, r.kind, true)
		}
	case p.curQuick && p.curEncOK && r.kind == MatchExact && p.encSink() != nil:
		p.enc.addDomainEncoded(r.name, p.curEnc, r.kind, allow, r.line)
		p.lastName, p.haveLast = append(p.lastName[:0], r.name...), true
		if p.dups != nil {
			p.dups.add(r.name, r.kind, false)
		}
	default:
		p.sink.addDomain(r.name, r.kind, allow, r.line)
		p.lastName, p.haveLast = append(p.lastName[:0], r.name...), true
		if p.dups != nil {
			p.dups.add(r.name, r.kind, false)
		}
	}
	if r.policy == rpzLocalData {
		p.sink.setLocalData(r.local)
	}
}

// againSink is a sink that can add a domain rule on the name of the
// domain rule added last without reading the name again.
type againSink interface {
	addDomainAgain(name []byte, kind MatchKind, allow bool, line int)
}

// againSink returns the sink as an againSink, nil if it is not one.
func (p *rpzStream) againSink() againSink {
	if !p.againChecked {
		p.again, _ = p.sink.(againSink)
		p.againChecked = true
	}
	return p.again
}

// encodedSink is a sink that can add a domain rule whose name the caller
// has encoded already (appendEncoded(nil, name) == enc).
type encodedSink interface {
	addDomainEncoded(name, enc []byte, kind MatchKind, allow bool, line int)
}

// encSink returns the sink as an encodedSink, nil if it is not one.
func (p *rpzStream) encSink() encodedSink {
	if !p.encChecked {
		p.enc, _ = p.sink.(encodedSink)
		p.encChecked = true
	}
	return p.enc
}
