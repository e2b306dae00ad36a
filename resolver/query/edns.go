package query

import "github.com/miekg/dns"

// ServerUDPSize is the EDNS UDP payload size sinkhole advertises (the DNS
// flag day 2020 recommendation).
const ServerUDPSize = 1232

// ClientUDPSize returns the largest UDP response the client accepts: its
// EDNS buffer size (at least 512), or 512 without EDNS.
func ClientUDPSize(m *dns.Msg) int {
	if opt := m.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

// Reply returns an empty response to req with the header bits a recursive
// resolver sets, and an OPT record when the request had one.
func Reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	m.CheckingDisabled = req.CheckingDisabled
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ServerUDPSize, opt.Do())
	}
	return m
}

// AddEDE attaches an Extended DNS Error (RFC 8914) to m. It does nothing
// when m carries no OPT record: a client that did not send EDNS must not
// receive it (RFC 6891).
func AddEDE(m *dns.Msg, code uint16, text string) {
	opt := m.IsEdns0()
	if opt == nil {
		return
	}
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
}

// ServFail is the answer when the chain cannot produce one.
func ServFail(req *dns.Msg, code uint16, text string) *dns.Msg {
	m := Reply(req, dns.RcodeServerFailure)
	AddEDE(m, code, text)
	return m
}

// EDEError is an error that carries the Extended DNS Error the client should
// see in its SERVFAIL.
type EDEError struct {
	Code uint16
	Text string
	Err  error
}

// Error returns the text and the underlying error.
func (e *EDEError) Error() string {
	if e.Err != nil {
		return e.Text + ": " + e.Err.Error()
	}
	return e.Text
}

// Unwrap returns the underlying error.
func (e *EDEError) Unwrap() error { return e.Err }
