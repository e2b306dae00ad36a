package query

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
)

// Request is one client query on its way through the chain.
type Request struct {
	Msg    *dns.Msg
	Name   string // question name in canonical form: lower-case, no trailing dot ("" for the root)
	Qtype  uint16
	Client netip.AddrPort
	Proto  string // "udp", "tcp", "dot", "doh", "doh3" or "doq"
	// ClientName is the name a DoH client gave in its path
	// ("/dns-query/NAME"), for the logs; usually empty.
	ClientName string
	Start      time.Time
	// Snapshot is the one list snapshot this query is decided under.
	Snapshot *blocklist.Snapshot
	// Name policy is the question stage's verdict on the query name that
	// the answer stage applies to the upstream's answer.
	NamePolicy NamePolicy
	// Info collects what the stages did, for logs, metrics and the admin API.
	Info Info
	// Packet is the query as received and Answer the response as written
	// on the wire path (nil on the full path: resp is the answer). Both
	// alias the server's buffers: observers read them during the call only.
	Packet, Answer []byte
}

// NewRequest builds a request for m, which must hold exactly one question.
func NewRequest(m *dns.Msg, client netip.AddrPort, proto string, snap *blocklist.Snapshot) *Request {
	q := m.Question[0]
	return &Request{
		Msg:      m,
		Name:     CanonicalName(q.Name),
		Qtype:    q.Qtype,
		Client:   client,
		Proto:    proto,
		Start:    time.Now(),
		Snapshot: snap,
	}
}

// CanonicalName lower-cases a presentation-format name and drops the
// trailing dot, the form the blocklist matchers use.
func CanonicalName(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// Info is what the chain learned while answering.
type Info struct {
	// Rcode is the response code sent (set by the server before observers run).
	Rcode    int
	Decision *Decision // nil when no rule matched
	Upstream string    // the upstream that answered, if any
	Cached   bool      // answered from cache
	Stale    bool      // answered from an expired cache entry (serve-stale)
	Dropped  bool      // no answer is to be sent (rpz-drop)
}

// NameKind is what the question stage found for the query name.
type NameKind uint8

// Name kinds.
const (
	NameUnlisted NameKind = iota // no rule decided on the name: the answer is policed
	NameExempt                   // an exception ("@@") covers the name: its answer is not policed either
	NameOverseas                 // an overseas-scoped rule covers the name: the answer's addresses decide
	NameBlocked                  // a rule on the name fired (enforced or monitor-only)
)

// NamePolicy is the question stage's verdict on the query name.
type NamePolicy struct {
	Kind NameKind
	// Rule is the exception (NameExempt), the overseas-scoped rule
	// (NameOverseas) or the rule that fired (NameBlocked).
	Rule blocklist.RuleID
}

// Trigger says what matched for a decision.
type Trigger uint8

// Triggers.
const (
	TriggerQName    Trigger = iota + 1 // the query name
	TriggerCNAME                       // a CNAME or DNAME target in the answer
	TriggerIP                          // an answer address, by IP rule
	TriggerASN                         // an answer address, by its AS number
	TriggerOverseas                    // an answer address outside the home country, for an overseas-scoped name
)

var triggerNames = [...]string{"", "qname", "cname", "ip", "asn", "overseas"}

// String returns the trigger's name as logs and the admin API show it:
// qname, cname, ip, asn or overseas.
func (t Trigger) String() string {
	if int(t) < len(triggerNames) {
		return triggerNames[t]
	}
	return "unknown"
}

// Decision records a rule that fired for the query.
type Decision struct {
	Snapshot *blocklist.Snapshot
	Rule     blocklist.RuleID
	Action   blocklist.Action // resolved: never ActionDefault
	Enforced bool             // false for monitor-only (action log)
	// Trigger says what matched.
	Trigger Trigger
	// Target is what matched in the answer (the CNAME target, the IP);
	// empty for decisions on the query name itself.
	Target string
	// Addr holds, for answer-based decisions, the address and what geo knows of it.
	Addr *AddrInfo
	// Note is appended to the reason, e.g. why an overseas-scoped rule
	// blocked without looking at the answer.
	Note string
	// Addrs holds, for answer-based decisions, every address of the
	// upstream's answer with its geolocation (for the audit log).
	Addrs []AddrInfo
	// Replaced is, for an enforced answer-based decision, the upstream's
	// answer the block replaced: the cache keeps it to decide the entry
	// again under a later list generation.
	Replaced *dns.Msg
}

// AddrInfo is an answer address with its geolocation.
type AddrInfo struct {
	IP netip.Addr
	geo.Info
}

// Describe returns the rule that fired.
func (d *Decision) Describe() blocklist.Rule { return d.Snapshot.Rule(d.Rule) }

// Reason is the human text for EDE and logs, e.g.
// "blocked by foreign-exchanges.txt:12 (Binance)", extended with the address
// for answer-based blocks.
func (d *Decision) Reason() string { return string(d.AppendReason(nil)) }

// AppendReason appends Reason's text to dst; for a decision on the query
// name it does not allocate.
func (d *Decision) AppendReason(dst []byte) []byte {
	dst = d.Snapshot.AppendReason(dst, d.Rule)
	if d.Addr != nil {
		dst = append(append(dst, "; "...), d.Addr.String()...)
	} else if d.Trigger == TriggerCNAME {
		dst = append(append(dst, "; CNAME "...), d.Target...)
	}
	if d.Note != "" {
		dst = append(append(dst, "; "...), d.Note...)
	}
	return dst
}

// String formats "203.0.113.7 (KY, AS64500 Example Org)".
func (a *AddrInfo) String() string {
	s := a.IP.String()
	var parts []string
	if a.Country != "" {
		parts = append(parts, a.Country)
	}
	if a.ASN != 0 {
		as := "AS" + uitoa(a.ASN)
		if a.ASOrg != "" {
			as += " " + a.ASOrg
		}
		parts = append(parts, as)
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func uitoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// Handler is one stage of the chain. It returns the response for req, or an
// error that the server turns into SERVFAIL.
type Handler interface {
	ServeDNS(ctx context.Context, req *Request) (*dns.Msg, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) (*dns.Msg, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, req *Request) (*dns.Msg, error) {
	return f(ctx, req)
}

type clientNameKey struct{}

// WithClientName returns ctx carrying the client's self-declared name (a
// DoH path "/dns-query/NAME"), which Server.HandlePacket gives the
// observers in Request.ClientName.
func WithClientName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, clientNameKey{}, name)
}

// ClientName returns the name WithClientName put in ctx, or "".
func ClientName(ctx context.Context) string {
	n, _ := ctx.Value(clientNameKey{}).(string)
	return n
}
