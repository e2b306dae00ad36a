package rpz

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NOTIFY retries (RFC 1996 section 3.6): a target that does not answer is
// tried again with a doubling timeout, then left to its SOA refresh.
const (
	notifyTries          = 5
	notifyInitialTimeout = 250 * time.Millisecond
)

// notifier sends NOTIFY for the latest serial to every target, one
// goroutine per target; a newer serial replaces one still being retried.
type notifier struct {
	zone    string
	targets []*notifyTarget
	log     *slog.Logger
}

type notifyTarget struct {
	addr   string
	mu     sync.Mutex
	serial uint32
	cancel context.CancelFunc // of the NOTIFY in flight, if any
	wake   chan struct{}
}

func newNotifier(zone string, addrs []string, log *slog.Logger) *notifier {
	n := &notifier{zone: zone, log: log}
	for _, a := range addrs {
		n.targets = append(n.targets, &notifyTarget{addr: a, wake: make(chan struct{}, 1)})
	}
	return n
}

func (n *notifier) start(ctx context.Context) {
	for _, t := range n.targets {
		go n.run(ctx, t)
	}
}

// kick asks every target to learn about serial.
func (n *notifier) kick(serial uint32) {
	for _, t := range n.targets {
		t.mu.Lock()
		t.serial = serial
		if t.cancel != nil {
			t.cancel() // stop retrying the older serial
		}
		t.mu.Unlock()
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

func (n *notifier) run(ctx context.Context, t *notifyTarget) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		}
		sctx, cancel := context.WithCancel(ctx)
		t.mu.Lock()
		serial := t.serial
		t.cancel = cancel
		t.mu.Unlock()
		n.send(sctx, t, serial)
		t.mu.Lock()
		t.cancel = nil
		t.mu.Unlock()
		cancel()
	}
}

// send notifies one target, retrying until it acknowledges, a newer serial
// is waiting, or the tries run out.
func (n *notifier) send(ctx context.Context, t *notifyTarget, serial uint32) {
	m := new(dns.Msg)
	m.SetNotify(n.zone)
	m.Answer = []dns.RR{&dns.SOA{
		Hdr: dns.RR_Header{Name: n.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET}, Ns: exportMName, Mbox: exportRName, Serial: serial,
	}}
	var err error
	timeout := notifyInitialTimeout
	for try := 0; try < notifyTries; try, timeout = try+1, 2*timeout {
		c := &dns.Client{Net: "udp", Timeout: timeout}
		if ctx.Err() != nil {
			return // shutting down, or a newer serial replaces this one
		}
		var r *dns.Msg
		r, _, err = c.ExchangeContext(ctx, m, t.addr)
		if ctx.Err() != nil {
			return
		}
		if err == nil && r.Rcode == dns.RcodeSuccess {
			n.log.Debug("rpz notify acknowledged", "zone", n.zone, "serial", serial, "target", t.addr)
			return
		}
		if err == nil {
			n.log.Warn("rpz notify rejected", "zone", n.zone, "serial", serial, "target", t.addr, "rcode", dns.RcodeToString[r.Rcode])
			return
		}
	}
	n.log.Warn("rpz notify unanswered; the secondary will see the change at its SOA refresh", "zone", n.zone, "serial", serial, "target", t.addr, "err", err)
}
