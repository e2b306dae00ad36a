package compliance

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// auditLine is an audit log line as sinkhole writes it.
func auditLine(t time.Time, client, name, file, platform string, enforced bool) string {
	action := "nxdomain"
	if !enforced {
		action = "log"
	}
	return fmt.Sprintf(`{"time":%q,"client":%q,"proto":"udp","name":%q,"type":"A","action":%q,"enforced":%v,"rule":"binance.com","file":%q,"line":2,"platform":%q,"generation":1,"trigger":"qname","target":%q}`+"\n",
		t.UTC().Format(time.RFC3339Nano), client, name, action, enforced, file, platform, name)
}

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// generate writes a day of audit lines: 3 plain files and a gzip'd one.
func generate(t *testing.T) []string {
	dir := t.TempDir()
	var files []string
	write := func(name string, gz bool, lines []string) {
		p := filepath.Join(dir, name)
		var buf bytes.Buffer
		if gz {
			zw := gzip.NewWriter(&buf)
			zw.Write([]byte(strings.Join(lines, "")))
			zw.Close()
		} else {
			buf.WriteString(strings.Join(lines, ""))
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	var a, b []string
	for i := range 100 { // 100 Binance blocks from 10 clients (two ports each), 25 names
		a = append(a, auditLine(t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("192.0.2.%d:%d", i%10, 40000+i%2), fmt.Sprintf("n%d.binance.com", i%25), "foreign-exchanges.txt", "Binance", true))
	}
	for i := range 10 { // 10 by an IP rule without a platform, from IPv6 clients
		b = append(b, auditLine(t0.Add(2*time.Hour+time.Duration(i)*time.Minute), fmt.Sprintf("[2001:db8::%d]:5300", i%3), "cdn.example", "ips.txt", "", true))
	}
	b = append(b, auditLine(t0.Add(3*time.Hour), "192.0.2.1:1", "www.pilot.test", "pilot.txt", "Pilot", false))
	write("audit-2026-01-02T12-00-00.000.log.gz", true, a)
	write("audit.log", false, append(b, "not json\n", `{"time":"2026-01-02T13:00:00Z"}`+"\n"))
	return files
}

func TestReport(t *testing.T) {
	files := generate(t)
	r := NewReport(time.Time{})
	for _, f := range files {
		if err := r.AddFile(f); err != nil {
			t.Fatal(err)
		}
	}
	r.Finish()
	if r.Lines != 111 || r.Skipped != 2 || len(r.Problems) != 2 || !strings.HasSuffix(r.Problems[0], "audit.log:12: not JSON: invalid character 'o' in literal null (expecting 'u')") {
		t.Errorf("lines %d skipped %d problems %q", r.Lines, r.Skipped, r.Problems)
	}
	tot := r.Total
	if tot.Blocks != 110 || tot.Monitored != 1 || tot.Clients != 13 || tot.Names != 27 || !tot.First.Equal(t0) || !tot.Last.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("total %+v", tot)
	}
	type brief struct {
		key               string
		blocks, monitored uint64
		clients, names    int
		first, last       time.Duration
	}
	got := func(rows []Row) []brief {
		var out []brief
		for _, r := range rows {
			out = append(out, brief{r.Key, r.Blocks, r.Monitored, r.Clients, r.Names, r.First.Sub(t0), r.Last.Sub(t0)})
		}
		return out
	}
	wantP := []brief{
		{"Binance", 100, 0, 10, 25, 0, 99 * time.Minute},
		{"(none)", 10, 0, 3, 1, 2 * time.Hour, 2*time.Hour + 9*time.Minute},
		{"Pilot", 0, 1, 1, 1, 3 * time.Hour, 3 * time.Hour},
	}
	if g := got(r.Platforms); fmt.Sprint(g) != fmt.Sprint(wantP) {
		t.Errorf("platforms\n%v\nwant\n%v", g, wantP)
	}
	wantF := []brief{
		{"foreign-exchanges.txt", 100, 0, 10, 25, 0, 99 * time.Minute},
		{"ips.txt", 10, 0, 3, 1, 2 * time.Hour, 2*time.Hour + 9*time.Minute},
		{"pilot.txt", 0, 1, 1, 1, 3 * time.Hour, 3 * time.Hour},
	}
	if g := got(r.ListFiles); fmt.Sprint(g) != fmt.Sprint(wantF) {
		t.Errorf("files\n%v\nwant\n%v", g, wantF)
	}

	// CSV: a header, the total, three platforms, three files.
	var buf bytes.Buffer
	if err := r.Write(&buf, "csv"); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 8 || strings.Join(recs[1], ",") != "total,,110,1,13,27,2026-01-02T10:00:00Z,2026-01-02T13:00:00Z" ||
		strings.Join(recs[2], ",") != "platform,Binance,100,0,10,25,2026-01-02T10:00:00Z,2026-01-02T11:39:00Z" {
		t.Errorf("csv: %v %q", err, recs)
	}
	// JSON decodes back to the same numbers.
	buf.Reset()
	r.Write(&buf, "json")
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Total.Blocks != 110 || len(back.Platforms) != 3 || back.ListFiles[1].Clients != 3 {
		t.Errorf("json: %v\n%s", err, buf.String())
	}
	buf.Reset()
	r.Write(&buf, "table")
	for _, want := range []string{
		"Enforcement report: 111 audit lines from 2 files (all lines)\n110 blocks, 1 monitored (not enforced), 13 distinct clients, 27 distinct names, 2026-01-02T10:00:00Z to 2026-01-02T13:00:00Z\n",
		"PLATFORM  BLOCKS  MONITORED  CLIENTS  NAMES  FIRST                 LAST\nBinance   100     0          10       25     2026-01-02T10:00:00Z  2026-01-02T11:39:00Z\n",
		"2 lines skipped:\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestReportSince(t *testing.T) {
	r := NewReport(t0.Add(2 * time.Hour))
	for _, f := range generate(t) {
		r.AddFile(f)
	}
	r.Finish()
	if r.Total.Blocks != 10 || r.Total.Monitored != 1 || len(r.Platforms) != 2 {
		t.Errorf("since: %+v %+v", r.Total, r.Platforms)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"36h":                  now.Add(-36 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"0d":                   now,
		"2026-01-02":           time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"2026-01-02T15:04:05Z": time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "7x", "1.5d"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func TestTruncatedGzip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit-2026.log.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(strings.Repeat(auditLine(t0, "192.0.2.1:1", "a.test", "x.txt", "X", true), 100)))
	zw.Close()
	os.WriteFile(p, buf.Bytes()[:buf.Len()/2], 0o644)
	err := NewReport(time.Time{}).AddFile(p)
	if err == nil || !strings.Contains(err.Error(), p+": unexpected EOF") {
		t.Errorf("truncated gzip: %v", err)
	}
}
