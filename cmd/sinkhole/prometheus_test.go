package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// prometheus is a real Prometheus server the test started.
type prometheus struct {
	url string
	out *syncBuffer
}

// startPrometheus runs Debian's prometheus with its own configuration and
// data directory on a free loopback port.
func startPrometheus(t *testing.T, config string) *prometheus {
	t.Helper()
	bin := dnstest.NeedTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &prometheus{url: "http://" + addr, out: &syncBuffer{}}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.out.String())
		}
	})
	waitUntil(t, "prometheus to be ready", 60*time.Second, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// query runs an instant PromQL query and returns each series' labels
// (formatted) and value.
func (p *prometheus) query(t *testing.T, q string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, r.Error)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(s.Value[1].(string), 64)
		var keys []string
		for k, val := range s.Metric {
			if k != "__name__" {
				keys = append(keys, k+"="+val)
			}
		}
		out[strings.Join(sorted(keys), ",")] = v
	}
	return out
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// waitQuery waits (bounded) until the query gives want.
func (p *prometheus) waitQuery(t *testing.T, q string, want map[string]float64) {
	t.Helper()
	var got map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = p.query(t, q)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s = %v, want %v", q, got, want)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A real Prometheus scrapes sinkhole with the bearer token (a job without
// it is refused), loads the shipped alert rules, and answers PromQL over
// the known traffic.
func TestPrometheusScrapesKnownTraffic(t *testing.T) {
	up := obsUpstream(t)
	token := writeToken(t, "prom-s3cret")
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--admin-token-file", token)
	rules, err := filepath.Abs("../../docs/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [ %q ]
scrape_configs:
  - job_name: sinkhole
    authorization: { credentials_file: %q }
    static_configs: [ { targets: [ %q ] } ]
  - job_name: sinkhole-no-token
    static_configs: [ { targets: [ %q ] } ]
`, rules, token, ts.in.admin.Addr(), ts.in.admin.Addr()))
	inst := "instance=" + ts.in.admin.Addr()
	p.waitQuery(t, `up`, map[string]float64{inst + ",job=sinkhole": 1, inst + ",job=sinkhole-no-token": 0})

	obsTraffic(t, ts)
	p.waitQuery(t, `sum by (result) (sinkhole_queries_total{job="sinkhole"})`, map[string]float64{
		"result=answered": 3, "result=blocked": 4, "result=cached": 2, "result=servfail": 2})
	p.waitQuery(t, `sum by (platform, file) (sinkhole_blocks_total) > 0`, map[string]float64{
		"file=foreign-exchanges.txt,platform=Binance": 3, "file=foreign-exchanges.txt,platform=Bad IPs": 1})
	p.waitQuery(t, `sinkhole_monitored_blocks_total > 0`, map[string]float64{
		"file=pilot.txt," + inst + ",job=sinkhole,platform=Pilot": 1})
	p.waitQuery(t, `sum by (file) (sinkhole_list_rules)`, map[string]float64{"file=foreign-exchanges.txt": 2, "file=pilot.txt": 1})
	p.waitQuery(t, `sinkhole_upstream_healthy`, map[string]float64{inst + ",job=sinkhole,upstream=" + up.Addr: 1})
	// The SERVFAIL ratio of the alert rule, over what Prometheus saw.
	p.waitQuery(t, `sum(sinkhole_queries_total{result="servfail"}) / sum(sinkhole_queries_total)`, map[string]float64{"": 2.0 / 11})
	// More traffic moves the counters between scrapes: increase() sees it.
	for range 5 {
		if r := ts.query(t, "udp", "www.binance.com", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %d", r.Rcode)
		}
	}
	p.waitQuery(t, `sum(sinkhole_blocks_total{platform="Binance"})`, map[string]float64{"": 8})
	inc := p.query(t, `sum(increase(sinkhole_blocks_total{platform="Binance"}[1m]))`)
	if inc[""] < 5 {
		t.Errorf("increase over a minute: %v, want at least 5", inc)
	}

	// The rules loaded, all healthy; none fires on a healthy server.
	resp, err := http.Get(p.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, State string
				}
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&r)
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" && rule.Health != "unknown" {
				t.Errorf("rule %s: health %s", rule.Name, rule.Health)
			}
			if rule.State == "firing" {
				t.Errorf("rule %s fires on a healthy server", rule.Name)
			}
		}
	}
	if n != 15 {
		t.Errorf("%d rules loaded, want 15", n)
	}
}

// Every sinkhole metric the alert rules use is one sinkhole exports (the
// README's metrics table lists them all; a misspelt name never fires).
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile("../../docs/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bsinkhole_[a-z_]+`).FindAllString(string(rules), -1) {
		if seen[m] {
			continue
		}
		seen[m] = true
		if !strings.Contains(string(readme), "| `"+m+"` |") {
			t.Errorf("docs/prometheus-alerts.yml uses %s, which the README's metrics table does not list", m)
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d metrics found in the rules", len(seen))
	}
}
