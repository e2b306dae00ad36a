// Package compliance turns audit logs (the JSON lines sinkhole writes for
// every query a rule fired on, rotated and gzip'd files included) into the
// enforcement report a regulator asks an ISP for: blocks per platform and
// per list file, the first and last block, distinct clients.
package compliance

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Record is the part of an audit line the report reads.
type Record struct {
	Time     time.Time `json:"time"`
	Client   string    `json:"client"` // address:port
	Name     string    `json:"name"`
	Enforced bool      `json:"enforced"`
	File     string    `json:"file"`
	Platform string    `json:"platform"`
}

// Row is the summary of one platform, one list file, or everything.
type Row struct {
	Key string `json:"key"` // the platform ("(none)" without one) or the file; "" for the total
	// Blocks counts enforced blocks, Monitored the would-be blocks of
	// monitor-only rules (action log, --dry-run).
	Blocks    uint64 `json:"blocks"`
	Monitored uint64 `json:"monitored"`
	// Clients and Names count distinct client addresses (ports ignored)
	// and query names.
	Clients int       `json:"distinct_clients"`
	Names   int       `json:"distinct_names"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`

	clients map[netip.Addr]struct{}
	names   map[string]struct{}
}

// Report is the summary of the audit lines read.
type Report struct {
	Since     time.Time `json:"since,omitzero"` // lines before it were left out
	Files     []string  `json:"files"`
	Lines     uint64    `json:"lines"`   // audit lines counted
	Skipped   uint64    `json:"skipped"` // lines that are not audit lines (see Problems)
	Total     Row       `json:"total"`
	Platforms []Row     `json:"platforms"`
	ListFiles []Row     `json:"list_files"`
	// Problems names the first unreadable lines, "file:line: why".
	Problems []string `json:"problems,omitempty"`

	platforms, files map[string]*Row
}

// maxProblems caps Report.Problems.
const maxProblems = 20

// NewReport returns an empty report of the lines at or after since (zero:
// all).
func NewReport(since time.Time) *Report {
	return &Report{Since: since, platforms: map[string]*Row{}, files: map[string]*Row{},
		Total: Row{clients: map[netip.Addr]struct{}{}, names: map[string]struct{}{}}}
}

// AddFile reads one audit log, plain or gzip-compressed (by its first
// bytes, whatever its name).
func (r *Report) AddFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	var in io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		in = gz
	}
	r.Files = append(r.Files, path)
	if err := r.Add(path, in); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Add reads audit lines from in; name is used in Problems.
func (r *Report) Add(name string, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil || rec.Time.IsZero() || rec.File == "" {
			r.Skipped++
			if len(r.Problems) < maxProblems {
				why := "not an audit line (no time or file)"
				if err != nil {
					why = "not JSON: " + err.Error()
				}
				r.Problems = append(r.Problems, fmt.Sprintf("%s:%d: %s", name, n, why))
			}
			continue
		}
		if rec.Time.Before(r.Since) {
			continue
		}
		r.add(&rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("a line longer than 1 MiB: %w", err)
		}
		return err
	}
	return nil
}

func (r *Report) add(rec *Record) {
	r.Lines++
	platform := rec.Platform
	if platform == "" {
		platform = "(none)"
	}
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(rec.Client); err == nil {
		client = ap.Addr().Unmap()
	} else if a, err := netip.ParseAddr(rec.Client); err == nil {
		client = a.Unmap()
	}
	for _, row := range []*Row{&r.Total, row(r.platforms, platform), row(r.files, rec.File)} {
		if rec.Enforced {
			row.Blocks++
		} else {
			row.Monitored++
		}
		if client.IsValid() {
			row.clients[client] = struct{}{}
		}
		row.names[rec.Name] = struct{}{}
		if row.First.IsZero() || rec.Time.Before(row.First) {
			row.First = rec.Time
		}
		if rec.Time.After(row.Last) {
			row.Last = rec.Time
		}
	}
}

func row(m map[string]*Row, key string) *Row {
	r := m[key]
	if r == nil {
		r = &Row{Key: key, clients: map[netip.Addr]struct{}{}, names: map[string]struct{}{}}
		m[key] = r
	}
	return r
}

// Finish computes the distinct counts and sorts the rows: most blocks
// first, then most monitored, then by name.
func (r *Report) Finish() {
	sortRows := func(m map[string]*Row) []Row {
		var out []Row
		for _, v := range m {
			v.Clients, v.Names = len(v.clients), len(v.names)
			out = append(out, *v)
		}
		slices.SortFunc(out, func(a, b Row) int {
			if a.Blocks != b.Blocks {
				return cmpDesc(a.Blocks, b.Blocks)
			}
			if a.Monitored != b.Monitored {
				return cmpDesc(a.Monitored, b.Monitored)
			}
			return strings.Compare(a.Key, b.Key)
		})
		return out
	}
	r.Total.Clients, r.Total.Names = len(r.Total.clients), len(r.Total.names)
	r.Platforms, r.ListFiles = sortRows(r.platforms), sortRows(r.files)
	if r.Platforms == nil {
		r.Platforms = []Row{}
	}
	if r.ListFiles == nil {
		r.ListFiles = []Row{}
	}
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

// ParseSince reads --since: a duration back from now ("36h", "7d"), a
// date ("2026-01-02", UTC midnight) or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err == nil && n >= 0 && fmt.Sprint(n) == days {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration back from now (36h, 7d), a date (2026-01-02) or an RFC 3339 time", s)
}
