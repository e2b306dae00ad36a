package listsig

import (
	"io"
	"path/filepath"
	"strings"

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
	if inService != nil {
		if err := CheckRollback(s, inService.SignedAt); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Watched extends a file-name filter to the files' signatures, so a
// directory watcher reloads when FILE.minisig changes too.
func Watched(match func(string) bool) func(string) bool {
	return func(name string) bool {
		return match(name) || (strings.HasSuffix(name, Suffix) && match(strings.TrimSuffix(name, Suffix)))
	}
}
