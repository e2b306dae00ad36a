package query

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Linker is a stage that hands what it does not answer to the next stage.
// Chain links every stage but the last.
type Linker interface {
	Handler
	// Link makes next the rest of the chain after this stage.
	Link(next Handler)
}

// Offerer is a stage with a fast path: it looks at a query straight from
// its packet, before anything is parsed into a dns.Msg, and may answer it
// there. An offer must give the answer the stage's full path would give.
type Offerer interface {
	Offer(q *WireQuery, o *Offered) Verdict
}

// Verdict is what a stage's Offer makes of a query.
type Verdict uint8

// Verdicts.
const (
	// Pass: the stage's full path would hand this query to the next stage
	// and pass its answer back unchanged, keeping none of it (the cache on
	// a miss keeps nothing the later offers answer: it does not store
	// blocks on the name). The next stage's offer is asked.
	Pass Verdict = iota
	// Decline: the full chain must take the query.
	Decline
	// Answered: o.Out[:o.N] is the answer (N 0: send nothing).
	Answered
)

// Offered is what an offer works with and reports. The caller sets
// Snapshot and Out; an offer that answers sets N, Name, Info and Cached
// (the caller reads them only then). It is per read loop (or per stream
// query) scratch: nothing is allocated.
type Offered struct {
	// Snapshot is the list snapshot the query is decided under.
	Snapshot *blocklist.Snapshot
	// Out receives the answer; it holds 64 KiB. An offer writes at most
	// q.Limit bytes of answer, and declines when its answer is larger.
	Out []byte
	// N is the answer's length (0: send nothing).
	N int
	// Name is the canonical query name, for observers (it may alias
	// NameBuf or a stage's memory: observers never keep it).
	Name string
	// Info is what the stage decided, for observers; Info.Decision may
	// point at Decision.
	Info Info
	// Cached is set when the answer came from the cache.
	Cached bool
	// Now, when set, is the time the query was read (one clock read per
	// UDP batch, or per query): the request's start, and the time an offer
	// that runs on the real clock decides freshness by. Zero: an offer
	// reads the clock itself.
	Now time.Time
	// Decision and NameBuf are scratch for the stage that answers.
	Decision Decision
	NameBuf  [256]byte
}

// Decider decides, under the request's snapshot, an upstream answer the
// cache holds: the question and answer policy without asking upstream.
// It returns the answer to send (nil when req.Info.Dropped) and records
// the decision in req.Info as the chain would.
type Decider interface {
	Decide(req *Request, resp *dns.Msg) *dns.Msg
}

// Pipeline is the chain of stages, in order: the full path (ServeDNS, which
// enters the first stage) and the fast path (Offer, which asks the stages'
// offers in the same order).
type Pipeline struct {
	head   Handler
	stages []Handler
	offers []Offerer
}

// Chain links stages, in the order a query meets them, into one pipeline:
// each stage's Next is the stage after it (every stage but the last must
// be a Linker). Nil stages (a part that is not configured) are left out.
// The stages' offers make the fast path, tried in the same order: the
// first offer that does not pass decides whether the query is answered
// from its packet or takes the full chain, and the fast path ends at the
// first stage that has no offer, so it never answers what the chain would
// not.
func Chain(stages ...Handler) (*Pipeline, error) {
	var kept []Handler
	for _, h := range stages {
		if h == nil {
			continue
		}
		if v := reflect.ValueOf(h); v.Kind() == reflect.Pointer && v.IsNil() {
			continue
		}
		kept = append(kept, h)
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("chain: no stage")
	}
	p := &Pipeline{head: kept[0], stages: kept}
	fast := true
	for i, h := range kept {
		if i+1 < len(kept) {
			l, ok := h.(Linker)
			if !ok {
				return nil, fmt.Errorf("chain: stage %d (%T) cannot hand queries on to %T", i+1, h, kept[i+1])
			}
			l.Link(kept[i+1])
		}
		// The fast path ends at the first stage without an offer: what
		// reaches it takes the full chain.
		if o, ok := h.(Offerer); ok && fast {
			p.offers = append(p.offers, o)
		} else {
			fast = false
		}
	}
	return p, nil
}

// ServeDNS runs the full chain.
func (p *Pipeline) ServeDNS(ctx context.Context, req *Request) (*dns.Msg, error) {
	return p.head.ServeDNS(ctx, req)
}

// Offer asks the stages' offers in chain order. It reports Answered (o
// holds the answer) or Decline (the full chain takes the query; also when
// every offer passed).
func (p *Pipeline) Offer(q *WireQuery, o *Offered) Verdict {
	for _, s := range p.offers {
		switch s.Offer(q, o) {
		case Pass:
			continue
		case Answered:
			return Answered
		default:
			return Decline
		}
	}
	return Decline
}

// Stages returns the stages in chain order.
func (p *Pipeline) Stages() []Handler { return p.stages }
