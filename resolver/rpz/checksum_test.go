package rpz

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// The export serial file is written with its SHA-256; a serial file that
// does not match it (garbled, edited) is not trusted: the serial comes
// from the clock.
func TestExportSerialFileVerified(t *testing.T) {
	serialFile := filepath.Join(t.TempDir(), "export.serial")
	ahead := uint32(time.Now().Unix()) + 100000
	data := []byte(strconv.FormatUint(uint64(ahead), 10) + "\n")
	if err := blocklist.WriteVerified(serialFile, data); err != nil {
		t.Fatal(err)
	}
	p := startPrimary(t, "", map[string]string{"a.txt": "one.test\n"}, ExportConfig{SerialFile: serialFile})
	if s := p.export.Serial(); s != ahead+1 {
		t.Fatalf("serial %d, want %d (the verified saved serial + 1)", s, ahead+1)
	}
	if err := blocklist.VerifyCopy(serialFile); err != nil {
		t.Fatalf("the saved serial does not verify: %v", err)
	}
	// Garbled: a serial far ahead that was never written by sinkhole.
	os.WriteFile(serialFile, []byte(strconv.FormatUint(uint64(ahead)+5000000, 10)+"\n"), 0o644)
	p2 := startPrimary(t, "", map[string]string{"a.txt": "one.test\n"}, ExportConfig{SerialFile: serialFile})
	if s := p2.export.Serial(); s >= ahead {
		t.Fatalf("serial %d: the garbled serial file was trusted", s)
	}
}

// A feed's zone copy garbled on disk is never trusted: at a cold start it
// is not served (a transfer replaces it), and while serving, an SOA check
// that finds the serial up to date transfers the zone again when the copy
// does not match what was written.
func TestSecondaryRepairsGarbledCopy(t *testing.T) {
	sec := startNotifyServer(t)
	p := startPrimary(t, "", map[string]string{"a.txt": "binance.com\nokx.com\n"}, ExportConfig{Notify: []string{sec.addr}})
	sec.startFeeds(t, p.addr, nil)
	waitFor(t, "the first AXFR", 5*time.Second, func() bool { return sec.status().Serial == p.export.Serial() })
	zone := filepath.Join(sec.dir, "regulator.rpz")
	garble := func() {
		b, _ := os.ReadFile(zone)
		os.WriteFile(zone, b[:len(b)/2], 0o644)
		if blocklist.VerifyCopy(zone) == nil {
			t.Fatal("a garbled copy verifies")
		}
	}
	// While serving: NOTIFY with the same serial.
	garble()
	before := sec.status().LastTransfer
	m := new(dns.Msg)
	m.SetNotify("rpz.test.")
	pkt, _ := m.Pack()
	sec.feeds.Load().Notify(pkt, m, addrPort(t, p.addr))
	waitFor(t, "the copy transferred again", 5*time.Second, func() bool { return sec.status().LastTransfer.After(before) })
	if st := sec.status(); st.LastTransferType != "AXFR" || blocklist.VerifyCopy(zone) != nil {
		t.Fatalf("status after the repair: %+v", st)
	}
	// Cold start.
	sec.stopFeeds()
	garble()
	sec.startFeeds(t, p.addr, nil)
	waitFor(t, "the copy transferred at start", 5*time.Second, func() bool { return blocklist.VerifyCopy(zone) == nil })
	if fs := sec.zoneFile(t); fs.Domains != 4 { // name and *.name for each
		t.Fatalf("zone file after the repair: %+v", fs)
	}
}
