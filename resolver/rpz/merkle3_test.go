package rpz

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// draftMerkle3Zone is the worked example of
// draft-aklpdw-dnsop-zonemd-incremental-00.
const draftMerkle3Zone = `example.com.  300   IN   SOA    mname.example.com. rname.example.com. 1 3600 7200 43200 300
example.com.  300   IN   AAAA   2606:4700:10::ac42:93f3
example.com.  300   IN   AAAA   2606:4700:10::6814:179a
`

// treeByHand computes a MERKLE3 digest the way the draft describes it,
// level by level with maps, from RRsets given as their records' canonical
// wire forms (each RRset's records in canonical order).
func treeByHand(t *testing.T, alg uint8, rrsets [][][]byte) []byte {
	t.Helper()
	h, err := zonemdHash(alg)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(parts ...[]byte) []byte {
		h.Reset()
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	l2 := map[int][][]byte{}
	for _, set := range rrsets {
		leaf := sum(set...)
		l2[int(leaf[0])<<8|int(leaf[1])] = append(l2[int(leaf[0])<<8|int(leaf[1])], leaf)
	}
	l1 := map[int][][]byte{}
	for n := 0; n < 65536; n++ {
		if leaves := l2[n]; len(leaves) > 0 {
			slices.SortFunc(leaves, bytes.Compare)
			l1[n>>8] = append(l1[n>>8], sum(leaves...))
		}
	}
	var top [][]byte
	for i := 0; i < 256; i++ {
		if kids := l1[i]; len(kids) > 0 {
			top = append(top, sum(kids...))
		}
	}
	return sum(top...)
}

// wireOf packs records in canonical form (their text is lower case and
// uncompressed names already).
func wireOf(t *testing.T, rrs ...dns.RR) [][]byte {
	t.Helper()
	var out [][]byte
	for _, rr := range rrs {
		buf := make([]byte, dns.Len(rr)+16)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n])
	}
	return out
}

func TestMerkle3DraftExample(t *testing.T) {
	rrs := parseZone(t, "example.com.", draftMerkle3Zone)
	// The first AAAA record's serialization, as the draft prints it.
	want := "076578616D706C6503636F6D00001C0001 0000012C 0010 2606 4700 0010 0000 0000 0000 AC42 93F3"
	if got := strings.ToUpper(hex.EncodeToString(wireOf(t, rrs[1])[0])); got != strings.ReplaceAll(want, " ", "") {
		// The draft writes the type as 0001; AAAA is 28 (0x001C).
		t.Fatalf("AAAA wire %s, want %s", got, want)
	}
	// The SOA RRset's SHA-384, the draft's test vector.
	soa := sha512.Sum384(wireOf(t, rrs[0])[0])
	const vector = "B5EE62F73B9094B4B0E1FCF899FADBD55972359A355C82C924CEA28A1B73959ECA9D6D00670FF32A873B8AD03721A181"
	if got := strings.ToUpper(hex.EncodeToString(soa[:])); got != vector {
		t.Fatalf("SOA RRset SHA-384 %s, want the draft's %s", got, vector)
	}
	if soa[0] != 181 || soa[1] != 238 {
		t.Fatalf("SOA RRset under level-1 %d, level-2 %d; the draft says 181, 238", soa[0], soa[1])
	}
	// The whole zone: two RRsets, the AAAA pair one leaf.
	aaaa := wireOf(t, rrs[1], rrs[2])
	slices.SortFunc(aaaa, func(a, b []byte) int { return bytes.Compare(a[len(a)-16:], b[len(b)-16:]) })
	want384 := treeByHand(t, ZonemdHashSHA384, [][][]byte{wireOf(t, rrs[0]), aaaa})
	got, err := ZoneDigestMerkle3("example.com.", rrs, ZonemdHashSHA384)
	if err != nil || !bytes.Equal(got, want384) {
		t.Fatalf("digest %x (%v), want %x", got, err, want384)
	}
}

