// Package history keeps what list reloads changed: for each reload, per
// changed file, the rules added and removed (the first MaxListed of each
// and the counts), and a bounded record of the last list versions (time,
// file, SHA-256, rule counts, what triggered the reload and who). The
// admin API serves it as /v1/history and the reload answer, the CLI as
// "sinkhole status --history" and "sinkhole reload".
package history

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// DefaultSize is how many list versions a History keeps.
const DefaultSize = 100

// MaxListed caps the rules listed (logged, answered) per file and
// direction; the counts are always complete.
const MaxListed = 20

// Version is one list file version a reload put into service (or refused,
// held or removed), newest first in History.Versions.
type Version struct {
	Time       time.Time `json:"time"`
	Generation uint64    `json:"generation"`
	File       string    `json:"file"`
	// Change is what the reload did with the file: added, updated,
	// removed, failed (the last good version kept serving: broken, or its
	// signature refused) or held (the shrink guard holds the new version
	// until a reload accepts it).
	Change string `json:"change"`
	// Accepted is set when the version went into service only because the
	// reload accepted what the shrink guard would have held.
	Accepted bool `json:"accepted,omitempty"`
	// SHA256 is of the version in service after the reload, or, for a
	// held one, of the version withheld (empty once removed or when
	// never loaded).
	SHA256 string `json:"sha256,omitempty"`
	// Note says why a version was withheld.
	Note          string `json:"note,omitempty"`
	Rules         int    `json:"rules"`
	PreviousRules int    `json:"previous_rules"`
	Added         int    `json:"added"`
	Removed       int    `json:"removed"`
	// Trigger is the kind of cause: start, api, signal, fsnotify, rpz-feed,
	// list-url, ...; Who says who: the API client's address, the signal,
	// the feed's name.
	Trigger string `json:"trigger"`
	Who     string `json:"who,omitempty"`
}

// Diff is what one reload changed in one file.
type Diff struct {
	File         string   `json:"file"`
	AddedCount   int      `json:"added_count"`
	RemovedCount int      `json:"removed_count"`
	Added        []string `json:"added,omitempty"`   // at most MaxListed, in file order
	Removed      []string `json:"removed,omitempty"` // at most MaxListed
}

// History records reloads. Register Observe with blocklist.Store.OnReload.
type History struct {
	log  *slog.Logger
	size int

	mu       sync.Mutex
	versions []Version // ring, oldest at start
	start    int
	last     []Diff // the last reload's diffs
	lastGen  uint64
	// latest is each file's last recorded version, so that a version
	// reported again (held or broken at every reload) is recorded once.
	latest map[string]Version
}

// New returns a History of the last size versions (DefaultSize if <= 0).
func New(size int, log *slog.Logger) *History {
	if size <= 0 {
		size = DefaultSize
	}
	if log == nil {
		log = slog.Default()
	}
	return &History{size: size, log: log, latest: map[string]Version{}}
}

// SplitTrigger turns a store trigger ("api 192.0.2.1:40000", "SIGHUP",
// "rpz-feed regulator") into the kind of cause and who.
func SplitTrigger(trigger string) (kind, who string) {
	if trigger == "SIGHUP" {
		return "signal", "SIGHUP"
	}
	kind, who, _ = strings.Cut(trigger, " ")
	return kind, who
}

// Observe records one reload (blocklist.Store.OnReload): it logs the rules
// each changed file gained and lost, keeps them for Last, and adds a
// Version per file that changed.
func (h *History) Observe(snap *blocklist.Snapshot, rep *blocklist.ReloadReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kind, who := SplitTrigger(rep.Trigger)
	diffs := diffsOf(rep)
	for _, d := range diffs {
		h.log.Info("list file rules changed", "file", d.File, "added", d.AddedCount, "removed", d.RemovedCount,
			"added_rules", d.Added, "removed_rules", d.Removed, "generation", rep.Generation)
	}
	h.last, h.lastGen = diffs, rep.Generation
	now := time.Now().UTC()
	for _, f := range rep.Files {
		if f.Change == blocklist.ChangeUnchanged || f.Change == blocklist.ChangeSettling {
			continue // settling: the version is read again once it is whole
		}
		v := Version{Time: now, Generation: rep.Generation, File: f.Name, Change: f.Change, Accepted: f.Accepted,
			Rules: f.Rules, PreviousRules: f.PreviousRules, Trigger: kind, Who: who}
		if fs := snap.File(f.Name); fs != nil && f.Change != blocklist.ChangeRemoved {
			v.SHA256 = fs.SHA256
		}
		if w := f.Withheld; w != nil {
			v.SHA256, v.Note = w.SHA256, w.Reason
		}
		if l, ok := h.latest[f.Name]; ok && l.Change == v.Change && l.SHA256 == v.SHA256 && l.Rules == v.Rules &&
			(v.Change == blocklist.ChangeFailed || v.Change == blocklist.ChangeHeld) {
			continue // the same withheld or broken version as at the last reload
		}
		h.latest[f.Name] = v
		for _, d := range diffs {
			if d.File == f.Name {
				v.Added, v.Removed = d.AddedCount, d.RemovedCount
			}
		}
		h.add(v)
	}
}

func (h *History) add(v Version) {
	if len(h.versions) < h.size {
		h.versions = append(h.versions, v)
		return
	}
	h.versions[h.start] = v
	h.start = (h.start + 1) % h.size
}

// Versions returns the versions kept, newest first.
func (h *History) Versions() []Version {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Version, 0, len(h.versions))
	for i := len(h.versions) - 1; i >= 0; i-- {
		out = append(out, h.versions[(h.start+i)%len(h.versions)])
	}
	return out
}

// Last returns the diffs of the last reload and its generation.
func (h *History) Last() ([]Diff, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.lastGen
}
