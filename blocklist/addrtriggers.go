package blocklist

import "iter"

// AddrTriggers yields the IP rules, then the ASN rules, in file order, as
// Triggers does after the domain rules: for exporters that keep the
// domain rules themselves and recompute only the (few) address rules.
func (s *Snapshot) AddrTriggers() iter.Seq[Trigger] {
	return func(yield func(Trigger) bool) {
		for i, r := range s.ips {
			if !yield(Trigger{ID: makeRuleID(RuleIP, i), Type: RuleIP, Allow: r.allow, Prefix: r.prefix}) {
				return
			}
		}
		for i, r := range s.asns {
			if !yield(Trigger{ID: makeRuleID(RuleASN, i), Type: RuleASN, Allow: r.allow, ASN: r.asn}) {
				return
			}
		}
	}
}
