package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sinkhole-dns/sinkhole/internal/compliance"
)

// The report over the audit log the server wrote for the known traffic,
// with a gzip'd rotated copy of it beside (lumberjack's naming): the
// rotated lines count once more.
func TestReportOverServerAuditLog(t *testing.T) {
	up := obsUpstream(t)
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.log")
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--audit-log", audit)
	obsTraffic(t, ts)
	ts.stop() // writes the log out
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	os.WriteFile(filepath.Join(dir, "audit-2026-01-02T15-04-05.000.log.gz"), gz.Bytes(), 0o640)

	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"sinkhole", "report", "--format", "json", audit}, &out, &errOut); code != 0 {
		t.Fatalf("report: exit %d: %s", code, errOut.String())
	}
	var r compliance.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	// Per copy: 3 Binance blocks by name, 1 by answer address (Bad IPs), 1
	// monitored (Pilot); one client.
	if len(r.Files) != 2 || r.Lines != 10 || r.Total.Blocks != 8 || r.Total.Monitored != 2 || r.Total.Clients != 1 {
		t.Errorf("report: files %v lines %d total %+v", r.Files, r.Lines, r.Total)
	}
	plat := map[string][2]uint64{}
	for _, p := range r.Platforms {
		plat[p.Key] = [2]uint64{p.Blocks, p.Monitored}
	}
	if plat["Binance"] != [2]uint64{6, 0} || plat["Bad IPs"] != [2]uint64{2, 0} || plat["Pilot"] != [2]uint64{0, 2} {
		t.Errorf("platforms %v", plat)
	}
	out.Reset()
	run(t.Context(), []string{"sinkhole", "report", audit}, &out, &errOut)
	if !strings.Contains(out.String(), "LIST FILE              BLOCKS  MONITORED  CLIENTS  NAMES") {
		t.Errorf("table:\n%s", out.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--format", "xml", audit}, exitUsage, `--format "xml": want table, csv or json`},
		{[]string{"--since", "yesterday", audit}, exitUsage, `--since "yesterday": want a duration`},
		{[]string{filepath.Join(dir, "missing.log")}, exitFailure, "missing.log: no such file or directory"},
	} {
		errOut.Reset()
		code := run(t.Context(), append([]string{"sinkhole", "report"}, tc.args...), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
