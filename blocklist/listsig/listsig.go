// Package listsig signs and verifies list files with minisign (Ed25519)
// signatures, the format of the reference minisign tool and of
// dnscrypt-proxy's list sources.
//
// A signature of FILE lives beside it in FILE.minisig. Its trusted comment
// (signed together with the signature) holds the signing time and the file's
// name, the way minisign itself writes it:
//
//	trusted comment: timestamp:1700000000	file:exchanges.txt	hashed
//
// so a verifier can refuse a file renamed to another list's name and a
// version older than the one in service (a rollback). Both signature
// algorithms are read: "ED" (BLAKE2b-512 prehashed, minisign's default,
// streamed so a file of any size costs a fixed buffer) and the legacy "Ed"
// (the whole file signed; read into memory).
package listsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
)

// Suffix is appended to a file's path to name its signature.
const Suffix = ".minisig"

// MaxSignatureSize caps the bytes read from a .minisig file.
const MaxSignatureSize = 4 << 10

// maxLegacySize caps a file verified against a legacy (non-prehashed)
// signature, which needs the whole file in memory.
const maxLegacySize = 64 << 20

// Reasons a file is refused, for status and metrics.
const (
	ReasonUnsigned     = "unsigned"      // no FILE.minisig
	ReasonMalformed    = "malformed"     // FILE.minisig is not a minisign signature
	ReasonUnknownKey   = "unknown_key"   // signed by a key that is not trusted
	ReasonBadSignature = "bad_signature" // the signature does not match the content or comment
	ReasonWrongFile    = "wrong_file"    // the trusted comment names another file
	ReasonRollback     = "rollback"      // signed before the version in service
)

// Reasons lists every refusal reason.
var Reasons = []string{ReasonUnsigned, ReasonMalformed, ReasonUnknownKey, ReasonBadSignature, ReasonWrongFile, ReasonRollback}

// Error is a refused signature: why, and the signer when it is known.
type Error struct {
	Reason string // one of the Reason constants
	KeyID  string // the signature's key id (hex), when the signature could be read
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Signed describes a verified signature.
type Signed struct {
	KeyID    string    // the signer's key id, 16 upper-case hex digits as minisign prints it
	SignedAt time.Time // the trusted comment's timestamp; zero when it has none
	File     string    // the trusted comment's file name; empty when it has none
	Comment  string    // the whole trusted comment
	Prehash  bool      // an "ED" (BLAKE2b-512) signature
}

// KeyID formats a key id as minisign prints it.
func KeyID(id uint64) string { return fmt.Sprintf("%016X", id) }

// Keyring is a set of trusted public keys.
type Keyring struct {
	keys []minisign.PublicKey
}

// ParseKey reads a public key given as a minisign public key file or as its
// base64 line ("RWQ...").
func ParseKey(spec string) (minisign.PublicKey, error) {
	var pk minisign.PublicKey
	text := []byte(strings.TrimSpace(spec))
	if !looksLikeKey(spec) {
		b, err := os.ReadFile(spec)
		if err != nil {
			return pk, fmt.Errorf("trusted key %s: %w", spec, err)
		}
		text = bytes.TrimSpace(b)
	}
	if err := pk.UnmarshalText(text); err != nil {
		return pk, fmt.Errorf("trusted key %s: %w", spec, err)
	}
	return pk, nil
}

// looksLikeKey reports whether s is a base64 minisign public key line
// rather than a path: 56 base64 characters starting with "RW" (Ed25519).
func looksLikeKey(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) != 56 || !strings.HasPrefix(s, "RW") {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 42
}

// NewKeyring reads every key spec (file or base64 line). No specs is an
// error: a keyring that trusts nothing refuses everything.
func NewKeyring(specs []string) (*Keyring, error) {
	if len(specs) == 0 {
		return nil, errors.New("no trusted keys")
	}
	k := &Keyring{}
	for _, s := range specs {
		pk, err := ParseKey(s)
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, pk)
	}
	return k, nil
}

// IDs returns the trusted key ids.
func (k *Keyring) IDs() []string {
	out := make([]string, len(k.keys))
	for i, pk := range k.keys {
		out[i] = KeyID(pk.ID())
	}
	return out
}

func (k *Keyring) key(id uint64) (minisign.PublicKey, bool) {
	for _, pk := range k.keys {
		if pk.ID() == id {
			return pk, true
		}
	}
	return minisign.PublicKey{}, false
}

