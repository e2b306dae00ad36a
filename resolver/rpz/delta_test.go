package rpz

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// zoneLines returns a zone's records (apex TXT and owners, not SOA, NS or
// ZONEMD) as sorted text lines.
func zoneLines(z *czone) []string {
	var out []string
	for _, r := range z.txt {
		out = append(out, recordLine(r))
	}
	var owner []byte
	z.eachOwner(func(key []byte, code uint32) bool {
		owner = appendOwner(owner[:0], key)
		for _, r := range z.set(code).recs {
			r.owner = string(owner)
			out = append(out, recordLine(r))
		}
		return true
	})
	slices.Sort(out)
	return out
}

func recordLine(r record) string {
	return fmt.Sprintf("%s %d %s %s", r.owner, r.ttl, dns.TypeToString[r.rtype], r.rdata)
}

// oracleLines is the zone as the rule-by-rule build writes it.
func oracleLines(snap *blocklist.Snapshot, o BuildOptions) ([]string, Skipped) {
	recs, sk := buildRecords(snap, o)
	var out []string
	for _, r := range recs {
		out = append(out, recordLine(r))
	}
	slices.Sort(out)
	return slices.Compact(out), sk
}

// deltaGen writes random lists over a small name space, so that rules
// share names, cover each other and get exceptions.
type deltaGen struct {
	r *rand.Rand
}

func (g *deltaGen) name() string {
	labels := []string{"a", "b", "c", "d"}
	n := 1 + g.r.IntN(3)
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, labels[g.r.IntN(len(labels))])
	}
	return strings.Join(parts, ".") + "." + []string{"x", "y"}[g.r.IntN(2)]
}

func (g *deltaGen) rule() string {
	switch g.r.IntN(20) {
	case 0:
		return fmt.Sprintf("198.51.100.%d", g.r.IntN(8))
	case 1:
		return []string{"@@198.51.100.0/30", "198.51.100.0/29", "@@198.51.100.4", "2001:db8::/126"}[g.r.IntN(4)]
	case 2:
		return fmt.Sprintf("AS6450%d", g.r.IntN(3))
	}
	return []string{"", "", "", "*.", "=", "@@", "@@*.", "@@="}[g.r.IntN(8)] + g.name()
}

// lines of a list file: rules in the given sections; only rule lines
// are ever edited.
func (g *deltaGen) list(n int, sections ...string) []string {
	var out []string
	for _, s := range sections {
		out = append(out, strings.Split(s, "\n")...)
		for i := 0; i < n/len(sections); i++ {
			out = append(out, g.rule())
		}
	}
	return out
}

// edit removes and inserts a few rule lines.
func (g *deltaGen) edit(lines []string) []string {
	out := slices.Clone(lines)
	for k := 1 + g.r.IntN(3); k > 0; k-- {
		i := 1 + g.r.IntN(len(out)-1)
		if g.r.IntN(2) == 0 && !strings.HasPrefix(out[i], "#") {
			out = slices.Delete(out, i, i+1)
		} else {
			out = slices.Insert(out, i, g.rule())
		}
	}
	return out
}

const deltaRPZ = `$TTL 60
@ SOA ns. admin. 1 60 60 600 60
garden.test A 192.0.2.80
garden.test AAAA 2001:db8::80
*.redirect.test CNAME *.walled.garden.
a.x CNAME rpz-drop.
32.7.113.0.203.rpz-ip CNAME rpz-drop.
`

