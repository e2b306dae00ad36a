package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/internal/scrape"
)

// The lists of the observability tests: name blocks, an IP block, and a
// monitored section.
var obsLists = map[string]string{
	"foreign-exchanges.txt": "# platform: Binance\nbinance.com\n# platform: Bad IPs\n203.0.113.0/24\n",
	"pilot.txt":             "# Pilot section, not yet enforced\n# platform: Pilot\n# action: log\npilot.test\n",
}

func obsUpstream(t *testing.T) *dnstest.Server {
	up := startUpstream(t,
		"www.allowed.test. 300 IN A 192.0.2.10",
		"www.allowed.test. 300 IN AAAA 2001:db8::10",
		"cdn.allowed.test. 300 IN A 192.0.2.11",
		"cdn.allowed.test. 300 IN A 203.0.113.5",
		"www.pilot.test. 300 IN A 192.0.2.40",
		"fail.allowed.test. 300 IN A 192.0.2.12",
		"wrongq.allowed.test. 300 IN A 192.0.2.13",
	)
	up.SetFault("fail.allowed.test", dnstest.FaultServFail)
	up.SetFault("wrongq.allowed.test", dnstest.FaultWrongQ)
	return up
}

// sentQuery is one query a test sent and what came back.
type sentQuery struct {
	proto, name string
	qtype       uint16
	client      string // the client's address as the server saw it
	rcode       int
	answers     int
}

// ask sends one query over proto from a fresh socket and records it.
func (ts *testServer) ask(t *testing.T, proto, name string, qtype uint16) sentQuery {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	conn, err := c.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	r, _, err := c.ExchangeWithConn(m, conn)
	if err != nil {
		t.Fatalf("%s %s: %v", proto, name, err)
	}
	return sentQuery{proto: proto, name: name, qtype: qtype, client: conn.LocalAddr().String(), rcode: r.Rcode, answers: len(r.Answer)}
}

// obsTraffic is the known traffic of the metrics and log tests.
func obsTraffic(t *testing.T, ts *testServer) []sentQuery {
	var out []sentQuery
	send := func(n int, proto, name string, qtype uint16, rcode int) {
		for range n {
			q := ts.ask(t, proto, name, qtype)
			if q.rcode != rcode {
				t.Fatalf("%s %s %s: rcode %s, want %s", proto, name, dns.TypeToString[qtype], dns.RcodeToString[q.rcode], dns.RcodeToString[rcode])
			}
			out = append(out, q)
		}
	}
	send(3, "udp", "www.allowed.test", dns.TypeA, dns.RcodeSuccess)
	send(1, "tcp", "www.allowed.test", dns.TypeAAAA, dns.RcodeSuccess)
	send(2, "udp", "www.binance.com", dns.TypeA, dns.RcodeNameError)
	send(1, "tcp", "binance.com", dns.TypeAAAA, dns.RcodeNameError)
	send(1, "udp", "cdn.allowed.test", dns.TypeA, dns.RcodeNameError)        // answer holds 203.0.113.5
	send(1, "udp", "www.pilot.test", dns.TypeA, dns.RcodeSuccess)            // monitored
	send(1, "udp", "fail.allowed.test", dns.TypeA, dns.RcodeServerFailure)   // upstream SERVFAIL
	send(1, "udp", "wrongq.allowed.test", dns.TypeA, dns.RcodeServerFailure) // upstream answers another question
	if out[8].answers != 1 {
		t.Fatalf("monitored name not answered from upstream: %+v", out[8])
	}
	return out
}

