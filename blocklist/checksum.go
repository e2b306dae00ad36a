package blocklist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Checksums of the copies sinkhole writes itself (list URL copies, RPZ feed
// zones, the export serial): each file NAME in a state directory has a
// hidden sidecar .NAME.sha256 holding the SHA-256 of the version written.
// A copy that does not match its sidecar (truncated, garbled, edited by
// hand, a crash between the two writes) is never served and is fetched
// again. While a new version replaces an old one the sidecar names both,
// so a reader never sees a mismatch that is only a race.

// ChecksumPath returns the sidecar of path.
func ChecksumPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".sha256")
}

// readChecksums returns the hashes a sidecar accepts.
func readChecksums(path string) ([]string, error) {
	b, err := os.ReadFile(ChecksumPath(path))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range strings.Fields(string(b)) {
		if len(f) == sha256.Size*2 {
			out = append(out, strings.ToLower(f))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no SHA-256", ChecksumPath(path))
	}
	return out, nil
}

// writeChecksums replaces path's sidecar atomically.
func writeChecksums(path string, hashes ...string) error {
	side := ChecksumPath(path)
	tmp := side + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(hashes, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, side); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// HashBytes returns the hex SHA-256 of b.
func HashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// HashFile returns the hex SHA-256 of the file at path.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ErrNoChecksum means a copy has no sidecar: it was not written by
// WriteVerified or InstallFile (or its sidecar was lost).
var ErrNoChecksum = errors.New("no recorded SHA-256")

// checkHash reports whether hash is one path's sidecar accepts.
func checkHash(path, hash string) error {
	want, err := readChecksums(path)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoChecksum
	}
	if err != nil {
		return err
	}
	if !slices.Contains(want, hash) {
		return fmt.Errorf("SHA-256 %s does not match the %s recorded when it was written", short(hash), short(want[len(want)-1]))
	}
	return nil
}

func short(h string) string { return h[:min(len(h), 12)] }

// VerifyCopy checks the file at path against its sidecar: nil when it
// holds the bytes written. A missing file is os.ErrNotExist; a missing
// sidecar ErrNoChecksum.
func VerifyCopy(path string) error {
	h, err := HashFile(path)
	if err != nil {
		return err
	}
	return checkHash(path, h)
}

// CheckHash reports whether hash (hex SHA-256) is a version path's sidecar
// accepts, for a reader that hashed the file as it read it: ErrNoChecksum
// without a sidecar.
func CheckHash(path, hash string) error { return checkHash(path, hash) }

// ReadVerified returns the content of path when it matches its sidecar.
func ReadVerified(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkHash(path, HashBytes(b)); err != nil {
		return nil, err
	}
	return b, nil
}

// RecordChecksum records data's SHA-256 as what path holds (for a file
// written by other means; WriteVerified does both).
func RecordChecksum(path string, data []byte) error {
	return writeChecksums(path, HashBytes(data))
}

// WriteVerified writes data to path atomically (temporary file, rename)
// with its sidecar; it is not synced.
func WriteVerified(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return replaceVerified(tmp, path, HashBytes(data))
}

// replaceVerified renames tmp (whose content hashes to hash) over path,
// keeping the sidecar right at every moment: first it accepts the old
// version and the new one, after the rename only the new one.
func replaceVerified(tmp, path, hash string) error {
	hashes := []string{hash}
	if old, err := readChecksums(path); err == nil {
		hashes = append(old[len(old)-1:], hash)
	}
	if err := writeChecksums(path, hashes...); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record the SHA-256 of %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := writeChecksums(path, hash); err != nil {
		return fmt.Errorf("record the SHA-256 of %s: %w", path, err)
	}
	return nil
}

// ChecksumCheck is a Check for the directories sinkhole writes itself: a
// version of a file in one of dirs is refused unless it matches its
// sidecar.
func ChecksumCheck(dirs ...string) Check {
	return func(v *Version) error {
		if !slices.Contains(dirs, v.Dir) {
			return nil
		}
		if err := checkHash(v.Path, v.SHA256); err != nil {
			return &RefusedError{Check: "checksum", Msg: err.Error() + "; it is fetched again"}
		}
		return nil
	}
}

// ReplaceVerified renames tmp, a complete file in path's directory whose
// content hashes to hash (hex SHA-256), over path with its sidecar, as
// WriteVerified does for data in memory (a writer that streams a big
// copy to disk hashes it as it writes).
func ReplaceVerified(tmp, path, hash string) error { return replaceVerified(tmp, path, hash) }
