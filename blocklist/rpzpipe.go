package blocklist

import (
	"bufio"
	"errors"
	"io"
)

// The streaming RPZ parser on two goroutines. One reads the zone (and,
// through the store's hashingReader, hashes it), cuts it into lines and
// runs quickScan, quick's part that needs no parser state, over each; the
// other, the parser, takes the lines in file order in blocks and does the
// rest (readPiped). The parser sees exactly the lines, in the order, that
// read gives it, and a line quickScan read is what quick would have read,
// so rules, lines, warnings and errors are those of the parse on one
// goroutine; TestRPZPipedMatchesSequential holds the two together.

// rpzPipelined selects readPiped for parseRPZStream (the tests compare it
// with read).
var rpzPipelined = true

// rpzBlockBytes is about how many bytes of lines a block holds (a
// variable, so that the tests can cut a zone into blocks of a line each).
var rpzBlockBytes = 256 << 10

// rpzBlocksAhead is how many blocks the reader may have ready before the
// parser takes them.
const rpzBlocksAhead = 4

// rpzBlock is a run of consecutive lines of the zone.
type rpzBlock struct {
	buf   []byte      // the lines, each with its newline (the last may have none)
	ends  []int32     // where each line ends in buf
	quick []quickLine // quickScan of each line
	// The owners of the lines quickScan read, without "*." or upper-case
	// letters, encoded (appendEncoded): line i's is enc[encs[i-1]:encs[i]]
	// (empty for the others; encs[-1] is 0).
	enc  []byte
	encs []int32
	// After the lines: the zone has a line over rpzMaxLine (long), or
	// reading failed (err, never io.EOF).
	long bool
	err  error
}

// readPiped is read with the reading and quickScan on another goroutine.
// It returns once that goroutine has stopped, so that r may be read again
// (parseRPZ hands it to the general parser).
func (p *rpzStream) readPiped(r io.Reader) error {
	full := make(chan *rpzBlock, rpzBlocksAhead)
	free := make(chan *rpzBlock, rpzBlocksAhead+2)
	quit := make(chan struct{})
	go readBlocks(r, full, free, quit)
	defer func() {
		close(quit)
		for range full { // until the reader has stopped
		}
	}()
	lineNo := 0
	for b := range full {
		start, encStart := int32(0), int32(0)
		for i, end := range b.ends {
			lineNo++
			var enc []byte
			if e := b.encs[i]; e > encStart {
				enc = b.enc[encStart:e]
				encStart = e
			}
			if gerr := p.feedScanned(lineNo, b.buf[start:end], b.quick[i], enc); gerr != nil {
				return gerr
			}
			start = end
		}
		switch {
		case b.long:
			return errRPZGeneral // a line over 64 KiB: let the general parser judge it
		case b.err != nil:
			p.fail(0, "", "read: "+b.err.Error())
			return nil
		}
		select {
		case free <- b:
		default:
		}
	}
	return nil
}

// readBlocks reads r into blocks of lines, sent on full in file order,
// until the end of r, a line over rpzMaxLine, a read error, or quit. It
// closes full when it stops. Blocks the parser is done with come back on
// free.
func readBlocks(r io.Reader, full, free chan *rpzBlock, quit chan struct{}) {
	defer close(full)
	br := bufio.NewReaderSize(r, rpzMaxLine)
	var b *rpzBlock
	for {
		if b == nil {
			select {
			case b = <-free:
				b.buf, b.ends, b.quick, b.enc, b.encs = b.buf[:0], b.ends[:0], b.quick[:0], b.enc[:0], b.encs[:0]
			default:
				b = &rpzBlock{buf: make([]byte, 0, rpzBlockBytes+rpzMaxLine), ends: make([]int32, 0, rpzBlockBytes/32), quick: make([]quickLine, 0, rpzBlockBytes/32),
					enc: make([]byte, 0, rpzBlockBytes/4), encs: make([]int32, 0, rpzBlockBytes/32)}
			}
		}
		line, err := br.ReadSlice('\n')
		last := err != nil
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			b.long = true
		case len(line) > 0:
			start := len(b.buf)
			b.buf = append(b.buf, line...)
			b.ends = append(b.ends, int32(len(b.buf)))
			q := quickScan(b.buf[start:])
			b.quick = append(b.quick, q)
			if q.tok > 0 && !q.upper && b.buf[start] != '*' {
				b.enc = appendEncoded(b.enc, b.buf[start:start+int(q.tok)])
			}
			b.encs = append(b.encs, int32(len(b.enc)))
		}
		if last && !b.long && !errors.Is(err, io.EOF) {
			b.err = err
		}
		if !last && len(b.buf) < rpzBlockBytes {
			continue
		}
		select {
		case full <- b:
		case <-quit:
			return
		}
		if last {
			return
		}
		b = nil
	}
}

// addDomainEncoded is addDomain for a name the caller has encoded already
// (enc is appendEncoded(nil, name)): the streaming RPZ parser's reader
// encodes the owners it reads.
func (b *builder) addDomainEncoded(name, enc []byte, kind MatchKind, allow bool, line int) {
	b.s.dom.addPreEncoded(enc, kindBit(kind, allow), line, b.curSect())
	b.last = makeRuleID(RuleDomain, b.s.dom.len()-1)
}

// addPreEncoded is add for a name encoded already (e is
// appendEncoded(nil, name)): it leaves the table exactly as add leaves it.
func (d *domainRules) addPreEncoded(e []byte, kind uint8, line int, sect uint16) {
	d.unpackLines()
	d.unpackKinds()
	p := d.tailFor(len(e))
	start := len(*p)
	*p = append(*p, e...)
	d.addEncoded(start, kind, line, sect)
}
