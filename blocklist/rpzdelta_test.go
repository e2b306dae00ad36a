package blocklist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// rpzDecisions is decisions plus what only RPZ zones have: the local data
// a blocked name answers with, and every file's warnings and errors.
// sameRPZDecisions fails unless st decides as fresh (a full load of the
// same files) at this step, and, every tenth step, also after st's
// background merge.
func sameRPZDecisions(t *testing.T, step int, delta bool, st, fresh *Store, names []string, ips []netip.Addr) {
	t.Helper()
	want := rpzDecisions(fresh.Current(), names, ips)
	if got := rpzDecisions(st.Current(), names, ips); got != want {
		t.Fatalf("step %d (delta %v): decisions differ from a full load:\n%s", step, delta, diffLines(got, want))
	}
	if step%10 == 0 {
		st.WaitCompacted()
		if got := rpzDecisions(st.Current(), names, ips); got != want {
			t.Fatalf("step %d: after the merge, decisions differ from a full load:\n%s", step, diffLines(got, want))
		}
	}
}

func rpzDecisions(s *Snapshot, names []string, ips []netip.Addr) string {
	var b strings.Builder
	b.WriteString(decisions(s, names, ips))
	for _, n := range names {
		if m := s.MatchName(n); m.HasRule {
			for _, rr := range s.LocalData(m.Rule) {
				fmt.Fprintf(&b, "%s local %s\n", n, localText(rr))
			}
		}
	}
	for _, a := range ips {
		if m := s.MatchIP(a); m.HasRule {
			for _, rr := range s.LocalData(m.Rule) {
				fmt.Fprintf(&b, "%s local %s\n", a, localText(rr))
			}
		}
	}
	for _, f := range s.Files {
		for _, w := range f.Warnings {
			fmt.Fprintf(&b, "warning %s\n", w.Error())
		}
		for _, e := range f.Errors {
			fmt.Fprintf(&b, "error %s\n", e.Error())
		}
	}
	return b.String()
}

// localText is a local-data record without its owner (answers carry the
// query name; identical record sets of different owners are shared).
func localText(rr dns.RR) string {
	h := rr.Header()
	return fmt.Sprintf("%d %s %s", h.Ttl, dns.TypeToString[h.Rrtype], strings.TrimPrefix(rr.String(), h.String()))
}