func TestMerkle3Digest(t *testing.T) {
	base := parseZone(t, "example.", rfc8976Simple) // SOA, 2 NS, ZONEMD, A, AAAA
	noMD := append(append([]dns.RR{}, base[:3]...), base[4:]...)
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// By hand: SOA, the NS pair (one RRset), A, AAAA.
	byHand := treeByHand(t, ZonemdHashSHA384, [][][]byte{
		wireOf(t, base[0]), wireOf(t, base[1], base[2]), wireOf(t, base[4]), wireOf(t, base[5]),
	})
	ref, err := ZoneDigestMerkle3("example.", noMD, ZonemdHashSHA384)
	if err != nil || !bytes.Equal(ref, byHand) {
		t.Fatalf("digest %x (%v), want %x", ref, err, byHand)
	}
	tests := []struct {
		name string
		rrs  []dns.RR
		same bool // the same digest as ref
	}{
		{"the zone's own ZONEMD left out", base, true},
		{"RRSIG over the ZONEMD left out", append(slices.Clone(base), rr("example. 86400 IN RRSIG ZONEMD 13 1 86400 20300101000000 20200101000000 1 example. AAAA")), true},
		{"a ZONEMD below the apex counts", append(slices.Clone(noMD), rr("sub.example. 60 IN ZONEMD 1 1 1 "+strings.Repeat("00", 48))), false},
		{"owner case does not matter", append(append([]dns.RR{}, noMD[:3]...), rr("NS1.Example. 3600 IN A 203.0.113.63"), noMD[4]), true},
		{"a duplicate record counts once", append(slices.Clone(noMD), dns.Copy(noMD[4])), true},
		{"record order does not matter", []dns.RR{noMD[4], noMD[2], noMD[0], noMD[3], noMD[1]}, true},
		{"one record of an RRset removed", append(append([]dns.RR{}, noMD[:2]...), noMD[3:]...), false},
		{"a record added to an RRset", append(slices.Clone(noMD), rr("example. 86400 IN NS ns3.example.")), false},
		{"a TTL changed", append(append([]dns.RR{}, noMD[:4]...), rr("ns2.example. 3601 IN AAAA 2001:db8::63")), false},
		{"another class left out", append(slices.Clone(noMD), &dns.A{Hdr: dns.RR_Header{Name: "x.example.", Rrtype: dns.TypeA, Class: dns.ClassCHAOS, Ttl: 1}}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ZoneDigestMerkle3("example.", tt.rrs, ZonemdHashSHA384)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, ref) != tt.same {
				t.Fatalf("digest %x, reference %x, want same=%v", got, ref, tt.same)
			}
		})
	}
	// The empty zone (nothing at all) digests as the hash of nothing; a
	// zone of one RRset is three hashes above its leaf.
	empty, err := ZoneDigestMerkle3("example.", nil, ZonemdHashSHA384)
	if h := sha512.Sum384(nil); err != nil || !bytes.Equal(empty, h[:]) {
		t.Fatalf("empty zone: %x %v", empty, err)
	}
	leaf := sha512.Sum384(wireOf(t, base[0])[0])
	n2 := sha512.Sum384(leaf[:])
	n1 := sha512.Sum384(n2[:])
	root := sha512.Sum384(n1[:])
	if got, err := ZoneDigestMerkle3("example.", base[:1], ZonemdHashSHA384); err != nil || !bytes.Equal(got, root[:]) {
		t.Fatalf("SOA-only zone: %x %v, want %x", got, err, root)
	}
	// SHA-512 differs from SHA-384 and is 64 bytes.
	if d, err := ZoneDigestMerkle3("example.", noMD, ZonemdHashSHA512); err != nil || len(d) != 64 {
		t.Fatalf("SHA-512: %x %v", d, err)
	}
	if _, err := ZoneDigestMerkle3("example.", noMD, 3); err == nil {
		t.Fatal("hash 3 accepted")
	}
}

