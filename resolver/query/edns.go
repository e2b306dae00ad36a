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
// resolver sets (RA; RD and CD copied), and sinkhole's OPT record when the
// request had one.
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

// ErrorReply is the answer to a query sinkhole will not serve as asked
// (FORMERR, NOTIMP, REFUSED, BADVERS): the ID, opcode and question, RD
// copied and no other header bit set (RFC 1035 4.1.1), and sinkhole's OPT
// when the request had a valid one.
func ErrorReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionDesired = req.RecursionDesired // SetRcode copies it for QUERY only
	m.CheckingDisabled = false
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ServerUDPSize, opt.Do())
		if rcode > 0xF {
			m.IsEdns0().SetExtendedRcode(uint16(rcode))
		}
	}
	return m
}

// ForClient makes an upstream's answer sinkhole's own for the client hop
// (EDNS and the header are per hop, RFC 6891 6.2.1): the upstream's OPT
// record and options are dropped and sinkhole's OPT is added for an EDNS
// client (its UDP size, the client's DO echoed); AA is cleared (sinkhole is
// not the authority), RA set, RD and CD are the client's, and AD is kept
// only when the upstream set it and the client asked for it with AD or DO
// (RFC 6840 5.7-5.8).
func ForClient(client, resp *dns.Msg) *dns.Msg {
	copt := client.IsEdns0()
	extra := resp.Extra[:0:0]
	for _, rr := range resp.Extra {
		if _, ok := rr.(*dns.OPT); !ok {
			extra = append(extra, rr)
		}
	}
	resp.Extra = extra
	resp.Id = client.Id
	resp.Authoritative = false
	resp.RecursionAvailable = true
	resp.RecursionDesired = client.RecursionDesired
	resp.CheckingDisabled = client.CheckingDisabled
	resp.AuthenticatedData = resp.AuthenticatedData && (client.AuthenticatedData || (copt != nil && copt.Do()))
	if copt != nil {
		resp.SetEdns0(ServerUDPSize, copt.Do())
	}
	return resp
}

// OwnOPT gives a response built by the chain sinkhole's OPT for the client
// hop: none for a client without EDNS; for an EDNS client exactly one, with
// sinkhole's UDP size, EDNS version 0 and the client's DO bit, keeping the
// options stages added (EDE). The server calls it on every answer of the
// full path.
func OwnOPT(client, resp *dns.Msg) {
	copt := client.IsEdns0()
	var own *dns.OPT
	n := 0
	for _, rr := range resp.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if own == nil && copt != nil {
				own = o
				resp.Extra[n] = rr
				n++
			}
			continue
		}
		resp.Extra[n] = rr
		n++
	}
	resp.Extra = resp.Extra[:n]
	if copt == nil {
		return
	}
	if own == nil {
		resp.SetEdns0(ServerUDPSize, copt.Do())
		return
	}
	own.Hdr.Name = "."
	own.SetUDPSize(ServerUDPSize)
	own.SetVersion(0)
	own.SetDo(copt.Do())
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