// metrics scrapes the server's /metrics.
func (ts *testServer) metrics(t *testing.T) *scrape.Metrics {
	t.Helper()
	m, err := scrape.URL("http://" + ts.in.admin.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitMetric scrapes until the series reaches want (the log writer runs
// behind the queries), bounded.
func (ts *testServer) waitMetric(t *testing.T, want float64, name string, labels ...string) *scrape.Metrics {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := ts.metrics(t)
		if m.Value(name, labels...) >= want || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	up := obsUpstream(t)
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr)
	obsTraffic(t, ts)
	m := ts.waitMetric(t, 5, "sinkhole_log_lines_total", "log", "audit")
	q := func(typ, proto, result string) string {
		return scrape.Key("sinkhole_queries_total", "type", typ, "proto", proto, "result", result)
	}
	want := map[string]float64{
		q("A", "udp", "answered"):    2, // 1 allowed + 1 monitored
		q("A", "udp", "cached"):      2, // the allowed name asked again
		q("AAAA", "tcp", "answered"): 1,
		q("A", "udp", "blocked"):     3, // 2 by name + 1 by answer address
		q("AAAA", "tcp", "blocked"):  1,
		q("A", "udp", "servfail"):    2,
		scrape.Key("sinkhole_blocks_total", "platform", "Binance", "file", "foreign-exchanges.txt"): 3,
		scrape.Key("sinkhole_blocks_total", "platform", "Bad IPs", "file", "foreign-exchanges.txt"): 1,
		scrape.Key("sinkhole_monitored_blocks_total", "platform", "Pilot", "file", "pilot.txt"):     1,
		scrape.Key("sinkhole_upstream_requests_total", "upstream", up.Addr, "transport", "dns"):     6,
		// The answer to another question is dropped and the wait goes on
		// (RFC 5452): the query is sent again half-way through the try,
		// that answer is dropped too, and the try times out.
		scrape.Key("sinkhole_upstream_mismatched_total", "upstream", up.Addr):                                                  2,
		scrape.Key("sinkhole_upstream_errors_total", "upstream", up.Addr, "transport", "dns", "kind", "timeout"):               1,
		scrape.Key("sinkhole_upstream_request_duration_seconds_count", "upstream", up.Addr, "transport", "dns"):                6,
		scrape.Key("sinkhole_upstream_request_duration_seconds_bucket", "upstream", up.Addr, "transport", "dns", "le", "+Inf"): 6,
		scrape.Key("sinkhole_list_reloads_total", "result", "success"):                                                         1,
		scrape.Key("sinkhole_list_last_reload_success"):                                                                        1,
		scrape.Key("sinkhole_list_generation"):                                                                                 1,
		scrape.Key("sinkhole_list_rules", "file", "foreign-exchanges.txt"):                                                     2,
		scrape.Key("sinkhole_list_rules", "file", "pilot.txt"):                                                                 1,
		scrape.Key("sinkhole_list_file_errors", "file", "pilot.txt"):                                                           0,
		scrape.Key("sinkhole_log_lines_total", "log", "audit"):                                                                 5,
		scrape.Key("sinkhole_log_dropped_total", "log", "audit"):                                                               0,
		scrape.Key("sinkhole_cache_hits_total"):                                                                                2,
		scrape.Key("sinkhole_cache_misses_total"):                                                                              6,
		scrape.Key("sinkhole_geo_lookups_total", "db", "country", "result", "found"):                                           0,
	}
	for k, v := range want {
		if got, ok := m.Values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	var total float64
	for k, v := range m.Values {
		if strings.HasPrefix(k, "sinkhole_queries_total{") {
			total += v
		}
	}
	if total != 11 {
		t.Errorf("%v queries counted, want 11", total)
	}
	found := false
	for k, v := range m.Values {
		if strings.HasPrefix(k, `sinkhole_build_info{goversion="go`) && strings.HasSuffix(k, `,version="dev"}`) && v == 1 {
			found = true
		}
	}
	if !found {
		t.Error("no sinkhole_build_info{version=\"dev\"} 1")
	}
	// A reload moves the list metrics.
	os.WriteFile(filepath.Join(ts.lists, "pilot.txt"), []byte("# platform: Pilot\n# action: log\npilot.test\npilot2.test\n"), 0o644)
	if code := run(t.Context(), []string{"sinkhole", "reload", "--admin", ts.in.admin.Addr()}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("reload: exit %d", code)
	}
	m = ts.metrics(t)
	if m.Value("sinkhole_list_reloads_total", "result", "success") < 2 || m.Value("sinkhole_list_generation") != 2 ||
		m.Value("sinkhole_list_rules", "file", "pilot.txt") != 2 {
		t.Errorf("after reload: reloads %v, generation %v, pilot rules %v", m.Value("sinkhole_list_reloads_total", "result", "success"),
			m.Value("sinkhole_list_generation"), m.Value("sinkhole_list_rules", "file", "pilot.txt"))
	}
}

// readJSONLines parses a JSON-lines file.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %d is not JSON: %v\n%s", path, len(out)+1, err, sc.Text())
		}
		out = append(out, v)
	}
	return out
}

// pick returns the named fields of a log line.
func pick(line map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := line[k]; ok {
			out[k] = v
		}
	}
	return out
}