// rpzProbes are the names and addresses the RPZ delta tests decide.
func rpzProbes(n int) ([]string, []netip.Addr) {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("e%d.example", i), fmt.Sprintf("x.e%d.example", i))
	}
	for i := range 50 {
		names = append(names, fmt.Sprintf("b%d.example", i), fmt.Sprintf("w.b%d.example", i))
	}
	var ips []netip.Addr
	for i := range 32 {
		ips = append(ips, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	return names, ips
}

const rpzDeltaHead = "$ORIGIN rpz.test.\n$TTL 300\n@ SOA localhost. hostmaster.localhost. (\n      %d ; serial\n      3600 600 86400 300 )\n@ NS localhost.\n@ TXT \"platform: Regulator\"\n"

// rpzLine returns a random RPZ record over owner eN.example: every action,
// local data (also with the owner left blank), rpz-ip triggers,
// unsupported triggers (warnings), absolute owner names, comments, a
// record in parentheses, now and then an $ORIGIN.
func rpzLine(rng *rand.Rand, n int) string {
	o := fmt.Sprintf("e%d.example", n)
	switch rng.IntN(17) {
	case 0:
		return "*." + o + " CNAME ."
	case 1:
		return o + " CNAME *."
	case 2:
		return o + " CNAME rpz-passthru."
	case 3:
		return o + " CNAME rpz-drop."
	case 4:
		return o + " A 192.0.2." + fmt.Sprint(n%32)
	case 5:
		return "   A 192.0.2." + fmt.Sprint(n%32) // the owner of the record above
	case 6:
		return fmt.Sprintf("32.%d.2.0.192.rpz-ip CNAME .", n%32)
	case 7:
		return fmt.Sprintf("32.%d.2.0.192.rpz-ip CNAME rpz-passthru.", n%32)
	case 8:
		return o + ".rpz-nsdname CNAME ."
	case 9:
		return o + ".rpz.test. 60 IN CNAME ."
	case 10:
		return "; a comment"
	case 11:
		return "*." + o + " CNAME rpz-passthru."
	case 12:
		return o + " TXT \"local text\""
	case 13:
		return o + " ( CNAME\n      . )" // one record over two lines
	case 14:
		if rng.IntN(4) == 0 {
			return "$ORIGIN sub.rpz.test." // later names move under sub
		}
	}
	return o + " CNAME ."
}

// TestRPZDeltaMatchesFullReload edits an RPZ zone file at random (records
// added, removed and replaced, one to a few at a time, the SOA serial
// bumped each time) and checks after every reload that the store, which
// applies most edits as deltas, decides every name and address exactly
// as a full load of the same zone does: same rules, same file:line, same
// local data, same warnings. An edit the full load refuses (an owner
// written twice, a CNAME beside other records) is checked to be refused
// by the store too, and undone.
func TestRPZDeltaMatchesFullReload(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 17))
	const universe = 400
	var lines []string
	for i := range 1500 {
		lines = append(lines, fmt.Sprintf("b%d.example CNAME .", i))
		if i%5 == 0 {
			lines = append(lines, fmt.Sprintf("*.b%d.example CNAME .", i))
		}
	}
	used := map[int]bool{}
	pick := func() int {
		for {
			if n := rng.IntN(universe); !used[n] || rng.IntN(20) == 0 {
				used[n] = true
				return n
			}
		}
	}
	body := func(serial int) string {
		return fmt.Sprintf(rpzDeltaHead, serial) + strings.Join(lines, "\n") + "\n"
	}
	other := "# platform: Other\ne1.example\n@@e2.example\n*.e3.example\n192.0.2.5\n"
	st, dir := load(t, map[string]string{"big.rpz": body(1), "other.txt": other})
	names, ips := rpzProbes(universe)
	deltas, refused := 0, 0
	good := slices.Clone(lines)
	for step := range 120 {
		edits := 1 + rng.IntN(3)
		if step%9 == 0 {
			edits = 10
		}
		for range edits {
			at := rng.IntN(len(lines) + 1)
			switch rng.IntN(3) {
			case 0:
				lines = slices.Insert(lines, at, rpzLine(rng, pick()))
			case 1:
				if at < len(lines) {
					lines = slices.Delete(lines, at, at+1)
				}
			default:
				if at < len(lines) {
					lines[at] = rpzLine(rng, pick())
				}
			}
		}
		write(t, dir, "big.rpz", body(step+2))
		rep := reload(t, st)
		fresh, _ := load(t, map[string]string{"big.rpz": body(step + 2), "other.txt": other})
		if ff := fresh.Current().File("big.rpz"); ff.Stale || len(ff.Errors) > 0 {
			// The full load refuses this version: so must the store (the
			// last good version serves, the same errors reported).
			f := st.Current().File("big.rpz")
			if !f.Stale || fmt.Sprint(f.Errors) != fmt.Sprint(ff.Errors) {
				t.Fatalf("step %d: full load refused the zone (%v), the store reports %v", step, ff.Errors, f.Errors)
			}
			refused++
			lines = slices.Clone(good)
			write(t, dir, "big.rpz", body(step+2))
			reload(t, st)
			fresh, _ = load(t, map[string]string{"big.rpz": body(step + 2), "other.txt": other})
		} else if rep.Delta {
			deltas++
		}
		good = slices.Clone(lines)
		sameRPZDecisions(t, step, rep.Delta, st, fresh, names, ips)
	}
	t.Logf("%d of 120 reloads were deltas, %d versions refused", deltas, refused)
	if deltas < 50 {
		t.Fatalf("only %d of 120 reloads were deltas (%d refused)", deltas, refused)
	}
}

