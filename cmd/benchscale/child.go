package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// result is what one child measurement reports (as JSON on stdout).
type result struct {
	Rules    int     `json:"rules"`
	WallMS   float64 `json:"wall_ms"`
	CPUMS    float64 `json:"cpu_ms"`
	PeakMB   float64 `json:"peak_mb"`   // VmHWM over the measured step
	SteadyMB float64 `json:"steady_mb"` // VmRSS after the step, collected and settled
	FirstMB  float64 `json:"first_mb,omitempty"`
	Reloads  int     `json:"reloads,omitempty"`
	Delta    bool    `json:"delta,omitempty"` // the last reload was applied as a delta
	// MergePeakMB is VmHWM once the background merge of the delta ran.
	MergePeakMB float64 `json:"merge_peak_mb,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// procStatusMB reads a VmXXX line of /proc/self/status in MB.
func procStatusMB(key string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		if rest, ok := bytes.CutPrefix(line, []byte(key+":")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(string(f[0]), 64)
				return kb / 1000
			}
		}
	}
	return 0
}

// resetPeak resets VmHWM to the current RSS (Linux 4.0+: clear_refs 5).
func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func cpuMS() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// settledMB is the resident set after the garbage collector ran and the
// runtime had a moment to return freed pages, as a long-running server
// would show it.
func settledMB() float64 {
	runtime.GC()
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	return procStatusMB("VmRSS")
}

// runChild runs one measurement in this process: mode is load, change or
// reloads; dir holds the one generated list file.
func runChild(mode, dir, format string, reloads int) result {
	gogc := os.Getenv("GOGC") == ""
	if gogc {
		debug.SetGCPercent(firstLoadGCPercent)
	}
	// serving is where sinkhole serve lowers the collector's target: after
	// the first load, before the changes and reloads measured.
	serving := func() {
		if gogc {
			debug.SetGCPercent(servingGCPercent)
		}
	}
	var r result
	// The file cap is raised above blocklist.DefaultMaxFileSize (which
	// sinkhole serve applies): a 10M-name RPZ zone is about 750 MB, and
	// the bench measures what loading it costs.
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, MaxFileSize: benchMaxFileSize,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	path := filepath.Join(dir, listFileName(format))
	step := func(f func() error) error {
		c0, t0 := cpuMS(), time.Now()
		err := f()
		r.WallMS = float64(time.Since(t0).Microseconds()) / 1000
		r.CPUMS = cpuMS() - c0
		return err
	}
	reload := func() error {
		rep, err := st.Reload(context.Background(), "bench")
		if err != nil {
			return err
		}
		if rep.Failed() {
			return fmt.Errorf("reload failed: %v", rep.Errors())
		}
		r.Delta = rep.Delta
		return nil
	}
	fail := func(err error) result { r.Error = err.Error(); return r }
	switch mode {
	case "load":
		resetPeak()
		if err := step(reload); err != nil {
			return fail(err)
		}
		r.PeakMB = procStatusMB("VmHWM")
		r.SteadyMB = settledMB()
	case "change":
		if err := reload(); err != nil {
			return fail(err)
		}
		serving()
		r.FirstMB = settledMB()
		name, err := appendName(path, format, 1)
		if err != nil {
			return fail(err)
		}
		resetPeak()
		if err := step(reload); err != nil {
			return fail(err)
		}
		r.PeakMB = procStatusMB("VmHWM")
		if !st.Current().MatchName(name).Blocked() {
			return fail(fmt.Errorf("%s not blocked after the change", name))
		}
		st.WaitCompacted()
		r.MergePeakMB = procStatusMB("VmHWM")
		r.SteadyMB = settledMB()
	case "reloads":
		if err := reload(); err != nil {
			return fail(err)
		}
		serving()
		r.FirstMB = settledMB()
		resetPeak()
		err := step(func() error {
			for i := range reloads {
				if _, err := appendName(path, format, i); err != nil {
					return err
				}
				if err := reload(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		r.Reloads = reloads
		st.WaitCompacted()
		r.PeakMB = procStatusMB("VmHWM")
		r.SteadyMB = settledMB()
	default:
		return fail(fmt.Errorf("unknown mode %q", mode))
	}
	r.Rules = st.Current().RuleCount()
	return r
}

// The garbage collector's targets of sinkhole serve when GOGC is not set
// (cmd/sinkhole: defaultGCPercent for the first list load,
// servingGCPercent once it serves, which is when reloads happen).
const (
	firstLoadGCPercent = 25
	servingGCPercent   = 10
)

// benchMaxFileSize is the list file cap of the bench's stores.
const benchMaxFileSize = 4 << 30

func listFileName(format string) string {
	if format == "rpz" {
		return "bench.rpz"
	}
	return "bench.txt"
}

func writeResult(r result) {
	json.NewEncoder(os.Stdout).Encode(r)
}
