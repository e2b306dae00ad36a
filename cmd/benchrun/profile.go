package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startProfile starts recording a CPU profile of sinkhole over the coming
// max run (with -profile; a no-op otherwise) and returns the function that
// waits for it, writes DIR/sinkhole-WORKLOAD.pprof and prints its top
// functions.
func (b *bench) startProfile(ctx context.Context, srv *Server, w Workload) func() error {
	if b.cfg.Profile == "" || srv.Admin == "" {
		return func() error { return nil }
	}
	secs := max(1, int(b.cfg.Duration/time.Second)-1) // inside the run
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", srv.Admin, secs)
	path := filepath.Join(b.cfg.Profile, fmt.Sprintf("%s-%s.pprof", srv.Name, w.Name))
	done := make(chan error, 1)
	go func() { done <- fetchTo(ctx, url, path, time.Duration(secs)*time.Second+30*time.Second) }()
	return func() error {
		if err := <-done; err != nil {
			return err
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", b.cfg.Sinkhole, path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %w: %s", err, top)
		}
		fmt.Fprintf(b.stdout, "\n### CPU profile: %s, %s workload (%s)\n\n```\n%s```\n", srv.Name, w.Name, path, trimPprofHeader(string(top)))
		return nil
	}
}

// fetchTo writes the body of url to path, within timeout.
func fetchTo(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// trimPprofHeader drops pprof's "File:", "Build ID:" and "Type:" lines,
// keeping the totals and the table.
func trimPprofHeader(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "File: ") || strings.HasPrefix(l, "Build ID: ") || strings.HasPrefix(l, "Type: ") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}
