// Package scrub removes from an upstream's answer every record that does
// not belong to the question asked (RFC 2181 section 5.4.1), before the
// answer is used, policed or cached, in the manner of Unbound's scrubber:
//
//   - answer: records of the question's name and of its CNAME and DNAME
//     chain (the question's type, the CNAMEs and DNAMEs that make the
//     chain, and their RRSIGs);
//   - authority: the SOA of the zone the chain ends in, the NS of that
//     zone or of a zone above the question's name (a referral), DS at a
//     kept NS owner, the NSEC and NSEC3 records of the zones of the chain's
//     names, and the RRSIGs of what is kept;
//   - additional: addresses (A, AAAA, and their RRSIGs) of names that kept
//     NS, MX and SRV records point at; the OPT record is left for the
//     response writer.
//
// Records of another class than the question's are dropped everywhere.
package scrub

import (
	"strings"

	"github.com/miekg/dns"
)

// Counts are the records Message removed, by section.
type Counts struct {
	Answer, Authority, Additional int
}

// Total is the number of records removed.
func (c Counts) Total() int { return c.Answer + c.Authority + c.Additional }

// Message removes from m, an answer to q, every record that does not
// belong to q, keeping the order of the rest, and reports what it removed.
func Message(q dns.Question, m *dns.Msg) Counts {
	var c Counts
	chain, keptAns := answer(q, m.Answer)
	m.Answer, c.Answer = filter(m.Answer, keptAns)
	keptNs := authority(q, chain, m.Ns)
	m.Ns, c.Authority = filter(m.Ns, keptNs)
	keptExtra := additional(q, m.Answer, m.Ns, m.Extra)
	m.Extra, c.Additional = filter(m.Extra, keptExtra)
	return c
}

// filter keeps rrs[i] where keep[i], in place.
func filter(rrs []dns.RR, keep []bool) ([]dns.RR, int) {
	out := rrs[:0]
	for i, rr := range rrs {
		if keep[i] {
			out = append(out, rr)
		}
	}
	for i := len(out); i < len(rrs); i++ {
		rrs[i] = nil // let the dropped records go
	}
	if len(out) == 0 {
		out = nil
	}
	return out, len(rrs) - len(out)
}

func sameName(a, b string) bool { return strings.EqualFold(a, b) }

// classOK reports whether a record of class c may answer a question of
// class qc.
func classOK(c, qc uint16) bool { return c == qc || qc == dns.ClassANY }

// substitute applies a DNAME owned by owner with target to name (RFC 6672
// section 2.2): ok when name is strictly below owner.
func substitute(name, owner, target string) (string, bool) {
	nl, ol := dns.CountLabel(name), dns.CountLabel(owner)
	if nl <= ol || !under(name, owner) {
		return "", false
	}
	prefix := name // a DNAME at the root replaces nothing but the root
	if ol > 0 {
		prefix = name[:dns.Split(name)[nl-ol]]
	}
	if target == "." {
		return prefix, true
	}
	return prefix + target, true
}

// under reports whether name is zone or below it.
func under(name, zone string) bool { return dns.IsSubDomain(zone, name) }

// answer marks the answer records that belong to q and returns the chain of
// names, in the order followed: q's name, then each CNAME target or DNAME
// substitution. Data of the question's type is kept at the chain's names
// that are not redirected (the end of the chain).
func answer(q dns.Question, rrs []dns.RR) ([]string, []bool) {
	keep := make([]bool, len(rrs))
	chain := []string{q.Name}
	var redirected []string // names of the chain followed to another name
	has := func(set []string, name string) bool {
		for _, n := range set {
			if sameName(n, name) {
				return true
			}
		}
		return false
	}
	// A CNAME is the answer to a query for CNAME or ANY: it is not
	// followed then.
	follow := q.Qtype != dns.TypeCNAME && q.Qtype != dns.TypeANY
	redirect := func(from, to string) {
		if !follow {
			return
		}
		redirected = append(redirected, from)
		if !has(chain, to) {
			chain = append(chain, to)
		}
	}
	// Each pass can only grow the chain, so this ends; it finds the whole
	// chain whatever order the upstream wrote it in.
	for changed := true; changed; {
		changed = false
		for i, rr := range rrs {
			h := rr.Header()
			if keep[i] || !classOK(h.Class, q.Qclass) {
				continue
			}
			switch v := rr.(type) {
			case *dns.CNAME:
				if has(chain, h.Name) && (follow || sameName(h.Name, q.Name)) {
					keep[i], changed = true, true
					redirect(h.Name, v.Target)
				}
			case *dns.DNAME:
				// One above a name of the chain redirects it (RFC 6672).
				for _, n := range chain {
					if t, ok := substitute(n, h.Name, v.Target); ok && (follow || sameName(n, q.Name)) {
						keep[i], changed = true, true
						redirect(n, t)
						break
					}
				}
			}
		}
	}
	for i, rr := range rrs {
		h := rr.Header()
		if keep[i] || !classOK(h.Class, q.Qclass) || (h.Rrtype != q.Qtype && q.Qtype != dns.TypeANY) {
			continue
		}
		if h.Rrtype == dns.TypeRRSIG && q.Qtype != dns.TypeRRSIG {
			continue // below: signatures go with what they sign
		}
		keep[i] = has(chain, h.Name) && !has(redirected, h.Name)
	}
	keepSignatures(rrs, keep)
	return chain, keep
}