// zonemdRR returns the apex ZONEMD of digest d.
func zonemdRR(apex string, serial uint32, scheme, alg uint8, d []byte) *dns.ZONEMD {
	return &dns.ZONEMD{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeZONEMD, Class: dns.ClassINET, Ttl: 60},
		Serial: serial, Scheme: scheme, Hash: alg, Digest: hex.EncodeToString(d)}
}

func TestVerifyZonemdMerkle3(t *testing.T) {
	base := parseZone(t, "example.", rfc8976Simple)
	simple := base[3]
	noMD := append(append([]dns.RR{}, base[:3]...), base[4:]...)
	m384, _ := ZoneDigestMerkle3("example.", noMD, ZonemdHashSHA384)
	m512, _ := ZoneDigestMerkle3("example.", noMD, ZonemdHashSHA512)
	good := zonemdRR("example.", 2018031900, ZonemdSchemeMerkle3, ZonemdHashSHA384, m384)
	bad := zonemdRR("example.", 2018031900, ZonemdSchemeMerkle3, ZonemdHashSHA384, make([]byte, 48))
	badSimple := dns.Copy(simple).(*dns.ZONEMD)
	badSimple.Digest = strings.Repeat("0", 96)
	tests := []struct {
		name string
		mds  []dns.RR
		want string
	}{
		{"MERKLE3 SHA-384", []dns.RR{good}, ""},
		{"MERKLE3 SHA-512", []dns.RR{zonemdRR("example.", 2018031900, ZonemdSchemeMerkle3, ZonemdHashSHA512, m512)}, ""},
		{"MERKLE3 and SIMPLE", []dns.RR{simple, good}, ""},
		{"MERKLE3 wrong", []dns.RR{bad}, "MERKLE3 ZONEMD digest"},
		{"MERKLE3 wrong, SIMPLE right: one match verifies (RFC 8976 section 4)", []dns.RR{bad, simple}, ""},
		{"both wrong", []dns.RR{bad, badSimple}, "ZONEMD mismatch"},
		{"MERKLE3 serial", []dns.RR{zonemdRR("example.", 1, ZonemdSchemeMerkle3, ZonemdHashSHA384, m384)}, "is not the SOA serial"},
		{"a SIMPLE digest under the MERKLE3 number", []dns.RR{zonemdRR("example.", 2018031900, ZonemdSchemeMerkle3, ZonemdHashSHA384, mustHex(t, simple.(*dns.ZONEMD).Digest))}, "ZONEMD mismatch"},
		{"unknown scheme only", []dns.RR{zonemdRR("example.", 2018031900, 241, ZonemdHashSHA384, m384)}, ErrNoZonemd.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyZonemd("example.", append(slices.Clone(noMD), tt.mds...))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkM3Incremental applies random additions and removals of leaves to
// one tree, node by node as a change would, and compares its root with
// the tree built from scratch after every step.
func checkM3Incremental(t *testing.T, r *rand.Rand, steps int) {
	t.Helper()
	tr, _ := newM3Tree(ZonemdHashSHA384)
	var leaves [][]byte
	byNode := map[uint16][][]byte{}
	for s := 0; s < steps; s++ {
		changed := map[uint16]bool{}
		for k := r.IntN(4); k >= 0; k-- {
			if len(leaves) > 0 && r.IntN(3) == 0 {
				i := r.IntN(len(leaves))
				n := m3Node(leaves[i])
				byNode[n] = slices.DeleteFunc(byNode[n], func(l []byte) bool { return bytes.Equal(l, leaves[i]) })
				leaves = slices.Delete(leaves, i, i+1)
				changed[n] = true
				continue
			}
			var seed [8]byte
			for j := range seed {
				seed[j] = byte(r.Uint32())
			}
			l := sha512.Sum384(seed[:])
			if r.IntN(4) == 0 && len(leaves) > 0 { // crowd a node
				l[0], l[1] = leaves[0][0], leaves[0][1]
			}
			leaves = append(leaves, l[:])
			byNode[m3Node(l[:])] = append(byNode[m3Node(l[:])], l[:])
			changed[m3Node(l[:])] = true
		}
		for n := range changed {
			tr.setNode(n, slices.Clone(byNode[n]))
		}
		want, _ := merkle3Root(ZonemdHashSHA384, slices.Clone(leaves))
		if got := tr.root(); !bytes.Equal(got, want) {
			t.Fatalf("step %d (%d leaves): incremental %x, from scratch %x", s, len(leaves), got, want)
		}
	}
}

func TestMerkle3IncrementalMatchesScratch(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		checkM3Incremental(t, rand.New(rand.NewPCG(seed, 13)), 300)
	}
}

// FuzzMerkle3 checks, for any sequence of changes the fuzzer makes up,
// that the incrementally kept tree is the tree built from scratch, and
// that the reference digest of a zone read from the input does not
// depend on the records' order or panics.
func FuzzMerkle3(f *testing.F) {
	f.Add(uint64(1), 50, "a CNAME .\nb A 192.0.2.1\nb A 192.0.2.2\n")
	f.Add(uint64(7), 5, "*.x CNAME rpz-passthru.\nX TXT \"a\"\n")
	f.Fuzz(func(t *testing.T, seed uint64, steps int, text string) {
		if steps < 0 || steps > 50 {
			steps = 20
		}
		checkM3Incremental(t, rand.New(rand.NewPCG(seed, 0)), steps)
		zp := dns.NewZoneParser(strings.NewReader("@ 60 IN SOA ns. h. 1 1 1 1 1\n"+text), "z.example.", "")
		var rrs []dns.RR
		for rr, ok := zp.Next(); ok && len(rrs) < 200; rr, ok = zp.Next() {
			rrs = append(rrs, rr)
		}
		a, errA := ZoneDigestMerkle3("z.example.", rrs, ZonemdHashSHA384)
		slices.Reverse(rrs)
		b, errB := ZoneDigestMerkle3("z.example.", rrs, ZonemdHashSHA384)
		if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
			t.Fatalf("order changed the digest: %x %v / %x %v", a, errA, b, errB)
		}
	})
}

func copyMerkle3(t *testing.T, z *zoneCopy) string {
	t.Helper()
	d, err := z.merkle3(ZonemdHashSHA384)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(d)
}

func listMerkle3(t *testing.T, soa *dns.SOA, rrs []dns.RR) string {
	t.Helper()
	d, err := ZoneDigestMerkle3("rpz.test.", append([]dns.RR{soa}, rrs...), ZonemdHashSHA384)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(d)
}

// TestZoneCopyMerkle3MatchesReference: a secondary's MERKLE3 state, kept
// up to date over random rounds of records taken out and added (RRsets
// that grow, shrink, vanish and appear, apex records, a new SOA each
// round), gives the reference digest of the same records every round,
// and so does a state built afresh.
func TestZoneCopyMerkle3MatchesReference(t *testing.T) {
	for _, tc := range zoneCopyCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			soa := benchSOA(1)
			rrs := append(tc.rrs(),
				mustRR(t, "rpz.test. 60 IN NS ns.sinkhole.invalid."),
				mustRR(t, "rpz.test. 60 IN TXT \"directive\""),
				mustRR(t, "rpz.test. 60 IN ZONEMD 1 1 1 "+strings.Repeat("ab", 48)),
				mustRR(t, "multi.rpz.test. 60 IN A 192.0.2.1"),
				mustRR(t, "multi.rpz.test. 60 IN A 192.0.2.2"),
				mustRR(t, "multi.rpz.test. 60 IN AAAA 2001:db8::1"))
			z := buildCopy(t, soa, rrs)
			if got, want := copyMerkle3(t, z), listMerkle3(t, soa, rrs); got != want {
				t.Fatalf("built: %s, want %s", got, want)
			}
			rnd := rand.New(rand.NewPCG(5, 6))
			cur := slices.Clone(rrs)
			for round := range 12 {
				var next []dns.RR
				for _, rr := range cur {
					if rnd.IntN(6) == 0 {
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
				for i := range 3 + round {
					for _, s := range []string{
						fmt.Sprintf("r%d-%d.x.rpz.test. 60 IN CNAME .", round, i),
						fmt.Sprintf("*.r%d-%d.x.rpz.test. 60 IN CNAME .", round, i),
						fmt.Sprintf("multi.rpz.test. 60 IN A 192.0.%d.%d", 3+round, i),
						fmt.Sprintf("rpz.test. 60 IN TXT \"r%d-%d\"", round, i),
					} {
						rr := mustRR(t, s)
						r, err := z.encode(rr, nil)
						if err != nil {
							t.Fatal(err)
						}
						if _, dup := z.find(r); dup {
							continue
						}
						z.add(r)
						next = append(next, rr)
					}
				}
				cur = next
				soa = benchSOA(uint32(2 + round))
				z.soa = soa
				want := listMerkle3(t, soa, cur)
				if got := copyMerkle3(t, z); got != want {
					t.Fatalf("round %d: incremental %s, want %s", round, got, want)
				}
				m := z.m3
				// Built afresh: pass 2 with the leaves pass 1 kept for all,
				// some (the first rounds' only) or none of the nodes.
				for _, keep := range []int{0, 200, -1} {
					z.m3, z.m3Keep = nil, keep
					if got := copyMerkle3(t, z); got != want {
						t.Fatalf("round %d: built afresh (keep %d) %s, want %s", round, keep, got, want)
					}
				}
				z.m3Keep = 0
				if round%2 == 0 {
					z.m3 = m // go on with the incremental state
				}
			}
			// A compacted copy takes the state along, renumbered, and
			// goes on from it.
			if z.m3 == nil {
				copyMerkle3(t, z)
			}
			c := z.compacted()
			if c.m3 == nil || c.m3.tree != z.m3.tree {
				t.Fatal("the compacted copy did not take the MERKLE3 state")
			}
			if got, want := copyMerkle3(t, c), listMerkle3(t, soa, cur); got != want {
				t.Fatalf("compacted: %s, want %s", got, want)
			}
			r0, _ := c.encode(cur[0], nil)
			k0, _ := c.find(r0)
			c.kill(k0, true)
			c.add(mustRR2(t, c, "after-compaction.rpz.test. 60 IN CNAME ."))
			if got, want := copyMerkle3(t, c), listMerkle3(t, soa, append(slices.Clone(cur[1:]), mustRR(t, "after-compaction.rpz.test. 60 IN CNAME ."))); got != want {
				t.Fatalf("compacted, then changed: %s, want %s", got, want)
			}
			c.m3 = nil
			if got, want := copyMerkle3(t, c), listMerkle3(t, soa, append(slices.Clone(cur[1:]), mustRR(t, "after-compaction.rpz.test. 60 IN CNAME ."))); got != want {
				t.Fatalf("compacted, changed, built afresh: %s, want %s", got, want)
			}
			// A tentative change undone drops the state; the next digest
			// is the version's before it.
			want := listMerkle3(t, soa, cur)
			mk := z.mark()
			r, _ := z.encode(cur[0], nil)
			k, _ := z.find(r)
			z.kill(k, true)
			z.add(mustRR2(t, z, "undone.rpz.test. 60 IN CNAME ."))
			if copyMerkle3(t, z) == want {
				t.Fatal("a change did not change the digest")
			}
			z.undo(mk, []int{k})
			if got := copyMerkle3(t, z); got != want {
				t.Fatalf("after undo %s, want %s", got, want)
			}
		})
	}
}

func mustRR2(t *testing.T, z *zoneCopy, s string) []byte {
	t.Helper()
	r, err := z.encode(mustRR(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
