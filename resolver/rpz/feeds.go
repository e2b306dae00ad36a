package rpz

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Feeds runs a set of secondaries and routes NOTIFY messages to them.
type Feeds struct {
	list   []*Secondary
	byZone map[string]*Secondary // by apex FQDN
	log    *slog.Logger
	wg     sync.WaitGroup
}

// NewFeeds builds a secondary for each config. Zones must be distinct.
func NewFeeds(cfgs []FeedConfig, log *slog.Logger) (*Feeds, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &Feeds{byZone: map[string]*Secondary{}, log: log}
	for _, c := range cfgs {
		if c.Logger == nil {
			c.Logger = log
		}
		s, err := NewSecondary(c)
		if err != nil {
			return nil, err
		}
		if prev := f.byZone[s.apex]; prev != nil {
			return nil, fmt.Errorf("feeds %s and %s both carry zone %s", prev.cfg.Name, c.Name, s.apex)
		}
		f.byZone[s.apex] = s
		f.list = append(f.list, s)
	}
	return f, nil
}

// Start runs every secondary until ctx ends; Wait waits for them.
func (f *Feeds) Start(ctx context.Context) {
	for _, s := range f.list {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			s.Run(ctx)
		}()
	}
}

// Wait returns once every secondary has stopped.
func (f *Feeds) Wait() { f.wg.Wait() }

// Status returns every feed's state, in configuration order.
func (f *Feeds) Status() []FeedStatus {
	out := make([]FeedStatus, 0, len(f.list))
	for _, s := range f.list {
		out = append(out, s.Status())
	}
	return out
}

// Notify answers a NOTIFY (RFC 1996) for a feed's zone and starts an SOA
// check. It is accepted from the feed's primary address, or from anywhere
// when signed with the feed's TSIG key; others are REFUSED. It is a
// resolver.NotifyHandler.
func (f *Feeds) Notify(pkt []byte, m *dns.Msg, from netip.AddrPort) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(m)
	r.Authoritative = true
	if len(m.Question) != 1 || m.Question[0].Qtype != dns.TypeSOA {
		r.Rcode = dns.RcodeFormatError
		return r
	}
	zone := strings.ToLower(m.Question[0].Name)
	s := f.byZone[zone]
	if s == nil {
		f.log.Warn("rpz notify for a zone no feed carries; refused", "zone", zone, "from", from.String())
		r.Rcode = dns.RcodeNotAuth
		return r
	}
	fromPrimary := from.Addr().Unmap() == s.cfg.Primary.Addr().Unmap()
	signed := s.cfg.Key.verify(pkt, m)
	if !fromPrimary && !signed {
		f.log.Warn("rpz notify refused: not from the feed's primary and not signed with its key", "feed", s.cfg.Name, "from", from.String())
		r.Rcode = dns.RcodeRefused
		return r
	}
	f.log.Debug("rpz notify accepted", "feed", s.cfg.Name, "from", from.String(), "tsig", signed)
	s.Notified()
	if m.IsTsig() != nil && signed {
		return s.cfg.Key.signReply(r, m)
	}
	return r
}