func TestAuditAndQueryLogs(t *testing.T) {
	up := obsUpstream(t)
	queryLog := filepath.Join(t.TempDir(), "queries.log")
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--query-log", queryLog)
	sent := obsTraffic(t, ts)
	ts.stop() // flushes both logs

	// The audit log: one line per query a rule fired on, in order.
	type rule struct {
		action   string
		enforced bool
		rule     string
		file     string
		line     float64
		platform string
		trigger  string
		target   string
	}
	binance := rule{"nxdomain", true, "binance.com", "foreign-exchanges.txt", 2, "Binance", "qname", ""}
	rules := map[int]rule{
		4: binance, 5: binance, 6: binance,
		7: {"nxdomain", true, "203.0.113.0/24", "foreign-exchanges.txt", 4, "Bad IPs", "ip", "203.0.113.5"},
		8: {"log", false, "pilot.test", "pilot.txt", 4, "Pilot", "qname", "www.pilot.test"},
	}
	audit := readJSONLines(t, ts.audit)
	if len(audit) != len(rules) {
		t.Fatalf("%d audit lines, want %d:\n%v", len(audit), len(rules), audit)
	}
	fields := []string{"client", "proto", "name", "type", "action", "enforced", "rule", "file", "line", "platform", "generation", "trigger", "target"}
	for i, line := range audit {
		idx := 4 + i
		q, r := sent[idx], rules[idx]
		target := r.target
		if target == "" {
			target = strings.ToLower(q.name)
		}
		want := map[string]any{
			"client": q.client, "proto": q.proto, "name": q.name, "type": dns.TypeToString[q.qtype],
			"action": r.action, "enforced": r.enforced, "rule": r.rule, "file": r.file, "line": r.line,
			"platform": r.platform, "generation": 1.0, "trigger": r.trigger, "target": target,
		}
		if got := pick(line, fields...); !reflect.DeepEqual(got, want) {
			t.Errorf("audit line %d:\n got %v\nwant %v", i+1, got, want)
		}
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(line["time"]))
		if err != nil || time.Since(ts) > time.Minute || !strings.HasSuffix(fmt.Sprint(line["time"]), "Z") {
			t.Errorf("audit line %d: time %v (%v)", i+1, line["time"], err)
		}
	}
	// The answer-based block lists the answer's addresses.
	ips, _ := json.Marshal(audit[3]["ips"])
	if string(ips) != `[{"as_org":"","asn":0,"country":"","ip":"192.0.2.11"},{"as_org":"","asn":0,"country":"","ip":"203.0.113.5"}]` {
		t.Errorf("ips of the answer-based block: %s", ips)
	}
	if _, ok := audit[0]["ips"]; ok {
		t.Errorf("a name block has ips: %v", audit[0])
	}

	// The query log: one line per query, in order.
	qlog := readJSONLines(t, queryLog)
	if len(qlog) != len(sent) {
		t.Fatalf("%d query log lines, want %d", len(qlog), len(sent))
	}
	for i, line := range qlog {
		q := sent[i]
		upstream := up.Addr
		if q.name == "www.binance.com" || q.name == "binance.com" || q.name == "wrongq.allowed.test" {
			upstream = "" // blocked before asking, or no upstream gave a valid answer
		}
		cached := i == 1 || i == 2 // the allowed name asked again
		want := map[string]any{
			"client": q.client, "proto": q.proto, "name": q.name, "type": dns.TypeToString[q.qtype],
			"rcode": dns.RcodeToString[q.rcode], "upstream": upstream, "cached": cached, "generation": 1.0,
		}
		if got := pick(line, "client", "proto", "name", "type", "rcode", "upstream", "cached", "generation"); !reflect.DeepEqual(got, want) {
			t.Errorf("query log line %d:\n got %v\nwant %v", i+1, got, want)
		}
		if d, ok := line["duration_us"].(float64); !ok || d < 0 || d > 5e6 {
			t.Errorf("query log line %d: duration_us %v", i+1, line["duration_us"])
		}
		_, hasRule := line["rule"]
		if _, audited := rules[i]; hasRule != audited {
			t.Errorf("query log line %d: rule fields %v, want %v", i+1, hasRule, audited)
		}
	}
	if qlog[8]["enforced"] != false || qlog[8]["action"] != "log" || qlog[4]["action"] != "nxdomain" {
		t.Errorf("decision fields in the query log: %v / %v", qlog[8], qlog[4])
	}
}

