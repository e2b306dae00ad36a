package blocklist

import "hash/maphash"

// The streaming RPZ parser feeds an owner's records as one rule when they
// are consecutive; an owner whose records are spread over the zone shows
// as two rules of the same name and match kind, and the zone is then
// parsed again by the general parser, which groups them. For a big zone
// that check runs beside the parser, on another core: the parser hands
// its QNAME rules over in batches (the name's bytes, or "the name of the
// rule before" for a "*.name" after "name") and a goroutine keeps a hash
// set of 64-bit hashes of the names, each with the match kinds seen. Two
// rules of one name always meet; two names whose hashes are equal look
// like one (about one zone in 10^7 of 10M names), so a repeat is confirmed
// with the sink's exact check (entrySink.repeatedOwner) before the zone is
// parsed again. A zone of fewer names than a batch is checked on the
// parser's goroutine when it ends.

// dupBatchLen is how many rules make a batch.
const dupBatchLen = 4096

// dupAgain marks a rule on the name of the rule before it.
const dupAgain = 0x80

type dupBatch struct {
	names []byte
	ends  []int32 // end of each rule's name in names (== the one before for dupAgain)
	kinds []uint8 // 1 << MatchKind, | dupAgain
}

// dupCheck is the repeated-owner check of one streamed zone.
type dupCheck struct {
	cur  *dupBatch
	ch   chan *dupBatch // nil until the first batch is full
	done chan bool
	free chan *dupBatch // batches back from the goroutine, for reuse

	set dupSet // the goroutine's, or the parser's when there is none
	// hint is how many rules the zone may have (0: unknown): a set
	// that starts on another goroutine has room for half as many names
	// (a name and its wildcard each) and, for most zones, never grows
	// (growing holds the old slots and the new at once).
	hint int
}

// add hands over a domain rule of kind on name; again says that name is
// the name of the rule handed over before.
func (c *dupCheck) add(name []byte, kind MatchKind, again bool) {
	b := c.cur
	if b == nil {
		select {
		case b = <-c.free:
			b.names, b.ends, b.kinds = b.names[:0], b.ends[:0], b.kinds[:0]
		default:
			b = &dupBatch{names: make([]byte, 0, dupBatchLen*32), ends: make([]int32, 0, dupBatchLen), kinds: make([]uint8, 0, dupBatchLen)}
		}
		c.cur = b
	}
	k := uint8(1) << kind
	if again {
		k |= dupAgain
	} else {
		b.names = append(b.names, name...)
	}
	b.ends = append(b.ends, int32(len(b.names)))
	b.kinds = append(b.kinds, k)
	if len(b.kinds) < dupBatchLen {
		return
	}
	if c.ch == nil {
		c.ch, c.done, c.free = make(chan *dupBatch, 4), make(chan bool, 1), make(chan *dupBatch, 6)
		c.set.hint = c.hint / 2
		go func() {
			for b := range c.ch {
				c.set.addBatch(b)
				select {
				case c.free <- b:
				default:
				}
			}
			c.done <- c.set.repeat
		}()
	}
	c.ch <- b
	c.cur = nil
}

// finish reports whether two rules handed over may share a name and
// kind (false: they certainly do not). It ends the goroutine.
func (c *dupCheck) finish() bool {
	if c.ch == nil {
		if c.cur != nil {
			c.set.addBatch(c.cur)
			c.cur = nil
		}
		return c.set.repeat
	}
	if c.cur != nil {
		c.ch <- c.cur
		c.cur = nil
	}
	close(c.ch)
	repeat := <-c.done
	c.ch = nil
	return repeat
}

// stop ends the goroutine, if any, of a check whose answer is not needed.
func (c *dupCheck) stop() {
	if c.ch != nil {
		c.cur = nil
		c.finish()
	}
}

// dupSet is an open-addressing hash set of names' hashes, each entry the
// hash with its low 3 bits replaced by the match kinds seen (0: empty).
type dupSet struct {
	seed   maphash.Seed
	slots  []uint64
	n      int
	last   int // slot of the last rule's name
	repeat bool
	hint   int // names to make room for at the start
}

func (s *dupSet) addBatch(b *dupBatch) {
	if s.slots == nil {
		s.seed = maphash.MakeSeed()
		size := 64
		for size/4*3 < max(s.hint, len(b.kinds)) {
			size *= 2
		}
		s.slots = make([]uint64, size)
	}
	start := int32(0)
	for i, k := range b.kinds {
		end := b.ends[i]
		bit := uint64(k &^ dupAgain)
		if k&dupAgain != 0 {
			if s.slots[s.last]&bit != 0 {
				s.repeat = true
			}
			s.slots[s.last] |= bit
			continue
		}
		s.insert(maphash.Bytes(s.seed, b.names[start:end]), bit)
		start = end
	}
}

// insert adds kind bit for the name of hash h.
func (s *dupSet) insert(h, bit uint64) {
	if s.n >= len(s.slots)/4*3 {
		s.grow()
	}
	key := h &^ 7
	if key == 0 {
		key = 8
	}
	mask := len(s.slots) - 1
	for i := int(h>>32) & mask; ; i = (i + 1) & mask {
		switch e := s.slots[i]; {
		case e == 0:
			s.slots[i], s.last = key|bit, i
			s.n++
			return
		case e&^7 == key:
			if e&bit != 0 {
				s.repeat = true
			}
			s.slots[i] |= bit
			s.last = i
			return
		}
	}
}

// grow doubles the set. The hash's bits 32 and up pick the home slot, so
// an entry's home is found again from the entry itself.
func (s *dupSet) grow() {
	old := s.slots
	s.slots = make([]uint64, 2*len(old))
	mask := len(s.slots) - 1
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := int(e>>32) & mask
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = e
	}
}
