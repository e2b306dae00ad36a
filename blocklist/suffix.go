package blocklist

import (
	"strings"
	"unsafe"

	"golang.org/x/net/publicsuffix"
)

// A rule on a public suffix (com, co.uk, github.io: a name under which
// anyone can register their own) blocks every name of every owner under
// it, which no regulator's list means to do; it is an error with its line
// unless the file says "# allow-public-suffix" before it. Rules on one
// name only (=com, an RPZ trigger without "*.") are not over-broad.

// allowPublicSuffixDirective is the comment line that lets the rules after
// it be public suffixes.
const allowPublicSuffixDirective = "allow-public-suffix"

// publicSuffixMsg returns why a rule covering name and its subdomains is
// over-broad, or "" when it is not. name is canonical (lower case,
// punycode, no trailing dot).
//
// Single labels that are not top-level domains (wpad, intranet) match
// only the list's default rule and are not public suffixes.
func publicSuffixMsg(name []byte, hint string) string {
	if len(name) == 0 {
		return ""
	}
	// The lookup keeps nothing of its argument past the call: no copy.
	s := unsafe.String(&name[0], len(name))
	ps, icann := publicsuffix.PublicSuffix(s)
	if len(ps) != len(s) || (!icann && !strings.Contains(s, ".")) {
		return ""
	}
	return "\"" + string(name) + "\" is a public suffix: the rule would block every name registered under it (" + hint + ")"
}

// Hints of publicSuffixMsg.
const (
	suffixHintList = "write \"# allow-public-suffix\" above it if that is meant"
	suffixHintRPZ  = "list the names under it instead"
)

// The lookup costs about as much as parsing the line, so a big file's
// names are checked beside the parser, on another core: the parser hands
// them over in batches and collects the offenders when the file ends.

// suffixBatchLen is how many names make a batch; a file with fewer names
// is checked on the parser's own goroutine.
const suffixBatchLen = 4096

// suffixBatch is a batch of names to check, with their lines.
type suffixBatch struct {
	names []byte
	ends  []int32 // end of each name in names
	lines []int32
}

// suffixHit is a rule found to be on a public suffix.
type suffixHit struct {
	line int
	name string
	msg  string
}

// suffixChecker checks the names of one file.
type suffixChecker struct {
	hint string
	cur  *suffixBatch
	ch   chan *suffixBatch // nil until the first batch is full
	done chan []suffixHit
}

func (c *suffixChecker) add(name []byte, line int) {
	if c.cur == nil {
		c.cur = &suffixBatch{names: make([]byte, 0, suffixBatchLen*16)}
	}
	b := c.cur
	b.names = append(b.names, name...)
	b.ends = append(b.ends, int32(len(b.names)))
	b.lines = append(b.lines, int32(line))
	if len(b.ends) < suffixBatchLen {
		return
	}
	if c.ch == nil {
		c.ch, c.done = make(chan *suffixBatch, 4), make(chan []suffixHit, 1)
		go func() {
			var hits []suffixHit
			for b := range c.ch {
				hits = b.check(c.hint, hits)
			}
			c.done <- hits
		}()
	}
	c.ch <- b
	c.cur = nil
}

// finish returns every offender, in line order.
func (c *suffixChecker) finish() []suffixHit {
	var hits []suffixHit
	if c.ch != nil {
		if c.cur != nil {
			c.ch <- c.cur
		}
		close(c.ch)
		hits = <-c.done
	} else if c.cur != nil {
		hits = c.cur.check(c.hint, nil)
	}
	c.cur = nil
	return hits
}

func (b *suffixBatch) check(hint string, hits []suffixHit) []suffixHit {
	start := int32(0)
	for i, end := range b.ends {
		name := b.names[start:end]
		start = end
		if msg := publicSuffixMsg(name, hint); msg != "" {
			hits = append(hits, suffixHit{line: int(b.lines[i]), name: string(name), msg: msg})
		}
	}
	return hits
}
