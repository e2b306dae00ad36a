// Package sde is the chain stage of structured DNS errors
// (draft-ietf-dnsop-structured-dns-error): for a client that sends the
// Structured DNS Error (SDE) EDNS option, the EXTRA-TEXT of a block's
// Extended DNS Error (code 16, Censored) becomes the draft's I-JSON
// object instead of sinkhole's plain text:
//
//	{"c":["mailto:appeals@regulator.example"],"j":"blocked by exchanges.txt:5 (Binance); authority: Ministry of Finance; order: MoF-2024-17","o":"Example ISP","l":"en"}
//
// "j" (justification) is the block's reason: list file and line, platform,
// authority and order reference, and the contact when it is not a mailto
// or tel URI. "c" (contact) holds the rule's "# contact:" when it is one of
// the URI schemes the draft registers (mailto, tel; a bare mail address is
// written as mailto:). "o" (organization) is the resolver's operator, or
// the rule's authority when no operator is configured. "l" (language) is
// "en": the words sinkhole adds are English, the values are as the list
// writes them. "s" (sub-error) is never sent: the draft forbids it with
// Censored. Clients without the option keep the plain text (RFC 8914).
package sde

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// DefaultOptionCode is the EDNS option code sinkhole reads as the SDE
// option. The draft leaves it to IANA ("TBD"); until one is assigned,
// sinkhole uses 65001, the first code of the range RFC 6891 reserves for
// local and experimental use. Stage.Code overrides it.
const DefaultOptionCode = 65001

// Stage rewrites the EDE text of blocks for clients that send the SDE
// option; every other response passes unchanged.
type Stage struct {
	// Code is the SDE option's code (DefaultOptionCode if 0).
	Code uint16
	// Operator names the organization that filters ("o"); the rule's
	// authority stands in when it is empty.
	Operator string
	next     query.Handler
}

// Link makes next the rest of the chain (query.Chain calls it).
func (s *Stage) Link(next query.Handler) { s.next = next }

func (s *Stage) code() uint16 {
	if s.Code == 0 {
		return DefaultOptionCode
	}
	return s.Code
}

// Offer declines queries that carry the SDE option (the full path builds
// their EDE) and passes the others.
func (s *Stage) Offer(q *query.WireQuery, _ *query.Offered) query.Verdict {
	if hasOption(q.Options, s.code()) {
		return query.Decline
	}
	return query.Pass
}

// hasOption scans EDNS options (code, length, data) for code.
func hasOption(opts []byte, code uint16) bool {
	for len(opts) >= 4 {
		c, l := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if c == code {
			return true
		}
		if 4+l > len(opts) {
			return false
		}
		opts = opts[4+l:]
	}
	return false
}

// Requested reports whether m carries the SDE option.
func (s *Stage) Requested(m *dns.Msg) bool {
	opt := m.IsEdns0()
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		if o.Option() == s.code() {
			return true
		}
	}
	return false
}

// ServeDNS passes the query on and, for an SDE client, rewrites the EDE
// of a block.
func (s *Stage) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	resp, err := s.next.ServeDNS(ctx, req)
	if err != nil || resp == nil || !s.Requested(req.Msg) {
		return resp, err
	}
	d := req.Info.Decision
	if d == nil || !d.Enforced {
		return resp, nil
	}
	opt := resp.IsEdns0()
	if opt == nil {
		return resp, nil
	}
	for _, o := range opt.Option {
		e, ok := o.(*dns.EDNS0_EDE)
		if !ok || e.InfoCode != dns.ExtendedErrorCodeCensored {
			continue
		}
		full := s.JSON(d, true)
		e.ExtraText = full
		if req.Proto == "udp" && resp.Len() > query.ClientUDPSize(req.Msg) {
			// The draft: drop "j" and "o" first, then the text.
			e.ExtraText = s.JSON(d, false)
			if resp.Len() > query.ClientUDPSize(req.Msg) {
				e.ExtraText = ""
			}
		}
	}
	return resp, nil
}

// object is the draft's EXTRA-TEXT object, minified in this field order.
type object struct {
	C []string `json:"c,omitempty"`
	J string   `json:"j,omitempty"`
	O string   `json:"o,omitempty"`
	L string   `json:"l,omitempty"`
}

// JSON returns the EXTRA-TEXT for a decision; without text, only "c" (and
// a plain "j" when there is no contact, since the object must hold "c",
// "j" or "s" to count).
func (s *Stage) JSON(d *query.Decision, text bool) string {
	r := d.Describe()
	var obj object
	contactURI := ContactURI(r.Contact)
	if contactURI != "" {
		obj.C = []string{contactURI}
	}
	if text || contactURI == "" {
		reason := d.Reason()
		if contactURI != "" {
			reason = strings.Replace(reason, "; contact: "+r.Contact, "", 1)
		}
		obj.J = reason
		obj.L = "en"
		if text {
			obj.O = s.Operator
			if obj.O == "" {
				obj.O = r.Authority
			}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(obj)
	return strings.TrimSuffix(b.String(), "\n")
}

// ContactURI returns a contact as a URI of a scheme the draft registers
// for "c" (mailto, tel), or "".
func ContactURI(c string) string {
	l := strings.ToLower(c)
	switch {
	case strings.HasPrefix(l, "mailto:"), strings.HasPrefix(l, "tel:"):
		return c
	case strings.Count(c, "@") == 1 && !strings.ContainsAny(c, " /:<>"):
		return "mailto:" + c
	}
	return ""
}
