package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PerfResult is what one dnsperf run reported.
type PerfResult struct {
	Sent, Completed, Lost int64
	QPS                   float64
	RunTime               time.Duration
	MeanLatency           time.Duration
	Rcodes                map[string]int64 // e.g. NOERROR, NXDOMAIN
	// Latencies of every completed query, sorted; only with -v.
	Latencies []time.Duration
}

// Percentile returns the p-th percentile (0 < p <= 100, nearest rank) of
// the per-query latencies, or 0 when there are none.
func (r *PerfResult) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(n))) - 1
	return r.Latencies[min(max(k, 0), n-1)]
}

// ParsePerf reads dnsperf's output: the statistics block always, and the
// per-query lines of -v ("> NOERROR name A 0.000123") when present.
func ParsePerf(rd io.Reader) (*PerfResult, error) {
	r := &PerfResult{Rcodes: map[string]int64{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "> ") {
			f := strings.Fields(line[2:])
			// Timed-out ("T") and interrupted ("I") queries carry no
			// latency; they are counted as lost in the statistics.
			if len(f) < 4 || f[0] == "T" || f[0] == "I" {
				continue
			}
			s, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return nil, fmt.Errorf("dnsperf: bad latency in %q", line)
			}
			r.Latencies = append(r.Latencies, time.Duration(s*float64(time.Second)))
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Queries sent":
			r.Sent, err = firstInt(val)
		case "Queries completed":
			r.Completed, err = firstInt(val)
		case "Queries lost":
			r.Lost, err = firstInt(val)
		case "Queries per second":
			r.QPS, err = strconv.ParseFloat(val, 64)
		case "Run time (s)":
			r.RunTime, err = seconds(val)
		case "Average Latency (s)":
			r.MeanLatency, err = seconds(strings.Fields(val)[0])
		case "Response codes":
			err = parseRcodes(val, r.Rcodes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dnsperf: %s: %w", key, err)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"Queries sent", "Queries completed", "Queries lost", "Queries per second"} {
		if !seen[k] {
			return nil, fmt.Errorf("dnsperf: no %q in its output", k)
		}
	}
	slices.Sort(r.Latencies)
	return r, nil
}

// ParsePerfFile parses a file of dnsperf output.
func ParsePerfFile(path string) (*PerfResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ParsePerf(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func firstInt(s string) (int64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty value")
	}
	return strconv.ParseInt(f[0], 10, 64)
}

func seconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(v * float64(time.Second)), nil
}

// parseRcodes reads "NOERROR 4 (80.00%), NXDOMAIN 1 (20.00%)".
func parseRcodes(s string, into map[string]int64) error {
	for part := range strings.SplitSeq(s, ",") {
		f := strings.Fields(part)
		if len(f) < 2 {
			return fmt.Errorf("bad response codes %q", s)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("bad response codes %q", s)
		}
		into[f[0]] += n
	}
	return nil
}
