package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Field 2 holds spaces and a parenthesis; utime 250 + stime 50 ticks.
	line := "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Fatalf("cpu %s, want 3s", got)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 50 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseHWM(t *testing.T) {
	got, err := parseHWM([]byte("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n"))
	if err != nil || got != 1234*1024 {
		t.Fatalf("hwm %d, %v", got, err)
	}
	for _, bad := range []string{"", "VmHWM:\t12 MB\n", "VmHWM:\tlots kB\n"} {
		if _, err := parseHWM([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss, err := PeakRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("rss %d, %v", rss, err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("port %d, %v", p, err)
	}
}

func TestParseMachineCPU(t *testing.T) {
	// user 100, nice 10, system 50, idle 9000, iowait 5, irq 1, softirq 2, steal 3 ticks.
	got, err := parseMachineCPU([]byte("cpu  100 10 50 9000 5 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil || got != 1630*time.Millisecond {
		t.Fatalf("busy %s, %v; want 1.63s", got, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseMachineCPU([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := MachineCPU(); err != nil {
		t.Fatal(err)
	}
}
