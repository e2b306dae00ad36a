package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is a server process the bench started (sinkhole serve, named),
// its output in a log file of the work directory.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startDaemon starts argv with its standard output and error in
// dir/name.log.
func startDaemon(dir, name string, argv []string) (*daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, cmd: exec.Command(argv[0], argv[1:]...), log: logPath, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = f, f
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := d.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	running.Lock()
	running.m[d] = true
	running.Unlock()
	go func() {
		d.cmd.Wait()
		f.Close()
		running.Lock()
		delete(running.m, d)
		running.Unlock()
		close(d.done)
	}()
	return d, nil
}

// running are the daemons started and not yet ended, stopped by
// stopAll when the bench is interrupted.
var running = struct {
	sync.Mutex
	m map[*daemon]bool
}{m: map[*daemon]bool{}}

// stopAll stops every running daemon.
func stopAll() {
	running.Lock()
	var ds []*daemon
	for d := range running.m {
		ds = append(ds, d)
	}
	running.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() { defer wg.Done(); d.stop() }()
	}
	wg.Wait()
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited reports whether the process ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (d *daemon) stop() {
	if d == nil || d.exited() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// tail is the end of the process's log, for error messages.
func (d *daemon) tail() string {
	data, _ := os.ReadFile(d.log)
	if len(data) > 600 {
		data = data[len(data)-600:]
	}
	return strings.TrimSpace(string(data))
}

// procMB reads a VmXXX line (VmHWM, VmRSS) of /proc/PID/status in MB.
func procMB(pid int, key string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		if rest, ok := bytes.CutPrefix(line, []byte(key+":")); ok {
			if f := bytes.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseFloat(string(f[0]), 64)
				return kb / 1000
			}
		}
	}
	return 0
}

// procCPUMS is the process's user + system CPU time in milliseconds, from
// /proc/PID/stat (clock ticks of 10 ms, Linux's USER_HZ).
func procCPUMS(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(string(f[11]), 64) // field 14
	st, _ := strconv.ParseFloat(string(f[12]), 64) // field 15
	return (ut + st) * 10
}

// resetPeakOf resets the process's VmHWM to its current RSS.
func resetPeakOf(pid int) { _ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) }

// memAvailableMB is MemAvailable of /proc/meminfo in MB.
func memAvailableMB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1000
			}
		}
	}
	return 0
}

// freeAddr returns a loopback address whose port is free for UDP and TCP.
func freeAddr() (string, error) {
	addrs, err := freeAddrs(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// freeAddrs returns n distinct loopback addresses whose TCP and UDP ports
// were free. Each is held until all are found: a port closed and asked
// for again can be handed out twice, and two sinkhole servers given the
// same address would share it without an error (their UDP sockets use
// SO_REUSEPORT), one of them never seeing the NOTIFYs and queries sent to
// the other.
func freeAddrs(n int) ([]string, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 20*n {
			return nil, errors.New("no free loopback port")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		u, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil {
			continue
		}
		held = append(held, u)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// uptime is the load line of uptime(1), to print with each figure.
func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "load average " + loadAvg()
	}
	return strings.TrimSpace(string(out))
}
