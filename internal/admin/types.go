// Package admin is sinkhole's control plane: a small JSON-over-HTTP API on
// the --admin address (reload, status, query, health, metrics) and the
// client the CLI commands use to talk to it. It knows nothing of DNS
// messages; the server side is given a Backend.
package admin

import (
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/history"
)

// Status is the answer of GET /v1/status.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Uptime  Duration  `json:"uptime"`
	Ready   bool      `json:"ready"`
	// Missing names what keeps the server from being ready (see Readiness).
	Missing    []Missing     `json:"missing,omitempty"`
	Listen     []string      `json:"listen"`
	Encrypted  []Listener    `json:"encrypted,omitempty"` // DoT, DoH and DoQ listeners
	TLS        *TLSCert      `json:"tls,omitempty"`       // their certificate
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
	Export     *Export       `json:"rpz_export,omitempty"`
	Logs       []Log         `json:"logs,omitempty"`
}

// Log is the audit or query log in Status.
type Log struct {
	Name    string `json:"name"` // audit or query
	Path    string `json:"path"` // "-" for standard output
	Lines   uint64 `json:"lines"`
	Dropped uint64 `json:"dropped"` // lost because the writer could not keep up
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
	// Signature is who signed the version in service (with --trusted-key);
	// Refused why the version on disk was refused.
	Signature *blocklist.Signature `json:"signature,omitempty"`
	Refused   *blocklist.Refusal   `json:"refused,omitempty"`
	// Withheld describes the version on disk when it is not in service:
	// held by the shrink guard ("sinkhole reload --accept" applies it) or
	// still being written (a refused version is in Refused).
	Withheld *blocklist.Withheld `json:"withheld,omitempty"`
}

// Readiness is the body of GET /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Status string `json:"status"` // "ready" or "not ready"
	// Missing lists every source or file with no version in service (and
	// DNS not listening yet).
	Missing []Missing `json:"missing,omitempty"`
	// Withheld lists files whose version on disk is not in service while
	// their last good version serves (state held, settling or refused):
	// ready, but someone must look.
	Withheld []WithheldFile `json:"withheld,omitempty"`
}

