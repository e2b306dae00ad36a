package main

// benchrun doh-client: a DNS over HTTPS load generator that takes
// dnsperf's options and prints dnsperf's statistics, for the cached-doh
// workload. dnsperf 2.10's DoH client reassembles one HTTP/2 response per
// TLS read, so it loses answers a server sends together in one TLS record
// (as Go's HTTP/2 server does with concurrent streams; DNS-OARC/dnsperf
// issues 240 and 272): it cannot load a multiplexing server. This client
// keeps each of -c HTTP/2 connections open with -q queries in flight on it,
// as browsers and stub resolvers do.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// dohQueryTimeout is when a query counts as lost (dnsperf's -t default).
const dohQueryTimeout = 5 * time.Second

type dohResult struct {
	name, qtype, rcode string
	latency            time.Duration
	lost               bool
}

// dohClient is "benchrun doh-client -s IP -p PORT -d FILE [-l SECS | -n
// PASSES] [-c CLIENTS] [-q OUTSTANDING] [-Q QPS] [-v]".
func dohClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchrun doh-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("s", "127.0.0.1", "server address")
	port := fs.Int("p", 443, "server port")
	file := fs.String("d", "", "query file (dnsperf format: name type)")
	limit := fs.Float64("l", 0, "run for this many seconds")
	passes := fs.Int("n", 0, "run through the file this many times")
	clients := fs.Int("c", 1, "HTTP/2 connections")
	outstanding := fs.Int("q", 100, "queries in flight on each connection")
	rate := fs.Int("Q", 0, "queries per second at most (0: flat out)")
	verbose := fs.Bool("v", false, "print a line per query")
	fs.String("m", "doh", "transport (doh only)")
	var opts []string
	fs.Func("O", "dnsperf-style option (ignored)", func(s string) error { opts = append(opts, s); return nil })
	if err := fs.Parse(args); err != nil {
		return 2
	}
	queries, err := readQueryFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "doh-client: %v\n", err)
		return 1
	}
	if *limit <= 0 && *passes <= 0 {
		*passes = 1
	}
	total := int64(-1)
	if *passes > 0 {
		total = int64(*passes * len(queries))
	}
	url := "https://" + *server + ":" + strconv.Itoa(*port) + "/dns-query"
	deadline := time.Time{}
	if *limit > 0 {
		deadline = time.Now().Add(time.Duration(*limit * float64(time.Second)))
	}
	var next, sent atomic.Int64
	results := make(chan dohResult, 4096)
	var collected []dohResult
	done := make(chan struct{})
	go func() {
		for r := range results {
			collected = append(collected, r)
		}
		close(done)
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
		cl := &http.Client{Transport: tr, Timeout: dohQueryTimeout}
		defer tr.CloseIdleConnections()
		for range *outstanding {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i := next.Add(1) - 1
					if total >= 0 && i >= total || !deadline.IsZero() && time.Now().After(deadline) {
						return
					}
					if *rate > 0 {
						if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
							time.Sleep(d)
						}
					}
					q := queries[i%int64(len(queries))]
					sent.Add(1)
					results <- askDoH(ctx, cl, url, q, uint16(i))
				}
			}()
		}
	}
	wg.Wait()
	runTime := time.Since(start)
	close(results)
	<-done
	printPerf(stdout, collected, sent.Load(), runTime, *verbose)
	return 0
}

type dohQuery struct {
	name, qtype string
	pkt         []byte
}

func readQueryFile(path string) ([]dohQuery, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []dohQuery
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 2 {
			continue
		}
		t, ok := dns.StringToType[strings.ToUpper(fl[1])]
		if !ok {
			return nil, fmt.Errorf("%s: unknown type %q", path, fl[1])
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fl[0]), t)
		m.Id = 0
		pkt, err := m.Pack()
		if err != nil {
			return nil, err
		}
		out = append(out, dohQuery{name: fl[0], qtype: fl[1], pkt: pkt})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, sc.Err()
}

// askDoH POSTs one query and times it.
func askDoH(ctx context.Context, cl *http.Client, url string, q dohQuery, _ uint16) dohResult {
	r := dohResult{name: q.name, qtype: q.qtype}
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(q.pkt))
	req.Header.Set("Content-Type", "application/dns-message")
	resp, err := cl.Do(req)
	if err != nil {
		r.lost = true
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := new(dns.Msg)
	if err != nil || resp.StatusCode != 200 || m.Unpack(body) != nil {
		r.lost = true
		return r
	}
	r.latency = time.Since(t0)
	r.rcode = dns.RcodeToString[m.Rcode]
	return r
}

// printPerf writes the statistics as dnsperf does (what ParsePerf reads).
func printPerf(w io.Writer, rs []dohResult, sent int64, runTime time.Duration, verbose bool) {
	var completed, lost int64
	var sum time.Duration
	rcodes := map[string]int64{}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for _, r := range rs {
		if r.lost {
			lost++
			if verbose {
				fmt.Fprintf(bw, "> T %s %s\n", r.name, r.qtype)
			}
			continue
		}
		completed++
		sum += r.latency
		rcodes[r.rcode]++
		if verbose {
			fmt.Fprintf(bw, "> %s %s %s %.6f\n", r.rcode, r.name, r.qtype, r.latency.Seconds())
		}
	}
	pct := func(n int64) float64 {
		if sent == 0 {
			return 0
		}
		return 100 * float64(n) / float64(sent)
	}
	fmt.Fprintf(bw, "Statistics:\n\n  Queries sent:         %d\n  Queries completed:    %d (%.2f%%)\n  Queries lost:         %d (%.2f%%)\n\n",
		sent, completed, pct(completed), lost, pct(lost))
	var codes []string
	for c := range rcodes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s %d (%.2f%%)", c, rcodes[c], 100*float64(rcodes[c])/float64(max(completed, 1))))
	}
	if len(parts) > 0 {
		fmt.Fprintf(bw, "  Response codes:       %s\n", strings.Join(parts, ", "))
	}
	mean := time.Duration(0)
	if completed > 0 {
		mean = sum / time.Duration(completed)
	}
	fmt.Fprintf(bw, "  Run time (s):         %.6f\n  Queries per second:   %.6f\n\n  Average Latency (s):  %.6f\n",
		runTime.Seconds(), float64(completed)/runTime.Seconds(), mean.Seconds())
}
