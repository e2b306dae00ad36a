package blocklist

import (
	"errors"
	"fmt"
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
	b := newBuilder(0, 0)
	errs := parse(name, data, b)
	if b.sectErr {
		errs = append(errs, &LineError{File: name, Msg: "too many sections"})
	}
	return errs
}

// InstallFile puts data in place as dir/name when it loads without errors,
// atomically: a hidden temporary file in dir (which the store skips) is
// written, synced and renamed over the old version. When data does not
// load, nothing changes and its problems are returned; err reports a
// failure to write.
func InstallFile(dir, name string, data []byte) (problems []*LineError, err error) {
	if problems := CheckData(name, data); len(problems) > 0 {
		return problems, nil
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return nil, nil
}
