package main

import (
	"strings"
	"testing"
	"time"
)

// The DoH client's statistics read back as dnsperf's.
func TestDoHClientOutputParses(t *testing.T) {
	rs := []dohResult{
		{name: "a.test", qtype: "A", rcode: "NOERROR", latency: 2 * time.Millisecond},
		{name: "b.test", qtype: "A", rcode: "NXDOMAIN", latency: 4 * time.Millisecond},
		{name: "c.test", qtype: "A", lost: true},
	}
	var b strings.Builder
	printPerf(&b, rs, 3, 2*time.Second, true)
	r, err := ParsePerf(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if r.Sent != 3 || r.Completed != 2 || r.Lost != 1 || r.QPS != 1 || r.Rcodes["NXDOMAIN"] != 1 || r.Rcodes["NOERROR"] != 1 ||
		len(r.Latencies) != 2 || r.MeanLatency != 3*time.Millisecond || r.RunTime != 2*time.Second {
		t.Errorf("parsed %+v from\n%s", r, b.String())
	}
}
