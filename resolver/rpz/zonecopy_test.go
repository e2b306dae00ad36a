package rpz

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// zoneCopyCase is a zone (records below and at the apex, no SOA) in the
// order a transfer sends it.
type zoneCopyCase struct {
	name string
	rrs  func() []dns.RR
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return rr
}

func zoneCopyCases(t *testing.T) []zoneCopyCase {
	names := func(n int, wildFirst bool) []dns.RR {
		var out []dns.RR
		for i := range n {
			name, wild := fmt.Sprintf("n%04d.example.tld.rpz.test. 60 IN CNAME .", i), fmt.Sprintf("*.n%04d.example.tld.rpz.test. 60 IN CNAME .", i)
			if wildFirst {
				name, wild = wild, name
			}
			out = append(out, mustRR(t, name), mustRR(t, wild))
		}
		return out
	}
	return []zoneCopyCase{
		{"names and wildcards in canonical order", func() []dns.RR { return names(300, false) }},
		{"wildcards before names", func() []dns.RR { return names(300, true) }},
		{"shuffled", func() []dns.RR {
			rrs := names(300, false)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
			return rrs
		}},
		{"several records per owner, local data and apex records", func() []dns.RR {
			return []dns.RR{
				mustRR(t, "rpz.test. 60 IN NS ns.rpz.test."),
				mustRR(t, "rpz.test. 60 IN TXT \"policy\""),
				mustRR(t, "a.example.rpz.test. 60 IN A 192.0.2.1"),
				mustRR(t, "a.example.rpz.test. 60 IN AAAA 2001:db8::1"),
				mustRR(t, "a.example.rpz.test. 60 IN TXT \""+strings.Repeat("long text that does not fit a shape ", 4)+"\""),
				mustRR(t, "*.a.example.rpz.test. 60 IN A 192.0.2.1"),
				mustRR(t, "*.*.b.example.rpz.test. 60 IN CNAME rpz-passthru."),
				mustRR(t, "*.b.example.rpz.test. 60 IN CNAME rpz-drop."),
				mustRR(t, "b.example.rpz.test. 60 IN CNAME *."),
				mustRR(t, "*.c.example.rpz.test. 60 IN A 192.0.2.3"),
				mustRR(t, "*.*.c.example.rpz.test. 60 IN A 192.0.2.3"),
				mustRR(t, "c.example.rpz.test. 60 IN A 192.0.2.3"),
				mustRR(t, "Mixed.Case.rpz.test. 60 IN CNAME Target.Example."),
				mustRR(t, "32.1.2.0.192.rpz-ip.rpz.test. 60 IN CNAME ."),
			}
		}},
		{"more tails than the shape table holds", func() []dns.RR {
			var out []dns.RR
			for i := range 600 {
				out = append(out, mustRR(t, fmt.Sprintf("t%d.rpz.test. %d IN CNAME .", i, 1+i)), mustRR(t, fmt.Sprintf("*.t%d.rpz.test. %d IN CNAME .", i, 1+i)))
			}
			return out
		}},
	}
}

func buildCopy(t *testing.T, soa *dns.SOA, rrs []dns.RR) *zoneCopy {
	t.Helper()
	z := newZoneCopy("rpz.test.", soa)
	var scratch []byte
	for _, rr := range rrs {
		var err error
		if scratch, err = z.encode(rr, scratch); err != nil {
			t.Fatal(err)
		}
		if _, dup := z.find(scratch); dup {
			t.Fatalf("%s found before it was added", rr)
		}
		z.add(scratch)
	}
	return z
}

func listDigest(t *testing.T, soa *dns.SOA, rrs []dns.RR) string {
	t.Helper()
	d, err := ZoneDigest("rpz.test.", append([]dns.RR{soa}, rrs...), ZonemdHashSHA384)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", d)
}

func copyDigest(t *testing.T, z *zoneCopy) string {
	t.Helper()
	d, err := z.digest(ZonemdHashSHA384)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", d)
}

