package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Regulator-scale interop: a 100,000-name policy zone at a BIND primary
// followed by sinkhole secondaries, and sinkhole's export of a
// 100,000-name list followed by Unbound after a change applied as a delta.
// The waits are minutes: under the race detector on a busy 2-core machine
// a first transfer of the 200,000 records took 55 s.

const scaleNames = 100_000

func scaleName(i int) string { return fmt.Sprintf("n%d-scale.example", i) }

// scaleZoneText is a policy zone of scaleNames names (name and *.name
// CNAME .) minus skip, plus extra, with a one-second refresh so that
// secondaries NOTIFY does not reach find the change by their refresh.
func scaleZoneText(serial int, skip int, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. %d 1 1 86400 60\n  NS ns.rpz.test.\nns A 127.0.0.1\n", serial)
	for i := range scaleNames {
		if i != skip {
			fmt.Fprintf(&b, "%s CNAME .\n*.%s CNAME .\n", scaleName(i), scaleName(i))
		}
	}
	for _, n := range extra {
		fmt.Fprintf(&b, "%s CNAME .\n*.%s CNAME .\n", n, n)
	}
	return b.String()
}

func TestInteropScaleBINDPrimary(t *testing.T) {
	bin := lookBin(t, "named", "bind9")
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "rpz.test.zone")
	if err := os.WriteFile(zoneFile, []byte(scaleZoneText(1, -1)), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	primaryAddr := freeAddr(t)
	key := writeInteropKey(t, dir)
	var secs []*testServer
	for range 2 {
		secs = append(secs, startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--state-dir", t.TempDir(),
			"--rpz-feed", "regulator=rpz.test@"+primaryAddr, "--rpz-tsig", "regulator="+key))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, sec := range secs {
				t.Logf("secondary %d log:\n%s", i, sec.stderr.String())
			}
		}
	})
	d := startNamed(t, bin, dir, primaryAddr, secs[0].addr)
	start := time.Now()
	for i, sec := range secs {
		waitUntil(t, fmt.Sprintf("secondary %d: first AXFR of %d names", i, scaleNames), 3*time.Minute, func() bool {
			d.running(t)
			return sec.in.feeds.Status().Feeds[0].Serial == 1
		})
	}
	t.Logf("both secondaries hold the %d-name zone %s after BIND started", scaleNames, time.Since(start).Round(time.Millisecond))
	for _, sec := range secs {
		for _, name := range []string{scaleName(0), "www." + scaleName(scaleNames/2), scaleName(scaleNames - 1), scaleName(777)} {
			if !censored(sec.addr, name) {
				t.Fatalf("%s not blocked by %s", name, sec.addr)
			}
		}
	}
	// One name out, one in, at the primary.
	if err := os.WriteFile(zoneFile, []byte(scaleZoneText(2, 777, "added-scale.example")), 0o644); err != nil {
		t.Fatal(err)
	}
	d.hup(t)
	start = time.Now()
	for i, sec := range secs {
		waitUntil(t, fmt.Sprintf("secondary %d to follow the change", i), time.Minute, func() bool {
			return censored(sec.addr, "added-scale.example") && !censored(sec.addr, scaleName(777)) &&
				sec.in.feeds.Status().Feeds[0].Serial == 2
		})
		if !censored(sec.addr, "www."+scaleName(scaleNames-2)) {
			t.Fatalf("secondary %d lost a name it should keep", i)
		}
		// BIND (ixfr-from-differences) sends the difference: applied to
		// the lists in service as a delta, not by reloading the zone file.
		if st := sec.in.feeds.Status().Feeds[0]; st.LastTransferType != "IXFR" {
			t.Errorf("secondary %d: transferred by %s, want IXFR", i, st.LastTransferType)
		}
		if log := sec.stderr.String(); !strings.Contains(log, "applied=delta") {
			t.Errorf("secondary %d did not apply the IXFR as a delta", i)
		}
	}
	t.Logf("the change reached both secondaries %s after the primary's reload signal", time.Since(start).Round(time.Millisecond))
}

func TestInteropScaleUnboundAfterDelta(t *testing.T) {
	bin := lookBin(t, "unbound", "unbound")
	// The upstream knows the names the test asks, so an NXDOMAIN can only
	// come from the policy zone.
	up := startUpstream(t, scaleName(500)+". 60 IN A 192.0.2.50", "added-scale.example. 60 IN A 192.0.2.51",
		scaleName(scaleNames-1)+". 60 IN A 192.0.2.52", "www."+scaleName(42)+". 60 IN A 192.0.2.53")
	var b strings.Builder
	for i := range scaleNames {
		b.WriteString(scaleName(i) + "\n")
	}
	list := b.String()
	lists := writeLists(t, map[string]string{"regulator.txt": list})
	consumerAddr := freeAddr(t)
	primary := startSinkhole(t, lists, "--upstream", up.Addr, "--rpz-export", "rpz.test", "--state-dir", t.TempDir(),
		"--rpz-notify", consumerAddr, "--reload-debounce", "10ms")
	d := startUnboundConsumer(t, bin, t.TempDir(), consumerAddr, primary.addr, up.Addr)
	ask := func(name string) int {
		for try := 0; try < 3; try++ {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			if r, _, err := c.Exchange(m, consumerAddr); err == nil && r.Rcode != dns.RcodeServerFailure {
				return r.Rcode
			}
		}
		return -1
	}
	waitUntil(t, fmt.Sprintf("Unbound to load the %d-name export", scaleNames), 3*time.Minute, func() bool {
		d.running(t)
		return ask(scaleName(scaleNames-1)) == dns.RcodeNameError
	})
	// One line replaced in the middle of the list: a delta at sinkhole.
	edited := strings.Replace(list, scaleName(500)+"\n", "added-scale.example\n", 1)
	if err := os.WriteFile(filepath.Join(lists, "regulator.txt"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, "Unbound to follow the delta", time.Minute, func() bool {
		return ask("added-scale.example") == dns.RcodeNameError && ask(scaleName(500)) == dns.RcodeSuccess
	})
	t.Logf("a one-line change at sinkhole reached Unbound in %s", took.Round(time.Millisecond))
	if log := primary.stderr.String(); !strings.Contains(log, "delta=true") {
		t.Errorf("the change was not applied as a delta; sinkhole log:\n%s", log)
	}
	for name, blocked := range map[string]bool{"added-scale.example": true, "www." + scaleName(42): true, scaleName(500): false} {
		if got := ask(name) == dns.RcodeNameError; got != blocked || censored(primary.addr, name) != blocked {
			t.Errorf("%s: Unbound blocks %v, sinkhole %v, want %v", name, got, censored(primary.addr, name), blocked)
		}
	}
}
