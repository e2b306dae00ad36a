package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sinkhole.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Flags win over the environment, the environment over the file.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
listen: ["127.0.0.1:1053", "[::1]:1053"]
upstream: 192.0.2.1
block-action: refused
block-ttl: 60s
lists: /srv/lists
cache-size: 500
`)
	t.Setenv("SINKHOLE_BLOCK_ACTION", "nodata")
	t.Setenv("SINKHOLE_UPSTREAM", "192.0.2.7,192.0.2.8:5300")
	cfg, err := loadServeConfig(t, "--config", path, "--block-ttl", "10s")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.listen, []string{"127.0.0.1:1053", "[::1]:1053"}) {
		t.Errorf("listen from the file: %v", cfg.listen)
	}
	if !slices.Equal(cfg.upstreams, []string{"192.0.2.7:53", "192.0.2.8:5300"}) {
		t.Errorf("upstream from the environment: %v", cfg.upstreams)
	}
	if cfg.blockAction != blocklist.ActionNoData {
		t.Errorf("block-action: env must win over the file: %v", cfg.blockAction)
	}
	if cfg.blockTTL != 10*time.Second {
		t.Errorf("block-ttl: the flag must win: %v", cfg.blockTTL)
	}
	if cfg.lists != "/srv/lists" || cfg.cacheSize != 500 {
		t.Errorf("file values: lists %q cache-size %d", cfg.lists, cfg.cacheSize)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{"listen: [\"127.0.0.1:1\"]\nlsten: x\n", `:2: unknown option "lsten"`},
		{"block-action: [a, b]\n", `:1: option "block-action" takes one value, not a list`},
		{"block-ttl: soon\n", `:1: option "block-ttl"`},
		{"listen: {a: b}\n", `:1: option "listen": want a value or a list`},
		{"- just\n- a list\n", `:1: want a mapping of option: value`},
		{"listen: [\"a\"\n", `yaml: line`},
		{"config: other.yaml\n", `:1: unknown option "config"`},
		{"block-action: drop\n", `--block-action "drop"`},
	}
	for _, tt := range tests {
		path := writeConfig(t, tt.body)
		_, err := loadServeConfig(t, "--config", path, "--upstream", "192.0.2.1")
		var ec cli.ExitCoder
		if err == nil || !errors.As(err, &ec) || ec.ExitCode() != exitUsage || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want exit 2 containing %q", tt.body, err, tt.want)
		}
		if err != nil && strings.Contains(tt.want, ":") && strings.HasPrefix(tt.want, ":") && !strings.Contains(err.Error(), path) {
			t.Errorf("%q: error %v does not name the file", tt.body, err)
		}
	}
	// A missing config file.
	if _, err := loadServeConfig(t, "--config", "/nonexistent/sinkhole.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/sinkhole.yaml") {
		t.Errorf("missing file: %v", err)
	}
	// An empty file is no options at all.
	if _, err := loadServeConfig(t, "--config", writeConfig(t, ""), "--upstream", "192.0.2.1"); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

// Every serve flag, and the admin flags of the client commands, can be set
// from the environment (per-invocation flags such as query --type cannot).
func TestEveryFlagHasEnv(t *testing.T) {
	shared := map[string]bool{"admin": true, "admin-token-file": true, "timeout": true}
	for _, cmd := range newApp(io.Discard, io.Discard).Commands {
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			if cmd.Name != "serve" && !shared[name] {
				continue
			}
			want := "SINKHOLE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			ev, ok := f.(interface{ GetEnvVars() []string })
			if !ok || !slices.Equal(ev.GetEnvVars(), []string{want}) {
				t.Errorf("%s --%s: env %v, want %s", cmd.Name, name, ev, want)
			}
		}
	}
}
