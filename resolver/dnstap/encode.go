// Package dnstap writes dnstap (https://dnstap.info): protocol-buffer
// records of the DNS messages a server receives and sends, framed with
// Frame Streams (content type "protobuf:dnstap.Dnstap"), to a collector on
// a Unix or TCP socket or to a file. It is what BIND, Unbound, Knot
// Resolver and CoreDNS emit, so the same collectors read sinkhole.
//
// Message is the narrow input: addresses, times, the wire-format query and
// response, and the Policy that fired. Append encodes it with protowire
// into a caller's buffer (no allocation per message); Writer queues encoded
// frames in a bounded queue and sends them from its own goroutine, so a slow
// or absent collector costs dropped records, counted, never a blocked query.
// The schema is dnstap.proto beside this file; dnstappb holds bindings
// generated from it (go generate), which the tests decode with.
package dnstap

import (
	"net/netip"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ContentType is the Frame Streams content type of dnstap payloads.
const ContentType = "protobuf:dnstap.Dnstap"

// Type is a dnstap Message.Type.
type Type int32

// The message types sinkhole writes.
const (
	ClientQuery       Type = 5
	ClientResponse    Type = 6
	ForwarderQuery    Type = 7
	ForwarderResponse Type = 8
)

// Protocol is a dnstap SocketProtocol.
type Protocol int32

// Socket protocols.
const (
	UDP Protocol = 1
	TCP Protocol = 2
	DOT Protocol = 3
	DOH Protocol = 4
	DOQ Protocol = 7
)

// HTTPProtocol is a dnstap HttpProtocol, set for DOH only.
type HTTPProtocol int32

// HTTP versions.
const (
	HTTP1 HTTPProtocol = 1
	HTTP2 HTTPProtocol = 2
	HTTP3 HTTPProtocol = 3
)

// Transport maps a transport name as sinkhole's server and logs spell it
// ("udp", "tcp", "dot", "doh", "doh3", "doq") to the socket protocol and,
// for DNS over HTTPS, the HTTP version when the name tells it ("doh" is
// HTTP/1.1 or HTTP/2: left unset; "doh3" is HTTP/3). ok is false for an
// unknown name.
func Transport(name string) (p Protocol, h HTTPProtocol, ok bool) {
	switch name {
	case "udp":
		return UDP, 0, true
	case "tcp":
		return TCP, 0, true
	case "dot", "tls":
		return DOT, 0, true
	case "doh", "https":
		return DOH, 0, true
	case "doh2":
		return DOH, HTTP2, true
	case "doh1":
		return DOH, HTTP1, true
	case "doh3", "h3":
		return DOH, HTTP3, true
	case "doq", "quic":
		return DOQ, 0, true
	}
	return 0, 0, false
}

// Action is a dnstap Policy.Action.
type Action int32

// Policy actions.
const (
	ActionNXDomain  Action = 1
	ActionNoData    Action = 2
	ActionPass      Action = 3
	ActionDrop      Action = 4
	ActionTruncate  Action = 5
	ActionLocalData Action = 6
)

// Match is a dnstap Policy.Match: what triggered the policy.
type Match int32

// Policy matches.
const (
	MatchQName      Match = 1
	MatchClientIP   Match = 2
	MatchResponseIP Match = 3
)

// Policy is the operator policy that changed (or, with ActionPass, only
// watched) a response.
type Policy struct {
	Type   string // e.g. "blocklist"
	Rule   []byte // what matched, e.g. "foreign-exchanges.txt:12 (Binance)"
	Action Action // 0: not set (no dnstap action fits, e.g. REFUSED)
	Match  Match
	// Value is the matched value: a wire-format name for MatchQName, the 4
	// or 16 address octets for MatchResponseIP.
	Value []byte
}

// Message is one dnstap Message. Every slice is read during Append only.
type Message struct {
	Type     Type
	Protocol Protocol
	HTTP     HTTPProtocol // DOH only; 0: not set
	// Query is the initiator's address (the client for CLIENT_*, this
	// server for FORWARDER_*), Response the responder's. Either may be
	// the zero value (not written).
	Query, Response netip.AddrPort
	QueryTime       time.Time // zero: not written
	ResponseTime    time.Time // zero: not written
	QueryMessage    []byte    // wire format; nil: not written
	ResponseMessage []byte    // wire format; nil: not written
	Policy          *Policy
}

// Field numbers from dnstap.proto.
const (
	fIdentity = 1
	fVersion  = 2
	fMessage  = 14
	fType     = 15

	mType            = 1
	mSocketFamily    = 2
	mSocketProtocol  = 3
	mQueryAddress    = 4
	mResponseAddress = 5
	mQueryPort       = 6
	mResponsePort    = 7
	mQueryTimeSec    = 8
	mQueryTimeNsec   = 9
	mQueryMessage    = 10
	mResponseSec     = 12
	mResponseNsec    = 13
	mResponseMessage = 14
	mPolicy          = 15
	mHTTPProtocol    = 16

	pType   = 1
	pRule   = 2
	pAction = 3
	pMatch  = 4
	pValue  = 5

	typeMessage = 1 // Dnstap.Type MESSAGE
	familyINET  = 1
	familyINET6 = 2
)

// Append appends the Dnstap payload for m, with identity and version
// (either may be empty: not written), to dst.
func Append(dst []byte, identity, version string, m *Message) []byte {
	if identity != "" {
		dst = protowire.AppendTag(dst, fIdentity, protowire.BytesType)
		dst = protowire.AppendString(dst, identity)
	}
	if version != "" {
		dst = protowire.AppendTag(dst, fVersion, protowire.BytesType)
		dst = protowire.AppendString(dst, version)
	}
	dst = protowire.AppendTag(dst, fType, protowire.VarintType)
	dst = protowire.AppendVarint(dst, typeMessage)
	dst = protowire.AppendTag(dst, fMessage, protowire.BytesType)
	dst, at := begin(dst)
	return end(appendMessage(dst, m), at)
}

// begin reserves one byte for the length of a length-delimited field body
// about to be appended; end writes it, moving the body when the length
// needs more bytes.
func begin(dst []byte) ([]byte, int) { return append(dst, 0), len(dst) }

func end(dst []byte, at int) []byte {
	n := len(dst) - at - 1
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		dst[at] = byte(n)
		return dst
	}
	dst = append(dst, make([]byte, size-1)...)
	copy(dst[at+size:], dst[at+1:at+1+n])
	protowire.AppendVarint(dst[at:at], uint64(n))
	return dst
}

