package blocklist

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// RPZ zone files (Response Policy Zones, draft-vixie-dnsop-dns-rpz) are
// loaded from *.rpz and *.zone files: standard master-file syntax, read
// with miekg/dns's zone parser. The zone apex is the owner of the SOA
// record; every other owner name, relative to the apex, is a trigger and
// its records are the policy.

// Labels that end the special trigger owner names.
const (
	rpzIPLabel       = "rpz-ip"
	rpzClientIPLabel = "rpz-client-ip"
	rpzNSDNameLabel  = "rpz-nsdname"
	rpzNSIPLabel     = "rpz-nsip"
)

// RPZ policy targets of a CNAME record.
const (
	RPZNXDomain = "."             // NXDOMAIN
	RPZNoData   = "*."            // NOERROR, no answer
	RPZPassthru = "rpz-passthru." // never rewrite: an allow exception
	RPZDrop     = "rpz-drop."     // no answer at all
	rpzTCPOnly  = "rpz-tcp-only." // answer with TC over UDP (not supported)
)

// rpzPolicy is what a trigger does, in the order the parser emits rules
// (one section per policy, so zones never exhaust the section table).
type rpzPolicy uint8

const (
	rpzNXDomain rpzPolicy = iota
	rpzNoData
	rpzDrop
	rpzLocalData
	rpzPassthru
	numRPZPolicies
)

var rpzActions = [numRPZPolicies]Action{
	rpzNXDomain:  ActionNXDomain,
	rpzNoData:    ActionNoData,
	rpzDrop:      ActionDrop,
	rpzLocalData: ActionLocalData,
}

// rpzRule is one trigger with its policy, collected before being emitted.
type rpzRule struct {
	line   int
	ip     bool
	prefix netip.Prefix
	name   []byte
	kind   MatchKind
	policy rpzPolicy
	local  []dns.RR
}

// rpzOwner is the records of one owner name, in file order.
type rpzOwner struct {
	name string // absolute, lower case
	line int    // line of its first record
	rrs  []dns.RR
}

type rpzParser struct {
	file  string
	sink  entrySink
	errs  []*LineError
	nerrs int
	// interned local data: identical record sets share one slice.
	local map[string][]dns.RR
	zone  rpzZoneDirectives // the apex's TXT directives
}

// parseRPZGeneral parses one RPZ zone file with miekg/dns's zone parser
// and feeds its triggers to sink. The zone is read whole: triggers are
// grouped by policy before they are fed. parseRPZ (the streaming parser)
// falls back to it for zones it cannot read as a stream.
func parseRPZGeneral(file string, r io.Reader, sink entrySink) []*LineError {
	data, err := io.ReadAll(r)
	if err != nil {
		return []*LineError{{File: file, Msg: "read: " + err.Error()}}
	}
	return parseRPZData(file, data, sink)
}

func parseRPZData(file string, data []byte, sink entrySink) []*LineError {
	p := &rpzParser{file: file, sink: sink}
	owners, apex := p.read(data)
	if len(p.errs) > 0 || owners == nil {
		return p.finish()
	}
	var rules [numRPZPolicies][]rpzRule
	for _, o := range owners {
		if r, ok := p.rule(o, apex); ok {
			rules[r.policy] = append(rules[r.policy], r)
		}
	}
	if len(p.errs) > 0 {
		return p.finish()
	}
	for pol, rs := range rules {
		if len(rs) == 0 {
			continue
		}
		if pol != int(rpzPassthru) {
			sink.beginSection(Section{File: file, Action: rpzActions[pol], Platform: p.zone.platform, Why: p.zone.why})
		} else if len(rules[rpzNXDomain])+len(rules[rpzNoData])+len(rules[rpzDrop])+len(rules[rpzLocalData]) == 0 {
			// Exceptions need a section too; its action is never used.
			sink.beginSection(Section{File: file, Action: ActionNXDomain})
		}
		for _, r := range rs {
			allow := r.policy == rpzPassthru
			if r.ip {
				sink.addPrefix(r.prefix, allow, r.line)
			} else {
				sink.addDomain(r.name, r.kind, allow, r.line)
			}
			if r.policy == rpzLocalData {
				sink.setLocalData(r.local)
			}
		}
	}
	return p.finish()
}

func (p *rpzParser) finish() []*LineError {
	if p.nerrs > len(p.errs) {
		p.errs = append(p.errs, &LineError{File: p.file, Msg: strconv.Itoa(p.nerrs-len(p.errs)) + " more errors not shown"})
	}
	return p.errs
}

func (p *rpzParser) fail(line int, text, msg string) {
	p.nerrs++
	if len(p.errs) < maxErrorsPerFile {
		p.errs = append(p.errs, &LineError{File: p.file, Line: line, Text: text, Msg: msg})
	}
}

