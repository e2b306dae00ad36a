// Package sdnotify tells systemd how a service is doing: the sd_notify(3)
// protocol, a datagram of "KEY=value" lines sent to the unix socket named
// by $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). It is
// what Type=notify units wait for (READY=1) and what WatchdogSec= expects
// (WATCHDOG=1 at least once per $WATCHDOG_USEC). Outside systemd, with no
// NOTIFY_SOCKET, every call does nothing.
package sdnotify

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The states a service reports (sd_notify(3)).
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends notifications to one socket.
type Notifier struct {
	addr *net.UnixAddr // nil: not under systemd
}

// FromEnv returns a notifier for $NOTIFY_SOCKET (one that does nothing when
// it is unset).
func FromEnv() *Notifier {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New returns a notifier for the socket at path ("" for none; a leading
// "@" names an abstract socket).
func New(path string) *Notifier {
	if path == "" {
		return &Notifier{}
	}
	name := path
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}
}

// Enabled reports whether there is a socket to notify.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the state lines in one datagram. Without a socket it does
// nothing and returns nil.
func (n *Notifier) Send(lines ...string) error {
	if !n.Enabled() {
		return nil
	}
	if len(lines) == 0 {
		return errors.New("sdnotify: nothing to send")
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(strings.Join(lines, "\n") + "\n"))
	return err
}

// Status is a STATUS= line: free text systemctl status shows.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}

// WatchdogInterval returns the watchdog timeout systemd set for this
// process ($WATCHDOG_USEC, for $WATCHDOG_PID when that is set), or 0 when
// there is none. Keep-alives should be sent at half of it.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}