// TestExportDeltasMatchFullBuild: after every reload of a random sequence
// (one list edited by a few lines, applied as a delta; sometimes two
// files at once, rebuilt), the exported zone is exactly what a fresh
// build from the same snapshot gives (records, skipped rules, ZONEMD) and
// what the rule-by-rule build gives, and IXFR from every kept serial
// leads to it.
func TestExportDeltasMatchFullBuild(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g := &deltaGen{r: rand.New(rand.NewPCG(seed, 7))}
			// A big list, edited as deltas (its directives are all at the
			// top, far from the edits), and a small one with every kind of
			// section, edited now and then with it (rebuilt).
			a := g.list(3000, "# platform: P\n# authority: Ministry")
			b := g.list(40, "# action: nodata", "# action: log", "# action: default\n# scope: overseas", "# scope: any\n# action: sinkhole\n# authority: Other")
			build := BuildOptions{SinkholeV4: netip.MustParseAddr("192.0.2.1"), SinkholeV6: netip.MustParseAddr("2001:db8::1"), TTL: 300}
			p := startPrimary(t, "", map[string]string{"a.txt": strings.Join(a, "\n") + "\n", "b.txt": strings.Join(b, "\n") + "\n", "c.rpz": deltaRPZ},
				ExportConfig{Build: build})
			history := map[uint32][]string{}
			check := func(step int) {
				t.Helper()
				p.export.mu.RLock()
				cur, deltas := p.export.cur, slices.Clone(p.export.deltas)
				skipped := p.export.skipped
				p.export.mu.RUnlock()
				snap := p.store.Current()
				got := zoneLines(cur.zone)
				fresh := fullBuild(snap, build)
				if want := zoneLines(fresh.zone); !slices.Equal(got, want) {
					t.Fatalf("step %d: exported zone differs from a full build:\n%s", step, lineDiff(got, want))
				}
				want, wantSk := oracleLines(snap, build)
				if !slices.Equal(got, want) {
					t.Fatalf("step %d: exported zone differs from the rule-by-rule build:\n%s", step, lineDiff(got, want))
				}
				if skipped != wantSk || fresh.skipped() != wantSk {
					t.Fatalf("step %d: skipped %+v, full build %+v, rule-by-rule %+v", step, skipped, fresh.skipped(), wantSk)
				}
				// Computed afresh by another exporter: the MERKLE3 state of
				// this one follows its versions.
				ref, err := NewExporter(p.export.cfg)
				if err != nil {
					t.Fatal(err)
				}
				// Its MERKLE3 build's pass 2 with the leaves pass 1 kept
				// for every node, for the first rounds' nodes, for none.
				ref.m3Keep = []int{0, 40000, -1}[step%3]
				if mds := ref.zonemdsOf(fresh.zone, cur.serial); !sameZonemds(mds, cur.zonemds) || len(mds) != len(DefaultExportZonemd) {
					t.Fatalf("step %d: ZONEMD %v, a full build's %v (keep %d)", step, cur.zonemds, mds, ref.m3Keep)
				}
				history[cur.serial] = got
				for i, d := range deltas {
					have := map[string]bool{}
					for _, l := range history[d.from] {
						have[l] = true
					}
					for _, dd := range deltas[i:] {
						for _, r := range dd.del {
							if !have[recordLine(r)] {
								t.Fatalf("step %d: IXFR from %d deletes %q, which serial %d lacks", step, d.from, recordLine(r), dd.from)
							}
							delete(have, recordLine(r))
						}
						for _, r := range dd.add {
							if have[recordLine(r)] {
								t.Fatalf("step %d: IXFR from %d adds %q, which serial %d has", step, d.from, recordLine(r), dd.from)
							}
							have[recordLine(r)] = true
						}
					}
					var res []string
					for l := range have {
						res = append(res, l)
					}
					slices.Sort(res)
					if !slices.Equal(res, got) {
						t.Fatalf("step %d: IXFR from %d does not give the zone:\n%s", step, d.from, lineDiff(res, got))
					}
				}
			}
			check(0)
			for step := 1; step <= 60; step++ {
				a = g.edit(a)
				writeFile(t, p.dir, "a.txt", strings.Join(a, "\n")+"\n")
				if step%10 == 0 {
					b = g.edit(b)
					writeFile(t, p.dir, "b.txt", strings.Join(b, "\n")+"\n")
				}
				p.reload(t)
				check(step)
				if step%15 == 0 {
					// The store merges a delta into a new base in the
					// background: the export of the merged lists is the same.
					p.store.WaitCompacted()
					check(step)
				}
			}
			st := p.export.Status()
			if p.export.followed.delta.Load() == 0 {
				t.Fatalf("no reload was followed as a delta (%d rebuilt)", p.export.followed.rebuilt.Load())
			}
			t.Logf("followed %d reloads as deltas, %d rebuilt; serial %d, %d records, IXFR from %d", p.export.followed.delta.Load(), p.export.followed.rebuilt.Load(), st.Serial, st.Records, st.IXFRFrom)
			// Its MERKLE3 state followed the deltas: built whole only for
			// the first version and the rebuilds.
			p.export.wmu.Lock()
			builds := p.export.m3Builds
			p.export.wmu.Unlock()
			if want := int(p.export.followed.rebuilt.Load()); builds > want {
				t.Fatalf("MERKLE3 built whole %d times, for %d rebuilds", builds, want)
			}

			// Over the wire: AXFR verifies with its ZONEMD; IXFR from the
			// oldest kept serial carries the same zone.
			axfr, err := xfr(t, p.addr, axfrMsg("rpz.test"))
			if err != nil {
				t.Fatal(err)
			}
			checkZonemd(t, "rpz.test.", axfr[:len(axfr)-1])
			ixfr, err := xfr(t, p.addr, ixfrMsg("rpz.test", st.IXFRFrom))
			if err != nil {
				t.Fatal(err)
			}
			if len(ixfr) < 2 || !strings.Contains(ixfr[1], " SOA ") {
				t.Fatalf("IXFR from %d is not incremental:\n%s", st.IXFRFrom, strings.Join(ixfr, "\n"))
			}
		})
	}
}