// Missing is one thing a server that is not ready lacks.
type Missing struct {
	// Kind is "file" (a list file), "lists" (the lists add up to no
	// rules), "rpz-feed", "list-url" or "dns".
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// WithheldFile is a list file whose version on disk is not in service.
type WithheldFile struct {
	File string `json:"file"`
	blocklist.Withheld
	// ServingRules are the rules of the last good version, in service.
	ServingRules int `json:"serving_rules"`
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
	// BadAnswers counts SERVFAIL, REFUSED, NOTIMP and FORMERR answers
	// (each made sinkhole ask the next upstream).
	BadAnswers uint64 `json:"bad_answers"`
	// Scrubbed counts records removed from its answers for not belonging
	// to the question.
	Scrubbed uint64 `json:"scrubbed"`
	// NoEDNS is set while it is asked without EDNS, having rejected it.
	NoEDNS bool `json:"no_edns,omitempty"`
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
	Malformed   uint64 `json:"malformed"`    // malformed queries answered FORMERR
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

// Feed is an RPZ feed (a zone this server is a secondary for) or a list
// URL.
type Feed struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`   // "rpz" or "url"
	Source string `json:"source"` // ZONE@PRIMARY or the URL
	// Serial of the RPZ zone in service (0 for URLs or before a load).
	Serial uint32 `json:"serial,omitempty"`
	// Records is how many records an RPZ copy holds, Removed how many
	// more it keeps taken out (blank lines in its zone file) until its
	// next rebuild (a full transfer, or the compaction that follows an
	// IXFR once they are a quarter of Records).
	Records int `json:"records,omitempty"`
	Removed int `json:"removed,omitempty"`
	// LastChange is when the copy in service last changed (a transfer, a
	// new download).
	LastChange time.Time `json:"last_change,omitzero"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	// Zonemd says how an RPZ zone in service was checked: "verified" (its
	// ZONEMD matched) or "absent" (the primary publishes none).
	Zonemd string `json:"zonemd,omitempty"`
	// ZonemdScheme is the scheme of the ZONEMD that verified it: "MERKLE3"
	// (checked first when the zone has one) or "SIMPLE".
	ZonemdScheme string `json:"zonemd_scheme,omitempty"`
}

// Export is the RPZ zone this server serves to secondaries (--rpz-export).
type Export struct {
	Zone     string    `json:"zone"`
	Serial   uint32    `json:"serial"`
	Records  int       `json:"records"`
	Changed  time.Time `json:"changed"`
	IXFRFrom uint32    `json:"ixfr_from"` // oldest serial IXFR answers with differences
	// Skipped counts rules RPZ cannot express (monitor, overseas, ASN).
	Skipped map[string]int `json:"skipped,omitempty"`
	Notify  []string       `json:"notify,omitempty"`
	// Zonemd is whether every version carries a ZONEMD record
	// (--rpz-export-zonemd), ZonemdSchemes which: "SIMPLE", "MERKLE3".
	Zonemd        bool     `json:"zonemd"`
	ZonemdSchemes []string `json:"zonemd_schemes,omitempty"`
}

// Explanation is the answer of GET /v1/query: what the server decides for
// a name and why.
type Explanation struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Generation uint64 `json:"generation"`
	// Verdict is "blocked", "logged" (a monitor-only rule fired), "allowed"
	// (an exception covers the name) or "passed" (no rule applies).
	Verdict string `json:"verdict"`
	// DryRun is set when the server runs with --dry-run: every rule acts
	// as log.
	DryRun bool `json:"dry_run,omitempty"`
	// Reason is the text a client sees in the EDE and the logs.
	Reason string `json:"reason,omitempty"`
	// Action and Trigger describe the decision (when one was taken):
	// Trigger is qname, cname, ip, asn or overseas.
	Action  string `json:"action,omitempty"`
	Trigger string `json:"trigger,omitempty"`
	// Rule is the rule that decided, if any.
	Rule *Rule `json:"rule,omitempty"`
	// Question is the rule the query name matched; Exception the "@@" rule
	// that overrode it.
	Question  *Rule `json:"question,omitempty"`
	Exception *Rule `json:"exception,omitempty"`
	// Overseas is the overseas-scoped rule that makes the answer's
	// countries decide; Home the home country; CountryKnown whether a
	// country database is loaded (without one such rules fail closed).
	Overseas     *Rule  `json:"overseas,omitempty"`
	Home         string `json:"home_country,omitempty"`
	CountryKnown bool   `json:"country_known"`
	// Resolved is set when the upstream was asked (a name blocked by its
	// own rule is not, as in service).
	Resolved bool           `json:"resolved"`
	Upstream string         `json:"upstream,omitempty"`
	Rcode    string         `json:"rcode,omitempty"`
	Answer   []AnswerRecord `json:"answer,omitempty"`
	// ResolveError says why the upstream could not answer (the answer's
	// rules are then unchecked).
	ResolveError string `json:"resolve_error,omitempty"`
}

// Rule describes one list rule that matched.
type Rule struct {
	Text     string `json:"text"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Platform string `json:"platform,omitempty"`
	// Authority, Order and Contact come from the list's "# authority:",
	// "# order:" and "# contact:" directives.
	Authority string `json:"authority,omitempty"`
	Order     string `json:"order,omitempty"`
	Contact   string `json:"contact,omitempty"`
	// Action is the action in force (never "default").
	Action    string `json:"action"`
	Scope     string `json:"scope"`
	Trigger   string `json:"trigger,omitempty"`
	Exception bool   `json:"exception,omitempty"`
	// Fires is set when the rule decides (a block no exception overrides).
	Fires bool `json:"fires"`
}

// AnswerRecord is one CNAME, DNAME, A or AAAA record of the upstream's
// answer with what is known of it and every rule it matched.
type AnswerRecord struct {
	Owner   string `json:"owner"`
	Type    string `json:"type"`
	Data    string `json:"data"`
	Country string `json:"country,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
	Foreign *bool  `json:"foreign,omitempty"`
	Matches []Rule `json:"matches,omitempty"`
	Blocked bool   `json:"blocked"`
}

// ReloadResult is the answer of POST /v1/reload.
type ReloadResult struct {
	OK         bool                   `json:"ok"`
	Generation uint64                 `json:"generation"`
	Changed    bool                   `json:"changed"`
	Rules      int                    `json:"rules"`
	Duration   Duration               `json:"duration"`
	Files      []blocklist.FileChange `json:"files"`
	// Withheld counts files whose new version was held or refused (their
	// last good version serves; OK is false).
	Withheld int `json:"withheld,omitempty"`
	// Diffs are the rules each changed file gained and lost (the first
	// history.MaxListed of each, and the counts).
	Diffs []history.Diff `json:"diffs,omitempty"`
	Error string         `json:"error,omitempty"`
}

// History is the answer of GET /v1/history: the last list versions, newest
// first.
type History struct {
	Versions []history.Version `json:"versions"`
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
