package main

// The differential test: Unbound (a plain forwarder) and sinkhole both
// forward to the lab's authoritative BIND (dnslab_test.go), and every case
// (name, type, class and dig-like flags) is asked of both and compared
// section by section, ignoring TTLs and record order. A difference fails the
// test unless it is listed in diffAllowances with the RFC that allows it.
// The cases run twice, with a list reload in between.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// diffCase is one query: a name (as sent: mixed case tests 0x20), a type,
// a class and flags in dig's words.
type diffCase struct {
	name  string
	qtype uint16
	class uint16
	flags string // "+dnssec +cd", "+noedns", "+bufsize=512", "+tcp", ...
}

func (c diffCase) String() string {
	s := c.name + " "
	if c.class != dns.ClassINET {
		s += dns.ClassToString[c.class] + " "
	}
	s += dns.TypeToString[c.qtype]
	if c.qtype == 65280 {
		s += "TYPE65280"
	}
	if c.flags != "" {
		s += " " + c.flags
	}
	return s
}

func (c diffCase) has(flag string) bool { return slices.Contains(strings.Fields(c.flags), flag) }

// msg builds the query as dig would send it: RD and AD set, EDNS with a
// 1232-byte buffer, unless the flags say otherwise.
func (c diffCase) msg() *dns.Msg {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = !c.has("+norec")
	m.AuthenticatedData = !c.has("+noadflag")
	m.CheckingDisabled = c.has("+cd")
	m.Question = []dns.Question{{Name: c.name, Qtype: c.qtype, Qclass: c.class}}
	if c.has("+noedns") {
		return m
	}
	size := uint16(1232)
	for _, f := range strings.Fields(c.flags) {
		if v, ok := strings.CutPrefix(f, "+bufsize="); ok {
			n, _ := strconv.Atoi(v)
			size = uint16(n)
		}
	}
	m.SetEdns0(size, c.has("+dnssec"))
	opt := m.IsEdns0()
	if c.has("+ednsver1") {
		opt.SetVersion(1)
	}
	if c.has("+subnet") {
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{198, 51, 100, 0}})
	}
	if c.has("+ednsopt") {
		opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}})
	}
	return m
}

func (c diffCase) proto() string {
	if c.has("+tcp") {
		return "tcp"
	}
	return "udp"
}