// A "# action: log" section answers normally, and the would-be block is
// audited as not enforced, counted, and explained.
func TestMonitorModeSection(t *testing.T) {
	up := obsUpstream(t)
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr)
	for _, proto := range []string{"udp", "tcp"} {
		r := ts.query(t, proto, "www.pilot.test", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.HasSuffix(answerStrings(r)[0], "A 192.0.2.40") || ede(r) != nil {
			t.Fatalf("%s: monitored name not answered normally: %v", proto, r)
		}
	}
	m := ts.waitMetric(t, 2, "sinkhole_log_lines_total", "log", "audit")
	if v := m.Value("sinkhole_monitored_blocks_total", "platform", "Pilot", "file", "pilot.txt"); v != 2 {
		t.Errorf("monitored blocks: %v", v)
	}
	if v := m.Value("sinkhole_queries_total", "type", "A", "proto", "tcp", "result", "cached"); v != 1 {
		t.Errorf("monitored query over TCP (a cache hit) counted as %v cached", v)
	}
	for k, v := range m.Values {
		if strings.HasPrefix(k, "sinkhole_blocks_total{") && v != 0 {
			t.Errorf("%s = %v: nothing was enforced", k, v)
		}
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"sinkhole", "query", "--admin", ts.in.admin.Addr(), "www.pilot.test"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "www.pilot.test A: ALLOWED, but monitored: a rule with action log matched (qname)") ||
		!strings.Contains(out.String(), "pilot.test  (pilot.txt:4, platform Pilot, action log, scope any)") {
		t.Errorf("query: exit %d\n%s%s", code, out.String(), errb.String())
	}
	ts.stop()
	audit := readJSONLines(t, ts.audit)
	if len(audit) != 2 {
		t.Fatalf("audit lines: %v", audit)
	}
	for _, line := range audit {
		if line["enforced"] != false || line["action"] != "log" || line["name"] != "www.pilot.test" || line["platform"] != "Pilot" {
			t.Errorf("audit: %v", line)
		}
	}
}

// --dry-run turns every rule into log: blocked names resolve, and the
// would-be blocks are audited, counted and explained as dry-run.
func TestDryRun(t *testing.T) {
	up := startUpstream(t, "www.binance.com. 300 IN A 192.0.2.66")
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--dry-run")
	r := ts.query(t, "udp", "www.binance.com", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("dry run blocked: %v", r)
	}
	m := ts.waitMetric(t, 1, "sinkhole_log_lines_total", "log", "audit")
	if v := m.Value("sinkhole_monitored_blocks_total", "platform", "Binance", "file", "foreign-exchanges.txt"); v != 1 {
		t.Errorf("monitored: %v", v)
	}
	var out, errb bytes.Buffer
	admin := ts.in.admin.Addr()
	if code := run(t.Context(), []string{"sinkhole", "query", "--admin", admin, "www.binance.com"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "www.binance.com A: ALLOWED, but monitored: a rule matched (qname) and the server runs --dry-run") ||
		!strings.Contains(out.String(), "binance.com  (foreign-exchanges.txt:2, platform Binance, action log (dry-run), scope any)") {
		t.Errorf("query: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"sinkhole", "status", "--admin", admin}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "WARNING: --dry-run: no rule is enforced") || !strings.Contains(out.String(), "blocked 0 (0.0%), monitored 1") {
		t.Errorf("status: exit %d\n%s", code, out.String())
	}
	ts.stop()
	audit := readJSONLines(t, ts.audit)
	if len(audit) != 1 || audit[0]["enforced"] != false || audit[0]["action"] != "log" || audit[0]["rule"] != "binance.com" {
		t.Fatalf("audit: %v", audit)
	}
}

// stalledWriter blocks every Write until released.
type stalledWriter struct {
	release chan struct{}
	once    sync.Once
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

func (w *stalledWriter) unblock() { w.once.Do(func() { close(w.release) }) }

// A log writer that stops fills the log's buffer: queries are still
// answered within their deadline and the lost lines are counted.
func TestStalledLogWriterDropsLinesNotQueries(t *testing.T) {
	w := &stalledWriter{release: make(chan struct{})}
	t.Cleanup(w.unblock) // before the server stops (cleanups run last first)
	up := obsUpstream(t)
	ts := startSinkholeOut(t, w, writeLists(t, obsLists), "--upstream", up.Addr, "--audit-log", "-", "--log-buffer", "16")
	const n = 200
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	start := time.Now()
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("q%d.binance.com.", i), dns.TypeA)
		r, _, err := c.Exchange(m, ts.addr)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("query %d with the log stalled: %v %v", i, r, err)
		}
	}
	t.Logf("%d blocked queries in %s with the audit log stalled", n, time.Since(start))
	if r := ts.query(t, "tcp", "www.allowed.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("allowed name with the log stalled: %v", r)
	}
	m := ts.metrics(t)
	dropped := m.Value("sinkhole_log_dropped_total", "log", "audit")
	// At most the buffer and the one batch the writer holds are pending.
	if dropped < n/2 || dropped > n-16 {
		t.Fatalf("dropped %v of %d lines with a 16-line buffer", dropped, n)
	}
	if got := ts.in.obs.audit.Dropped(); float64(got) != dropped {
		t.Errorf("log counter %d, metric %v", got, dropped)
	}
	if v := m.Value("sinkhole_queries_total", "type", "A", "proto", "udp", "result", "blocked"); v != n {
		t.Errorf("blocked queries counted: %v", v)
	}
	// sinkhole status shows the drops too.
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"sinkhole", "status", "--json", "--admin", ts.in.admin.Addr()}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d %s", code, errb.String())
	}
	var st admin.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Logs) != 1 || st.Logs[0].Name != "audit" ||
		st.Logs[0].Path != "-" || st.Logs[0].Dropped < uint64(dropped) {
		t.Errorf("status logs: %+v (%v)", st.Logs, err)
	}
	w.unblock()
	ts.stop()
	if a := ts.in.obs.audit; a.Lines()+a.Dropped() != n {
		t.Errorf("after release: written %d + dropped %d != %d", a.Lines(), a.Dropped(), n)
	}
}

