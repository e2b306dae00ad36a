package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// maxErrorsPerFile caps the errors kept for one file; the count of the rest
// is reported in a final error line.
const maxErrorsPerFile = 100

// entrySink receives the entries of a list file as they are parsed. Name
// bytes are only valid during the call.
type entrySink interface {
	beginSection(Section)
	// useSection makes sec the section of the entries that follow,
	// reusing an equal section begun earlier in the same file (parsers
	// that interleave a few sections use it instead of beginSection).
	useSection(sec Section)
	// restart takes back every entry and warning of the file being parsed
	// (a parser that hands the file to another parser).
	restart()
	// repeatedOwner reports whether two domain entries of the file being
	// parsed share a name and a match kind (an RPZ owner whose records are
	// not consecutive).
	repeatedOwner() bool
	addDomain(name []byte, kind MatchKind, allow bool, line int)
	addPrefix(p netip.Prefix, allow bool, line int)
	addASN(asn uint32, allow bool, line int)
	// setLocalData attaches RPZ local-data records to the rule added last.
	setLocalData(rrs []dns.RR)
	// warn reports a problem that does not stop the file from loading
	// (an RPZ trigger sinkhole does not support, for instance).
	warn(*LineError)
}

// hostsSinkAddrs are the addresses a hosts-file line may map names to.
var hostsSinkAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("0.0.0.0"):   true,
	netip.MustParseAddr("127.0.0.1"): true,
	netip.MustParseAddr("::"):        true,
	netip.MustParseAddr("::1"):       true,
}

// hostsIgnored are the names hosts files carry for the local machine; they are
// skipped, never blocked.
var hostsIgnored = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true,
	"broadcasthost": true, "ip6-localhost": true, "ip6-loopback": true,
	"ip6-localnet": true, "ip6-mcastprefix": true, "ip6-allnodes": true,
	"ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// listParser holds the state of one file's parse.
type listParser struct {
	file string
	sink listSink
	// pipe, when set, is sink: the entries go to the file's sink on
	// another goroutine (see parsepipe.go), which runs the public suffix
	// check too.
	pipe    *listPipe
	sec     Section
	secOpen bool // sink has been told about sec
	errs    []*LineError
	nerrs   int
	name    []byte // scratch for the lower-cased name
	// allowSuffix is set by "# allow-public-suffix": rules on public
	// suffixes are accepted from there on.
	allowSuffix bool
	suffixes    suffixChecker
}

// maxLineLen caps one list line; a longer line is an error.
const maxLineLen = 64 << 10

// parseList parses one list file from r and feeds its entries to sink. It
// reads line by line (a file of any size costs a fixed buffer) and returns
// every problem found; the caller decides whether the file loads.
func parseList(file string, r io.Reader, sink entrySink) []*LineError {
	return parseListWindow(file, r, sink, nil)
}

// parseListWindow is parseList for the entries of the new lines of hunks
// only (all of them when hunks is nil): the directives of the other lines
// are applied (so the entries get the sections in force), the rest is
// read but not parsed.
func parseListWindow(file string, r io.Reader, sink entrySink, hunks []hunk) []*LineError {
	p := &listParser{file: file, sink: sink, sec: Section{File: file}, name: make([]byte, 0, 256), suffixes: suffixChecker{hint: suffixHintList}}
	if hunks == nil {
		p.pipe = newListPipe(sink, suffixHintList)
		p.sink = p.pipe
	}
	br := bufio.NewReaderSize(r, maxLineLen)
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 || err == nil {
			lineNo++
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			p.fail(lineNo, line[:80], "line longer than 65536 bytes")
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				break
			}
			continue
		}
		if len(line) > 0 && (hunks == nil || inHunks(hunks, lineNo, false)) {
			p.parseLine(lineNo, bytes.TrimSuffix(line, []byte{'\n'}))
		} else if len(line) > 0 {
			if t := trimSpace(line); len(t) > 0 && t[0] == '#' {
				p.parseLine(lineNo, bytes.TrimSuffix(line, []byte{'\n'}))
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.fail(0, nil, "read: "+err.Error())
			}
			break
		}
	}
	var hits []suffixHit
	if p.pipe != nil {
		hits = p.pipe.finish()
	} else {
		hits = p.suffixes.finish()
	}
	if len(hits) > 0 {
		for _, h := range hits {
			p.fail(h.line, []byte(h.name), h.msg)
		}
		slices.SortStableFunc(p.errs, func(a, b *LineError) int { return a.Line - b.Line })
	}
	if p.nerrs > len(p.errs) {
		p.errs = append(p.errs, &LineError{File: file, Msg: strconv.Itoa(p.nerrs-len(p.errs)) + " more errors not shown"})
	}
	return p.errs
}

