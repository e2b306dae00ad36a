package listsig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// RefusalReason names the reason for blocklist's status and metrics.
func (e *Error) RefusalReason() string { return e.Reason }

// Verifier is the blocklist.Verifier of a keyring: every list file needs a
// FILE.minisig by a trusted key, naming the file, signed no earlier than
// the version in service.
type Verifier struct {
	Keys *Keyring
	// Exempt, when set, names files that need no signature (because they
	// were verified another way before being written); nil exempts none.
	Exempt func(path string) bool
	// SignedName, when set, gives the file name a file's signature must
	// carry when it is not the file's own (a list URL's copy is signed
	// under the name it has at the URL); "" means the file's own.
	SignedName func(path string) string
	// Seen, when set, remembers the newest signing time accepted for each
	// file across restarts, so a version signed before it is refused as a
	// rollback even when no version is in service yet (a cold start).
	Seen *SeenTimes
}

// Fingerprint implements blocklist.Verifier.
func (v *Verifier) Fingerprint(path string) string { return Fingerprint(path) }

// Verify implements blocklist.Verifier.
func (v *Verifier) Verify(name, path string, content io.Reader, inService *blocklist.Signature) (*blocklist.Signature, error) {
	if v.Exempt != nil && v.Exempt(path) {
		return nil, nil
	}
	sig, err := ReadSignature(path)
	if err != nil {
		return nil, err
	}
	name = filepath.Base(path)
	if v.SignedName != nil {
		if n := v.SignedName(path); n != "" {
			name = n
		}
	}
	s, err := v.Keys.Verify(name, content, sig)
	if err != nil {
		var out *blocklist.Signature
		if s.KeyID != "" {
			out = &blocklist.Signature{KeyID: s.KeyID, SignedAt: s.SignedAt}
		} else if e, ok := err.(*Error); ok && e.KeyID != "" {
			out = &blocklist.Signature{KeyID: e.KeyID}
		}
		return out, err
	}
	out := &blocklist.Signature{KeyID: s.KeyID, SignedAt: s.SignedAt}
	floor := time.Time{}
	if inService != nil {
		floor = inService.SignedAt
	}
	if v.Seen != nil {
		if t := v.Seen.Get(path); t.After(floor) {
			floor = t
		}
	}
	if err := CheckRollback(s, floor); err != nil {
		return out, err
	}
	if v.Seen != nil {
		v.Seen.Put(path, s.SignedAt)
	}
	return out, nil
}

// SeenTimes is the newest signing time accepted per file, kept in a JSON
// file (written through a temporary file and a rename).
type SeenTimes struct {
	path string
	mu   sync.Mutex
	m    map[string]int64 // clean path -> Unix seconds
	err  error            // the last write's error
}

// OpenSeenTimes reads the times kept in path (none when it does not exist).
func OpenSeenTimes(path string) (*SeenTimes, error) {
	s := &SeenTimes{path: path, m: map[string]int64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &s.m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Get returns the newest time accepted for the file at path.
func (s *SeenTimes) Get(path string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[filepath.Clean(path)]; ok {
		return time.Unix(v, 0).UTC()
	}
	return time.Time{}
}

// Put records t for path when it is newer, and saves the file.
func (s *SeenTimes) Put(path string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := filepath.Clean(path)
	if t.IsZero() || t.Unix() <= s.m[k] {
		return
	}
	s.m[k] = t.Unix()
	b, _ := json.Marshal(s.m)
	tmp := s.path + ".tmp"
	s.err = os.MkdirAll(filepath.Dir(s.path), 0o755)
	if s.err == nil {
		s.err = os.WriteFile(tmp, b, 0o644)
	}
	if s.err == nil {
		s.err = os.Rename(tmp, s.path)
	}
}

// Err returns the last save's error.
func (s *SeenTimes) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Watched extends a file-name filter to the files' signatures, so a
// directory watcher reloads when FILE.minisig changes too.
func Watched(match func(string) bool) func(string) bool {
	return func(name string) bool {
		return match(name) || (strings.HasSuffix(name, Suffix) && match(strings.TrimSuffix(name, Suffix)))
	}
}
