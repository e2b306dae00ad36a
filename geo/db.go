package geo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/dirwatch"
)

var _ Lookuper = (*DB)(nil)

// Options configures Open. Either path may be empty: that database is then
// not used.
type Options struct {
	// CountryPath is a GeoIP2/GeoLite2 Country or City, or DB-IP country or
	// city lite, .mmdb file.
	CountryPath string
	// ASNPath is a GeoLite2-ASN or DB-IP ASN lite .mmdb file.
	ASNPath string
	Logger  *slog.Logger
}

// DB answers Lookup from a country and an ASN database, each optional. It
// is safe for concurrent use: lookups take no lock, and a reload swaps a
// verified database in atomically, keeping the last good one when the file
// on disk is missing, truncated, corrupt or of the wrong type.
type DB struct {
	log     *slog.Logger
	country atomic.Pointer[database]
	asn     atomic.Pointer[database]
	files   []*dbFile

	version atomic.Uint64 // bumped whenever a database in service changes

	reloadMu sync.Mutex // serialises Reload
	statusMu sync.Mutex // guards dbFile status fields
	watchMu  sync.Mutex
	watcher  *dirwatch.Watcher
}

// dbFile is one configured database file and what became of its last read.
type dbFile struct {
	kind Kind
	path string
	cur  *atomic.Pointer[database]
	// Guarded by DB.statusMu.
	err    error     // why the version on disk is not in service; nil when it is
	errAt  time.Time // when err was found
	badSum [32]byte  // SHA-256 of the version that failed (zero: it could not be read)
}

// Open loads the databases named in o. A file that cannot be loaded
// (missing, unreadable, corrupt, of the wrong type) is an error naming its
// path.
func Open(o Options) (*DB, error) {
	d := &DB{log: o.Logger}
	if d.log == nil {
		d.log = slog.Default()
	}
	for _, f := range []struct {
		path string
		kind Kind
		cur  *atomic.Pointer[database]
	}{{o.CountryPath, KindCountry, &d.country}, {o.ASNPath, KindASN, &d.asn}} {
		if f.path == "" {
			continue
		}
		db, err := loadDatabase(f.path, f.kind)
		if err != nil {
			return nil, err
		}
		f.cur.Store(db)
		d.files = append(d.files, &dbFile{kind: f.kind, path: f.path, cur: f.cur})
		d.log.Info("geo database loaded", "kind", f.kind.String(), "path", f.path, "type", db.meta.DatabaseType,
			"built", db.meta.BuildTime().UTC().Format(time.DateOnly))
	}
	return d, nil
}

// Lookup returns the country and AS of ip, as far as the loaded databases
// know them. It does not lock and, once the records it needs are cached,
// does not allocate.
func (d *DB) Lookup(ip netip.Addr) Info {
	var info Info
	if d == nil || !ip.IsValid() {
		return info
	}
	ip = ip.Unmap()
	if db := d.country.Load(); db != nil {
		db.lookup(ip, &info)
	}
	if db := d.asn.Load(); db != nil {
		db.lookup(ip, &info)
	}
	return info
}

// Version changes whenever a database in service is replaced, so answers
// decided with the old data can be decided again (0 for a nil DB).
func (d *DB) Version() uint64 {
	if d == nil {
		return 0
	}
	return d.version.Load()
}

// HasCountry reports whether a country database is loaded.
func (d *DB) HasCountry() bool { return d != nil && d.country.Load() != nil }

// HasASN reports whether an ASN database is loaded.
func (d *DB) HasASN() bool { return d != nil && d.asn.Load() != nil }

