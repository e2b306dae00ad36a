package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// loadServeConfig runs the serve command's real flag, environment and
// --config handling on args and returns the validated configuration
// instead of serving.
func loadServeConfig(t *testing.T, args ...string) (*serveConfig, error) {
	t.Helper()
	var cfg *serveConfig
	cmd := serveCommand()
	cmd.Action = func(c *cli.Context) error {
		var err error
		cfg, err = serveConfigFrom(c)
		return err
	}
	app := &cli.App{Name: "sinkhole", Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard,
		ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"sinkhole", "serve"}, args...))
	return cfg, err
}

// exampleOption is a commented-out option line of docs/sinkhole.yaml.
var exampleOption = regexp.MustCompile(`(?m)^# ([a-z0-9-]+): (.*)$`)

func serveFlagNames() []string {
	var names []string
	for _, f := range serveFlags() {
		if n := f.Names()[0]; n != "config" && n != "check-config" {
			names = append(names, n)
		}
	}
	return names
}

// docs/sinkhole.yaml is valid as shipped and with every commented example
// enabled, and shows every serve option.
func TestExampleConfig(t *testing.T) {
	const path = "../../docs/sinkhole.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadServeConfig(t, "--config", path)
	if err != nil {
		t.Fatalf("docs/sinkhole.yaml: %v", err)
	}
	if !slices.Equal(cfg.listen, []string{"0.0.0.0:53", "[::]:53"}) || !slices.Equal(cfg.upstreams, []string{"192.0.2.53:53", "192.0.2.54:53"}) ||
		cfg.lists != "/etc/sinkhole/lists" || cfg.auditLog.path != "/var/log/sinkhole/audit.log" || !cfg.logJSON || cfg.dryRun {
		t.Errorf("as shipped: %+v", cfg)
	}

	// Every option is in the file, set or as a commented example.
	text := string(data)
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(?:# )?([a-z0-9-]+):`).FindAllStringSubmatch(text, -1) {
		keys[m[1]] = true
	}
	for _, name := range serveFlagNames() {
		if !keys[name] {
			t.Errorf("docs/sinkhole.yaml does not show option %q", name)
		}
	}

	// Enable every commented example (the token and TSIG key files must
	// exist).
	token := writeToken(t, "example-token")
	key := filepath.Join(t.TempDir(), "regulator.key")
	if err := os.WriteFile(key, []byte("key \"regulator-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2lua2hvbGUtZXhhbXBsZS1rZXk=\";\n};\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "block-page.html")
	if err := os.WriteFile(page, []byte("<p>{{.T.Title}} {{.Host}}</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	enabled := exampleOption.ReplaceAllStringFunc(text, func(line string) string {
		m := exampleOption.FindStringSubmatch(line)
		if !slices.Contains(serveFlagNames(), m[1]) {
			return line
		}
		switch m[1] {
		case "admin-token-file":
			return "admin-token-file: " + token
		case "rpz-tsig":
			return `rpz-tsig: [ "regulator=` + key + `" ]`
		case "block-page-template":
			return "block-page-template: " + page
		}
		return m[1] + ": " + m[2]
	})
	all := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(all, []byte(enabled), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadServeConfig(t, "--config", all)
	if err != nil {
		t.Fatalf("docs/sinkhole.yaml with every example enabled: %v", err)
	}
	if !cfg.dryRun || cfg.queryLog.path != "/var/log/sinkhole/queries.log" || cfg.blockTTL != 5*time.Minute ||
		cfg.adminToken != "example-token" || cfg.logBuffer != 16384 || cfg.auditLog.maxBackups != 10 {
		t.Errorf("every example enabled: %+v", cfg)
	}
}

// metricName finds the metric names a PromQL expression uses.
var metricName = regexp.MustCompile(`\bsinkhole_[a-z0-9_]+`)

// The Grafana dashboard is valid JSON on a Prometheus data source variable,
// has the panels operators look for, and uses only metrics the server
// exports.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
		Panels []json.RawMessage
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no Prometheus data source variable")
	}
	var titles, exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["title"].(string); ok {
				titles = append(titles, s)
			}
			if s, ok := x["expr"].(string); ok {
				exprs = append(exprs, s)
			}
			if ds, ok := x["datasource"].(map[string]any); ok && ds["type"] == "prometheus" && ds["uid"] != "${datasource}" {
				t.Errorf("panel data source %v, want the ${datasource} variable", ds)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var doc any
	json.Unmarshal(data, &doc)
	walk(doc)
	for _, want := range []string{"QPS by result", "Block rate by platform", "Upstream latency", "Cache hit ratio", "Reloads"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q", want)
		}
	}

	up := obsUpstream(t)
	// dnstap on, so that its metrics are exported too.
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--dnstap", "file:"+filepath.Join(t.TempDir(), "t.dnstap"))
	obsTraffic(t, ts)
	m := ts.metrics(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			used[name] = true
		}
	}
	if len(used) < 15 {
		t.Errorf("the dashboard uses only %d metrics", len(used))
	}
	for name := range used {
		family := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && m.Families[base] == "histogram" {
				family = base
			}
		}
		if _, ok := m.Families[family]; !ok {
			t.Errorf("the dashboard uses %s, which the server does not export", name)
		}
	}
}

// The README documents every metric the server exports and every serve
// option.
func TestReadmeDocumentsMetricsAndOptions(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	up := obsUpstream(t)
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--query-log", filepath.Join(t.TempDir(), "q.log"))
	obsTraffic(t, ts)
	for family := range ts.metrics(t).Families {
		if strings.HasPrefix(family, "sinkhole_") && !strings.Contains(readme, "`"+family+"`") {
			t.Errorf("README does not document metric %s", family)
		}
	}
	for _, name := range serveFlagNames() {
		if !strings.Contains(readme, "| `--"+name) {
			t.Errorf("README options table has no --%s", name)
		}
	}
}