func (p *rpzParser) warn(line int, text, msg string) {
	p.sink.warn(&LineError{File: p.file, Line: line, Text: text, Msg: msg})
}

// parseErrorRE takes miekg/dns's "dns: MSG: "TOKEN" at line: L:C" apart.
var parseErrorRE = regexp.MustCompile(`dns: (.*): ("(?:[^"\\]|\\.)*") at line: (\d+):\d+$`)

// read parses the master file into owners (in order of first appearance)
// and finds the apex. It returns nil owners on an error.
func (p *rpzParser) read(data []byte) ([]*rpzOwner, string) {
	lines, generate := recordLines(data)
	if generate > 0 {
		p.fail(generate, "", "$GENERATE is not supported in RPZ files")
		return nil, ""
	}
	zp := dns.NewZoneParser(bytes.NewReader(data), defaultOrigin(p.file), p.file)
	zp.SetIncludeAllowed(false)
	var (
		owners []*rpzOwner
		byName = map[string]*rpzOwner{}
		apex   string
		soa    int
		n      int
	)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		line := 0
		if n < len(lines) {
			line = lines[n]
		}
		n++
		h := rr.Header()
		if h.Class != dns.ClassINET {
			p.fail(line, rrText(rr), "only class IN records are allowed")
			continue
		}
		if strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String())) == "" {
			p.fail(line, rrText(rr), "record has no data")
			continue
		}
		name := strings.ToLower(h.Name)
		if h.Rrtype == dns.TypeSOA {
			if soa != 0 {
				p.fail(line, rrText(rr), "second SOA record (the first is on line "+strconv.Itoa(soa)+")")
				continue
			}
			apex, soa = name, line
			continue
		}
		o := byName[name]
		if o == nil {
			o = &rpzOwner{name: name, line: line}
			byName[name] = o
			owners = append(owners, o)
		}
		o.rrs = append(o.rrs, rr)
	}
	if err := zp.Err(); err != nil {
		p.parseError(err)
		return nil, ""
	}
	if soa == 0 && len(p.errs) == 0 {
		p.fail(0, "", "no SOA record: an RPZ zone file needs the zone's SOA, whose owner is the zone apex")
	}
	if apex == "." && len(p.errs) == 0 {
		p.fail(soa, "", "the root cannot be a policy zone")
	}
	if len(p.errs) > 0 {
		return nil, ""
	}
	if owners == nil {
		owners = []*rpzOwner{} // a zone with no triggers is valid
	}
	return owners, apex
}

func (p *rpzParser) parseError(err error) {
	var pe *dns.ParseError
	msg := err.Error()
	if errors.As(err, &pe) {
		if m := parseErrorRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[3])
			tok, _ := strconv.Unquote(m[2])
			p.fail(line, tok, m[1])
			return
		}
	}
	p.fail(0, "", msg)
}

// defaultOrigin is the origin relative names start from when the file sets
// none with $ORIGIN: the file name without its extension
// ("rpz.example.org.zone" is the zone rpz.example.org).
func defaultOrigin(file string) string {
	base := filepath.Base(file)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if _, ok := dns.IsDomainName(base); !ok || base == "" {
		return ""
	}
	return dns.Fqdn(base)
}

func rrText(rr dns.RR) string { return strings.ReplaceAll(rr.String(), "\t", " ") }

// rule turns one owner's records into a trigger and policy. ok is false
// when the owner yields no rule (apex records, unsupported triggers, errors).
func (p *rpzParser) rule(o *rpzOwner, apex string) (rpzRule, bool) {
	first := rrText(o.rrs[0])
	if o.name == apex {
		for _, rr := range o.rrs {
			if msg := p.zone.apexRecord(rr); msg != "" {
				p.warn(o.line, rrText(rr), msg)
			}
		}
		return rpzRule{}, false
	}
	if !dns.IsSubDomain(apex, o.name) {
		p.fail(o.line, first, "owner name is outside the zone "+apex)
		return rpzRule{}, false
	}
	rel := strings.TrimSuffix(o.name, "."+apex)
	r, warn, msg := rpzTrigger(rel)
	r.line = o.line
	switch {
	case msg != "":
		p.fail(o.line, first, msg)
		return r, false
	case warn != "":
		p.warn(o.line, first, warn)
		return r, false
	}
	return p.policy(o, rel, r)
}

