package main

import (
	"strings"
	"testing"
	"time"
)

const perfOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15300 -d q.txt -n 2 -v
[Status] Sending queries (to 127.0.0.1:15300)
> NOERROR foo.example A 0.000300
> NXDOMAIN bar.example A 0.000100
> T baz.example A
> NOERROR foo.example A 0.000200
> NOERROR bar.example A 0.000400
[Status] Testing complete (end of file)

Statistics:

  Queries sent:         5
  Queries completed:    4 (80.00%)
  Queries lost:         1 (20.00%)

  Response codes:       NOERROR 3 (75.00%), NXDOMAIN 1 (25.00%)
  Average packet size:  request 29, response 56
  Run time (s):         0.001810
  Queries per second:   2209.944751

  Average Latency (s):  0.000250 (min 0.000100, max 0.000400)
  Latency StdDev (s):   0.000082
`

func TestParsePerf(t *testing.T) {
	r, err := ParsePerf(strings.NewReader(perfOutput))
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 5 || r.Completed != 4 || r.Lost != 1 {
		t.Fatalf("sent/completed/lost %d/%d/%d", r.Sent, r.Completed, r.Lost)
	}
	if r.QPS < 2209.9 || r.QPS > 2210 || r.RunTime != 1810*time.Microsecond || r.MeanLatency != 250*time.Microsecond {
		t.Fatalf("qps %f, run time %s, mean %s", r.QPS, r.RunTime, r.MeanLatency)
	}
	if r.Rcodes["NOERROR"] != 3 || r.Rcodes["NXDOMAIN"] != 1 || len(r.Rcodes) != 2 {
		t.Fatalf("rcodes %v", r.Rcodes)
	}
	if len(r.Latencies) != 4 {
		t.Fatalf("%d latencies, want 4 (the timeout has none)", len(r.Latencies))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{1, 100 * time.Microsecond}, {50, 200 * time.Microsecond}, {75, 300 * time.Microsecond}, {99, 400 * time.Microsecond}, {100, 400 * time.Microsecond}} {
		if got := r.Percentile(tc.p); got != tc.want {
			t.Errorf("p%v = %s, want %s", tc.p, got, tc.want)
		}
	}
}

func TestParsePerfErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":        "",
		"no stats":     "> NOERROR a.example A 0.1\n",
		"bad latency":  "> NOERROR a.example A fast\n" + perfOutput,
		"bad count":    strings.Replace(perfOutput, "Queries sent:         5", "Queries sent:         five", 1),
		"bad rcodes":   strings.Replace(perfOutput, "NOERROR 3 (75.00%)", "NOERROR", 1),
		"missing lost": strings.Replace(perfOutput, "Queries lost:", "Queries gone:", 1),
	} {
		if _, err := ParsePerf(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestPercentileEmpty(t *testing.T) {
	if got := (&PerfResult{}).Percentile(99); got != 0 {
		t.Fatalf("p99 of nothing = %s", got)
	}
}