// TestRPZDeltaCases checks the edits of an RPZ zone that depend on lines
// the edit does not touch: each case loads a zone, rewrites it, and
// checks that the reload is (or is not) a delta and decides as a full
// load of the new zone does.
func TestRPZDeltaCases(t *testing.T) {
	const head = "$ORIGIN rpz.test.\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n"
	const head2 = "$ORIGIN rpz.test.\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 2 3600 600 86400 300\n@ NS localhost.\n"
	var filler strings.Builder
	for i := range 200 {
		fmt.Fprintf(&filler, "b%d.example CNAME .\n", i)
	}
	fill := filler.String()
	fill2 := strings.ReplaceAll(fill, "b", "c")
	cases := []struct {
		name     string
		old, new string
		delta    bool
	}{
		{"line appended", head + fill, head + fill + "e1.example CNAME .\n", true},
		{"serial only", head + fill, head2 + fill, true},
		{"serial and a name", head + fill, head2 + "e1.example CNAME .\n" + fill, true},
		{"name removed at the end", head + fill + "e1.example CNAME .\n", head + fill, true},
		{"name removed at the top", head + "e1.example CNAME .\n" + fill, head2 + fill, true},
		{"absolute owner", head + fill, head + fill + "e1.example.rpz.test. CNAME .\n", true},
		{"blank owner joins the owner above", head + "e1.example A 192.0.2.1\n" + fill, head + "e1.example A 192.0.2.1\n   A 192.0.2.2\n" + fill, true},
		{"blank owner line removed", head + "e1.example A 192.0.2.1\n   A 192.0.2.2\n" + fill, head + "e1.example A 192.0.2.1\n" + fill, true},
		{"owner changed above an unchanged blank-owner line", head + fill + "e1.example A 192.0.2.1\n   A 192.0.2.2\n" + fill2,
			head + fill + "e2.example A 192.0.2.1\n   A 192.0.2.2\n" + fill2, true},
		{"a line between an owner and its blank-owner records", head + fill + "e1.example A 192.0.2.1\n   A 192.0.2.2\n" + fill2,
			head + fill + "e1.example A 192.0.2.1\ne2.example A 192.0.2.3\n   A 192.0.2.2\n" + fill2, true},
		{"blank owner after a CNAME (an error)", head + fill + "e1.example CNAME .\n" + fill2, head + fill + "e1.example CNAME .\n  A 192.0.2.1\n" + fill2, false},
		{"record in parentheses edited", head + fill + "e1.example ( A\n   192.0.2.1 )\n" + fill2, head + fill + "e1.example ( A\n   192.0.2.3 )\n" + fill2, true},
		{"record in parentheses added", head + fill + fill2, head + fill + "e1.example TXT ( \"a\"\n  \"b\" )\n" + fill2, true},
		{"$TTL changed", head + fill, strings.Replace(head, "$TTL 300", "$TTL 600", 1) + fill, false},
		{"$ORIGIN later, edit under it", head + fill + "$ORIGIN other.rpz.test.\ne1.example CNAME .\n",
			head + fill + "$ORIGIN other.rpz.test.\ne1.example CNAME .\ne2.example CNAME .\n", true},
		{"passthru", head + fill + "*.e1.example CNAME .\n", head + fill + "*.e1.example CNAME .\nx.e1.example CNAME rpz-passthru.\n", true},
		{"drop and nodata", head + fill, head + "e1.example CNAME rpz-drop.\n" + fill + "e2.example CNAME *.\n", true},
		{"rpz-ip added", head + fill, head + fill + "32.7.2.0.192.rpz-ip CNAME .\n", true},
		{"rpz-ip removed", head + fill + "32.7.2.0.192.rpz-ip CNAME .\n", head + fill, true},
		{"rpz-ip local data", head + fill, head + fill + "32.7.2.0.192.rpz-ip A 192.0.2.9\n", true},
		{"unsupported trigger (a warning)", head + fill, head + fill + "e1.example.rpz-nsdname CNAME .\n", true},
		{"lines above a warning", head + fill + "e1.example.rpz-nsdname CNAME .\n", head + "e5.example CNAME .\ne6.example CNAME .\n" + fill + "e1.example.rpz-nsdname CNAME .\n", true},
		{"warning removed", head + "e1.example.rpz-nsdname CNAME .\n" + fill, head + fill, true},
		{"an owner written twice", head + "e1.example A 192.0.2.1\n" + fill, head + "e1.example A 192.0.2.1\n" + fill + "e1.example A 192.0.2.2\n", false},
		{"a CNAME twice (an error)", head + "e1.example CNAME .\n" + fill, head + "e1.example CNAME .\n" + fill + "e1.example CNAME .\n", false},
		{"an rpz-ip trigger twice", head + "32.7.2.0.192.rpz-ip CNAME .\n" + fill, head + "32.7.2.0.192.rpz-ip CNAME .\n" + fill + "32.7.2.0.192.rpz-ip A 192.0.2.1\n", false},
		{"an owner moved", head + "e1.example CNAME .\n" + fill, head + fill + "e1.example CNAME .\n", true},
		{"a bad name (an error)", head + fill, head + fill + "bad..example CNAME .\n", false},
		{"apex TXT directive added", head + fill, head + "@ TXT \"platform: Ministry\"\n" + fill, false},
		{"no $TTL, explicit TTLs", strings.Replace(strings.Replace(head, "$TTL 300\n", "", 1), "@ SOA", "@ 300 SOA", 1) + strings.ReplaceAll(fill, " CNAME", " 300 CNAME"),
			strings.Replace(strings.Replace(head, "$TTL 300\n", "", 1), "@ SOA", "@ 300 SOA", 1) + strings.ReplaceAll(fill, " CNAME", " 300 CNAME") + "e1.example 300 CNAME .\n", false},
		{"$INCLUDE added", head + fill, head + fill + "$INCLUDE other.zone\n", false},
		{"$ORIGIN changed", head + fill + "$ORIGIN a.rpz.test.\n" + fill2, head + fill + "$ORIGIN b.rpz.test.\n" + fill2, false},
		{"$ORIGIN line rewritten, same origin", head + fill + "$ORIGIN a.rpz.test.\n" + fill2, head + fill + "$ORIGIN a.rpz.test. ; the same\n" + fill2, true},
		{"no newline at the end, a line appended", head + strings.TrimSuffix(fill, "\n"), head + fill + "e1.example CNAME .\n", true},
		{"CRLF line ends", strings.ReplaceAll(head+fill, "\n", "\r\n"), strings.ReplaceAll(head+fill+"e1.example CNAME .\n", "\n", "\r\n"), true},
		{"edits far apart and the serial", head + fill + fill2, head2 + strings.Replace(fill, "b50.example CNAME .\n", "e1.example CNAME rpz-passthru.\n", 1) +
			strings.Replace(fill2, "c150.example CNAME .\n", "", 1) + "e2.example A 192.0.2.4\n", true},
		{"a record's parentheses opened by the edit", head + fill + "e1.example CNAME .\n" + fill2, head + fill + "e1.example ( CNAME\n" + fill2, false},
	}
	names, ips := rpzProbes(10)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, dir := load(t, map[string]string{"z.rpz": c.old})
			if f := st.Current().File("z.rpz"); f.Stale {
				t.Fatalf("old zone does not load: %v", f.Errors)
			}
			write(t, dir, "z.rpz", c.new)
			rep := reload(t, st)
			if rep.Delta != c.delta {
				t.Errorf("delta %v, want %v", rep.Delta, c.delta)
			}
			fresh, _ := load(t, map[string]string{"z.rpz": c.new})
			want := rpzDecisions(fresh.Current(), names, ips)
			got := rpzDecisions(st.Current(), names, ips)
			if ff := fresh.Current().File("z.rpz"); ff.Stale {
				// Refused: the store reports the same errors, keeps the old rules.
				if f := st.Current().File("z.rpz"); !f.Stale || fmt.Sprint(f.Errors) != fmt.Sprint(ff.Errors) {
					t.Fatalf("full load errors %v, store %v", ff.Errors, f.Errors)
				}
				return
			}
			if got != want {
				t.Fatalf("decisions differ from a full load:\n%s", diffLines(got, want))
			}
			st.WaitCompacted()
			if got := rpzDecisions(st.Current(), names, ips); got != want {
				t.Fatalf("after the merge, decisions differ from a full load:\n%s", diffLines(got, want))
			}
		})
	}
}