func (p *listParser) fail(line int, text []byte, msg string) {
	p.nerrs++
	if len(p.errs) < maxErrorsPerFile {
		t := string(bytes.TrimSpace(text))
		if len(t) > 200 {
			t = t[:200] + "..."
		}
		p.errs = append(p.errs, &LineError{File: p.file, Line: line, Text: t, Msg: msg})
	}
}

func isSpace(c byte) bool { return spaceByte[c] }

// spaceByte marks the blanks of isSpace.
var spaceByte = [256]bool{' ': true, '\t': true, '\r': true, '\v': true, '\f': true}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func (p *listParser) parseLine(n int, raw []byte) {
	if !p.plainName(n, raw) {
		p.parseLineGeneral(n, raw)
	}
}

// parseLineGeneral is parseLine for any line.
func (p *listParser) parseLineGeneral(n int, raw []byte) {
	line := trimSpace(raw)
	if len(line) == 0 {
		return
	}
	switch line[0] {
	case '#':
		p.directive(n, line)
		return
	case '!':
		return // adblock comment
	case '[':
		if bytes.HasPrefix(bytes.ToLower(line), []byte("[adblock")) {
			return // adblock header, e.g. "[Adblock Plus 2.0]"
		}
	}
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = trimSpace(line[:i])
	}
	// Fast path: a single token (the common case for big lists).
	if bytes.IndexByte(line, ' ') < 0 && bytes.IndexByte(line, '\t') < 0 {
		p.entry(n, raw, line)
		return
	}
	p.hostsLine(n, raw, line)
}

// plainName reads the commonest line of a big list in one pass over its
// bytes: a bare name of letters, digits, '-', '_' and dots (blanks around
// it and one trailing dot allowed) that normalizeName's table pass takes
// and that is neither an address nor an AS number. The name is
// lower-cased into p.name as it is checked, and added as parseLine would
// add it (entry, then normalizeName). It reports false, having changed
// nothing, for any other line: parseLine's general path reads it.
func (p *listParser) plainName(n int, raw []byte) bool {
	t := trimSpace(raw)
	if len(t) > 0 && t[len(t)-1] == '.' {
		t = t[:len(t)-1]
	}
	if len(t) == 0 || len(t) > 253 {
		return false
	}
	out := p.name[:len(t)] // p.name has room for 256 bytes
	// One table load a byte classes it; the classes seen are or-ed
	// together, with plainEmpty for a dot at the start or after a dot.
	acc, prev := uint8(0), uint8(plainDot)
	for i, c := range t {
		k := plainClass[c]
		acc |= k | (k&prev&plainDot)<<2
		prev = k
		out[i] = nameLower[c]
	}
	// A bad byte, an empty label (the last one too), or only digits and
	// dots: an address ("1.2.3.4", looksNumeric) or not a name.
	if acc&(plainBad|plainEmpty) != 0 || prev == plainDot || acc&plainAlpha == 0 {
		return false
	}
	if len(t) > 63 && !labelsFit(t) {
		return false
	}
	if isASN(t) { // "AS64496"
		return false
	}
	p.addDomain(out, MatchSubtree, false, n)
	return true
}

