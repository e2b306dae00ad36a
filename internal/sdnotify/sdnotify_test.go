package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen makes the socket systemd would, and returns what arrives on it.
func listen(t *testing.T, name string) (*net.UnixConn, func() string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(buf[:n])
	}
}

func TestSendPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	_, recv := listen(t, path)
	n := New(path)
	if !n.Enabled() {
		t.Fatal("not enabled")
	}
	if err := n.Send(Ready, Status("serving 3 rules")); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "READY=1\nSTATUS=serving 3 rules\n" {
		t.Fatalf("got %q", got)
	}
	if err := n.Send(Watchdog); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "WATCHDOG=1\n" {
		t.Fatalf("got %q", got)
	}
}

func TestSendAbstract(t *testing.T) {
	name := "sinkhole-sdnotify-test-" + strconv.Itoa(os.Getpid())
	_, recv := listen(t, "\x00"+name)
	if err := New("@" + name).Send(Stopping); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "STOPPING=1\n" {
		t.Fatalf("got %q", got)
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := FromEnv()
	if n.Enabled() || n.Send(Ready) != nil {
		t.Fatal("a notifier without a socket must do nothing")
	}
	// A socket that is gone is an error, not a hang.
	if err := New(filepath.Join(t.TempDir(), "missing")).Send(Ready); err == nil {
		t.Fatal("send to a missing socket succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 30 * time.Second},
		{"30000000", strconv.Itoa(os.Getpid()), 30 * time.Second},
		{"30000000", "1", 0}, // meant for another process
		{"junk", "", 0},
		{"-5", "", 0},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if got := WatchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}