// diffCases are the cases, at least 80.
func diffCases() []diffCase {
	in := func(name string, t uint16, flags ...string) diffCase {
		return diffCase{name: dns.Fqdn(name), qtype: t, class: dns.ClassINET, flags: strings.Join(flags, " ")}
	}
	var cs []diffCase
	// Every kind of answer, plain and with DNSSEC records.
	for _, base := range []diffCase{
		in("www.dt.example", dns.TypeA),
		in("www.dt.example", dns.TypeAAAA),
		in("www.dt.example", dns.TypeMX), // NODATA
		in("dt.example", dns.TypeSOA),
		in("dt.example", dns.TypeNS),
		in("dt.example", dns.TypeMX),
		in("dt.example", dns.TypeDNSKEY),
		in("dt.example", dns.TypeTXT),
		in("_sip._udp.dt.example", dns.TypeSRV),
		in("c1.dt.example", dns.TypeA),       // CNAME chain
		in("c2.dt.example", dns.TypeCNAME),   // the alias itself
		in("cx.dt.example", dns.TypeA),       // CNAME into the NSEC3 child
		in("cu.dt.example", dns.TypeA),       // CNAME into the insecure child
		in("dangling.dt.example", dns.TypeA), // CNAME to nothing
		in("x.old.dt.example", dns.TypeA),    // DNAME
		in("y.old.dt.example", dns.TypeA),    // DNAME to nothing
		in("old.dt.example", dns.TypeDNAME),
		in("a.wild.dt.example", dns.TypeA), // wildcard
		in("b.wild.dt.example", dns.TypeTXT),
		in("a.wild.dt.example", dns.TypeMX), // wildcard NODATA
		in("nx.dt.example", dns.TypeA),      // NXDOMAIN
		in("caa.dt.example", dns.TypeCAA),
		in("unknown.dt.example", 65280), // unknown type
		in("nsec3.dt.example", dns.TypeDS),
		in("insecure.dt.example", dns.TypeDS), // no DS: insecure delegation
		in("host.nsec3.dt.example", dns.TypeA),
		in("alias.nsec3.dt.example", dns.TypeA),
		in("a.w.nsec3.dt.example", dns.TypeTXT),
		in("nx.nsec3.dt.example", dns.TypeA), // NXDOMAIN, NSEC3
		in("host.nsec3.dt.example", dns.TypeTXT),
		in("www.insecure.dt.example", dns.TypeA),
		in("back.insecure.dt.example", dns.TypeA),
		in("nx.insecure.dt.example", dns.TypeA),
	} {
		cs = append(cs, base)
		base.flags = "+dnssec"
		cs = append(cs, base)
	}
	cs = append(cs,
		// Flags.
		in("www.dt.example", dns.TypeA, "+dnssec", "+cd"),
		in("nx.dt.example", dns.TypeA, "+dnssec", "+cd"),
		in("www.dt.example", dns.TypeA, "+cd"),
		in("www.dt.example", dns.TypeA, "+noadflag"),
		in("www.dt.example", dns.TypeA, "+dnssec", "+noadflag"),
		in("www.dt.example", dns.TypeA, "+norec"),
		in("nx.dt.example", dns.TypeA, "+norec"),
		in("www.dt.example", dns.TypeA, "+noedns"),
		in("nx.dt.example", dns.TypeA, "+noedns"),
		in("c1.dt.example", dns.TypeA, "+noedns"),
		in("www.dt.example", dns.TypeA, "+tcp"),
		in("x.old.dt.example", dns.TypeA, "+tcp", "+dnssec"),
		// Sizes: the TXT set and the A records do not fit small answers.
		in("big.dt.example", dns.TypeTXT, "+bufsize=512"),
		in("big.dt.example", dns.TypeTXT, "+bufsize=1232"),
		in("big.dt.example", dns.TypeTXT, "+bufsize=4096"),
		in("big.dt.example", dns.TypeTXT, "+noedns"),
		in("big.dt.example", dns.TypeTXT, "+tcp"),
		in("many.dt.example", dns.TypeA, "+bufsize=512"),
		in("many.dt.example", dns.TypeA, "+bufsize=1232"),
		in("many.dt.example", dns.TypeA, "+bufsize=4096"),
		in("many.dt.example", dns.TypeA, "+tcp"),
		in("many.dt.example", dns.TypeA, "+tcp", "+dnssec"),
		// 0x20: the question's case is kept.
		in("WwW.Dt.ExAmPlE", dns.TypeA),
		in("C1.dT.eXaMpLe", dns.TypeA),
		in("nX.DT.example", dns.TypeA, "+dnssec"),
		// ANY.
		in("www.dt.example", dns.TypeANY),
		in("www.dt.example", dns.TypeANY, "+tcp"),
		// EDNS options and versions.
		in("www.dt.example", dns.TypeA, "+subnet"),
		in("www.dt.example", dns.TypeA, "+ednsopt"),
		in("www.dt.example", dns.TypeA, "+ednsver1"),
		in("nx.dt.example", dns.TypeA, "+ednsver1"),
	)
	// CHAOS: answered by the resolver itself, never forwarded.
	for _, n := range []string{"version.bind.", "hostname.bind.", "id.server."} {
		cs = append(cs, diffCase{name: n, qtype: dns.TypeTXT, class: dns.ClassCHAOS})
	}
	return cs
}

// diffAsk asks addr, retrying a lost UDP query on a busy machine.
func diffAsk(addr string, c diffCase) (*dns.Msg, error) {
	m := c.msg()
	cl := &dns.Client{Net: c.proto(), Timeout: 4 * time.Second, UDPSize: 65535}
	var err error
	for try := 0; try < 3; try++ {
		var r *dns.Msg
		if r, _, err = cl.Exchange(m, addr); err == nil {
			return r, nil
		}
	}
	return nil, err
}

// msgView is a response reduced to what the comparison looks at.
type msgView struct {
	rcode    string
	flags    map[string]bool // qr aa tc rd ra ad cd
	question string
	sections [3][]string // answer, authority, additional (without OPT)
	opt      string      // "" without OPT
}

var viewFlags = []string{"qr", "aa", "tc", "rd", "ra", "ad", "cd"}