// ReadSignature reads FILE.minisig; a missing file is an Error with reason
// unsigned.
func ReadSignature(path string) ([]byte, error) {
	f, err := os.Open(path + Suffix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &Error{Reason: ReasonUnsigned, Msg: "not signed: " + filepath.Base(path) + Suffix + " is missing"}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSignatureSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSignatureSize {
		return nil, &Error{Reason: ReasonMalformed, Msg: filepath.Base(path) + Suffix + ": over 4 KiB, not a minisign signature"}
	}
	return b, nil
}

// Fingerprint returns a short hash of a file's signature bytes ("" when it
// has none), so a caller can tell whether the signature changed without
// verifying it again.
func Fingerprint(path string) string {
	b, err := ReadSignature(path)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Verify checks that content (the file's bytes) is signed by a trusted key
// with sig, and that the trusted comment names the file name. It does not
// check the timestamp: see CheckRollback.
func (k *Keyring) Verify(name string, content io.Reader, sig []byte) (Signed, error) {
	var s minisign.Signature
	if err := s.UnmarshalText(bytes.TrimRight(sig, "\r\n")); err != nil {
		return Signed{}, &Error{Reason: ReasonMalformed, Msg: "signature " + name + Suffix + " is malformed: " + err.Error()}
	}
	id := KeyID(s.KeyID)
	pk, ok := k.key(s.KeyID)
	if !ok {
		return Signed{}, &Error{Reason: ReasonUnknownKey, KeyID: id,
			Msg: fmt.Sprintf("signed by key %s, which is not a trusted key (trusted: %s)", id, strings.Join(k.IDs(), ", "))}
	}
	var good bool
	if s.Algorithm == minisign.HashEdDSA {
		r := minisign.NewReader(content)
		if _, err := io.Copy(io.Discard, r); err != nil {
			return Signed{}, fmt.Errorf("read %s: %w", name, err)
		}
		good = r.Verify(pk, sig)
	} else {
		msg, err := io.ReadAll(io.LimitReader(content, maxLegacySize+1))
		if err != nil {
			return Signed{}, fmt.Errorf("read %s: %w", name, err)
		}
		if len(msg) > maxLegacySize {
			return Signed{}, &Error{Reason: ReasonBadSignature, KeyID: id, Msg: "legacy (non-prehashed) signature on a file over 64 MiB; sign it with minisign's default (prehashed) mode"}
		}
		good = minisign.Verify(pk, msg, sig)
	}
	if !good {
		return Signed{}, &Error{Reason: ReasonBadSignature, KeyID: id, Msg: "signature by key " + id + " does not match the file's content (or its trusted comment was altered)"}
	}
	out := Signed{KeyID: id, Comment: s.TrustedComment, Prehash: s.Algorithm == minisign.HashEdDSA}
	out.SignedAt, out.File = parseComment(s.TrustedComment)
	if out.File != "" && out.File != filepath.Base(name) {
		return out, &Error{Reason: ReasonWrongFile, KeyID: id,
			Msg: fmt.Sprintf("signature by key %s is for file %q, not %q (renamed or swapped)", id, out.File, filepath.Base(name))}
	}
	return out, nil
}

// Parse reads a signature's key id and trusted comment without verifying
// it (for the signature of a version already verified and in place).
func Parse(sig []byte) (Signed, error) {
	var s minisign.Signature
	if err := s.UnmarshalText(bytes.TrimRight(sig, "\r\n")); err != nil {
		return Signed{}, &Error{Reason: ReasonMalformed, Msg: "malformed signature: " + err.Error()}
	}
	out := Signed{KeyID: KeyID(s.KeyID), Comment: s.TrustedComment, Prehash: s.Algorithm == minisign.HashEdDSA}
	out.SignedAt, out.File = parseComment(s.TrustedComment)
	return out, nil
}

// VerifyVersion checks a new version of a list (data, signed as name)
// against sig, and against the signature of the version in place (prev,
// nil when none) for rollback.
func (k *Keyring) VerifyVersion(name string, data, sig, prev []byte) (Signed, error) {
	s, err := k.Verify(name, bytes.NewReader(data), sig)
	if err != nil {
		return s, err
	}
	if prev != nil {
		if p, err := Parse(prev); err == nil {
			if err := CheckRollback(s, p.SignedAt); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}

// CheckRollback refuses a signature made before the one of the version in
// service (inService zero: no version in service).
func CheckRollback(s Signed, inService time.Time) error {
	if inService.IsZero() || !s.SignedAt.Before(inService) {
		return nil
	}
	return &Error{Reason: ReasonRollback, KeyID: s.KeyID,
		Msg: fmt.Sprintf("signed at %s, before the version in service (signed at %s): a rollback", s.SignedAt.UTC().Format(time.RFC3339), inService.UTC().Format(time.RFC3339))}
}

// VerifyFile verifies the file at path against path.minisig. name is the
// name the trusted comment must carry (the file's base name).
func (k *Keyring) VerifyFile(path string) (Signed, error) {
	sig, err := ReadSignature(path)
	if err != nil {
		return Signed{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Signed{}, err
	}
	defer f.Close()
	return k.Verify(filepath.Base(path), f, sig)
}

// parseComment reads "timestamp:N" and "file:NAME" from a trusted comment
// (tab-separated fields, as minisign writes them).
func parseComment(c string) (time.Time, string) {
	var at time.Time
	var file string
	for _, f := range strings.Split(c, "\t") {
		if v, ok := strings.CutPrefix(f, "timestamp:"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				at = time.Unix(n, 0).UTC()
			}
		}
		if v, ok := strings.CutPrefix(f, "file:"); ok {
			file = v
		}
	}
	return at, file
}

// TrustedComment is the trusted comment sinkhole signs: the time and the
// file name, as minisign writes them.
func TrustedComment(name string, at time.Time) string {
	return "timestamp:" + strconv.FormatInt(at.Unix(), 10) + "\tfile:" + filepath.Base(name) + "\thashed"
}

// Sign signs the file at path with priv (prehashed, "ED") and returns the
// text of its .minisig.
func Sign(priv minisign.PrivateKey, path string, at time.Time) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := minisign.NewReader(f)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return r.SignWithComments(priv, TrustedComment(path, at), "signature from sinkhole secret key "+KeyID(priv.ID())), nil
}

// GenerateKey makes a key pair and returns the public key file's text and
// the (unencrypted) secret key file's text, in minisign's formats: the
// secret key carries minisign's checksum, so "minisign -S -s" accepts it.
func GenerateKey() (pub minisign.PublicKey, pubText, secText []byte, err error) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return pub, nil, nil, err
	}
	pubText, _ = pub.MarshalText()
	secText, err = marshalSecret(priv)
	return pub, append(pubText, '\n'), secText, err
}

// marshalSecret writes an unencrypted minisign secret key (as "minisign -G
// -W" does): Ed, no KDF, BLAKE2b checksum over algorithm, key id and key.
func marshalSecret(priv minisign.PrivateKey) ([]byte, error) {
	text, err := priv.MarshalText()
	if err != nil {
		return nil, err
	}
	lines := strings.SplitN(string(text), "\n", 2)
	raw, err := base64Decode(lines[1])
	if err != nil || len(raw) != 158 {
		return nil, errors.New("minisign: unexpected secret key encoding")
	}
	// Layout: alg(2) kdf(2) chk alg(2) salt(32) ops(8) mem(8) | id(8) key(64) checksum(32).
	h, _ := blake2b.New256(nil)
	h.Write(raw[0:2])
	h.Write(raw[54:62])
	h.Write(raw[62:126])
	copy(raw[126:], h.Sum(nil))
	var id [8]byte
	binary.LittleEndian.PutUint64(id[:], priv.ID())
	if !bytes.Equal(id[:], raw[54:62]) {
		return nil, errors.New("minisign: secret key id mismatch")
	}
	return []byte("untrusted comment: sinkhole secret key " + KeyID(priv.ID()) + "\n" + base64Encode(raw) + "\n"), nil
}

// ReadSecretKey reads an unencrypted minisign secret key file (from
// "sinkhole keygen" or "minisign -G -W"). Encrypted keys are decrypted with
// password, which may be empty for unencrypted ones.
func ReadSecretKey(path, password string) (minisign.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return minisign.PrivateKey{}, err
	}
	b = bytes.TrimSpace(b)
	if minisign.IsEncrypted(b) {
		if password == "" {
			return minisign.PrivateKey{}, fmt.Errorf("%s is encrypted: give its password (SINKHOLE_KEY_PASSWORD)", path)
		}
		k, err := minisign.DecryptKey(password, b)
		if err != nil {
			return k, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(b); err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func base64Decode(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimSpace(s))
}

func base64Encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
