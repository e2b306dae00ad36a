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

// Reload rereads the lists (the admin API trigger); opts.Accept applies
// the versions the shrink guard would hold.
func (in *instance) Reload(ctx context.Context, opts admin.ReloadOptions) (*admin.ReloadResult, error) {
	trigger := "api"
	if opts.Client != "" {
		trigger += " " + opts.Client // history.SplitTrigger: who asked
	}
	rep, err := in.reloadLists(ctx, trigger, opts.Accept)
	res := reloadResult(rep)
	if diffs, gen := in.obs.history.Last(); gen == rep.Generation && rep.Changed {
		res.Diffs = diffs
	}
	if err != nil {
		res.OK, res.Error = false, err.Error()
	}
	return res, nil
}

func reloadResult(rep *blocklist.ReloadReport) *admin.ReloadResult {
	withheld := len(rep.Withheld())
	return &admin.ReloadResult{
		OK: !rep.Failed() && withheld == 0, Generation: rep.Generation, Changed: rep.Changed, Rules: rep.Rules,
		Duration: admin.Duration(rep.Duration), Files: rep.Files, Withheld: withheld,
	}
}

// Ready reports whether every list source has a version in service and
// DNS is listening.
func (in *instance) Ready() bool { return in.Readiness().Ready }

// Status describes the running server.
func (in *instance) Status() *admin.Status {
	snap := in.store.Current()
	st := &admin.Status{
		Version: version, Started: in.started, Uptime: admin.Duration(time.Since(in.started).Round(time.Second)),
		Listen: in.dns.Addrs(), Generation: snap.Generation, Reloaded: snap.Created,
		Rules: snap.RuleCount(), Warnings: append(in.geoWarnings(), in.listWarnings()...),
	}
	rd := in.Readiness()
	st.Ready, st.Missing = rd.Ready, rd.Missing
	st.Feeds, st.Export = in.feeds.Admin()
	in.encryptedStatus(st)
	if in.cfg.dryRun {
		st.Warnings = append([]string{"--dry-run: no rule is enforced; would-be blocks are answered normally, audited and counted as monitored"}, st.Warnings...)
	}
	for _, g := range in.geo.Status() {
		st.Geo = append(st.Geo, admin.GeoDB{Kind: g.Kind, Path: g.Path, Type: g.DatabaseType, BuiltAt: g.BuildTime,
			LoadedAt: g.LoadedAt, LastError: g.Error})
	}
	for _, f := range snap.Files {
		fs := admin.FileStatus{Name: f.Name, Rules: f.Rules(), Domains: f.Domains, IPs: f.IPs, ASNs: f.ASNs,
			SHA256: f.SHA256, LoadedAt: f.LoadedAt, Stale: f.Stale, Signature: f.Signature, Refused: f.Refused, Withheld: f.Withheld}
		for _, w := range f.Warnings {
			fs.Warnings = append(fs.Warnings, w.Error())
		}
		for _, e := range f.Errors {
			fs.Errors = append(fs.Errors, e.Error())
			st.Errors = append(st.Errors, e.Error())
		}
		st.Files = append(st.Files, fs)
	}
	for _, h := range in.pool.Health() {
		st.Upstreams = append(st.Upstreams, admin.Upstream{Addr: h.Addr, Healthy: h.Healthy, Requests: h.Requests,
			Failures: h.Failures, LastRTT: admin.Duration(h.LastRTT), LastError: h.LastError,
			Mismatched: h.Mismatched, Probes: h.Probes, BadAnswers: h.BadAnswers, Scrubbed: h.Scrubbed.Total(), NoEDNS: h.NoEDNS})
	}
	s := &in.stats
	st.Counters = admin.Counters{Queries: s.Queries.Load(), Blocked: s.Blocked.Load(), Monitored: s.Monitored.Load(),
		Cached: s.Cached.Load(), ServFail: s.ServFail.Load(), Refused: s.Refused.Load(), Dropped: s.Dropped.Load(),
		ACLRefused: in.guard.ACLRefused.Load(), ACLDropped: in.guard.ACLDropped.Load(), RateLimited: in.guard.RateLimited.Load(),
		RRLDropped: in.guard.RRLDropped.Load(), RRLSlipped: in.guard.RRLSlipped.Load(),
		Overloaded: in.dns.Overloaded(), TCPRejected: in.dns.TCPRejected(), Malformed: in.dns.Malformed(), Panics: in.panics.Load()}
	for _, p := range s.TopPlatforms(10) {
		st.Platforms = append(st.Platforms, admin.PlatformHit{Platform: p.Platform, Blocks: p.Blocks})
	}
	st.Logs = in.logStatus()
	return st
}

