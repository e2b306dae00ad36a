package querylog

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// The line formats are built by hand into a caller's buffer: a line costs
// no allocation beyond describing the rule that fired.
//
// Audit line (a rule fired):
//
//	{"time":"2026-01-02T15:04:05.123456789Z","client":"192.0.2.1:53124","proto":"udp",
//	 "name":"www.binance.com","type":"A","action":"nxdomain","enforced":true,
//	 "rule":"binance.com","file":"foreign-exchanges.txt","line":36,"platform":"Binance",
//	 "authority":"...","order":"...","contact":"...",   (only those the list sets)
//	 "generation":3,"trigger":"qname","target":"www.binance.com"}
//
// Answer-based decisions (trigger cname, ip, asn, overseas) add
// "ips":[{"ip":"203.0.113.7","country":"KY","asn":64500,"as_org":"Example"}],
// every address of the upstream's answer. The query log line has the same
// fields after "type", preceded by "rcode" (absent when no answer was
// sent), "upstream", "duration_us", "cached" ("stale" when served stale),
// and "generation" for queries no rule fired on.

// AppendAudit appends the audit line of req, which must carry a Decision,
// ending in a newline.
func AppendAudit(b []byte, req *query.Request) []byte {
	b, name := appendHead(b, req)
	if d := req.Info.Decision; d != nil {
		b = appendDecision(b, d, name)
	}
	return append(b, "}\n"...)
}

// AppendQuery appends the query log line of req (its response code is
// req.Info.Rcode; resp may be nil on the wire path), which took dur,
// ending in a newline.
func AppendQuery(b []byte, req *query.Request, resp *dns.Msg, dur time.Duration) []byte {
	b, name := appendHead(b, req)
	if !req.Info.Dropped {
		b = append(b, `,"rcode":`...)
		if s, ok := dns.RcodeToString[req.Info.Rcode]; ok {
			b = appendString(b, s)
		} else {
			b = strconv.AppendInt(append(b, `"RCODE`...), int64(req.Info.Rcode), 10)
			b = append(b, '"')
		}
	}
	b = append(b, `,"upstream":`...)
	b = appendString(b, req.Info.Upstream)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, dur.Microseconds(), 10)
	b = append(b, `,"cached":`...)
	b = strconv.AppendBool(b, req.Info.Cached)
	if req.Info.Stale {
		b = append(b, `,"stale":true`...)
	}
	if d := req.Info.Decision; d != nil {
		b = appendDecision(b, d, name)
	} else if req.Snapshot != nil {
		b = append(b, `,"generation":`...)
		b = strconv.AppendUint(b, req.Snapshot.Generation, 10)
	}
	return append(b, "}\n"...)
}

// span is where a field's JSON text (quotes included) is in a line.
type span struct{ start, end int }

// appendHead opens the object with the fields every line has, and says
// where the query name's JSON string is (the audit line's target repeats
// it).
func appendHead(b []byte, req *query.Request) ([]byte, span) {
	b = append(b, `{"time":"`...)
	b = appendTime(b, req.Start)
	b = append(b, `","client":`...)
	b = appendAddrPort(b, req.Client)
	b = append(b, `,"proto":`...)
	b = appendString(b, req.Proto)
	if req.ClientName != "" {
		b = append(b, `,"client_name":`...)
		b = appendString(b, req.ClientName)
	}
	b = append(b, `,"name":`...)
	name := span{start: len(b)}
	b = appendString(b, req.Name)
	name.end = len(b)
	b = append(b, `,"type":`...)
	return appendType(b, req.Qtype), name
}