// rpzTrigger reads a trigger from an owner name relative to the apex. A
// non-empty warn means the trigger is not supported (and ignored), a
// non-empty msg that it is wrong.
func rpzTrigger(rel string) (r rpzRule, warn, msg string) {
	labels := strings.Split(rel, ".")
	switch last := labels[len(labels)-1]; last {
	case rpzIPLabel:
		pfx, msg := decodeRPZIP(labels[:len(labels)-1])
		if msg != "" {
			return r, "", msg
		}
		r.ip, r.prefix = true, pfx
	case rpzClientIPLabel, rpzNSDNameLabel, rpzNSIPLabel:
		kind := map[string]string{rpzClientIPLabel: "client-IP", rpzNSDNameLabel: "NSDNAME", rpzNSIPLabel: "NSIP"}[last]
		return r, kind + " triggers are not supported; ignored", ""
	default:
		if strings.HasPrefix(last, "rpz-") {
			return r, "unknown RPZ trigger ." + last + "; ignored", ""
		}
		name := rel
		if rel == "*" {
			return r, "", "a wildcard over every name is not supported; list the names"
		}
		if strings.HasPrefix(rel, "*.") {
			r.kind, name = MatchWildcard, rel[2:]
		} else {
			r.kind = MatchExact
		}
		n, msg := normalizeName(nil, []byte(name))
		if msg == "" && r.kind == MatchWildcard {
			msg = wildcardSuffixMsg(n)
		}
		if msg != "" {
			return r, "", msg
		}
		r.name = n
	}
	return r, "", ""
}

// policy reads the action from an owner's records.
func (p *rpzParser) policy(o *rpzOwner, rel string, r rpzRule) (rpzRule, bool) {
	var cname *dns.CNAME
	for _, rr := range o.rrs {
		switch v := rr.(type) {
		case *dns.CNAME:
			if cname != nil {
				p.fail(o.line, rrText(rr), "more than one CNAME for one trigger")
				return r, false
			}
			cname = v
		case *dns.NS, *dns.DNAME:
			p.fail(o.line, rrText(rr), dns.TypeToString[rr.Header().Rrtype]+" records cannot be policy data")
			return r, false
		}
	}
	if cname != nil && len(o.rrs) > 1 {
		p.fail(o.line, rrText(o.rrs[0]), "a CNAME cannot share its name with other records")
		return r, false
	}
	if cname != nil {
		pol, warn := rpzCNAMEPolicy(strings.ToLower(cname.Target), rel, r)
		if warn != "" {
			p.warn(o.line, rrText(cname), warn)
			return r, false
		}
		if pol != rpzLocalData {
			r.policy = pol
			return r, true
		}
	}
	r.policy, r.local = rpzLocalData, internLocal(&p.local, o.rrs)
	return r, true
}

// rpzCNAMEPolicy reads the policy of a trigger's CNAME (target in lower
// case): one of the RPZ actions, or rpzLocalData for an ordinary target.
// A non-empty warn means the action is not supported (the trigger is
// ignored).
func rpzCNAMEPolicy(target, rel string, r rpzRule) (rpzPolicy, string) {
	switch {
	case target == RPZNXDomain:
		return rpzNXDomain, ""
	case target == RPZNoData:
		return rpzNoData, ""
	case target == RPZPassthru:
		return rpzPassthru, ""
	case target == RPZDrop:
		return rpzDrop, ""
	case target == rpzTCPOnly:
		return 0, "the TCP-only action is not supported; ignored"
	case !r.ip && r.kind == MatchExact && target == rel+".":
		// The legacy PASSTHRU encoding: a CNAME to the trigger name itself.
		return rpzPassthru, ""
	case strings.HasPrefix(target, "rpz-") && dns.CountLabel(target) == 1:
		return 0, "unknown RPZ action " + target + "; ignored"
	}
	return rpzLocalData, ""
}

// internLocal returns a shared copy of a local-data record set: walled-garden
// zones point millions of names at the same few addresses.
func internLocal(local *map[string][]dns.RR, rrs []dns.RR) []dns.RR {
	var key strings.Builder
	for _, rr := range rrs {
		key.WriteString(strconv.Itoa(int(rr.Header().Ttl)))
		key.WriteByte(' ')
		key.WriteString(strings.TrimPrefix(rr.String(), rr.Header().String()))
		key.WriteByte('\n')
	}
	if *local == nil {
		*local = map[string][]dns.RR{}
	}
	if s, ok := (*local)[key.String()]; ok {
		return s
	}
	s := append([]dns.RR(nil), rrs...)
	(*local)[key.String()] = s
	return s
}

