package main

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/dnstap"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

func dnstapFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dnstap", Usage: "send dnstap records (Frame Streams) to `TARGET`: unix:PATH, tcp:IP:PORT or file:PATH (default off)"},
		&cli.StringFlag{Name: "dnstap-identity", Value: hostname(), Usage: "dnstap identity of this server (\"\": not sent)"},
		&cli.BoolFlag{Name: "dnstap-upstream", Usage: "also send FORWARDER_QUERY and FORWARDER_RESPONSE records for the upstream exchanges"},
		&cli.IntFlag{Name: "dnstap-queue", Value: dnstap.DefaultQueue, Usage: "`N` dnstap records wait for the collector; past it records are dropped (and counted), never queries"},
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// dnstapConfig is the validated dnstap flags.
type dnstapConfig struct {
	target   string // "" when off
	identity string
	upstream bool
	queue    int
}

func dnstapConfigFrom(c *cli.Context, cfg *serveConfig) error {
	d := dnstapConfig{target: c.String("dnstap"), identity: c.String("dnstap-identity"),
		upstream: c.Bool("dnstap-upstream"), queue: c.Int("dnstap-queue")}
	if d.target != "" {
		if _, _, err := dnstap.ParseTarget(d.target); err != nil {
			return usagef("--dnstap: %v", err)
		}
	} else if d.upstream {
		return usagef("--dnstap-upstream needs --dnstap")
	}
	if d.queue < 1 || d.queue > 1<<22 {
		return usagef("--dnstap-queue %d: want between 1 and %d records", d.queue, 1<<22)
	}
	cfg.dnstap = d
	return nil
}

// tap turns the server's observations into dnstap records.
type tap struct {
	w       *dnstap.Writer
	scratch sync.Pool // *tapScratch
}

// tapScratch is one observation's reusable state.
type tapScratch struct {
	msg    dnstap.Message
	policy dnstap.Policy
	query  []byte // packed query (full path)
	resp   []byte // packed response (full path)
	rule   []byte
	value  []byte
}

func startTap(cfg dnstapConfig, in *instance) (*tap, error) {
	w, err := dnstap.New(dnstap.Config{Target: cfg.target, Identity: cfg.identity,
		Version: "sinkhole " + version, Queue: cfg.queue, Logger: in.log})
	if err != nil {
		return nil, err
	}
	in.obs.metrics.AddDnstap(w.Sent, w.Dropped, w.Reconnects, w.Connected)
	in.log.Info("dnstap", "target", cfg.target, "identity", cfg.identity, "upstream", cfg.upstream, "queue", cfg.queue)
	t := &tap{w: w}
	t.scratch.New = func() any { return &tapScratch{query: make([]byte, 0, 512), resp: make([]byte, 0, 1024)} }
	return t, nil
}

func (t *tap) close(ctx context.Context) error { return t.w.Close(ctx) }

// observe writes CLIENT_QUERY and, when an answer was sent, CLIENT_RESPONSE
// for one query. The Policy goes on the response, or on the query when the
// rule dropped it (no response is sent).
func (t *tap) observe(req *query.Request, resp *dns.Msg) {
	s := t.scratch.Get().(*tapScratch)
	defer t.scratch.Put(s)
	proto, http, _ := dnstap.Transport(req.Proto)
	m := &s.msg
	*m = dnstap.Message{Type: dnstap.ClientQuery, Protocol: proto, HTTP: http, Query: req.Client, QueryTime: req.Start}
	m.QueryMessage = req.Packet
	if m.QueryMessage == nil && req.Msg != nil {
		if b, err := req.Msg.PackBuffer(s.query[:cap(s.query)]); err == nil {
			m.QueryMessage, s.query = b, b[:0]
		}
	}
	var answer []byte
	if len(req.Answer) > 0 {
		answer = req.Answer
	} else if resp != nil && !req.Info.Dropped {
		if b, err := resp.PackBuffer(s.resp[:cap(s.resp)]); err == nil {
			answer, s.resp = b, b[:0]
		}
	}
	var pol *dnstap.Policy
	if d := req.Info.Decision; d != nil {
		pol = s.fill(d, req.Name)
	}
	if answer == nil {
		m.Policy = pol
		t.w.Write(m)
		return
	}
	t.w.Write(m)
	m.Type, m.QueryMessage = dnstap.ClientResponse, nil
	m.ResponseTime, m.ResponseMessage, m.Policy = time.Now(), answer, pol
	t.w.Write(m)
}