func appendMessage(b []byte, m *Message) []byte {
	b = appendVarint(b, mType, uint64(m.Type))
	// One family per message: INET6 when either address is IPv6 (an IPv4
	// one is then written in its mapped form).
	family := uint64(0)
	for _, a := range [2]netip.Addr{m.Query.Addr(), m.Response.Addr()} {
		if a.IsValid() {
			if a.Unmap().Is4() {
				family = max(family, familyINET)
			} else {
				family = familyINET6
			}
		}
	}
	if family != 0 {
		b = appendVarint(b, mSocketFamily, family)
	}
	if m.Protocol != 0 {
		b = appendVarint(b, mSocketProtocol, uint64(m.Protocol))
	}
	b = appendAddr(b, mQueryAddress, mQueryPort, m.Query, family)
	b = appendAddr(b, mResponseAddress, mResponsePort, m.Response, family)
	if !m.QueryTime.IsZero() {
		b = appendVarint(b, mQueryTimeSec, uint64(m.QueryTime.Unix()))
		b = protowire.AppendTag(b, mQueryTimeNsec, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(m.QueryTime.Nanosecond()))
	}
	if m.QueryMessage != nil {
		b = protowire.AppendTag(b, mQueryMessage, protowire.BytesType)
		b = protowire.AppendBytes(b, m.QueryMessage)
	}
	if !m.ResponseTime.IsZero() {
		b = appendVarint(b, mResponseSec, uint64(m.ResponseTime.Unix()))
		b = protowire.AppendTag(b, mResponseNsec, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(m.ResponseTime.Nanosecond()))
	}
	if m.ResponseMessage != nil {
		b = protowire.AppendTag(b, mResponseMessage, protowire.BytesType)
		b = protowire.AppendBytes(b, m.ResponseMessage)
	}
	if p := m.Policy; p != nil {
		b = protowire.AppendTag(b, mPolicy, protowire.BytesType)
		var at int
		b, at = begin(b)
		b = end(appendPolicy(b, p), at)
	}
	if m.HTTP != 0 {
		b = appendVarint(b, mHTTPProtocol, uint64(m.HTTP))
	}
	return b
}

func appendPolicy(b []byte, p *Policy) []byte {
	if p.Type != "" {
		b = protowire.AppendTag(b, pType, protowire.BytesType)
		b = protowire.AppendString(b, p.Type)
	}
	if p.Rule != nil {
		b = protowire.AppendTag(b, pRule, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Rule)
	}
	if p.Action != 0 {
		b = appendVarint(b, pAction, uint64(p.Action))
	}
	if p.Match != 0 {
		b = appendVarint(b, pMatch, uint64(p.Match))
	}
	if p.Value != nil {
		b = protowire.AppendTag(b, pValue, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Value)
	}
	return b
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendAddr writes an address in the message's family (an IPv4 address
// in an IPv6 message as its mapped form) and its port.
func appendAddr(b []byte, addrField, portField protowire.Number, a netip.AddrPort, family uint64) []byte {
	if !a.Addr().IsValid() {
		return b
	}
	ip := a.Addr().Unmap()
	b = protowire.AppendTag(b, addrField, protowire.BytesType)
	if family == familyINET && ip.Is4() {
		v := ip.As4()
		b = protowire.AppendBytes(b, v[:])
	} else {
		v := ip.As16()
		b = protowire.AppendBytes(b, v[:])
	}
	return appendVarint(b, portField, uint64(a.Port()))
}