// sinkhole status lists the platforms with the most blocks since start.
func TestStatusTopPlatforms(t *testing.T) {
	up := obsUpstream(t)
	lists := writeLists(t, map[string]string{
		"a.txt": "# platform: Binance\nbinance.com\n# platform: OKX\nokx.com\n",
		"b.txt": "kucoin.com\n",
	})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	for name, n := range map[string]int{"binance.com": 1, "www.okx.com": 3, "kucoin.com": 2} {
		for range n {
			ts.query(t, "udp", name, dns.TypeA)
		}
	}
	ts.waitMetric(t, 6, "sinkhole_log_lines_total", "log", "audit")
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"sinkhole", "status", "--admin", ts.in.admin.Addr()}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d %s", code, errb.String())
	}
	s := out.String()
	_, table, ok := strings.Cut(s, "TOP PLATFORMS")
	if !ok {
		t.Fatalf("no TOP PLATFORMS:\n%s", s)
	}
	var rows []string
	for _, line := range strings.Split(table, "\n")[1:4] {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	if want := []string{"OKX 3", "(none) 2", "Binance 1"}; !reflect.DeepEqual(rows, want) {
		t.Errorf("top platforms %q, want %q\n%s", rows, want, s)
	}
	if !strings.Contains(s, "queries 6, blocked 6 (100.0%)") {
		t.Errorf("counters:\n%s", s)
	}
	if _, logs, ok := strings.Cut(s, "LOG "); !ok || !strings.Contains(strings.Join(strings.Fields(logs), " "), "audit "+ts.audit+" 6 0") {
		t.Errorf("no audit log row in status:\n%s", s)
	}
}

func TestObservabilityFlagErrors(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--audit-log", ""}, exitUsage, "sinkhole: --audit-log: the audit log is always on"},
		{[]string{"--audit-log-max-size", "0"}, exitUsage, "sinkhole: --audit-log-max-size 0: want between 1 and"},
		{[]string{"--query-log-max-backups", "-1"}, exitUsage, "sinkhole: --query-log-max-backups -1: want between 0 (keep all)"},
		{[]string{"--log-buffer", "1"}, exitUsage, "sinkhole: --log-buffer 1: want between 16 and"},
		{[]string{"--audit-log", filepath.Join(dir, "a.log"), "--query-log", filepath.Join(dir, ".", "a.log")}, exitUsage,
			"sinkhole: --query-log " + filepath.Join(dir, "a.log") + " is the audit log's file"},
		{[]string{"--audit-log", filepath.Join(dir, "missing", "a.log")}, exitFailure,
			"sinkhole: audit log: open " + filepath.Join(dir, "missing", "a.log") + ": no such file or directory"},
		{[]string{"--audit-log", filepath.Join(dir, "a.log"), "--query-log", dir}, exitFailure,
			"sinkhole: query log: open " + dir + ": is a directory"},
	} {
		code, last, stderr := serveError(t, append([]string{"--lists", lists, "--upstream", "127.0.0.1:1"}, tt.args...))
		if code != tt.code || !strings.HasPrefix(last, tt.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q\n%s", tt.args, code, last, tt.code, tt.want, stderr)
		}
	}
}

// serveError runs "sinkhole serve" on free ports with args, expecting it
// to exit at start: the exit status, the last "sinkhole: " line and all
// of standard error.
func serveError(t *testing.T, args []string) (int, string, string) {
	t.Helper()
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"sinkhole", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", t.TempDir()}, args...), &bytes.Buffer{}, &stderr)
	var last string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if strings.HasPrefix(l, "sinkhole: ") {
			last = l
		}
	}
	return code, last, stderr.String()
}
