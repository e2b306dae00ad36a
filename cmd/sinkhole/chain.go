package main

import (
	"time"

	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/chaos"
	"github.com/sinkhole-dns/sinkhole/resolver/guard"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/ratelimit"
	"github.com/sinkhole-dns/sinkhole/resolver/sde"
)

// chain builds the query path: every stage a query meets, in order, written
// down once, and the server configuration that runs it. The server tries
// the stages' fast-path offers (answers straight from the packet) in the
// same order, so the fast path never answers what the chain would not.
// Adding a stage is one line in the Chain call.
func (in *instance) chain(cfg *serveConfig) (resolver.ServerConfig, error) {
	blocker := &policy.Blocker{Default: cfg.blockAction, SinkholeV4: cfg.sinkV4, SinkholeV6: cfg.sinkV6,
		TTL: uint32(cfg.blockTTL / time.Second), DryRun: cfg.dryRun}
	in.answer = &policy.Answer{Block: blocker, Geo: in.obs.metrics.CountGeo(in.geo), Home: cfg.homeCountry}
	question := &policy.Question{Block: blocker, CountryKnown: in.answer.CountryKnown}
	if cfg.cacheSize > 0 {
		in.cache = cache.New(cache.Config{Size: cfg.cacheSize, MinTTL: cfg.cacheMinTTL, MaxTTL: cfg.cacheMaxTTL,
			ServeStale: cfg.serveStale, Prefetch: cfg.prefetch, Snapshot: in.store.Current, Epoch: in.geo.Version, Logger: in.log,
			Decider: &policy.Decider{Question: question, Answer: in.answer}})
		in.obs.metrics.SetCache(in.cacheStats)
	}
	// Admission comes before any stage, on the packet as it arrived: the
	// client ACL and per-client rate limit (resolver/guard, the server's
	// Admit hook), then FORMERR for malformed queries (the server). RRL
	// sees every UDP answer on its way out (LimitResponse).
	in.guard = guard.New(guard.Config{
		Allow:   cfg.allow,
		Drop:    cfg.refuseDrop,
		Clients: ratelimit.NewClients(ratelimit.ClientsConfig{QPS: float64(cfg.clientQPS), Burst: cfg.clientBurst}),
		RRL:     ratelimit.NewRRL(ratelimit.RRLConfig{Rate: float64(cfg.rrlRate), Slip: cfg.rrlSlip}),
	})
	chain, err := query.Chain(
		// Export zone: the --rpz-export zone's authoritative answers (SOA,
		// NS, policy records) for every type, whatever the lists hold;
		// never cached, as they depend on the asker.
		in.feeds.ExportStage(),
		// CHAOS class: id.server, hostname.bind, version.bind answered
		// locally (--identity, --version-string) or REFUSED, never forwarded.
		&chaos.Stage{Identity: cfg.identity, Version: cfg.versionString},
		// Bypass signals: Firefox's DoH canary and iCloud Private Relay
		// answered NXDOMAIN, whatever the lists and upstreams say.
		in.bypassStage(),
		// Structured DNS errors: for clients sending the SDE option
		// (draft-ietf-dnsop-structured-dns-error), a block's EDE text
		// becomes the draft's JSON on the way out; the cache below keeps
		// plain text. Fast path: declines queries carrying the option.
		&sde.Stage{Operator: cfg.blockPage.operator},
		// Cache: final answers in wire form tagged with the list
		// generation; a held answer is decided again after a reload by the
		// policy stages (Decider), never asked upstream again. Fast path:
		// hits.
		in.cache,
		// Question policy: the query name against the lists (blocks,
		// exceptions, overseas scope for the answer). Fast path: names
		// blocked outright.
		question,
		// Answer policy: CNAME/DNAME targets, addresses by IP, ASN and
		// country.
		in.answer,
		// Upstream: the resolvers, in order, with failover; answers made
		// sinkhole's own for the client hop (header bits, OPT).
		in.pool,
	)
	if err != nil {
		return resolver.ServerConfig{}, err
	}
	scfg := resolver.ServerConfig{
		Listen:   cfg.listen,
		Handler:  chain,
		Snapshot: in.store.Current,
		Observe:  in.observe,
		Logger:   in.log,
		Notify:   in.feeds.NotifyHandler(),
		Transfer: in.feeds.TransferHandler(),
		// Each try can take the full timeout on every upstream.
		QueryTimeout:         cfg.queryTimeout(),
		MaxInflight:          cfg.maxInflight,
		UDPBatch:             cfg.udpBatch,
		TCPMaxConns:          cfg.tcpMaxConns,
		TCPMaxConnsPerClient: cfg.tcpPerClient,
		TCPIdleTimeout:       cfg.tcpIdle,
		Panics:               &in.panics,
	}
	in.guard.Hooks(&scfg)
	return scfg, nil
}
