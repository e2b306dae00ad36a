// Package query holds what travels through sinkhole's chain of stages and
// what a stage is, and imports no stage: the Request, the Handler
// interface each stage implements, the decision types stages record
// (Decision, Info), the wire-form query the fast path reads (WireQuery,
// ParseWireQuery), and the helpers every stage answers with (Reply,
// ServFail, AddEDE, EDEError).
//
// Types from github.com/miekg/dns stay inside the resolver tree and
// blocklist, so the move to its v2 stays local.
package query
