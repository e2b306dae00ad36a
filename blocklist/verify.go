package blocklist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"time"
)

// Verifier checks a list file's authenticity (its signature) before its
// rules may serve. A file it refuses is handled like a broken file: the
// refusal is reported with the file's errors and its last good version
// keeps serving. Set Options.Verify to use one.
type Verifier interface {
	// Fingerprint identifies the signature of the file at path as it is
	// now ("" when it has none). The store verifies a file again only when
	// its content or this fingerprint changed.
	Fingerprint(path string) string
	// Verify checks content, the file's bytes, under the file's display
	// name. inService is the signature of the version in service (nil
	// when none), for rollback checks. On refusal it returns what it
	// could learn of the signer (or nil) with the error; an error with a
	// RefusalReason() string method names the reason for status and metrics.
	Verify(name, path string, content io.Reader, inService *Signature) (*Signature, error)
}

// Signature is who signed the version of a file in service, and when.
type Signature struct {
	KeyID    string    `json:"key_id"`
	SignedAt time.Time `json:"signed_at,omitzero"`
}

// Refusal is why the version of a file on disk was refused by the Verifier.
type Refusal struct {
	Reason   string    `json:"reason"`
	KeyID    string    `json:"key_id,omitempty"`
	SignedAt time.Time `json:"signed_at,omitzero"`
	Error    string    `json:"error"`
}

// verifyFile runs the store's Verifier over the open file, checking that the
// bytes verified are the bytes hashed (and so the bytes parsed next).
func (s *Store) verifyFile(name, path string, file *listFile, prev *FileStatus) (*Signature, *Refusal) {
	var inService *Signature
	if prev != nil {
		inService = prev.Signature
	}
	if _, err := file.f.Seek(0, io.SeekStart); err != nil {
		return nil, &Refusal{Reason: "read", Error: err.Error()}
	}
	h := sha256.New()
	sig, err := s.opts.Verify.Verify(name, path, io.TeeReader(io.LimitReader(file.f, file.size+1), h), inService)
	if err == nil && hex.EncodeToString(h.Sum(nil)) != file.hash {
		err = errors.New("file changed while its signature was checked; it will be checked again at the next change")
	}
	if err == nil {
		return sig, nil
	}
	r := &Refusal{Reason: "refused", Error: err.Error()}
	var rr interface{ RefusalReason() string }
	if errors.As(err, &rr) {
		r.Reason = rr.RefusalReason()
	}
	if sig != nil {
		r.KeyID, r.SignedAt = sig.KeyID, sig.SignedAt
	}
	return nil, r
}
