// Package urlfeed keeps local copies of list files published over HTTP(S).
// Each list is fetched on an interval with ETag / If-Modified-Since, so an
// unchanged list costs a 304; a new version is checked like any list file
// and written atomically into a directory the list store loads, and the
// caller is told to reload. A failed fetch, or a version that does not
// load, leaves the last good copy in place.
package urlfeed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Source is one list to fetch.
type Source struct {
	// Name names the list in status and logs.
	Name string
	// URL is an http or https URL.
	URL string
	// File is the name of the local copy in Config.Dir; its extension
	// picks the list format (.txt, .list, .rpz, .zone).
	File string
	// Verify, when set, makes the list a signed one: each new version's
	// signature is fetched from URL + SignatureSuffix, and the version is
	// installed only when Verify accepts it; the signature is kept beside
	// the copy as File + SignatureSuffix. prev is the signature of the copy
	// in place (nil when none), for rollback checks.
	Verify func(data, sig, prev []byte) error
}

// SignatureSuffix names a list's detached signature, at the list's URL and
// beside its local copy (minisign's convention).
const SignatureSuffix = ".minisig"

// Config configures a Fetcher.
type Config struct {
	Sources []Source
	// Dir holds the local copies (and hidden .NAME.meta files with the
	// validators of each copy).
	Dir string
	// Interval between fetches of each list.
	Interval time.Duration
	// MaxSize caps a list's size (blocklist.DefaultMaxFileSize if 0).
	MaxSize int64
	// Client makes the requests; one with a 60 s timeout if nil.
	Client *http.Client
	// OnChange is called after a fetch round that changed a local copy.
	OnChange func()
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// Status describes one list's fetching.
type Status struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	File string `json:"file"`
	// LastFetch is the last request, LastResult its outcome: "updated",
	// "not-modified" (304), "unchanged" (200 with the same bytes),
	// "refused" (a signed list whose new version's signature does not
	// verify) or "failed"; LastHTTPStatus the response code (0 without a response).
	LastFetch      time.Time `json:"last_fetch,omitzero"`
	LastResult     string    `json:"last_result,omitempty"`
	LastHTTPStatus int       `json:"last_http_status,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	// LastChange is when the local copy last changed; SHA256 and Size
	// describe it.
	LastChange time.Time `json:"last_change,omitzero"`
	SHA256     string    `json:"sha256,omitempty"`
	Size       int64     `json:"size,omitempty"`
	ETag       string    `json:"etag,omitempty"`
}

// meta is what is kept next to a local copy to make the next request
// conditional.
type meta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	SHA256       string    `json:"sha256"`
	Changed      time.Time `json:"changed"`
}

// Fetcher fetches every source on the interval.
type Fetcher struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex
	st  []Status
}

// New validates cfg and returns a fetcher; Run starts it.
func New(cfg Config) (*Fetcher, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("urlfeed: interval must be positive")
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = blocklist.DefaultMaxFileSize
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Fetcher{cfg: cfg, log: cfg.Logger}
	for _, s := range cfg.Sources {
		if !blocklist.IsListFile(s.File) || filepath.Base(s.File) != s.File {
			return nil, fmt.Errorf("urlfeed: %s: %q is not a list file name", s.Name, s.File)
		}
		st := Status{Name: s.Name, URL: s.URL, File: filepath.Join(cfg.Dir, s.File)}
		if m, err := f.readMeta(s); err == nil {
			st.LastChange, st.SHA256, st.ETag = m.Changed, m.SHA256, m.ETag
		}
		if fi, err := os.Stat(st.File); err == nil {
			st.Size = fi.Size()
		}
		f.st = append(f.st, st)
	}
	return f, nil
}

// Status returns every list's state, in configuration order.
func (f *Fetcher) Status() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Status(nil), f.st...)
}

// Run fetches every list now and then on every interval until ctx ends.
func (f *Fetcher) Run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		f.FetchAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FetchAll fetches every list once, calls OnChange when a local copy
// changed, and reports whether one did.
func (f *Fetcher) FetchAll(ctx context.Context) bool {
	changed := false
	for i, s := range f.cfg.Sources {
		if ctx.Err() != nil {
			return changed
		}
		if f.fetch(ctx, i, s) {
			changed = true
		}
	}
	if changed && f.cfg.OnChange != nil {
		f.cfg.OnChange()
	}
	return changed
}

func (f *Fetcher) metaPath(s Source) string { return filepath.Join(f.cfg.Dir, "."+s.File+".meta") }

func (f *Fetcher) readMeta(s Source) (meta, error) {
	var m meta
	b, err := os.ReadFile(f.metaPath(s))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.URL != s.URL {
		return meta{}, errors.New("the URL changed")
	}
	return m, nil
}

// fetch fetches one list and reports whether its local copy changed.
func (f *Fetcher) fetch(ctx context.Context, i int, s Source) bool {
	path := filepath.Join(f.cfg.Dir, s.File)
	res := Status{LastFetch: time.Now()}
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		st := &f.st[i]
		st.LastFetch, st.LastResult, st.LastHTTPStatus, st.LastError = res.LastFetch, res.LastResult, res.LastHTTPStatus, res.LastError
		if res.SHA256 != "" {
			st.SHA256, st.Size, st.ETag = res.SHA256, res.Size, res.ETag
		}
		if !res.LastChange.IsZero() {
			st.LastChange = res.LastChange
		}
	}()
	fail := func(err error) bool {
		res.LastResult, res.LastError = "failed", err.Error()
		f.log.Warn("list URL fetch failed; the last good copy stays in service", "list", s.Name, "url", s.URL, "err", err)
		return false
	}
	m, merr := f.readMeta(s)
	// The copy on disk is trusted (a conditional request, a 304, a 200
	// with the same bytes) only when it is the version written: its
	// SHA-256 matches the one recorded beside it and in the validators.
	// Otherwise it is fetched again unconditionally and rewritten.
	haveCopy := merr == nil
	if haveCopy {
		h, herr := blocklist.HashFile(path)
		verr := blocklist.VerifyCopy(path)
		if herr == nil && (verr != nil || h != m.SHA256) {
			if verr == nil {
				verr = errors.New("its SHA-256 differs from the validators'")
			}
			f.log.Error("list URL copy on disk is not the version fetched; fetching it again unconditionally", "list", s.Name, "file", path, "err", verr)
		}
		haveCopy = herr == nil && verr == nil && h == m.SHA256
	}
	var prevSig []byte
	if s.Verify != nil {
		var err error
		if prevSig, err = os.ReadFile(path + SignatureSuffix); err != nil {
			// A copy without its signature (the list just became a signed
			// one): fetch it again, unconditionally.
			haveCopy, prevSig = false, nil
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("User-Agent", "sinkhole")
	if haveCopy {
		if m.ETag != "" {
			req.Header.Set("If-None-Match", m.ETag)
		}
		if m.LastModified != "" {
			req.Header.Set("If-Modified-Since", m.LastModified)
		}
	}
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	res.LastHTTPStatus = resp.StatusCode
	if resp.StatusCode == http.StatusNotModified && haveCopy {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		res.LastResult = "not-modified"
		return false
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return fail(fmt.Errorf("HTTP %s", resp.Status))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxSize+1))
	if err != nil {
		return fail(fmt.Errorf("reading the body: %w", err))
	}
	if int64(len(data)) > f.cfg.MaxSize {
		return fail(fmt.Errorf("list is over the %d-byte limit", f.cfg.MaxSize))
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	next := meta{URL: s.URL, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), SHA256: hash, Changed: m.Changed}
	res.SHA256, res.Size, res.ETag = hash, int64(len(data)), next.ETag
	if haveCopy && m.SHA256 == hash {
		res.LastResult = "unchanged"
		f.writeMeta(s, next)
		return false
	}
	if s.Verify != nil {
		sig, err := f.fetchSignature(ctx, s)
		if err == nil {
			err = s.Verify(data, sig, prevSig)
		}
		if err != nil {
			res.SHA256, res.LastResult, res.LastError = "", "refused", "signature: "+err.Error()
			f.log.Error("list URL version refused: its signature does not verify; the last good copy stays in service", "list", s.Name, "url", s.URL, "err", err)
			return false
		}
		if err := writeFileAtomic(path+SignatureSuffix, sig); err != nil {
			res.SHA256 = ""
			return fail(err)
		}
	}
	if err := f.install(s, data); err != nil {
		res.SHA256 = ""
		return fail(err)
	}
	next.Changed = time.Now()
	res.LastChange = next.Changed
	f.writeMeta(s, next)
	res.LastResult = "updated"
	f.log.Info("list URL updated", "list", s.Name, "url", s.URL, "bytes", len(data), "sha256", hash)
	return true
}

// install checks data as a list file of s's format and, when it loads,
// puts it in place atomically.
func (f *Fetcher) install(s Source, data []byte) error {
	problems, sync, err := blocklist.InstallFile(f.cfg.Dir, s.File, data)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("the new version does not load: %s", summarize(problems))
	}
	if err := sync(); err != nil {
		f.log.Warn("list URL copy not synced to disk", "list", s.Name, "err", err)
	}
	return nil
}

// summarize joins the first few problems of a file.
func summarize(problems []*blocklist.LineError) string {
	msgs := make([]string, 0, 3)
	for _, e := range problems[:min(len(problems), 3)] {
		msgs = append(msgs, e.Error())
	}
	if len(problems) > 3 {
		msgs = append(msgs, fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(msgs, "; ")
}

func (f *Fetcher) writeMeta(s Source, m meta) {
	b, _ := json.Marshal(m)
	tmp := f.metaPath(s) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		err = os.Rename(tmp, f.metaPath(s))
		if err == nil {
			return
		}
	}
	f.log.Warn("cannot save list URL validators; the next fetch will be unconditional", "list", s.Name)
}

// maxSignatureSize caps a fetched signature (a minisign signature is about
// 300 bytes).
const maxSignatureSize = 4 << 10

// fetchSignature fetches s.URL + SignatureSuffix.
func (f *Fetcher) fetchSignature(ctx context.Context, s Source) ([]byte, error) {
	u := s.URL + SignatureSuffix
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "sinkhole")
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil, fmt.Errorf("%s: HTTP %s (the list is unsigned?)", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSignatureSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if len(b) > maxSignatureSize {
		return nil, fmt.Errorf("%s: over %d bytes, not a signature", u, maxSignatureSize)
	}
	return b, nil
}

// writeFileAtomic writes path through a temporary file in its directory.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
	}
	return werr
}
