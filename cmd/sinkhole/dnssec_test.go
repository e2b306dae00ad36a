package main

// DNSSEC through sinkhole: a validating Unbound that forwards to sinkhole,
// and delv asking sinkhole, both with the lab zone's trust anchor, get
// secure answers and secure denials from the lab's signed zones, before
// and after a list reload. Whatever sinkhole scrubs or rewrites, the
// signatures and proofs a validator needs must arrive whole.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnssecCase is a query and what a validator must make of it.
type dnssecCase struct {
	name   string
	qtype  uint16
	rcode  int
	secure bool // AD from the validating Unbound, "fully validated" from delv
}

// negative reports whether the answer is a denial (NXDOMAIN or NODATA).
func (c dnssecCase) negative() bool {
	return c.rcode == dns.RcodeNameError || c.qtype == dns.TypeMX
}

// delvVerdict is the line delv prints for the case's answer.
func (c dnssecCase) delvVerdict() string {
	v := "; fully validated"
	if !c.secure {
		v = "; unsigned answer"
	}
	if c.negative() {
		v = "; negative response," + v[1:]
	}
	return v
}

var dnssecCases = []dnssecCase{
	{"www.dt.example.", dns.TypeA, dns.RcodeSuccess, true},
	{"www.dt.example.", dns.TypeMX, dns.RcodeSuccess, true}, // secure NODATA (NSEC); the only MX case
	{"c1.dt.example.", dns.TypeA, dns.RcodeSuccess, true},   // CNAME chain
	{"x.old.dt.example.", dns.TypeA, dns.RcodeSuccess, true},
	{"a.wild.dt.example.", dns.TypeA, dns.RcodeSuccess, true},     // wildcard, NSEC proof
	{"nx.dt.example.", dns.TypeA, dns.RcodeNameError, true},       // secure NXDOMAIN (NSEC)
	{"host.nsec3.dt.example.", dns.TypeA, dns.RcodeSuccess, true}, // through the DS
	{"a.w.nsec3.dt.example.", dns.TypeTXT, dns.RcodeSuccess, true},
	{"nx.nsec3.dt.example.", dns.TypeA, dns.RcodeNameError, true}, // secure NXDOMAIN (NSEC3)
	{"cx.dt.example.", dns.TypeA, dns.RcodeSuccess, true},         // CNAME across the secure cut
	{"www.insecure.dt.example.", dns.TypeA, dns.RcodeSuccess, false},
	{"nx.insecure.dt.example.", dns.TypeA, dns.RcodeNameError, false},
}

// startValidator runs a validating Unbound forwarding to upstream with the
// lab's trust anchor, caching nothing so every query crosses sinkhole.
func startValidator(t *testing.T, upstream string, anchor dns.RR) string {
	t.Helper()
	return startUnboundWith(t, upstream, fmt.Sprintf(`module-config: "validator iterator"
	trust-anchor: "%s"
	val-log-level: 2
	cache-max-ttl: 0
	cache-max-negative-ttl: 0`, strings.ReplaceAll(anchor.String(), "\t", " ")))
}

// writeAnchor writes the lab's trust anchor for delv (-a).
func writeAnchor(t *testing.T, anchor dns.RR) string {
	t.Helper()
	k := anchor.(*dns.DNSKEY)
	p := filepath.Join(t.TempDir(), "anchor.conf")
	text := fmt.Sprintf("trust-anchors {\n\t%s static-key %d %d %d \"%s\";\n};\n", k.Hdr.Name, k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// delv asks addr with delv, validating from the anchor, and returns its
// output.
func delv(t *testing.T, bin, anchorFile, addr string, c dnssecCase) string {
	t.Helper()
	host, port := hostPortOf(t, addr)
	var out []byte
	for try := 0; try < 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-a", anchorFile, "+root="+labZone, "@"+host, "-p", port,
			c.name, dns.TypeToString[c.qtype])
		out, _ = cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		// On a busy machine a lost packet can time delv out: ask again.
		if !timedOut && !strings.Contains(string(out), "timed out") {
			break
		}
	}
	return string(out)
}

func TestDNSSECThroughSinkhole(t *testing.T) {
	lab := startLab(t)
	delvBin := lookBin(t, "delv", "bind9-dnsutils")
	lists := writeLists(t, map[string]string{"dnssec.txt": "blocked.invalid\n"})
	ts := startSinkhole(t, lists, "--upstream", lab.bind)
	validator := startValidator(t, ts.addr, lab.anchor)
	anchorFile := writeAnchor(t, lab.anchor)
	check := func(when string) {
		for _, c := range dnssecCases {
			r, err := diffAsk(validator, diffCase{name: c.name, qtype: c.qtype, class: dns.ClassINET})
			if err != nil {
				t.Errorf("%s: %s %s: validating Unbound: %v", when, c.name, dns.TypeToString[c.qtype], err)
				continue
			}
			if r.Rcode != c.rcode || r.AuthenticatedData != c.secure {
				t.Errorf("%s: %s %s through the validating Unbound: %s AD=%v, want %s AD=%v", when, c.name, dns.TypeToString[c.qtype],
					dns.RcodeToString[r.Rcode], r.AuthenticatedData, dns.RcodeToString[c.rcode], c.secure)
			}
			out := delv(t, delvBin, anchorFile, ts.addr, c)
			if want := c.delvVerdict(); !strings.Contains(out, want) {
				t.Errorf("%s: delv %s %s through sinkhole: want %q in\n%s", when, c.name, dns.TypeToString[c.qtype], want, out)
			}
		}
	}
	check("before a reload")
	if err := os.WriteFile(filepath.Join(lists, "dnssec.txt"), []byte("blocked.invalid\nalso-blocked.invalid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := ts.in.store.Current().Generation
	waitUntil(t, "the list reload", 10*time.Second, func() bool { return ts.in.store.Current().Generation != gen })
	check("after a reload")
}