// decodeRPZIP reads the labels before ".rpz-ip": a prefix length followed by
// the address in reverse order, IPv4 as four decimal octets
// ("32.7.113.0.203" is 203.0.113.7/32), IPv6 as 16-bit hex groups with "zz"
// standing for the "::" run ("128.1.zz.db8.2001" is 2001:db8::1/128).
func decodeRPZIP(labels []string) (netip.Prefix, string) {
	if len(labels) < 2 {
		return netip.Prefix{}, "rpz-ip trigger needs a prefix length and an address"
	}
	bitsLen, err := strconv.Atoi(labels[0])
	if err != nil || labels[0][0] == '+' || labels[0][0] == '-' {
		return netip.Prefix{}, "rpz-ip trigger must start with a prefix length"
	}
	rev := labels[1:]
	var addr netip.Addr
	if len(rev) == 4 && !strings.Contains(strings.Join(rev, "."), "zz") && allDecimal(rev) {
		var b [4]byte
		for i, l := range rev {
			v, err := strconv.Atoi(l)
			if err != nil || v > 255 || (len(l) > 1 && l[0] == '0') {
				return netip.Prefix{}, "invalid IPv4 octet " + strconv.Quote(l) + " in rpz-ip trigger"
			}
			b[3-i] = byte(v)
		}
		addr = netip.AddrFrom4(b)
		if bitsLen < 1 || bitsLen > 32 {
			return netip.Prefix{}, "IPv4 prefix length must be 1 to 32"
		}
	} else {
		var groups []uint16
		zz := -1
		for i := len(rev) - 1; i >= 0; i-- {
			l := rev[i]
			if l == "zz" {
				if zz >= 0 {
					return netip.Prefix{}, `more than one "zz" in rpz-ip trigger`
				}
				zz = len(groups)
				continue
			}
			v, err := strconv.ParseUint(l, 16, 16)
			if err != nil || len(l) > 4 {
				return netip.Prefix{}, "invalid IPv6 group " + strconv.Quote(l) + " in rpz-ip trigger"
			}
			groups = append(groups, uint16(v))
		}
		switch {
		case zz >= 0 && len(groups) < 8:
			full := make([]uint16, 0, 8)
			full = append(full, groups[:zz]...)
			full = append(full, make([]uint16, 8-len(groups))...)
			groups = append(full, groups[zz:]...)
		case len(groups) != 8:
			return netip.Prefix{}, "rpz-ip trigger address is neither 4 IPv4 octets nor 8 IPv6 groups"
		}
		var b [16]byte
		for i, g := range groups {
			b[2*i], b[2*i+1] = byte(g>>8), byte(g)
		}
		addr = netip.AddrFrom16(b)
		if bitsLen < 1 || bitsLen > 128 {
			return netip.Prefix{}, "IPv6 prefix length must be 1 to 128"
		}
	}
	pfx := netip.PrefixFrom(addr, bitsLen)
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, "rpz-ip prefix has host bits set; did you mean " + RPZIPName(m) + "?"
	}
	return pfx, ""
}

func allDecimal(labels []string) bool {
	for _, l := range labels {
		if l == "" {
			return false
		}
		for _, c := range l {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// RPZIPName returns the owner name of a response-IP trigger for p, relative
// to the zone apex: "24.0.100.51.198.rpz-ip" for 198.51.100.0/24,
// "48.zz.1.db8.2001.rpz-ip" for 2001:db8:1::/48.
func RPZIPName(p netip.Prefix) string {
	a := p.Addr()
	var labels []string
	if a.Is4() {
		b := a.As4()
		labels = []string{strconv.Itoa(int(b[3])), strconv.Itoa(int(b[2])), strconv.Itoa(int(b[1])), strconv.Itoa(int(b[0]))}
	} else {
		b := a.As16()
		var g [8]uint16
		for i := range g {
			g[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		// The longest run of two or more zero groups, the first on a tie,
		// becomes "zz" (as "::" in RFC 5952).
		bestAt, bestLen := -1, 1
		for i := 0; i < 8; {
			if g[i] != 0 {
				i++
				continue
			}
			j := i
			for j < 8 && g[j] == 0 {
				j++
			}
			if j-i > bestLen {
				bestAt, bestLen = i, j-i
			}
			i = j
		}
		for i := 7; i >= 0; i-- {
			switch {
			case bestAt >= 0 && i >= bestAt && i < bestAt+bestLen:
				if i == bestAt {
					labels = append(labels, "zz")
				}
			default:
				labels = append(labels, strconv.FormatUint(uint64(g[i]), 16))
			}
		}
	}
	return strconv.Itoa(p.Bits()) + "." + strings.Join(labels, ".") + "." + rpzIPLabel
}

// recordLines returns the 1-based line on which each resource record of a
// master file starts, in the order the zone parser returns them: a record
// starts on a line holding data outside parentheses that is not a $
// directive. It also returns the line of a $GENERATE directive (0 if
// none), whose record count cannot be known without expanding it.
func recordLines(data []byte) (lines []int, generate int) {
	depth, lineNo := 0, 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if depth == 0 {
			t := trimSpace(line)
			switch {
			case len(t) == 0 || t[0] == ';':
				continue
			case t[0] == '$':
				if f := bytes.Fields(t); len(f) > 0 && strings.EqualFold(string(f[0]), "$GENERATE") && generate == 0 {
					generate = lineNo
				}
				continue
			}
			lines = append(lines, lineNo)
		}
		depth = parenDepth(line, depth)
	}
	return lines, generate
}
