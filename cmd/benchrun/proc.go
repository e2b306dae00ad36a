package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// stopTimeout bounds how long a stopped process may take to exit after
// SIGTERM before it is killed.
const stopTimeout = 10 * time.Second

// Proc is a started child process. Stop it when done; Procs stops every
// process it started on exit.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	Started time.Time
	Log     string // file holding its stdout and stderr
	done    chan struct{}
	err     error
}

// Procs tracks the processes a run started so that all of them are
// stopped however the run ends.
type Procs struct {
	list []*Proc
}

// Start starts argv pinned to cpu (with taskset), its output going to
// logPath.
func (ps *Procs) Start(name string, cpu int, logPath string, argv ...string) (*Proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: if this program dies without cleaning up, the kernel
	// still terminates the server (taskset execs it, keeping the setting).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.list = append(ps.list, p)
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id (taskset execs the command, so this is the
// server's own pid).
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to stopTimeout, then
// sends SIGKILL.
func (p *Proc) Stop() {
	if ok, _ := p.Exited(); ok {
		return
	}
	syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	syscall.Kill(-p.PID(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
	}
}

// StopAll stops every process started, newest first.
func (ps *Procs) StopAll() {
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].Stop()
	}
}

// Tail returns the last lines of the process's log, for error messages.
func (p *Proc) Tail() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// CPUTime is the user plus system CPU time the process (all its threads)
// has used so far.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may hold spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": field 3 (state) is f[0], so field k is f[k-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// PeakRSS is the process's peak resident set size (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseHWM(b)
}

func parseHWM(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: bad VmHWM line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("/proc status: no VmHWM")
}

// FreePort returns a loopback port free for both UDP and TCP at the time
// of the call.
func FreePort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port, nil
	}
	return 0, errors.New("no loopback port free for both UDP and TCP after 50 tries")
}

// RunBounded runs argv to completion with a deadline, its stdout going to
// stdoutPath, and returns the CPU time it used.
func RunBounded(ctx context.Context, timeout time.Duration, stdoutPath string, argv ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := os.Create(stdoutPath)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return 0, fmt.Errorf("%s: still running after %s", argv[0], timeout)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// MachineCPU is the CPU time processes on the whole machine have used so
// far (every CPU, from the first line of /proc/stat), plus steal.
func MachineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(b)
}

// parseMachineCPU sums user, nice, system and steal of the "cpu" line
// (guest time is already part of user). Interrupt time is left out: the
// benchmark's own loopback traffic is processed there, attributed to no
// process.
func parseMachineCPU(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}