// fill sets the scratch Policy from the decision: rule "file:line
// (platform)", the action taken (PASS when the rule only monitors), and
// what matched: the query name (or the CNAME target) as a wire-format name,
// or the answer address.
func (s *tapScratch) fill(d *query.Decision, qname string) *dnstap.Policy {
	file, line, platform := d.Snapshot.RulePlace(d.Rule)
	s.rule = strconv.AppendInt(append(append(s.rule[:0], file...), ':'), int64(line), 10)
	if platform != "" {
		s.rule = append(append(append(s.rule, " ("...), platform...), ')')
	}
	p := &s.policy
	*p = dnstap.Policy{Type: "blocklist", Rule: s.rule, Action: policyAction(d)}
	switch {
	case d.Addr != nil:
		p.Match = dnstap.MatchResponseIP
		if a := d.Addr.IP.Unmap(); a.Is4() {
			v := a.As4()
			s.value = append(s.value[:0], v[:]...)
		} else {
			v := a.As16()
			s.value = append(s.value[:0], v[:]...)
		}
		p.Value = s.value
	default:
		p.Match = dnstap.MatchQName
		name := qname
		if d.Trigger == query.TriggerCNAME && d.Target != "" {
			name = d.Target
		}
		s.value = appendWireName(s.value[:0], name)
		p.Value = s.value
	}
	return p
}

// policyAction maps the decision's action to dnstap's; REFUSED has no
// dnstap action and is left unset (the response's rcode tells).
func policyAction(d *query.Decision) dnstap.Action {
	if !d.Enforced {
		return dnstap.ActionPass
	}
	switch d.Action {
	case blocklist.ActionNXDomain:
		return dnstap.ActionNXDomain
	case blocklist.ActionNoData:
		return dnstap.ActionNoData
	case blocklist.ActionDrop:
		return dnstap.ActionDrop
	case blocklist.ActionSinkhole, blocklist.ActionLocalData:
		return dnstap.ActionLocalData
	}
	return 0
}

// appendWireName appends the wire form of a canonical dotted name ("" is
// the root). Labels over 63 bytes are cut (a canonical name has none).
func appendWireName(dst []byte, name string) []byte {
	for name != "" {
		label := name
		if i := strings.IndexByte(name, '.'); i >= 0 {
			label, name = name[:i], name[i+1:]
		} else {
			name = ""
		}
		label = label[:min(len(label), 63)]
		dst = append(append(dst, byte(len(label))), label...)
	}
	return append(dst, 0)
}

// forward writes FORWARDER_QUERY and FORWARDER_RESPONSE (when an answer
// came) for one upstream exchange (upstream.Config.Tap).
func (t *tap) forward(addr, proto string, sent time.Time, q, resp *dns.Msg) {
	s := t.scratch.Get().(*tapScratch)
	defer t.scratch.Put(s)
	p, _, _ := dnstap.Transport(proto)
	up, _ := netip.ParseAddrPort(addr)
	m := &s.msg
	*m = dnstap.Message{Type: dnstap.ForwarderQuery, Protocol: p, Response: up, QueryTime: sent}
	if b, err := q.PackBuffer(s.query[:cap(s.query)]); err == nil {
		m.QueryMessage, s.query = b, b[:0]
	}
	t.w.Write(m)
	if resp == nil {
		return
	}
	m.Type, m.QueryMessage, m.ResponseTime = dnstap.ForwarderResponse, nil, time.Now()
	if b, err := resp.PackBuffer(s.resp[:cap(s.resp)]); err == nil {
		m.ResponseMessage, s.resp = b, b[:0]
	}
	t.w.Write(m)
}
