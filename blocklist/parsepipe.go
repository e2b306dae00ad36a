package blocklist

import (
	"net/netip"
	"unsafe"
)

// A big list file is parsed on two cores: the parser's goroutine reads,
// splits and checks the lines and normalizes the names, and hands the
// entries over in batches to a second goroutine, which runs the public
// suffix check and feeds them to the sink (for the store's builder, the
// name encoding and the rule arrays). The sink sees the same calls in the
// same order as from a parse on one goroutine, one goroutine at a time;
// the offenders of the suffix check are reported with their lines when
// the file ends, as suffixChecker reports them.

// pipeBatchLen is how many domain entries make a batch; a file with fewer
// is fed to the sink on the parser's own goroutine.
const pipeBatchLen = 8192

// listSink is what the list parser calls on its sink.
type listSink interface {
	beginSection(Section)
	addDomain(name []byte, kind MatchKind, allow bool, line int)
	addPrefix(p netip.Prefix, allow bool, line int)
	addASN(asn uint32, allow bool, line int)
}

// pipeDomain is a domain entry of a batch; its name ends at end in the
// batch's names.
type pipeDomain struct {
	end, line int32
	kind      MatchKind
	allow     bool
	check     bool // over-broad if a public suffix
}

// Kinds of pipeOther.
const (
	pipeSection = iota
	pipePrefix
	pipeASN
)

// pipeOther is any other entry (or a section), to be given to the sink
// before domain entry at of its batch.
type pipeOther struct {
	at     int
	op     uint8
	allow  bool
	line   int
	sec    Section
	prefix netip.Prefix
	asn    uint32
}

type pipeBatch struct {
	names []byte
	doms  []pipeDomain
	other []pipeOther
}

// listPipe is the parser's side of the hand-over.
type listPipe struct {
	sink entrySink
	hint string
	cur  *pipeBatch
	full chan *pipeBatch // nil until the first batch is full
	free chan *pipeBatch
	done chan []suffixHit
}

func newListPipe(sink entrySink, hint string) *listPipe {
	return &listPipe{sink: sink, hint: hint, cur: newPipeBatch()}
}

func newPipeBatch() *pipeBatch {
	return &pipeBatch{names: make([]byte, 0, pipeBatchLen*32), doms: make([]pipeDomain, 0, pipeBatchLen)}
}

func (p *listPipe) beginSection(sec Section) {
	p.cur.other = append(p.cur.other, pipeOther{at: len(p.cur.doms), op: pipeSection, sec: sec})
}

func (p *listPipe) addPrefix(pfx netip.Prefix, allow bool, line int) {
	p.cur.other = append(p.cur.other, pipeOther{at: len(p.cur.doms), op: pipePrefix, prefix: pfx, allow: allow, line: line})
}

func (p *listPipe) addASN(asn uint32, allow bool, line int) {
	p.cur.other = append(p.cur.other, pipeOther{at: len(p.cur.doms), op: pipeASN, asn: asn, allow: allow, line: line})
}

func (p *listPipe) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	p.addChecked(name, kind, allow, line, false)
}

// addChecked adds a domain entry; check asks for the public suffix check.
func (p *listPipe) addChecked(name []byte, kind MatchKind, allow bool, line int, check bool) {
	b := p.cur
	b.names = append(b.names, name...)
	b.doms = append(b.doms, pipeDomain{end: int32(len(b.names)), line: int32(line), kind: kind, allow: allow, check: check})
	if len(b.doms) < pipeBatchLen {
		return
	}
	if p.full == nil {
		p.full, p.free, p.done = make(chan *pipeBatch, 2), make(chan *pipeBatch, 2), make(chan []suffixHit, 1)
		go func() {
			var hits []suffixHit
			for b := range p.full {
				hits = b.apply(p.sink, p.hint, hits)
				select {
				case p.free <- b:
				default: // the file's last batches: nothing will take them
				}
			}
			p.done <- hits
		}()
	}
	p.full <- b
	select {
	case p.cur = <-p.free:
		p.cur.names, p.cur.doms, p.cur.other = p.cur.names[:0], p.cur.doms[:0], p.cur.other[:0]
	default:
		p.cur = newPipeBatch()
	}
}

// finish feeds the rest to the sink, waits until it has every entry, and
// returns the entries that failed the public suffix check, in line order.
func (p *listPipe) finish() []suffixHit {
	if p.full == nil {
		return p.cur.apply(p.sink, p.hint, nil)
	}
	p.full <- p.cur
	close(p.full)
	p.cur = nil
	return <-p.done
}

// apply gives b's entries to sink, in order, and appends the offenders of
// the public suffix check to hits.
func (b *pipeBatch) apply(sink listSink, hint string, hits []suffixHit) []suffixHit {
	o, start := 0, int32(0)
	for i, d := range b.doms {
		for ; o < len(b.other) && b.other[o].at == i; o++ {
			b.other[o].applyTo(sink)
		}
		name := b.names[start:d.end]
		start = d.end
		if d.check && len(name) > 0 && pslCandidate(unsafe.String(&name[0], len(name))) {
			if msg := publicSuffixMsg(name, hint); msg != "" {
				hits = append(hits, suffixHit{line: int(d.line), name: string(name), msg: msg})
			}
		}
		sink.addDomain(name, d.kind, d.allow, int(d.line))
	}
	for ; o < len(b.other); o++ {
		b.other[o].applyTo(sink)
	}
	return hits
}

func (o *pipeOther) applyTo(sink listSink) {
	switch o.op {
	case pipeSection:
		sink.beginSection(o.sec)
	case pipePrefix:
		sink.addPrefix(o.prefix, o.allow, o.line)
	case pipeASN:
		sink.addASN(o.asn, o.allow, o.line)
	}
}
