// Package admin is sinkhole's control plane: a small JSON-over-HTTP API on
// the --admin address (reload, status, query, health, metrics) and the
// client the CLI commands use to talk to it. It knows nothing of DNS
// messages; the server side is given a Backend.
package admin

import (
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Status is the answer of GET /v1/status.
type Status struct {
	Version    string        `json:"version"`
	Started    time.Time     `json:"started"`
	Uptime     Duration      `json:"uptime"`
	Ready      bool          `json:"ready"`
	Listen     []string      `json:"listen"`
	Generation uint64        `json:"generation"`
	Reloaded   time.Time     `json:"reloaded"` // when the generation in service was built
	Rules      int           `json:"rules"`
	Files      []FileStatus  `json:"files"`
	Errors     []string      `json:"errors,omitempty"`   // every list error, "file:line: message"
	Warnings   []string      `json:"warnings,omitempty"` // configuration warnings (e.g. no country database)
	Upstreams  []Upstream    `json:"upstreams"`
	Counters   Counters      `json:"counters"`
	Platforms  []PlatformHit `json:"top_platforms,omitempty"`
	Geo        []GeoDB       `json:"geo,omitempty"`
	Feeds      []Feed        `json:"feeds,omitempty"`
}

// FileStatus is one list file in Status.
type FileStatus struct {
	Name     string    `json:"name"`
	Rules    int       `json:"rules"`
	Domains  int       `json:"domains"`
	IPs      int       `json:"ips"`
	ASNs     int       `json:"asns"`
	SHA256   string    `json:"sha256,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitempty"`
	// Stale is set when the file on disk is broken and its last good
	// version (if any) is serving.
	Stale    bool     `json:"stale,omitempty"`
	Errors   []string `json:"errors,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Upstream is one upstream resolver in Status.
type Upstream struct {
	Addr      string   `json:"addr"`
	Healthy   bool     `json:"healthy"`
	Requests  uint64   `json:"requests"`
	Failures  uint64   `json:"failures"`
	LastRTT   Duration `json:"last_rtt"`
	LastError string   `json:"last_error,omitempty"`
	// Mismatched counts answers dropped for not matching their query.
	Mismatched uint64 `json:"mismatched"`
	Probes     uint64 `json:"probes"` // health probes sent while unhealthy
}

// Counters are totals since start.
type Counters struct {
	Queries   uint64 `json:"queries"`
	Blocked   uint64 `json:"blocked"`
	Monitored uint64 `json:"monitored"` // would-be blocks under action log
	Cached    uint64 `json:"cached"`
	ServFail  uint64 `json:"servfail"`
	Refused   uint64 `json:"refused"`
	Dropped   uint64 `json:"dropped"`
	// Turned away before the chain (client ACL and rate limits), and
	// server faults.
	ACLRefused  uint64 `json:"acl_refused"`  // outside --allow, answered REFUSED
	ACLDropped  uint64 `json:"acl_dropped"`  // outside --allow, not answered (--refuse-action drop)
	RateLimited uint64 `json:"rate_limited"` // over --client-qps, not answered
	RRLDropped  uint64 `json:"rrl_dropped"`  // responses suppressed by --rrl-rate
	RRLSlipped  uint64 `json:"rrl_slipped"`  // responses sent truncated by --rrl-slip
	Overloaded  uint64 `json:"overloaded"`   // queries dropped over --max-inflight
	TCPRejected uint64 `json:"tcp_rejected"` // connections over --tcp-max-conns or the per-client cap
	Panics      uint64 `json:"panics"`       // recovered query panics
}

// PlatformHit counts blocks for one platform.
type PlatformHit struct {
	Platform string `json:"platform"`
	Blocks   uint64 `json:"blocks"`
}

// GeoDB is a loaded GeoIP database.
type GeoDB struct {
	Kind      string    `json:"kind"` // country or asn
	Path      string    `json:"path"`
	Type      string    `json:"type"`
	BuiltAt   time.Time `json:"built_at"`
	LoadedAt  time.Time `json:"loaded_at"`
	LastError string    `json:"last_error,omitempty"`
}

// Feed is an RPZ or URL list feed.
type Feed struct {
	Name         string    `json:"name"`
	Source       string    `json:"source"`
	Serial       uint32    `json:"serial,omitempty"`
	LastTransfer time.Time `json:"last_transfer,omitempty"`
	LastResult   string    `json:"last_result,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
}

// Explanation is the answer of GET /v1/query: what the server decides for
// a name and why.
type Explanation struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Generation uint64 `json:"generation"`
	// Verdict is "blocked", "allowed" or "monitored" (a log rule would block).
	Verdict string `json:"verdict"`
	// Action is the action in force for the rule that fired.
	Action string `json:"action,omitempty"`
	// Trigger says what matched: qname, cname, ip, asn or overseas.
	Trigger string `json:"trigger,omitempty"`
	Target  string `json:"target,omitempty"`
	// Reason is the EDE text a client would see.
	Reason string `json:"reason,omitempty"`
	// Rule is the rule that fired (or would have, when an exception won).
	Rule *Rule `json:"rule,omitempty"`
	// Exception is the "@@" rule that overrode a block.
	Exception *Rule `json:"exception,omitempty"`
	// Pending is set for an overseas-scoped rule: the decision depends on
	// the answer's addresses.
	Pending *Rule `json:"pending,omitempty"`
	// Resolved is set when the name was resolved upstream to check the answer.
	Resolved bool `json:"resolved"`
	// Answer lists the upstream's records with what is known about each address.
	Answer     []AnswerRecord `json:"answer,omitempty"`
	ResolveErr string         `json:"resolve_error,omitempty"`
}

// Rule describes one list rule.
type Rule struct {
	Text     string `json:"text"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Platform string `json:"platform,omitempty"`
	Action   string `json:"action"`
	Scope    string `json:"scope"`
}

// AnswerRecord is one record of an upstream answer.
type AnswerRecord struct {
	Record  string `json:"record"`
	IP      string `json:"ip,omitempty"`
	Country string `json:"country,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
	// Rule is set when this record triggered a rule.
	Rule *Rule `json:"rule,omitempty"`
}

// RuleFrom converts a blocklist rule description.
func RuleFrom(r blocklist.Rule) *Rule {
	return &Rule{Text: r.Text, File: r.File, Line: r.Line, Platform: r.Platform, Action: r.Action.String(), Scope: r.Scope.String()}
}

// ReloadResult is the answer of POST /v1/reload.
type ReloadResult struct {
	OK         bool                   `json:"ok"`
	Generation uint64                 `json:"generation"`
	Changed    bool                   `json:"changed"`
	Rules      int                    `json:"rules"`
	Duration   Duration               `json:"duration"`
	Files      []blocklist.FileChange `json:"files"`
	Error      string                 `json:"error,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Duration marshals as a Go duration string ("1.5s") and a number of seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return nil
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