// keepSignatures marks every RRSIG of rrs that covers a kept RRset.
func keepSignatures(rrs []dns.RR, keep []bool) {
	for i, rr := range rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok || keep[i] {
			continue
		}
		for j, o := range rrs {
			if keep[j] && o.Header().Rrtype == sig.TypeCovered && sameName(o.Header().Name, sig.Hdr.Name) {
				keep[i] = true
				break
			}
		}
	}
}

// authority marks the authority records that belong to q, whose answer
// chain is chain.
func authority(q dns.Question, chain []string, rrs []dns.RR) []bool {
	keep := make([]bool, len(rrs))
	last := chain[len(chain)-1]
	var nsOwners, soaOwners []string
	for i, rr := range rrs {
		h := rr.Header()
		if !classOK(h.Class, q.Qclass) {
			continue
		}
		switch h.Rrtype {
		case dns.TypeSOA:
			keep[i] = under(last, h.Name)
			if keep[i] {
				soaOwners = append(soaOwners, h.Name)
			}
		case dns.TypeNS:
			// The zone the chain ends in, or one above the question (a
			// referral, or an authoritative upstream's own zone).
			keep[i] = under(last, h.Name) || under(q.Name, h.Name)
			if keep[i] {
				nsOwners = append(nsOwners, h.Name)
			}
		}
	}
	for i, rr := range rrs {
		h := rr.Header()
		if !classOK(h.Class, q.Qclass) {
			continue
		}
		switch h.Rrtype {
		case dns.TypeDS:
			for _, o := range nsOwners {
				if sameName(o, h.Name) {
					keep[i] = true
				}
			}
		case dns.TypeNSEC, dns.TypeNSEC3:
			keep[i] = denialBelongs(h.Name, chain, soaOwners, rrs)
		}
	}
	keepSignatures(rrs, keep)
	return keep
}

// denialBelongs reports whether an NSEC or NSEC3 record owned by owner is
// from the zone of a name of the chain: the zone that signed it (its
// RRSIG's signer) or a kept SOA's zone holds both.
func denialBelongs(owner string, chain, soaOwners []string, rrs []dns.RR) bool {
	for _, z := range soaOwners {
		if under(owner, z) {
			return true
		}
	}
	for _, rr := range rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok || !sameName(sig.Hdr.Name, owner) || (sig.TypeCovered != dns.TypeNSEC && sig.TypeCovered != dns.TypeNSEC3) {
			continue
		}
		if !under(owner, sig.SignerName) {
			continue
		}
		for _, n := range chain {
			if under(n, sig.SignerName) {
				return true
			}
		}
	}
	return false
}

// additional marks the additional records that belong to the kept answer
// and authority: addresses of the names their NS, MX and SRV records point
// at, with their signatures, and the OPT record.
func additional(q dns.Question, ans, ns, rrs []dns.RR) []bool {
	var targets []string
	collect := func(set []dns.RR) {
		for _, rr := range set {
			switch v := rr.(type) {
			case *dns.NS:
				targets = append(targets, v.Ns)
			case *dns.MX:
				targets = append(targets, v.Mx)
			case *dns.SRV:
				targets = append(targets, v.Target)
			}
		}
	}
	collect(ans)
	collect(ns)
	keep := make([]bool, len(rrs))
	for i, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			keep[i] = true // the response writer's business
			continue
		}
		if !classOK(h.Class, q.Qclass) || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA) {
			continue
		}
		for _, t := range targets {
			if sameName(t, h.Name) {
				keep[i] = true
				break
			}
		}
	}
	keepSignatures(rrs, keep)
	return keep
}