// Classes of the bytes of a name (plainClass): not in a canonical name, a
// dot, a letter, '-' or '_' (a digit is 0); plainEmpty marks an empty
// label in plainName.
const (
	plainBad   = 1
	plainDot   = 2
	plainEmpty = 8
	plainAlpha = 4
)

var plainClass = func() (t [256]uint8) {
	for c := range t {
		switch l := nameLower[c]; {
		case l == 0:
			t[c] = plainBad
		case l == '.':
			t[c] = plainDot
		case l < '0' || l > '9':
			t[c] = plainAlpha
		}
	}
	return t
}()

// directive handles a full-line comment, which may be a "# key: value" directive.
func (p *listParser) directive(n int, line []byte) {
	body := trimSpace(line[1:])
	colon := bytes.IndexByte(body, ':')
	if colon < 0 {
		if string(bytes.ToLower(body)) == allowPublicSuffixDirective {
			p.allowSuffix = true
		}
		return
	}
	key := strings.ToLower(string(trimSpace(body[:colon])))
	val := string(trimSpace(body[colon+1:]))
	switch key {
	case "platform":
		if strings.ContainsAny(val, "#\"\\") {
			p.fail(n, line, `platform name must not contain '#', '"' or '\'`)
			return
		}
		p.sec.Platform = val
	case "authority", "order", "contact":
		if msg := p.sec.Why.set(key, val); msg != "" {
			p.fail(n, line, key+" "+msg)
			return
		}
	case "scope":
		s, err := ParseScope(val)
		if err != nil {
			p.fail(n, line, err.Error())
			return
		}
		p.sec.Scope = s
	case "action":
		if strings.EqualFold(val, "default") {
			p.sec.Action = ActionDefault
			break
		}
		a, err := ParseAction(val)
		if err != nil {
			p.fail(n, line, err.Error())
			return
		}
		p.sec.Action = a
	default:
		return // an ordinary comment that happens to hold a colon
	}
	p.secOpen = false
}

// maxWhyLen caps an authority, order or contact value (they go into every
// block's EDE text, which a UDP answer must carry).
const maxWhyLen = 120

// set sets the authority, order or contact (key) to v after checking it;
// it returns what is wrong with v, or "".
func (w *Why) set(key, v string) string {
	if msg := whyValue(v); msg != "" {
		return msg
	}
	switch key {
	case "authority":
		w.Authority = v
	case "order":
		w.Order = v
	default:
		w.Contact = v
	}
	return ""
}

// whyValue checks an authority, order or contact value; it returns what is
// wrong, or "".
func whyValue(v string) string {
	if len(v) > maxWhyLen {
		return "longer than 120 bytes"
	}
	for _, c := range v {
		if c == '"' || c == '\\' || c == '#' || c < 0x20 || c == 0x7f {
			return `must not contain '#', '"', '\' or control characters`
		}
	}
	return ""
}

func (p *listParser) openSection() {
	if !p.secOpen {
		p.sink.beginSection(p.sec)
		p.secOpen = true
	}
}

// hostsLine handles "ADDR name [name...]".
func (p *listParser) hostsLine(n int, raw, line []byte) {
	fields := bytes.Fields(line)
	addr, err := netip.ParseAddr(string(fields[0]))
	if err != nil {
		p.fail(n, raw, "unexpected text after entry (one entry per line, or a hosts-file line \"0.0.0.0 name...\")")
		return
	}
	if !hostsSinkAddrs[addr] {
		p.fail(n, raw, "hosts-file line must map names to 0.0.0.0, 127.0.0.1, :: or ::1")
		return
	}
	for _, f := range fields[1:] {
		if hostsIgnored[strings.ToLower(string(f))] {
			continue
		}
		name, msg := p.domain(f)
		if msg != "" {
			p.fail(n, raw, msg)
			continue
		}
		p.addDomain(name, MatchSubtree, false, n)
	}
}