// TestRPZDeltaNearChangeMatchesFullReload is TestRPZDeltaMatchesFullReload
// for the deltas that read only the chunks around each change (see
// rpzWindowStart): a bigger zone, the SOA serial bumped only now and then
// (so the first change is often deep in the zone), edits at chunk
// boundaries of the version in service, owners whose records (blank
// owners) run over many lines and across chunk boundaries, $TTL and
// $ORIGIN lines added, records in parentheses. After every reload the
// store decides as a full load of the same zone does.
func TestRPZDeltaNearChangeMatchesFullReload(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 29))
	const universe = 400
	var lines []string
	for i := range 5000 {
		switch {
		case i%900 == 450:
			// An owner with many records, its owner left blank after the
			// first.
			lines = append(lines, fmt.Sprintf("m%d.example A 192.0.2.1", i))
			for j := range 40 {
				lines = append(lines, fmt.Sprintf("   A 192.0.2.%d", 2+j))
			}
		case i%1300 == 7:
			lines = append(lines, fmt.Sprintf("$TTL %d", 60+i))
		default:
			lines = append(lines, fmt.Sprintf("b%d.example CNAME .", i))
		}
	}
	serial := 1
	body := func() string { return fmt.Sprintf(rpzDeltaHead, serial) + strings.Join(lines, "\n") + "\n" }
	st, dir := load(t, map[string]string{"big.rpz": body()})
	names, ips := rpzProbes(universe)
	for i := 0; i < 5000; i += 450 {
		names = append(names, fmt.Sprintf("m%d.example", i))
	}
	head := strings.Count(rpzDeltaHead, "\n")
	// boundary returns an index of lines where a chunk of the version in
	// service starts (or near it).
	boundary := func() int {
		fp := st.Current().File("big.rpz").fp
		if fp == nil || len(fp.chunks) < 3 {
			return rng.IntN(len(lines))
		}
		fp.layout()
		at := fp.firstLines[1+rng.IntN(len(fp.chunks)-1)] - head + rng.IntN(3) - 1
		return min(max(at, 0), len(lines)-1)
	}
	deltas, refused := 0, 0
	good := slices.Clone(lines)
	for step := range 150 {
		if step%4 == 0 {
			serial++
		}
		edits := 1 + rng.IntN(2)
		for range edits {
			at := rng.IntN(len(lines) + 1)
			switch step % 5 {
			case 0, 1:
				at = boundary()
			case 2:
				at = len(lines) // an append
			}
			line := rpzLine(rng, rng.IntN(universe))
			switch {
			case step%17 == 0:
				line = "$TTL 77" // what the lines after mean changes
			case step%19 == 0:
				line = "$ORIGIN other.rpz.test."
			}
			switch op := rng.IntN(3); {
			case at >= len(lines) || op == 0:
				lines = slices.Insert(lines, min(at, len(lines)), line)
			case op == 1:
				lines = slices.Delete(lines, at, at+1)
			default:
				lines[at] = line
			}
		}
		write(t, dir, "big.rpz", body())
		rep := reload(t, st)
		fresh, _ := load(t, map[string]string{"big.rpz": body()})
		if ff := fresh.Current().File("big.rpz"); ff.Stale || len(ff.Errors) > 0 {
			if f := st.Current().File("big.rpz"); !f.Stale || fmt.Sprint(f.Errors) != fmt.Sprint(ff.Errors) {
				t.Fatalf("step %d: full load refused the zone (%v), the store reports %v", step, ff.Errors, f.Errors)
			}
			refused++
			lines = slices.Clone(good)
			write(t, dir, "big.rpz", body())
			reload(t, st)
			fresh, _ = load(t, map[string]string{"big.rpz": body()})
		} else if rep.Delta {
			deltas++
		}
		good = slices.Clone(lines)
		sameRPZDecisions(t, step, rep.Delta, st, fresh, names, ips)
	}
	t.Logf("%d of 150 reloads were deltas, %d versions refused", deltas, refused)
	if deltas < 60 {
		t.Fatalf("only %d of 150 reloads were deltas (%d refused)", deltas, refused)
	}
}