// liveRRs is the copy's records, unpacked.
func liveRRs(t *testing.T, z *zoneCopy) []dns.RR {
	t.Helper()
	var out []dns.RR
	for i := range z.records() {
		if z.isDead(i) {
			continue
		}
		rr, err := z.rr(z.at(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

func sameRRSet(t *testing.T, got, want []dns.RR) {
	t.Helper()
	key := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			out = append(out, strings.ToLower(rr.String()))
		}
		slices.Sort(out)
		return out
	}
	if g, w := key(got), key(want); !slices.Equal(g, w) {
		t.Fatalf("copy holds %d records, want %d:\n%s\nwant\n%s", len(g), len(w), strings.Join(g[:min(len(g), 8)], "\n"), strings.Join(w[:min(len(w), 8)], "\n"))
	}
}

// TestZoneCopyMatchesList checks the compact copy against the records it
// was given: each record reads back as it was stored (owners shared with
// the record before, tails from the shape table or literal), and its
// ZONEMD digest is the list digest's, after a transfer, after changes
// (killed and added records, merged into the canonical order) and after
// those are undone.
func TestZoneCopyMatchesList(t *testing.T) {
	for _, tc := range zoneCopyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			soa := benchSOA(1)
			rrs := tc.rrs()
			z := buildCopy(t, soa, rrs)
			sameRRSet(t, liveRRs(t, z), rrs)
			want := listDigest(t, soa, rrs)
			if got := copyDigest(t, z); got != want {
				t.Fatalf("digest %s, want %s", got, want)
			}
			if got := copyDigest(t, z); got != want {
				t.Fatalf("second digest %s, want %s", got, want)
			}
			for i, rr := range rrs {
				r, err := z.encode(rr, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := z.find(r); !ok {
					t.Fatalf("record %d (%s) not found", i, rr)
				}
			}
			// Changes: a third of the records taken out, new ones added
			// (some sharing owners with the old), then undone.
			m := z.mark()
			sum, live := z.sum, z.live
			rnd := rand.New(rand.NewPCG(3, 4))
			var killed []int
			var kept []dns.RR
			for i, rr := range rrs {
				if rnd.IntN(3) == 0 {
					r, _ := z.encode(rr, nil)
					k, ok := z.find(r)
					if !ok {
						t.Fatalf("%s not found", rr)
					}
					z.kill(k, true)
					killed = append(killed, k)
					continue
				}
				_ = i
				kept = append(kept, rr)
			}
			var added []dns.RR
			for i := range 50 {
				added = append(added, mustRR(t, fmt.Sprintf("added%d.x.rpz.test. 60 IN CNAME .", i)), mustRR(t, fmt.Sprintf("*.added%d.x.rpz.test. 60 IN CNAME .", i)))
			}
			added = append(added, mustRR(t, "a.example.rpz.test. 30 IN A 192.0.2.9"))
			for _, rr := range added {
				r, err := z.encode(rr, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := z.find(r); dup {
					continue
				}
				z.add(r)
				kept = append(kept, rr)
			}
			sameRRSet(t, liveRRs(t, z), kept)
			if got, want := copyDigest(t, z), listDigest(t, soa, kept); got != want {
				t.Fatalf("digest after changes %s, want %s", got, want)
			}
			z.undo(m, killed)
			if z.sum != sum || z.live != live {
				t.Fatalf("undo: sum %x live %d, want %x %d", z.sum, z.live, sum, live)
			}
			sameRRSet(t, liveRRs(t, z), rrs)
			if got := copyDigest(t, z); got != want {
				t.Fatalf("digest after undo %s, want %s", got, want)
			}
			// Rounds of changes kept: the records added are merged with
			// those of the rounds before, and folded into a new order
			// once there are many.
			defer func(n int) { extraFold = n }(extraFold)
			extraFold = 40
			cur := slices.Clone(rrs)
			for round := range 6 {
				var next []dns.RR
				for _, rr := range cur {
					if rnd.IntN(5) == 0 {
						r, _ := z.encode(rr, nil)
						k, ok := z.find(r)
						if !ok {
							t.Fatalf("round %d: %s not found", round, rr)
						}
						z.kill(k, true)
						continue
					}
					next = append(next, rr)
				}
				for i := range 10 + round*5 {
					for _, rr := range []dns.RR{
						mustRR(t, fmt.Sprintf("r%d-%d.x.rpz.test. 60 IN CNAME .", round, i)),
						mustRR(t, fmt.Sprintf("*.r%d-%d.x.rpz.test. 60 IN CNAME .", round, i)),
						mustRR(t, fmt.Sprintf("r%d-%d.a.rpz.test. 60 IN CNAME .", i, round)),
					} {
						r, err := z.encode(rr, nil)
						if err != nil {
							t.Fatal(err)
						}
						z.add(r)
						next = append(next, rr)
					}
				}
				cur = next
				sameRRSet(t, liveRRs(t, z), cur)
				if got, want := copyDigest(t, z), listDigest(t, soa, cur); got != want {
					t.Fatalf("round %d: digest %s, want %s", round, got, want)
				}
			}
		})
	}
}

// TestZoneCopyCompact checks the record layout's size for the zone of
// make bench-scale: "name" and "*.name" CNAME . share an owner and a
// shape.
func TestZoneCopyCompact(t *testing.T) {
	z := newZoneCopy("rpz.test.", benchSOA(1))
	const n = 10000
	for i := range n {
		for _, rr := range benchCNAMEs(benchFeedName(i)) {
			r, err := z.encode(rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			z.add(r)
		}
	}
	used := 0
	for _, c := range z.chunks {
		used += len(c)
	}
	// "label-0000000.example-lbl.tld": 30 bytes of wire form, its length
	// and the shape: 32; the wildcard: reference and shape, 6.
	if per := float64(used) / n; per != 38 {
		t.Fatalf("%.1f chunk bytes per name, want 38", per)
	}
	if len(z.shapes) != 1 {
		t.Fatalf("%d shapes, want 1", len(z.shapes))
	}
	if !bytes.Equal(z.rec(1)[1:3], starLabel) {
		t.Fatalf("record 1 reads back as %q", z.rec(1))
	}
}

// A record number that holds nothing (a blank line of the zone file read
// back) inside a group does not hide the records after it.
func TestZoneCopyPlaceholderInGroup(t *testing.T) {
	z := newZoneCopy("rpz.test.", benchSOA(1))
	rrs := benchCNAMEs("a.example")
	r0, _ := z.encode(rrs[0], nil)
	z.add(r0)
	z.placeholder()
	r1, _ := z.encode(rrs[1], nil)
	z.add(r1)
	z.placeholder()
	if got := z.offs[2]; got == placeholderOff || z.isLiteral(2) {
		t.Fatal("the wildcard after a placeholder is not stored as a reference")
	}
	for k, r := range [][]byte{r0, r1} {
		if i, ok := z.find(r); !ok || i != 2*k {
			t.Fatalf("record %d found at %d, %v", k, i, ok)
		}
	}
	z.kill(0, true)
	if _, ok := z.find(r0); ok {
		t.Fatal("a killed record is found")
	}
	if i, ok := z.find(r1); !ok || i != 2 {
		t.Fatal("the wildcard is not found once the name it refers to is killed")
	}
	z.rehash(len(z.slots))
	if i, ok := z.find(r1); !ok || i != 2 {
		t.Fatal("the wildcard is not found after a rehash")
	}
}

// appendWireName writes what miekg/dns reads back as the same name.
func TestAppendWireName(t *testing.T) {
	for _, name := range []string{
		"a.example.", "*.a.example.", "with-dash_and_underscore.example.",
		`dot\.inside.example.`, `sp\ ace.example.`, `semi\;colon.example.`, `\(paren\).example.`,
		`at\@.example.`, `quote\".example.`, `back\\slash.example.`, `dollar\$.example.`,
		`\000nul.example.`, `\255high.example.`, `tab\009.example.`,
	} {
		w := make([]byte, 256)
		n, err := dns.PackDomainName(name, w, 0, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := string(appendWireName(nil, w[:n-1])) // without the root
		w2 := make([]byte, 256)
		n2, err := dns.PackDomainName(got, w2, 0, nil, false)
		if err != nil || !bytes.Equal(w[:n], w2[:n2]) {
			t.Errorf("%s written as %s, which reads back as %q (%v)", name, got, w2[:n2], err)
		}
	}
}

// A full transfer read record by record keeps one record per key, the
// last one's TTL, whether its duplicates come next to each other, after
// other records, at the apex, or break the canonical order; the copy
// holds what the transfer's last copies are.
func TestAXFRReaderDuplicates(t *testing.T) {
	soa := "rpz.test. 60 IN SOA ns. admin. 1 60 60 600 60"
	tests := []struct {
		name       string
		in, want   []string
		wantSorted bool
	}{
		{"canonical order, no duplicates",
			[]string{"rpz.test. 60 IN NS ns.", "a.rpz.test. 60 IN CNAME .", "*.a.rpz.test. 60 IN CNAME .", "b.rpz.test. 60 IN CNAME ."},
			[]string{"rpz.test. 60 IN NS ns.", "a.rpz.test. 60 IN CNAME .", "*.a.rpz.test. 60 IN CNAME .", "b.rpz.test. 60 IN CNAME ."}, true},
		{"a duplicate next to its record, another TTL",
			[]string{"a.rpz.test. 60 IN CNAME .", "a.rpz.test. 90 IN CNAME .", "b.rpz.test. 60 IN CNAME ."},
			[]string{"a.rpz.test. 90 IN CNAME .", "b.rpz.test. 60 IN CNAME ."}, false},
		{"a duplicate after other records",
			[]string{"a.rpz.test. 60 IN CNAME .", "b.rpz.test. 60 IN CNAME .", "c.rpz.test. 60 IN CNAME .", "a.rpz.test. 30 IN CNAME ."},
			[]string{"a.rpz.test. 30 IN CNAME .", "b.rpz.test. 60 IN CNAME .", "c.rpz.test. 60 IN CNAME ."}, false},
		{"apex duplicates",
			[]string{"rpz.test. 60 IN NS ns.", "a.rpz.test. 60 IN CNAME .", "rpz.test. 120 IN NS ns."},
			[]string{"rpz.test. 120 IN NS ns.", "a.rpz.test. 60 IN CNAME ."}, true},
		{"same owner, other types and data",
			[]string{"a.rpz.test. 60 IN A 192.0.2.1", "a.rpz.test. 60 IN A 192.0.2.2", "a.rpz.test. 60 IN TXT \"x\"", "a.rpz.test. 60 IN A 192.0.2.1"},
			[]string{"a.rpz.test. 60 IN A 192.0.2.1", "a.rpz.test. 60 IN A 192.0.2.2", "a.rpz.test. 60 IN TXT \"x\""}, false},
		{"out of order, then a duplicate above the last record",
			[]string{"b.rpz.test. 60 IN CNAME .", "a.rpz.test. 60 IN CNAME .", "b.rpz.test. 10 IN CNAME ."},
			[]string{"a.rpz.test. 60 IN CNAME .", "b.rpz.test. 10 IN CNAME ."}, false},
		{"out of order, then a duplicate of an early record",
			[]string{"b.rpz.test. 60 IN CNAME .", "a.rpz.test. 60 IN CNAME .", "c.rpz.test. 60 IN CNAME .", "b.rpz.test. 10 IN CNAME ."},
			[]string{"a.rpz.test. 60 IN CNAME .", "b.rpz.test. 10 IN CNAME .", "c.rpz.test. 60 IN CNAME ."}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &axfrReader{s: &Secondary{apex: "rpz.test."}}
			for _, r := range append(append([]string{soa}, tt.in...), soa) {
				if err := a.add(mustRR(t, r)); err != nil {
					t.Fatalf("%s: %v", r, err)
				}
			}
			z, err := a.finish()
			if err != nil {
				t.Fatal(err)
			}
			var want []dns.RR
			for _, r := range tt.want {
				want = append(want, mustRR(t, r))
			}
			sameRRSet(t, liveRRs(t, z), want) // TTLs included
			if sorted := !z.unsorted && z.sorted == z.records(); sorted != tt.wantSorted {
				t.Errorf("copy in canonical order: %v, want %v", sorted, tt.wantSorted)
			}
		})
	}
}

// encode's CNAME path gives the bytes miekg/dns's packing gives, and
// declines (for the packed path to handle or refuse) what it does not
// take as plain.
func TestEncodeCNAME(t *testing.T) {
	z := newZoneCopy("rpz.test.", nil)
	long := strings.Repeat("a", 63)
	tests := []struct {
		rr   string
		fast bool // taken by encodeCNAME
	}{
		{"name.example.rpz.test. 60 IN CNAME .", true},
		{"*.name.example.rpz.test. 60 IN CNAME .", true},
		{"name.example.rpz.test. 60 IN CNAME *.", true},
		{"name.example.rpz.test. 60 IN CNAME rpz-passthru.", true},
		{"name.example.rpz.test. 4294967295 IN CNAME walled.garden.example.", true},
		{"_srv.x-y.rpz.test. 0 IN CNAME rpz-drop.", true},
		{long + ".rpz.test. 60 IN CNAME " + long + "." + long + ".", true},
		{"Name.Example.rpz.test. 60 IN CNAME .", false},
		{"name.rpz.test. 60 IN CNAME Target.Example.", false},
		{`we\.ird.rpz.test. 60 IN CNAME .`, false},
		{`sp\032ace.rpz.test. 60 IN CNAME .`, false},
		{"rpz.test. 60 IN CNAME .", false},
		{"name.other.test. 60 IN CNAME .", false},
		{"xrpz.test. 60 IN CNAME .", false},
		{"32.1.2.0.192.rpz-ip.rpz.test. 60 IN CNAME .", true},
	}
	for _, tt := range tests {
		rr := mustRR(t, tt.rr)
		fast, ok := z.encodeCNAME(rr.(*dns.CNAME), nil)
		if ok != tt.fast {
			t.Errorf("%s: taken by the CNAME path %v, want %v", tt.rr, ok, tt.fast)
		}
		packed, err := z.encodePacked(rr, nil)
		if ok && (err != nil || !bytes.Equal(fast, packed)) {
			t.Errorf("%s: CNAME path %x, packed %x (%v)", tt.rr, fast, packed, err)
		}
		via, verr := z.encode(rr, nil)
		if (verr == nil) != (err == nil) || !bytes.Equal(via, packed) {
			t.Errorf("%s: encode %x (%v), packed %x (%v)", tt.rr, via, verr, packed, err)
		}
	}
}