// entry handles a single-token line.
func (p *listParser) entry(n int, raw, tok []byte) {
	allow := false
	if bytes.HasPrefix(tok, []byte("@@")) {
		allow = true
		tok = tok[2:]
	}
	if len(tok) == 0 {
		p.fail(n, raw, "empty exception")
		return
	}
	kind := MatchSubtree
	switch {
	case bytes.HasPrefix(tok, []byte("||")):
		name, ok := adblockName(tok)
		if !ok {
			if bytes.IndexByte(tok, '$') >= 0 {
				p.fail(n, raw, "adblock options ($...) are not supported; write ||example.com^")
			} else {
				p.fail(n, raw, "adblock rule must look like ||example.com^")
			}
			return
		}
		tok = name
	case bytes.HasPrefix(tok, []byte("*.")):
		kind = MatchWildcard
		tok = tok[2:]
	case tok[0] == '=':
		kind = MatchExact
		tok = tok[1:]
	case looksNumeric(tok):
		p.address(n, raw, tok, allow)
		return
	case isASN(tok):
		asn, err := strconv.ParseUint(string(tok[2:]), 10, 32)
		if err != nil {
			p.fail(n, raw, "AS number out of range")
			return
		}
		if asn == 0 {
			p.fail(n, raw, "AS0 is reserved and never announces addresses")
			return
		}
		p.openSection()
		p.sink.addASN(uint32(asn), allow, n)
		return
	}
	name, msg := p.domain(tok)
	if msg != "" {
		p.fail(n, raw, msg)
		return
	}
	p.addDomain(name, kind, allow, n)
}

// addDomain gives a domain rule to the sink, queued for the public suffix
// check unless it is on one name only or the file allows public suffixes
// (an over-broad rule is an error of the file, reported when it ends).
func (p *listParser) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	check := !p.allowSuffix && kind != MatchExact
	p.openSection()
	if p.pipe != nil {
		p.pipe.addChecked(name, kind, allow, line, check)
		return
	}
	if check {
		p.suffixes.add(name, line)
	}
	p.sink.addDomain(name, kind, allow, line)
}

// adblockName extracts "example.com" from "||example.com^" (also "^|").
func adblockName(tok []byte) ([]byte, bool) {
	tok = tok[2:]
	tok = bytes.TrimSuffix(tok, []byte("|"))
	if !bytes.HasSuffix(tok, []byte("^")) {
		return nil, false
	}
	tok = tok[:len(tok)-1]
	if len(tok) == 0 || bytes.ContainsAny(tok, "^|$/*") {
		return nil, false
	}
	return tok, true
}

// looksNumeric reports whether tok can only be an address or prefix: digits,
// dots and a slash, or any colon (IPv6).
func looksNumeric(tok []byte) bool {
	if bytes.IndexByte(tok, ':') >= 0 {
		return true
	}
	for _, c := range tok {
		if (c < '0' || c > '9') && c != '.' && c != '/' {
			return false
		}
	}
	// "1.2.3.4" and "1.2.3.0/24"; a bare number like "123" is not a name either.
	return true
}