func viewOf(m *dns.Msg) msgView {
	v := msgView{rcode: dns.RcodeToString[m.Rcode], flags: map[string]bool{
		"qr": m.Response, "aa": m.Authoritative, "tc": m.Truncated, "rd": m.RecursionDesired,
		"ra": m.RecursionAvailable, "ad": m.AuthenticatedData, "cd": m.CheckingDisabled}}
	if len(m.Question) > 0 {
		v.question = m.Question[0].String()
	}
	for i, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if opt, ok := rr.(*dns.OPT); ok {
				v.opt = optView(opt)
				continue
			}
			v.sections[i] = append(v.sections[i], rrView(rr))
		}
		sort.Strings(v.sections[i])
	}
	return v
}

// rrView writes a record with TTL 0 and names lower-cased (RFC 4343:
// names compare without regard to case).
func rrView(rr dns.RR) string {
	rr = dns.Copy(rr)
	rr.Header().Ttl = 0
	if sig, ok := rr.(*dns.RRSIG); ok {
		sig.OrigTtl = 0 // compared as the signature's original TTL is
	}
	s := strings.ReplaceAll(rr.String(), "\t", " ")
	if _, ok := rr.(*dns.TXT); ok {
		h := rr.Header()
		return strings.ToLower(h.Name) + s[len(h.Name):]
	}
	return strings.ToLower(s)
}

func optView(o *dns.OPT) string {
	s := fmt.Sprintf("version %d udp %d", o.Version(), o.UDPSize())
	if o.Do() {
		s += " do"
	}
	for _, e := range o.Option {
		if ede, ok := e.(*dns.EDNS0_EDE); ok {
			s += fmt.Sprintf(" ede %d", ede.InfoCode)
			continue
		}
		s += fmt.Sprintf(" option %d", e.Option())
	}
	return s
}

// diffPart is one way two answers differ.
type diffPart struct {
	part         string // "rcode", "flag aa", "question", "answer", "authority", "additional", "opt"
	unbound, got string
}

func (d diffPart) String() string {
	return fmt.Sprintf("%s: Unbound %q, sinkhole %q", d.part, d.unbound, d.got)
}

func compareViews(a, b msgView) []diffPart {
	var out []diffPart
	if a.rcode != b.rcode {
		out = append(out, diffPart{"rcode", a.rcode, b.rcode})
	}
	for _, f := range viewFlags {
		if a.flags[f] != b.flags[f] {
			out = append(out, diffPart{"flag " + f, strconv.FormatBool(a.flags[f]), strconv.FormatBool(b.flags[f])})
		}
	}
	if a.question != b.question {
		out = append(out, diffPart{"question", a.question, b.question})
	}
	for i, name := range []string{"answer", "authority", "additional"} {
		if !slices.Equal(a.sections[i], b.sections[i]) {
			out = append(out, diffPart{name, strings.Join(a.sections[i], "\n"), strings.Join(b.sections[i], "\n")})
		}
	}
	if a.opt != b.opt {
		out = append(out, diffPart{"opt", a.opt, b.opt})
	}
	return out
}

// diffJudge decides about one difference of one case.
type diffJudge struct {
	// why names the RFC that allows the difference, and how.
	why string
	// covers reports whether the difference d of case c (Unbound's answer
	// ub, sinkhole's sh, in run) is this one.
	covers func(run int, c diffCase, d diffPart, ub, sh *dns.Msg) bool
}

// diffAllowances are the differences an RFC allows. Each is narrow: it
// names the part of the answer and checks that sinkhole's side is right.
var diffAllowances = []diffJudge{
	{
		why: "RFC 2181 section 9: the records of a truncated (TC) answer are not to be used, and a partial RRset may stay in it; Unbound sends none",
		covers: func(_ int, _ diffCase, d diffPart, ub, sh *dns.Msg) bool {
			return ub.Truncated && sh.Truncated && (d.part == "answer" || d.part == "authority" || d.part == "additional")
		},
	},
	{
		why: "RFC 1034 section 4.3.2 step 6: additional data is optional; Unbound (minimal-responses) leaves out the addresses of MX and SRV targets that sinkhole relays from the upstream",
		covers: func(_ int, _ diffCase, d diffPart, ub, sh *dns.Msg) bool {
			return d.part == "additional" && len(ub.Extra) <= 1 && onlyTargetAddresses(sh)
		},
	},
	{
		why: "RFC 8482 section 4.1: an ANY query may be answered with a subset of the RRsets; Unbound answers from its cache, sinkhole relays the upstream's full set",
		covers: func(_ int, c diffCase, d diffPart, ub, sh *dns.Msg) bool {
			return c.qtype == dns.TypeANY && d.part == "answer" && subset(ub.Answer, sh.Answer)
		},
	},
	{
		why: "RFC 1035 section 4.1.1: RD is copied into the response, as sinkhole does; Unbound sets it on answers from its cache to RD=0 queries",
		covers: func(_ int, c diffCase, d diffPart, ub, sh *dns.Msg) bool {
			return d.part == "flag rd" && c.has("+norec") && !sh.RecursionDesired
		},
	},
	{
		why: "RFC 4892: what a server tells of its identity and version over CHAOS is its operator's choice; sinkhole (without --identity, --version-string) refuses, never passing on the upstream's, where Unbound answers",
		covers: func(_ int, c diffCase, _ diffPart, ub, sh *dns.Msg) bool {
			return c.class == dns.ClassCHAOS && sh.Rcode == dns.RcodeRefused && len(sh.Answer)+len(sh.Ns) == 0
		},
	},
}

