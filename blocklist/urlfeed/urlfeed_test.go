package urlfeed

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// listServer serves one list body with an ETag, or a forced status.
type listServer struct {
	mu       sync.Mutex
	body     string
	etag     string
	lastMod  string
	status   int      // forced status when non-zero
	requests []string // "If-None-Match|If-Modified-Since" of each request
}

func (l *listServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, r.Header.Get("If-None-Match")+"|"+r.Header.Get("If-Modified-Since"))
	if l.status != 0 {
		http.Error(w, "broken", l.status)
		return
	}
	if l.etag != "" {
		w.Header().Set("ETag", l.etag)
		if r.Header.Get("If-None-Match") == l.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if l.lastMod != "" {
		w.Header().Set("Last-Modified", l.lastMod)
		if r.Header.Get("If-Modified-Since") == l.lastMod {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	io.WriteString(w, l.body)
}

func (l *listServer) set(f func(*listServer)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

func (l *listServer) lastRequest() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests[len(l.requests)-1]
}

func newFetcher(t *testing.T, dir, url string, changes *int) *Fetcher {
	t.Helper()
	f, err := New(Config{
		Sources:  []Source{{Name: "regulator", URL: url, File: "regulator.txt"}},
		Dir:      dir,
		Interval: time.Hour,
		OnChange: func() { *changes++ },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFetchConditionalAndLastGood(t *testing.T) {
	ls := &listServer{body: "binance.com\n", etag: `"v1"`}
	hs := httptest.NewServer(ls)
	defer hs.Close()
	dir := t.TempDir()
	changes := 0
	f := newFetcher(t, dir, hs.URL+"/list.txt", &changes)
	ctx := context.Background()
	copyText := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "regulator.txt"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	step := func(what string, wantChanged bool, wantResult string, wantHTTP int) {
		t.Helper()
		before := changes
		if got := f.FetchAll(ctx); got != wantChanged || (changes > before) != wantChanged {
			t.Fatalf("%s: changed=%v (OnChange %d->%d), want %v", what, got, before, changes, wantChanged)
		}
		st := f.Status()[0]
		if st.LastResult != wantResult || st.LastHTTPStatus != wantHTTP {
			t.Fatalf("%s: status %+v, want %s %d", what, st, wantResult, wantHTTP)
		}
	}

	step("first fetch", true, "updated", 200)
	if copyText() != "binance.com\n" || ls.lastRequest() != "|" {
		t.Fatalf("first fetch: copy %q, request %q", copyText(), ls.lastRequest())
	}
	step("304", false, "not-modified", 304)
	if ls.lastRequest() != `"v1"|` {
		t.Fatalf("conditional request sent %q", ls.lastRequest())
	}
	ls.set(func(l *listServer) { l.body, l.etag = "binance.com\nokx.com\n", `"v2"` })
	step("new version", true, "updated", 200)
	if copyText() != "binance.com\nokx.com\n" {
		t.Fatalf("copy %q", copyText())
	}
	ls.set(func(l *listServer) { l.status = 500 })
	step("500", false, "failed", 500)
	if copyText() != "binance.com\nokx.com\n" || !strings.Contains(f.Status()[0].LastError, "500") {
		t.Fatalf("500 changed the copy or was not reported: %q %+v", copyText(), f.Status()[0])
	}
	// A version that does not load is not installed.
	ls.set(func(l *listServer) { l.status, l.body, l.etag = 0, "binance.com\nthis is not a list line\n", `"v3"` })
	step("broken list", false, "failed", 200)
	if copyText() != "binance.com\nokx.com\n" || !strings.Contains(f.Status()[0].LastError, "regulator.txt:2: unexpected text after entry") {
		t.Fatalf("broken list: copy %q, status %+v", copyText(), f.Status()[0])
	}
	// Same bytes under a new ETag: no change.
	ls.set(func(l *listServer) { l.body, l.etag = "binance.com\nokx.com\n", `"v4"` })
	step("same bytes", false, "unchanged", 200)

	// A restart remembers the validators: the first request is conditional.
	f2 := newFetcher(t, dir, hs.URL+"/list.txt", &changes)
	if st := f2.Status()[0]; st.ETag != `"v4"` || st.Size != int64(len("binance.com\nokx.com\n")) {
		t.Fatalf("status after restart %+v", st)
	}
	if f2.FetchAll(ctx) || ls.lastRequest() != `"v4"|` || f2.Status()[0].LastResult != "not-modified" {
		t.Fatalf("restart: request %q, status %+v", ls.lastRequest(), f2.Status()[0])
	}
	// Nothing but the copy, its hidden validators and checksum is left in
	// the directory.
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".regulator.txt.meta .regulator.txt.sha256 regulator.txt" {
		t.Fatalf("directory holds %v", names)
	}
}

func TestFetchLastModifiedAndErrors(t *testing.T) {
	ls := &listServer{body: "a.example\n", lastMod: "Mon, 02 Jan 2006 15:04:05 GMT"}
	hs := httptest.NewServer(ls)
	defer hs.Close()
	dir := t.TempDir()
	changes := 0
	f := newFetcher(t, dir, hs.URL, &changes)
	f.FetchAll(context.Background())
	f.FetchAll(context.Background())
	if ls.lastRequest() != "|Mon, 02 Jan 2006 15:04:05 GMT" || f.Status()[0].LastResult != "not-modified" || changes != 1 {
		t.Fatalf("If-Modified-Since: %q %+v", ls.lastRequest(), f.Status()[0])
	}
	// An unreachable server: failed, nothing changes.
	hs.Close()
	if f.FetchAll(context.Background()) || f.Status()[0].LastResult != "failed" || f.Status()[0].LastHTTPStatus != 0 {
		t.Fatalf("unreachable: %+v", f.Status()[0])
	}
	if _, err := New(Config{Sources: []Source{{Name: "x", URL: hs.URL, File: "x.md"}}, Dir: dir, Interval: time.Second}); err == nil {
		t.Fatal("accepted a file name that is not a list")
	}
}

func TestFetchSizeLimit(t *testing.T) {
	ls := &listServer{body: strings.Repeat("a.example\n", 100)}
	hs := httptest.NewServer(ls)
	defer hs.Close()
	f, err := New(Config{Sources: []Source{{Name: "big", URL: hs.URL, File: "big.txt"}}, Dir: t.TempDir(), Interval: time.Hour, MaxSize: 100,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if f.FetchAll(context.Background()) || !strings.Contains(f.Status()[0].LastError, "over the 100-byte limit") {
		t.Fatalf("size limit: %+v", f.Status()[0])
	}
}
