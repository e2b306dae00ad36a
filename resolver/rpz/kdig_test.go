package rpz

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// TestExportKdigAfterDelta: after a delta of a list big enough to span
// many blocks of the compact zone, kdig's AXFR of the export holds the
// change and ldns-verify-zone accepts its ZONEMD, and kdig's IXFR from
// the previous serial is the difference alone.
func TestExportKdigAfterDelta(t *testing.T) {
	kdig := dnstest.NeedTool(t, "kdig", "knot-dnsutils")
	ldns := dnstest.NeedTool(t, "ldns-verify-zone", "ldnsutils")
	var sb strings.Builder
	sb.WriteString("# authority: Ministry\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&sb, "host-%05d.example\n", i)
	}
	list := sb.String()
	p := startPrimary(t, "", map[string]string{"big.txt": list + "@@ok.host-00007.example\n", "local.rpz": deltaRPZ}, ExportConfig{Build: exportBuild()})
	s1 := p.export.Serial()
	edited := strings.Replace(list, "host-12042.example\n", "", 1) + "@@ok.host-00007.example\nadded.example\n"
	writeFile(t, p.dir, "big.txt", edited)
	p.reload(t)
	s2 := p.export.Serial()
	if s2 == s1 || p.export.followed.delta.Load() == 0 {
		t.Fatalf("serial %d -> %d, %d deltas followed", s1, s2, p.export.followed.delta.Load())
	}
	host, port, _ := net.SplitHostPort(p.addr)
	dig := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kdig, append([]string{"-p", port, "@" + host, "+nocomments", "+nostats", "+noquestion", "+time=10"}, args...)...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("kdig %v: no answer in 60s", args)
		}
		if err != nil {
			t.Fatalf("kdig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	axfr := dig("AXFR", "rpz.test")
	if !strings.Contains(axfr, "added.example.rpz.test.") || strings.Contains(axfr, "host-12042.example.rpz.test.") ||
		!strings.Contains(axfr, "*.ok.host-00007.example.rpz.test.") {
		t.Fatalf("AXFR after the delta lacks the change")
	}
	if n := strings.Count(axfr, "\tCNAME\t"); n < 40000 {
		t.Fatalf("AXFR has %d CNAME records", n)
	}
	// The zone once (the AXFR ends with the SOA again).
	lines := strings.Split(strings.TrimSpace(axfr), "\n")
	path := filepath.Join(t.TempDir(), "rpz.test.zone")
	if err := os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-1], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ldns, "-Z", path).CombinedOutput(); err != nil {
		t.Fatalf("ldns-verify-zone refused the export's ZONEMD after a delta: %v\n%s", err, out)
	}
	ixfr := dig(fmt.Sprintf("IXFR=%d", s1), "rpz.test")
	il := strings.Split(strings.TrimSpace(ixfr), "\n")
	if len(il) > 20 {
		t.Fatalf("IXFR from %d has %d records: not a difference\n%s", s1, len(il), ixfr)
	}
	for _, want := range []string{fmt.Sprintf("SOA\tsinkhole.invalid. hostmaster.sinkhole.invalid. %d ", s1), fmt.Sprintf("SOA\tsinkhole.invalid. hostmaster.sinkhole.invalid. %d ", s2),
		"host-12042.example.rpz.test.", "added.example.rpz.test.", "ZONEMD"} {
		if !strings.Contains(ixfr, want) {
			t.Fatalf("IXFR from %d lacks %q:\n%s", s1, want, ixfr)
		}
	}
}