// onlyTargetAddresses reports whether m's additional section holds only
// addresses (and their signatures) of the targets of its answer's MX, SRV
// and NS records.
func onlyTargetAddresses(m *dns.Msg) bool {
	targets := map[string]bool{}
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.MX:
			targets[strings.ToLower(v.Mx)] = true
		case *dns.SRV:
			targets[strings.ToLower(v.Target)] = true
		case *dns.NS:
			targets[strings.ToLower(v.Ns)] = true
		}
	}
	for _, rr := range m.Extra {
		h := rr.Header()
		switch h.Rrtype {
		case dns.TypeOPT:
		case dns.TypeA, dns.TypeAAAA, dns.TypeRRSIG:
			if !targets[strings.ToLower(h.Name)] {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// subset reports whether every record of a is in b (TTLs and case aside).
func subset(a, b []dns.RR) bool {
	have := map[string]bool{}
	for _, rr := range b {
		have[rrView(rr)] = true
	}
	for _, rr := range a {
		if !have[rrView(rr)] {
			return false
		}
	}
	return true
}

// judge returns the rule that covers d, or nil.
func judge(rules []diffJudge, run int, c diffCase, d diffPart, ub, sh *dns.Msg) *diffJudge {
	for i := range rules {
		if rules[i].covers(run, c, d, ub, sh) {
			return &rules[i]
		}
	}
	return nil
}

// TestDifferentialAgainstUnbound asks Unbound and sinkhole, both forwarding
// to the lab's BIND, the same cases twice (a list reload in between), and
// compares their answers section by section.
func TestDifferentialAgainstUnbound(t *testing.T) {
	lab := startLab(t)
	ub := startUnbound(t, lab.bind)
	lists := writeLists(t, map[string]string{"diff.txt": "blocked.invalid\n"})
	ts := startSinkhole(t, lists, "--upstream", lab.bind)
	cases := diffCases()
	if len(cases) < 80 {
		t.Fatalf("%d cases, want at least 80", len(cases))
	}
	allowed := map[string]int{}
	identical := 0
	for run := 1; run <= 2; run++ {
		if run == 2 {
			if err := os.WriteFile(filepath.Join(lists, "diff.txt"), []byte("blocked.invalid\nalso-blocked.invalid\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			gen := ts.in.store.Current().Generation
			waitUntil(t, "the list reload", 10*time.Second, func() bool { return ts.in.store.Current().Generation != gen })
		}
		for _, c := range cases {
			want, err := diffAsk(ub, c)
			if err != nil {
				t.Errorf("run %d, %s: Unbound: %v", run, c, err)
				continue
			}
			got, err := diffAsk(ts.addr, c)
			if err != nil {
				t.Errorf("run %d, %s: sinkhole: %v", run, c, err)
				continue
			}
			if os.Getenv("DIFF_DUMP") != "" && strings.Contains(c.String(), os.Getenv("DIFF_DUMP")) {
				t.Logf("run %d, %s:\nUnbound:\n%v\nsinkhole:\n%v", run, c, want, got)
			}
			diffs := compareViews(viewOf(want), viewOf(got))
			if len(diffs) == 0 {
				identical++
			}
			for _, d := range diffs {
				if a := judge(diffAllowances, run, c, d, want, got); a != nil {
					allowed[a.why]++
					continue
				}
				t.Errorf("run %d, %s: %s", run, c, d)
			}
		}
	}
	t.Logf("%d cases, 2 runs: %d answers identical to Unbound's", len(cases), identical)
	for _, a := range diffAllowances {
		t.Logf("allowed %3d times: %s", allowed[a.why], a.why)
	}
}
