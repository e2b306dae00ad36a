package blocklist

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultMaxShrink is the largest share of a file's rules one reload may
// drop before the new version is held (Options.MaxShrink).
const DefaultMaxShrink = 0.5

// States of a version that is on disk but not in service (Withheld.State).
const (
	// StateHeld: the shrink guard held it (the file would lose all its
	// rules, or more than Options.MaxShrink of them, or was deleted). The
	// last good version serves until a reload with Accept applies it.
	StateHeld = "held"
	// StateSettling: it is being written (open for writing, changed within
	// Options.Settle, or changed while being read). It is read again when
	// it settles.
	StateSettling = "settling"
)

// Withheld describes the version of a file on disk that a reload did not
// put in service, and why. The file's last good version (if any) serves
// meanwhile. (A version refused by the Verifier or a Check is reported as
// Refused, with the file's errors.)
type Withheld struct {
	State string `json:"state"` // StateHeld or StateSettling
	// Reason says why, for logs and status ("would drop 1950 of 2001
	// rules (97%), over the 50% --max-shrink").
	Reason string `json:"reason"`
	// SHA256 and Rules describe the withheld version (Rules -1 when it was
	// not parsed; 0 for a deleted file).
	SHA256 string `json:"sha256,omitempty"`
	Rules  int    `json:"rules"`
	// Deleted is set when the file is gone from its directory.
	Deleted bool      `json:"deleted,omitempty"`
	Since   time.Time `json:"since"`
}

// Version is a new version of a list file, read whole and found stable,
// as a Check sees it before it is parsed.
type Version struct {
	Name   string // the file's name in reports
	Path   string // its path on disk
	Dir    string // the directory it was found in (one of Options.Dirs)
	SHA256 string // of the bytes read
	Size   int64
	// Content reads the bytes that were hashed (from the open file); the
	// store checks after parsing that the bytes parsed are the bytes hashed.
	Content io.ReaderAt
}

// A Check inspects a new version before it is parsed. An error refuses
// the version: it is reported like a signature the Verifier refused
// (FileStatus.Refused, with the file's errors), and the file's last good
// version keeps serving; it cannot be accepted. Return a *RefusedError to
// name the kind of check.
type Check func(v *Version) error

// RefusedError is a Check's refusal.
type RefusedError struct {
	Check string // what refused it: "checksum", ...
	Msg   string
}

func (e *RefusedError) Error() string { return e.Check + ": " + e.Msg }

// refusalOf is the Refusal of a Check's error.
func refusalOf(err error) *Refusal {
	var re *RefusedError
	if errors.As(err, &re) {
		return &Refusal{Reason: re.Check, Error: re.Msg}
	}
	return &Refusal{Reason: "refused", Error: err.Error()}
}

// shrinkGuard decides whether a new version with rules rules may replace
// one with prev rules. It returns the reason when it may not.
func shrinkGuard(maxShrink float64, prev, rules int) (string, bool) {
	if prev <= 0 || rules >= prev || maxShrink >= 1 {
		return "", false
	}
	if rules == 0 {
		return fmt.Sprintf("the new version has no rules (the version in service has %d)", prev), true
	}
	drop := float64(prev-rules) / float64(prev)
	if drop > maxShrink {
		return fmt.Sprintf("the new version would drop %d of %d rules (%.0f%%), more than --max-shrink %.0f%%",
			prev-rules, prev, drop*100, maxShrink*100), true
	}
	return "", false
}