func isASN(tok []byte) bool {
	if len(tok) < 3 || (tok[0]|0x20) != 'a' || (tok[1]|0x20) != 's' {
		return false
	}
	for _, c := range tok[2:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// address handles an IP or CIDR prefix line.
func (p *listParser) address(n int, raw, tok []byte, allow bool) {
	s := string(tok)
	if strings.Contains(s, "://") {
		p.fail(n, raw, "looks like a URL; write the bare domain (e.g. example.com)")
		return
	}
	var pfx netip.Prefix
	if strings.IndexByte(s, '/') >= 0 {
		var err error
		pfx, err = netip.ParsePrefix(s)
		if err != nil {
			p.fail(n, raw, "invalid IP prefix")
			return
		}
		if m := pfx.Masked(); m != pfx {
			p.fail(n, raw, "prefix has host bits set; did you mean "+m.String()+"?")
			return
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			p.fail(n, raw, "invalid IP address")
			return
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		if pfx.Bits() < 0 {
			p.fail(n, raw, "invalid IPv4-mapped prefix")
			return
		}
	}
	p.openSection()
	p.sink.addPrefix(pfx, allow, n)
}

// domain validates a name and returns it lower-cased, without a trailing dot,
// in punycode. The result aliases p.name. msg is empty when the name is good.
func (p *listParser) domain(tok []byte) (name []byte, msg string) {
	return normalizeName(p.name[:0], tok)
}

// nameLower maps the bytes a canonical name may hold to their lower case
// (a-z, 0-9, '-', '_' and '.'); every other byte maps to 0.
var nameLower = func() (t [256]byte) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = byte(c), byte(c)
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c)
	}
	t['-'], t['_'], t['.'] = '-', '_', '.'
	return t
}()

// normalizeName appends the canonical form of tok to dst. It is used for list
// entries and for names given on the command line and admin API.
//
// The common case, a name of ASCII letters, digits, '-', '_' and dots with
// no empty or over-long label, takes one table-driven pass; anything else
// (and every error) goes through normalizeNameSlow.
func normalizeName(dst, tok []byte) ([]byte, string) {
	t := tok
	if len(t) > 0 && t[len(t)-1] == '.' {
		t = t[:len(t)-1]
	}
	if len(t) == 0 || len(t) > 253 {
		return normalizeNameSlow(dst, tok)
	}
	start := len(dst)
	dst = append(dst, t...)
	out := dst[start:]
	label := 0
	for i, c := range out {
		l := nameLower[c]
		if l == '.' {
			if label == 0 {
				return normalizeNameSlow(dst[:start], tok)
			}
			label = 0
			continue
		}
		label++
		if l == 0 || label > 63 {
			return normalizeNameSlow(dst[:start], tok)
		}
		out[i] = l
	}
	if label == 0 {
		return normalizeNameSlow(dst[:start], tok)
	}
	return dst, ""
}

// normalizeNameSlow is normalizeName for any input: internationalized
// names, and the reason a name is not valid.
func normalizeNameSlow(dst, tok []byte) ([]byte, string) {
	if len(tok) > 0 && tok[len(tok)-1] == '.' {
		tok = tok[:len(tok)-1]
	}
	if len(tok) == 0 {
		return nil, "empty domain name"
	}
	if bytes.Contains(tok, []byte("://")) || bytes.IndexByte(tok, '/') >= 0 {
		return nil, "looks like a URL; write the bare domain (e.g. example.com)"
	}
	ascii := true
	for _, c := range tok {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		s, err := idna.Lookup.ToASCII(string(tok))
		if err != nil {
			return nil, "invalid internationalized domain name: " + err.Error()
		}
		tok = []byte(s)
	}
	if len(tok) > 253 {
		return nil, "domain name longer than 253 characters"
	}
	label := 0
	for i, c := range tok {
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if label == 0 {
				return nil, "empty label in domain name"
			}
			label = -1
		case c == '*':
			return nil, "'*' is only allowed as a leading \"*.\" (subdomains only)"
		default:
			return nil, "invalid character " + strconv.QuoteRune(rune(c)) + " in domain name"
		}
		label++
		if label > 63 {
			return nil, "domain label longer than 63 characters"
		}
		dst = append(dst, c)
		_ = i
	}
	if label == 0 {
		return nil, "empty label in domain name"
	}
	return dst, ""
}

// NormalizeName returns the canonical form of a domain name as the matcher
// stores it: lower-case, punycode, no trailing dot. It reports why a name is
// not valid.
func NormalizeName(s string) (string, error) {
	b, msg := normalizeName(nil, []byte(s))
	if msg != "" {
		return "", &LineError{File: "name", Text: s, Msg: msg}
	}
	return string(b), nil
}