// appendAddrPort appends a client address as a JSON string. Its text
// (digits, dots, colons, brackets, hex digits) needs no escape, unless an
// IPv6 zone (an interface name) is part of it.
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if a.Addr().Zone() != "" {
		var tmp [64]byte
		return appendBytes(b, a.AppendTo(tmp[:0]))
	}
	b = append(b, '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

// typeNames holds the quoted names of the types below 256 (empty for the
// unnamed ones), so that a line costs no map lookup for them.
var typeNames = func() (t [256]string) {
	for i := range t {
		if s, ok := dns.TypeToString[uint16(i)]; ok {
			t[i] = strconv.Quote(s)
		}
	}
	return t
}()

// appendType appends qtype's name as a JSON string ("TYPE65280" for a
// type without one).
func appendType(b []byte, qtype uint16) []byte {
	if qtype < uint16(len(typeNames)) && typeNames[qtype] != "" {
		return append(b, typeNames[qtype]...)
	}
	if s, ok := dns.TypeToString[qtype]; ok {
		return appendString(b, s)
	}
	b = strconv.AppendUint(append(b, `"TYPE`...), uint64(qtype), 10)
	return append(b, '"')
}

// second is the text of one UTC second, "2006-01-02T15:04:05".
type second struct {
	unix int64
	text [19]byte
}

// lastSecond caches the second most lines of a busy log share.
var lastSecond atomic.Pointer[second]

// appendTime appends t in UTC as time.RFC3339Nano does (trailing zeros of
// the fraction dropped, no fraction for a whole second), from a cached
// text of its second: the date and clock are formatted once a second.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	unix := t.Unix()
	sec := lastSecond.Load()
	if sec == nil || sec.unix != unix {
		if y := t.Year(); y < 0 || y > 9999 {
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		sec = &second{unix: unix}
		t.AppendFormat(sec.text[:0], "2006-01-02T15:04:05")
		lastSecond.Store(sec)
	}
	b = append(b, sec.text[:]...)
	if ns := t.Nanosecond(); ns != 0 {
		var f [10]byte
		f[0] = '.'
		for i := 9; i > 0; i-- {
			f[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for f[n-1] == '0' {
			n--
		}
		b = append(b, f[:n]...)
	}
	return append(b, 'Z')
}

// actionTexts holds, for every action and enforced (1) or not (0), the
// text from the action field to the rule field's name:
// `,"action":"nxdomain","enforced":true,"rule":`.
var actionTexts = func() (t [16][2]string) {
	for a := range t {
		for e := range t[a] {
			t[a][e] = `,"action":` + strconv.Quote(blocklist.Action(a).String()) +
				`,"enforced":` + strconv.FormatBool(e == 1) + `,"rule":`
		}
	}
	return t
}()

// triggerTexts holds, for every trigger, the text from the trigger field to
// the target field's name: `,"trigger":"qname","target":`.
var triggerTexts = func() (t [8]string) {
	for i := range t {
		t[i] = `,"trigger":` + strconv.Quote(query.Trigger(i).String()) + `,"target":`
	}
	return t
}()

// sectionText is the audit line's text of a list section's fields, made
// once per section: head is `,"file":"F","line":` and tail is
// `,"platform":"P"` with the authority, order and contact the section sets.
// A slot may keep a replaced snapshot's section (and its strings) alive
// until another section takes it: at most sectionSlots small strings.
type sectionText struct {
	sec        *blocklist.Section
	head, tail string
}

// sectionSlots is the size of sectionTexts, direct-mapped by the section's
// address (a snapshot's sections are one array, so up to sectionSlots
// sections of a snapshot have a slot each). A miss makes the section's
// text and takes the slot.
const sectionSlots = 256

var sectionTexts [sectionSlots]atomic.Pointer[sectionText]

// textOf returns sec's text, from its slot when the slot holds it.
func textOf(sec *blocklist.Section) *sectionText {
	slot := &sectionTexts[uintptr(unsafe.Pointer(sec))/unsafe.Sizeof(blocklist.Section{})%sectionSlots]
	if st := slot.Load(); st != nil && st.sec == sec {
		return st
	}
	head := appendString([]byte(`,"file":`), sec.File)
	tail := appendString([]byte(`,"platform":`), sec.Platform)
	if !sec.Why.IsZero() {
		tail = appendWhy(tail, sec.Why)
	}
	st := &sectionText{sec: sec, head: string(append(head, `,"line":`...)), tail: string(tail)}
	slot.Store(st)
	return st
}

// appendDecision adds the fields of the rule that fired. name is where
// the line holds the query name's JSON string (the target of a rule on
// the query name itself).
func appendDecision(b []byte, d *query.Decision, name span) []byte {
	_, line, _ := d.Snapshot.RulePlace(d.Rule)
	if a := int(d.Action); a < len(actionTexts) {
		e := 0
		if d.Enforced {
			e = 1
		}
		b = append(b, actionTexts[a][e]...)
	} else {
		b = append(b, `,"action":`...)
		b = appendString(b, d.Action.String())
		b = append(b, `,"enforced":`...)
		b = strconv.AppendBool(b, d.Enforced)
		b = append(b, `,"rule":`...)
	}
	// The rule text is appended in place; in the rare case it holds a byte
	// JSON must escape, it is written again through appendString.
	start := len(b)
	b = d.Snapshot.AppendRuleText(append(b, '"'), d.Rule)
	if !plainJSON(b[start+1:]) {
		text := string(b[start+1:])
		b = appendString(b[:start], text)
	} else {
		b = append(b, '"')
	}
	st := textOf(d.Snapshot.Section(d.Rule))
	b = append(b, st.head...)
	b = strconv.AppendInt(b, int64(line), 10)
	b = append(b, st.tail...)
	b = append(b, `,"generation":`...)
	b = strconv.AppendUint(b, d.Snapshot.Generation, 10)
	if t := int(d.Trigger); t < len(triggerTexts) {
		b = append(b, triggerTexts[t]...)
	} else {
		b = append(b, `,"trigger":`...)
		b = appendString(b, d.Trigger.String())
		b = append(b, `,"target":`...)
	}
	if d.Target == "" {
		b = append(b, b[name.start:name.end]...) // a rule on the query name itself
	} else {
		b = appendString(b, d.Target)
	}
	switch {
	case len(d.Addrs) > 0:
		b = append(b, `,"ips":[`...)
		for i := range d.Addrs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAddr(b, &d.Addrs[i])
		}
		b = append(b, ']')
	case d.Addr != nil:
		b = append(b, `,"ips":[`...)
		b = appendAddr(b, d.Addr)
		b = append(b, ']')
	}
	return b
}

func appendAddr(b []byte, a *query.AddrInfo) []byte {
	b = append(b, `{"ip":`...)
	b = appendIP(b, a.IP)
	b = append(b, `,"country":`...)
	b = appendString(b, a.Country)
	b = append(b, `,"asn":`...)
	b = strconv.AppendUint(b, uint64(a.ASN), 10)
	b = append(b, `,"as_org":`...)
	b = appendString(b, a.ASOrg)
	return append(b, '}')
}

func appendIP(b []byte, ip netip.Addr) []byte {
	var tmp [64]byte
	return appendBytes(b, ip.AppendTo(tmp[:0]))
}

// plainJSON reports whether b can stand in a JSON string as it is.
func plainJSON(b []byte) bool {
	i := 0
	if len(b) >= 8 {
		for ; i+8 <= len(b); i += 8 {
			if special8(binary.LittleEndian.Uint64(b[i:])) {
				return false
			}
		}
		return !special8(binary.LittleEndian.Uint64(b[len(b)-8:]))
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings (names, files, platforms) need no escape: check them
	// eight bytes at a time (the last word overlapping the one before).
	i := 0
	if len(s) >= 8 {
		for ; i+8 <= len(s); i += 8 {
			if special8(word(s[i : i+8])) {
				break
			}
		}
		if i+8 > len(s) && !special8(word(s[len(s)-8:])) {
			b = append(b, s...)
			return append(b, '"')
		}
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscape(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// word reads the eight bytes of w (len(w) == 8) as one little-endian word.
func word(w string) uint64 {
	w = w[:8]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// special8 reports whether any of the eight bytes of x is one a JSON
// string cannot hold as it is: a control byte, '"', '\\' or a byte of a
// multi-byte (or invalid) UTF-8 sequence.
func special8(x uint64) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	return ((x-ones*0x20)&^x|x|(q-ones)&^q|(bs-ones)&^bs)&high != 0
}

// appendBytes appends a JSON string of bytes that do not alias b.
func appendBytes(b, s []byte) []byte {
	if !plainJSON(s) {
		return appendString(b, string(s))
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

const hex = "0123456789abcdef"

func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
}

// appendWhy adds the rule's authority, order and contact (the fields that
// are set).
func appendWhy(b []byte, w blocklist.Why) []byte {
	if w.Authority != "" {
		b = appendString(append(b, `,"authority":`...), w.Authority)
	}
	if w.Order != "" {
		b = appendString(append(b, `,"order":`...), w.Order)
	}
	if w.Contact != "" {
		b = appendString(append(b, `,"contact":`...), w.Contact)
	}
	return b
}