// Explain decides a name for the admin API, resolving it upstream to check
// answer-based rules (bypassing the cache and the query logs).
func (in *instance) Explain(ctx context.Context, name, qtype string) (*admin.Explanation, error) {
	canon, t, err := explainParams(name, qtype)
	if err != nil {
		return nil, err
	}
	ex, err := in.answer.ExplainQuery(ctx, in.store.Current(), canon, t)
	if err != nil {
		return nil, err
	}
	out := explanation(ex)
	out.DryRun = in.cfg.dryRun
	return out, nil
}

// explainParams validates the name and type of an explanation request.
func explainParams(name, qtype string) (string, uint16, error) {
	canon, err := blocklist.NormalizeName(name)
	if err != nil {
		var le *blocklist.LineError
		if errors.As(err, &le) {
			return "", 0, &admin.ParamError{Msg: fmt.Sprintf("name %q: %s", name, le.Msg)}
		}
		return "", 0, &admin.ParamError{Msg: err.Error()}
	}
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok || t == dns.TypeAXFR || t == dns.TypeIXFR || t == dns.TypeANY || t == dns.TypeOPT {
		return "", 0, &admin.ParamError{Msg: fmt.Sprintf("type %q: want a query type such as A, AAAA, MX, TXT", qtype)}
	}
	return canon, t, nil
}

// explanation converts the policy's explanation for the API.
func explanation(ex *policy.Explanation) *admin.Explanation {
	out := &admin.Explanation{
		Name: ex.Name, Type: ex.Qtype, Generation: ex.Generation, Verdict: ex.Verdict, Reason: ex.Reason,
		Question: rule(ex.Question), Exception: rule(ex.Exception), Overseas: rule(ex.Overseas),
		Home: ex.Home, CountryKnown: ex.CountryKnown, Resolved: ex.Resolved, Upstream: ex.Upstream, Rcode: ex.Rcode,
		ResolveError: ex.ResolveError,
	}
	if d := ex.Decision; d != nil {
		out.Action, out.Trigger = d.Action.String(), d.Trigger.String()
		r := d.Describe()
		out.Rule = &admin.Rule{Text: r.Text, File: r.File, Line: r.Line, Platform: r.Platform,
			Authority: r.Authority, Order: r.Order, Contact: r.Contact, Action: d.Action.String(),
			Scope: r.Scope.String(), Trigger: d.Trigger.String(), Fires: d.Enforced}
	}
	for _, rc := range ex.Records {
		ar := admin.AnswerRecord{Owner: rc.Owner, Type: rc.Type, Data: rc.Data, Country: rc.Country, ASN: rc.ASN,
			ASOrg: rc.ASOrg, Foreign: rc.Foreign, Blocked: rc.Blocked}
		for i := range rc.Matches {
			ar.Matches = append(ar.Matches, *rule(&rc.Matches[i]))
		}
		out.Answer = append(out.Answer, ar)
	}
	return out
}

func rule(r *policy.RuleInfo) *admin.Rule {
	if r == nil {
		return nil
	}
	return &admin.Rule{Text: r.Text, File: r.File, Line: r.Line, Platform: r.Platform,
		Authority: r.Authority, Order: r.Order, Contact: r.Contact, Action: r.Action,
		Scope: r.Scope, Trigger: r.Trigger, Exception: r.Exception, Fires: r.Fires}
}
