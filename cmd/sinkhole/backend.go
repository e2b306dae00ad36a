package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
)

// The instance is the admin API's backend.
var _ admin.Backend = (*instance)(nil)

// Reload rereads the lists (the admin API trigger).
func (in *instance) Reload(ctx context.Context) (*admin.ReloadResult, error) {
	rep, err := in.store.Reload(ctx, "api")
	res := reloadResult(rep)
	if err != nil {
		res.OK, res.Error = false, err.Error()
	}
	return res, nil
}

func reloadResult(rep *blocklist.ReloadReport) *admin.ReloadResult {
	return &admin.ReloadResult{
		OK: !rep.Failed(), Generation: rep.Generation, Changed: rep.Changed, Rules: rep.Rules,
		Duration: admin.Duration(rep.Duration), Files: rep.Files,
	}
}

// Ready reports whether the lists are loaded and DNS is listening.
func (in *instance) Ready() bool {
	return in.store.Loaded() && in.dns != nil && len(in.dns.Addrs()) > 0
}

// Status describes the running server.
func (in *instance) Status() *admin.Status {
	snap := in.store.Current()
	st := &admin.Status{
		Version: version, Started: in.started, Uptime: admin.Duration(time.Since(in.started).Round(time.Second)),
		Ready: in.Ready(), Listen: in.dns.Addrs(), Generation: snap.Generation, Reloaded: snap.Created,
		Rules: snap.RuleCount(), Warnings: in.warnings(snap),
	}
	for _, f := range snap.Files {
		fs := admin.FileStatus{Name: f.Name, Rules: f.Rules(), Domains: f.Domains, IPs: f.IPs, ASNs: f.ASNs,
			SHA256: f.SHA256, LoadedAt: f.LoadedAt, Stale: f.Stale}
		for _, e := range f.Errors {
			fs.Errors = append(fs.Errors, e.Error())
			st.Errors = append(st.Errors, e.Error())
		}
		st.Files = append(st.Files, fs)
	}
	for _, h := range in.pool.Health() {
		st.Upstreams = append(st.Upstreams, admin.Upstream{Addr: h.Addr, Healthy: h.Healthy, Requests: h.Requests,
			Failures: h.Failures, LastRTT: admin.Duration(h.LastRTT), LastError: h.LastError,
			Mismatched: h.Mismatched, Probes: h.Probes})
	}
	s := &in.stats
	st.Counters = admin.Counters{Queries: s.Queries.Load(), Blocked: s.Blocked.Load(), Monitored: s.Monitored.Load(),
		Cached: s.Cached.Load(), ServFail: s.ServFail.Load(), Refused: s.Refused.Load(), Dropped: s.Dropped.Load(),
		ACLRefused: in.guard.ACLRefused.Load(), ACLDropped: in.guard.ACLDropped.Load(), RateLimited: in.guard.RateLimited.Load(),
		RRLDropped: in.guard.RRLDropped.Load(), RRLSlipped: in.guard.RRLSlipped.Load(),
		Overloaded: in.dns.Overloaded(), TCPRejected: in.dns.TCPRejected(), Panics: in.panics.Load()}
	for _, p := range s.TopPlatforms(10) {
		st.Platforms = append(st.Platforms, admin.PlatformHit{Platform: p.Platform, Blocks: p.Blocks})
	}
	return st
}

// warnings lists configuration problems worth an operator's attention.
func (in *instance) warnings(snap *blocklist.Snapshot) []string {
	var w []string
	if snap.HasOverseasRules() && !in.countryKnown() {
		w = append(w, "overseas-scoped rules are loaded but no country database is (--geoip-country): they block like scope any (fail closed)")
	}
	return w
}

// countryKnown reports whether a country database is loaded.
func (in *instance) countryKnown() bool { return false }

// Explain decides a name for the admin API, resolving it upstream to check
// answer-based rules.
func (in *instance) Explain(ctx context.Context, name, qtype string) (*admin.Explanation, error) {
	return explain(ctx, in.explainer, in.store.Current(), name, qtype)
}

// explain validates the parameters and converts the policy's explanation.
func explain(ctx context.Context, e *policy.Explainer, snap *blocklist.Snapshot, name, qtype string) (*admin.Explanation, error) {
	canon, err := blocklist.NormalizeName(name)
	if err != nil {
		var le *blocklist.LineError
		if errors.As(err, &le) {
			return nil, &admin.ParamError{Msg: fmt.Sprintf("name %q: %s", name, le.Msg)}
		}
		return nil, &admin.ParamError{Msg: err.Error()}
	}
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok || t == dns.TypeAXFR || t == dns.TypeIXFR || t == dns.TypeANY {
		return nil, &admin.ParamError{Msg: fmt.Sprintf("type %q: want a query type such as A, AAAA, MX, TXT", qtype)}
	}
	ex := e.Explain(ctx, snap, canon, t)
	out := &admin.Explanation{Name: canon, Type: dns.TypeToString[t], Generation: snap.Generation, Verdict: "allowed", Resolved: ex.Resolved}
	block := e.Question.Block
	// rule describes a rule with the action it takes in force (a rule
	// without "# action:" takes --block-action).
	rule := func(id blocklist.RuleID) *admin.Rule {
		r := admin.RuleFrom(snap.Rule(id))
		if r.Action == blocklist.ActionDefault.String() {
			r.Action = block.Resolve(blocklist.ActionDefault).String()
		}
		return r
	}
	if ex.Question.HasRule {
		out.Rule = rule(ex.Question.Rule)
	}
	if ex.Question.HasAllow {
		out.Exception = rule(ex.Question.Allow)
	}
	if ex.Pending != nil {
		out.Pending = rule(*ex.Pending)
	}
	if d := ex.Decision; d != nil {
		out.Verdict = "blocked"
		if !d.Enforced {
			out.Verdict = "monitored"
		}
		out.Action, out.Trigger, out.Target, out.Reason = d.Action.String(), d.Trigger, d.Target, d.Reason()
		out.Rule = rule(d.Rule)
	}
	for _, r := range ex.Records {
		ar := admin.AnswerRecord{Record: r.Text}
		if r.Addr != nil {
			ar.IP, ar.Country, ar.ASN, ar.ASOrg = r.Addr.IP.String(), r.Addr.Country, r.Addr.ASN, r.Addr.ASOrg
		}
		if r.Decision != nil {
			ar.Rule = rule(r.Decision.Rule)
		}
		out.Answer = append(out.Answer, ar)
	}
	if ex.ResolveErr != nil {
		out.ResolveErr = ex.ResolveErr.Error()
	}
	return out, nil
}