// lineDiff shows the lines only one side has.
func lineDiff(got, want []string) string {
	var sb strings.Builder
	g, w := map[string]bool{}, map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range got {
		if !w[l] {
			sb.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range want {
		if !g[l] {
			sb.WriteString("- " + l + "\n")
		}
	}
	return sb.String()
}

// bigRule is a rule over a name space of thousands of names, some under
// others, with every kind of rule and exception.
func (g *deltaGen) bigRule() string {
	if g.r.IntN(50) == 0 {
		return fmt.Sprintf("198.51.100.%d", g.r.IntN(16))
	}
	name := fmt.Sprintf("h%d.x", g.r.IntN(4000))
	if g.r.IntN(3) == 0 {
		name = fmt.Sprintf("s%d.%s", g.r.IntN(4), name)
	}
	return []string{"", "", "", "", "*.", "=", "@@", "@@*.", "@@="}[g.r.IntN(9)] + name
}

// bigEdit removes and inserts k rule lines in regions of a few hundred
// lines (a batch of the regulator's changes: the store's line difference
// finds the unchanged lines again within 32 chunks, about 2,000 lines, of
// an edit; edits spread over every part of a file are a full reload's), or
// appends them at the end (step 0 always).
func (g *deltaGen) bigEdit(lines []string, k int, appendOnly bool) []string {
	out := slices.Clone(lines)
	if appendOnly {
		for ; k > 0; k-- {
			out = append(out, g.bigRule())
		}
		return out
	}
	for k > 0 {
		n := min(k, 400)
		k -= n
		from := 100 + g.r.IntN(len(out)-2*n-200)
		for ; n > 0; n-- {
			i := from + g.r.IntN(n)
			if g.r.IntN(3) == 0 {
				out = slices.Delete(out, i, i+1)
			} else {
				out = slices.Insert(out, i, g.bigRule())
			}
		}
	}
	return out
}

// packedAXFR returns the messages an AXFR of e's zone in service sends, packed
// with compression as the server packs them.
func packedAXFR(t *testing.T, e *Exporter) [][]byte {
	t.Helper()
	var out [][]byte
	err := e.ServeTransfer(context.Background(), nil, axfrMsg(e.Zone()), netip.MustParseAddrPort("127.0.0.1:53000"), func(m *dns.Msg) error {
		m.Compress = true
		b, err := m.Pack()
		out = append(out, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportBigDeltasMatchFullBuild: deltas of far more than
// blocklist.MaxReportedRules rules (the report's listed rules) are still
// followed as deltas, and each version is what a full rebuild of the same
// snapshot gives: the same AXFR bytes (messages packed as the server packs
// them, the same serial), the same ZONEMD, the rule-by-rule build's
// records; IXFR from the version before carries exactly the change.
func TestExportBigDeltasMatchFullBuild(t *testing.T) {
	g := &deltaGen{r: rand.New(rand.NewPCG(11, 13))}
	lines := []string{"# platform: P", "# authority: Ministry", "# order: 2026/1"}
	for i := 0; i < 40000; i++ {
		lines = append(lines, g.bigRule())
	}
	build := BuildOptions{SinkholeV4: netip.MustParseAddr("192.0.2.1"), TTL: 300}
	p := startPrimary(t, "", map[string]string{"a.txt": strings.Join(lines, "\n") + "\n"}, ExportConfig{Build: build})
	big := 0
	for step, k := range []int{3000, 1500, 1, 2500, 4000, 2000} {
		before := p.export.followed.delta.Load()
		prev := zoneLines(p.export.cur.zone)
		prevSerial := p.export.Serial()
		lines = g.bigEdit(lines, k, step == 0)
		writeFile(t, p.dir, "a.txt", strings.Join(lines, "\n")+"\n")
		rep, err := p.store.Reload(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		p.export.Wait()
		if !rep.Delta {
			t.Fatalf("step %d: the store did not apply %d edited lines as a delta", step, k)
		}
		if got := p.export.followed.delta.Load(); got != before+1 {
			t.Fatalf("step %d: %d added, %d removed rules were rebuilt, not followed as a delta", step, rep.Files[0].AddedCount, rep.Files[0].RemovedCount)
		}
		snap := p.store.Current()
		p.export.mu.RLock()
		cur := p.export.cur
		var last delta
		if len(p.export.deltas) > 0 {
			last = p.export.deltas[len(p.export.deltas)-1]
		}
		p.export.mu.RUnlock()
		fresh, err := NewExporter(ExportConfig{Zone: "rpz.test", Build: build, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		fw := fullBuild(snap, build)
		fresh.cur = &version{serial: cur.serial, zone: fw.zone, zonemds: fresh.zonemdsOf(fw.zone, cur.serial)}
		if len(cur.zonemds) != len(DefaultExportZonemd) || !sameZonemds(fresh.cur.zonemds, cur.zonemds) {
			t.Fatalf("step %d: ZONEMD %v, a full build's %v", step, cur.zonemds, fresh.cur.zonemds)
		}
		got, want := packedAXFR(t, p.export), packedAXFR(t, fresh)
		if len(got) != len(want) {
			t.Fatalf("step %d: AXFR in %d messages, a full build's in %d", step, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("step %d: AXFR message %d differs from a full build's", step, i)
			}
		}
		now := zoneLines(cur.zone)
		if oracle, _ := oracleLines(snap, build); !slices.Equal(now, oracle) {
			t.Fatalf("step %d: exported zone differs from the rule-by-rule build:\n%s", step, lineDiff(now, oracle))
		}
		if cur.serial == prevSerial {
			if !slices.Equal(now, prev) {
				t.Fatalf("step %d: the zone changed under serial %d", step, cur.serial)
			}
			continue // the edit changed no record
		}
		if last.from != prevSerial || last.to != cur.serial {
			t.Fatalf("step %d: last difference %d..%d, want %d..%d", step, last.from, last.to, prevSerial, cur.serial)
		}
		have := map[string]bool{}
		for _, l := range prev {
			have[l] = true
		}
		for _, r := range last.del {
			delete(have, recordLine(r))
		}
		for _, r := range last.add {
			have[recordLine(r)] = true
		}
		res := slices.Sorted(maps.Keys(have))
		if !slices.Equal(res, now) {
			t.Fatalf("step %d: the IXFR difference does not give the zone:\n%s", step, lineDiff(res, now))
		}
		t.Logf("step %d: %d lines edited: %d rules added, %d removed; IXFR difference %d deleted, %d added records", step, k,
			rep.Files[0].AddedCount, rep.Files[0].RemovedCount, len(last.del), len(last.add))
		big = max(big, rep.Files[0].AddedCount, rep.Files[0].RemovedCount)
	}
	if big <= blocklist.MaxReportedRules {
		t.Fatalf("no delta added or removed more than %d rules", blocklist.MaxReportedRules)
	}
	// Over the wire, the zone verifies with its ZONEMD.
	axfr, err := xfr(t, p.addr, axfrMsg("rpz.test"))
	if err != nil {
		t.Fatal(err)
	}
	checkZonemd(t, "rpz.test.", axfr[:len(axfr)-1])
}

// sameZonemds reports whether two versions' ZONEMD records are the same.
func sameZonemds(a, b []dns.RR) bool {
	return slices.EqualFunc(a, b, func(x, y dns.RR) bool { return x.String() == y.String() })
}