// Reload re-reads every configured file that changed on disk since it was
// last read. A file that fails keeps its last good version in service; the
// failure is logged once per version and reported by Status. The error
// joins the failures of every file still failing, nil when all serve their
// version on disk.
func (d *DB) Reload() error {
	if d == nil {
		return nil
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	var errs []error
	for _, f := range d.files {
		if err := d.reloadFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *DB) reloadFile(f *dbFile) error {
	cur := f.cur.Load()
	data, err := readFile(f.path, f.kind)
	var sum [32]byte
	if err == nil {
		sum = sha256.Sum256(data)
		if sum == cur.sum {
			d.setErr(f, nil, sum)
			return nil // the version in service
		}
	}
	d.statusMu.Lock()
	seen := f.err != nil && sum == f.badSum
	if err != nil { // unreadable now: seen if it was unreadable the same way
		seen = seen && strings.HasPrefix(f.err.Error(), err.Error())
	}
	prev := f.err
	d.statusMu.Unlock()
	if seen {
		return prev // the same broken version (or the same absence): already reported
	}
	var db *database
	if err == nil {
		db, err = openDatabase(f.path, f.kind, data, sum)
	}
	if err != nil {
		err = fmt.Errorf("%w (keeping the version loaded at %s)", err, cur.loadedAt.Format(time.RFC3339))
		d.setErr(f, err, sum)
		d.log.Error("geo database reload failed; the last good version stays in service",
			"kind", f.kind.String(), "path", f.path, "err", err)
		return err
	}
	f.cur.Store(db)
	d.version.Add(1)
	d.setErr(f, nil, sum)
	d.log.Info("geo database reloaded", "kind", f.kind.String(), "path", f.path, "type", db.meta.DatabaseType,
		"built", db.meta.BuildTime().UTC().Format(time.DateOnly))
	return nil
}

func (d *DB) setErr(f *dbFile, err error, sum [32]byte) {
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	f.err, f.badSum, f.errAt = err, sum, time.Time{}
	if err != nil {
		f.errAt = time.Now()
	}
}

// FileStatus describes one configured database file.
type FileStatus struct {
	Kind         string    `json:"kind"` // "country" or "asn"
	Path         string    `json:"path"`
	DatabaseType string    `json:"database_type"` // of the version in service, e.g. "GeoLite2-Country"
	BuildTime    time.Time `json:"build_time"`    // from the file's metadata
	LoadedAt     time.Time `json:"loaded_at"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	// Error says why the version on disk is not in service (the last good
	// version serves meanwhile); empty when it is.
	Error   string    `json:"error,omitempty"`
	ErrorAt time.Time `json:"error_at,omitzero"`
}

// Status describes every configured file, country first.
func (d *DB) Status() []FileStatus {
	if d == nil {
		return nil
	}
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	out := make([]FileStatus, 0, len(d.files))
	for _, f := range d.files {
		db := f.cur.Load()
		s := FileStatus{
			Kind: f.kind.String(), Path: f.path, DatabaseType: db.meta.DatabaseType,
			BuildTime: db.meta.BuildTime().UTC(), LoadedAt: db.loadedAt, Size: db.size,
			SHA256: hex.EncodeToString(db.sum[:]),
		}
		if f.err != nil {
			s.Error, s.ErrorAt = f.err.Error(), f.errAt
		}
		out = append(out, s)
	}
	return out
}

// Watch reloads the databases when their files change: it watches each
// file's directory (and, for a symbolic link, its target's), debounced.
// Close stops it. It does nothing when no file is configured.
func (d *DB) Watch(debounce time.Duration) error {
	if d == nil || len(d.files) == 0 {
		return nil
	}
	var dirs []string
	seen := map[string]bool{}
	names := map[string]bool{}
	add := func(p string) {
		names[filepath.Base(p)] = true
		if dir := filepath.Dir(p); !seen[dir] {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
	}
	for _, f := range d.files {
		add(f.path)
		if real, err := filepath.EvalSymlinks(f.path); err == nil && real != f.path {
			add(real)
		}
	}
	w, err := dirwatch.Start(dirwatch.Options{
		Dirs:     dirs,
		Match:    func(name string) bool { return names[name] },
		Debounce: debounce,
		OnChange: func() { d.Reload() }, // failures are logged and kept in Status
		Logger:   d.log,
	})
	if err != nil {
		return fmt.Errorf("geo databases: %w", err)
	}
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	if d.watcher != nil {
		d.watcher.Close()
	}
	d.watcher = w
	return nil
}

// Close stops watching. The databases stay usable.
func (d *DB) Close() {
	if d == nil {
		return
	}
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	if d.watcher != nil {
		d.watcher.Close()
		d.watcher = nil
	}
}
