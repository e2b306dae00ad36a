// Package resolver is sinkhole's DNS side: the UDP and TCP listeners
// (Server), the request type that travels through the chain (Request), and
// the Handler interface each stage implements.
//
// A query flows through a short chain of small handlers, each with one job
// and unaware of files or HTTP (see the subpackages):
//
//	Server -> cache -> policy.Question -> policy.Answer -> upstream.Pool
//
// Zone transfers and NOTIFY are not queries: the Server hands them to the
// Transfer and Notify hooks of its config (see resolver/rpz).
//
// Types from github.com/miekg/dns stay inside this package tree and
// blocklist, so the move to its v2 stays local.
package resolver
