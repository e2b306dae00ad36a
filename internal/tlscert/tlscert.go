// Package tlscert holds the server's TLS certificate: it loads a PEM
// certificate chain and key pair, serves it to every TLS listener through
// GetCertificate, and reloads it when either file changes (their
// directories are watched, like the lists) or when asked. A pair that does
// not load (unreadable, not PEM, key and certificate that do not match)
// is refused with an error naming the file: the last good pair keeps
// serving, and the error shows in Status.
package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/dirwatch"
)

// maxFileSize bounds what is read of either file.
const maxFileSize = 1 << 20

// Options configures a Store.
type Options struct {
	CertFile, KeyFile string // PEM; the certificate file may hold the chain after the leaf
	Logger            *slog.Logger
}

// Status describes the certificate in service, for status output.
type Status struct {
	CertFile  string    `json:"cert_file"`
	KeyFile   string    `json:"key_file"`
	Names     []string  `json:"names"` // the leaf's DNS names and IP addresses (its subject CN when it has none)
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`
	LoadedAt  time.Time `json:"loaded_at"`
	// LastError is the error of the last load attempt that failed after
	// the pair in service was loaded (empty when that was the last attempt).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Store is the certificate in service and its reloading.
type Store struct {
	opts    Options
	log     *slog.Logger
	cert    atomic.Pointer[tls.Certificate]
	mu      sync.Mutex // serializes loads; guards status
	status  Status
	watcher *dirwatch.Watcher
}

// Load reads the pair; an error here (at start) is fatal to the caller.
func Load(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Store{opts: o, log: o.Logger}
	s.status.CertFile, s.status.KeyFile = o.CertFile, o.KeyFile
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the pair again. On success it replaces the certificate in
// service for every new handshake; on failure the last good pair stays
// and the error is logged, kept for Status and returned.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cert, err := s.read()
	if err != nil {
		s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now()
		if s.cert.Load() != nil {
			s.log.Error("TLS certificate not reloaded: the last good one keeps serving", "err", err)
		}
		return err
	}
	leaf := cert.Leaf
	if old := s.cert.Load(); old != nil && slices.EqualFunc(old.Certificate, cert.Certificate, func(a, b []byte) bool { return string(a) == string(b) }) {
		s.status.LastError, s.status.LastErrorAt = "", time.Time{}
		return nil // unchanged
	}
	s.cert.Store(cert)
	s.status.Names = names(leaf)
	s.status.NotBefore, s.status.NotAfter = leaf.NotBefore, leaf.NotAfter
	s.status.Issuer = leaf.Issuer.String()
	s.status.LoadedAt = time.Now()
	s.status.LastError, s.status.LastErrorAt = "", time.Time{}
	args := []any{"cert", s.opts.CertFile, "names", s.status.Names, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	switch now := time.Now(); {
	case now.After(leaf.NotAfter):
		s.log.Warn("TLS certificate loaded, but it has expired: clients will refuse it", args...)
	case now.Before(leaf.NotBefore):
		s.log.Warn("TLS certificate loaded, but it is not valid yet", args...)
	default:
		s.log.Info("TLS certificate loaded", args...)
	}
	return nil
}

// read loads and checks the pair from disk.
func (s *Store) read() (*tls.Certificate, error) {
	certPEM, err := readFile(s.opts.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(s.opts.KeyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS pair %s, %s: %w", s.opts.CertFile, s.opts.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", s.opts.CertFile, err)
		}
	}
	return &cert, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return b, nil
}

func names(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 && c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// GetCertificate is tls.Config.GetCertificate: the pair in service.
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no TLS certificate loaded")
}

// NotAfter returns the expiry time of the certificate in service.
func (s *Store) NotAfter() time.Time {
	if c := s.cert.Load(); c != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// Status returns the state of the certificate in service.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Names = slices.Clone(st.Names)
	return st
}

// Watch reloads the pair, debounce after the last change to either file
// (their directories are watched: tools replace certificates by rename),
// until Close.
func (s *Store) Watch(debounce time.Duration) error {
	files := map[string]bool{}
	var dirs []string
	for _, p := range []string{s.opts.CertFile, s.opts.KeyFile} {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		files[filepath.Base(abs)] = true
		if d := filepath.Dir(abs); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	w, err := dirwatch.Start(dirwatch.Options{
		Dirs: dirs,
		// "..data" is the symlink Kubernetes swaps to update a mounted secret.
		Match:    func(name string) bool { return files[name] || name == "..data" },
		Debounce: debounce,
		OnChange: func() { s.Reload() },
		Logger:   s.log,
	})
	if err != nil {
		return fmt.Errorf("watching the TLS certificate: %w", err)
	}
	s.watcher = w
	return nil
}

// Close stops the watch.
func (s *Store) Close() {
	if s.watcher != nil {
		s.watcher.Close()
	}
}
