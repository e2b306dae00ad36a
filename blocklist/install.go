package blocklist

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// CheckData parses data as the list file name (whose extension picks the
// format) would be parsed, and returns its problems.
func CheckData(name string, data []byte) []*LineError {
	parse, ok := formats[strings.ToLower(filepath.Ext(name))]
	if !ok {
		return []*LineError{{File: name, Msg: "not a list file name (want *.txt, *.list, *.rpz or *.zone)"}}
	}
	if msg := sniffEncoding(data[:min(len(data), sniffLen)]); msg != "" {
		return []*LineError{{File: name, Msg: msg}}
	}
	b := newBuilder(0, 0)
	errs := parse(name, skipBOM(bytes.NewReader(data)), b)
	if b.sectErr {
		errs = append(errs, &LineError{File: name, Msg: "too many sections"})
	}
	return errs
}

// InstallFile puts data in place as dir/name when it loads without errors:
// a hidden temporary file in dir (which the store skips) is written and
// renamed over the old version, so the store sees the old file or the new
// one, never a mix, and its SHA-256 is recorded beside it (see
// ChecksumVerifier). When data does not load, nothing changes and its
// problems are returned; err reports a failure to write.
//
// The new version is not yet synced to disk, so that a caller can reload
// at once: call sync afterwards (it flushes the file and the directory).
// Until then a crash may lose the new version; the rename-over pattern
// keeps the old one on journaling file systems.
func InstallFile(dir, name string, data []byte) (problems []*LineError, sync func() error, err error) {
	if problems := CheckData(name, data); len(problems) > 0 {
		return problems, nil, nil
	}
	path := filepath.Join(dir, name)
	if err := WriteVerified(path, data); err != nil {
		return nil, nil, err
	}
	return nil, func() error { return syncPaths(path, ChecksumPath(path), dir) }, nil
}

// syncPaths flushes files and directories to disk.
func syncPaths(paths ...string) error {
	var errs []error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, f.Sync(), f.Close())
	}
	return errors.Join(errs...)
}
