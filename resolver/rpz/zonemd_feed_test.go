package rpz

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// swapPrimary is a TCP-only AXFR server whose zone the test replaces.
type swapPrimary struct {
	addr string
	zone atomic.Pointer[[]dns.RR]
}

func startSwapPrimary(t *testing.T) *swapPrimary {
	t.Helper()
	p := &swapPrimary{}
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		rrs := *p.zone.Load()
		ch := make(chan *dns.Envelope, 1)
		ch <- &dns.Envelope{RR: append(append([]dns.RR{}, rrs...), rrs[0])}
		close(ch)
		new(dns.Transfer).Out(w, m, ch)
		w.Close()
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	p.addr = srv.Listener.Addr().String()
	return p
}

// set publishes a zone of serial with the given records; withMD adds its
// ZONEMD, corrupt makes that ZONEMD wrong.
func (p *swapPrimary) set(t *testing.T, serial uint32, withMD, corrupt bool, records ...string) {
	t.Helper()
	soa, _ := dns.NewRR("rpz.test. 60 IN SOA ns. admin. " + strconv.FormatUint(uint64(serial), 10) + " 60 60 600 60")
	rrs := []dns.RR{soa}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	if withMD {
		md, err := NewZonemd("rpz.test.", serial, 60, rrs)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt {
			md.Digest = strings.Repeat("ab", 48)
		}
		rrs = append(rrs, md)
	}
	p.zone.Store(&rrs)
}

// TestFeedVerifiesZonemd: a feed takes a zone whose ZONEMD matches, refuses
// a version whose ZONEMD does not match (keeping the last good zone on
// disk and in status), and with RequireZonemd refuses a version without one.
func TestFeedVerifiesZonemd(t *testing.T) {
	p := startSwapPrimary(t)
	dir := t.TempDir()
	newSec := func(require bool) *Secondary {
		s, err := NewSecondary(FeedConfig{Name: "regulator", Zone: "rpz.test", Primary: addrPort(t, p.addr), Dir: dir,
			RequireZonemd: require, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	zoneFile := filepath.Join(dir, "regulator.rpz")

	s := newSec(false)
	p.set(t, 5, true, false, "binance.com.rpz.test. 60 IN CNAME .")
	if err := s.refresh(ctx, true); err != nil {
		t.Fatalf("good zone: %v", err)
	}
	if st := s.Status(); st.Serial != 5 || st.Zonemd != "verified" {
		t.Fatalf("status %+v", st)
	}
	p.set(t, 6, true, true, "binance.com.rpz.test. 60 IN CNAME .", "okx.com.rpz.test. 60 IN CNAME .")
	err := s.refresh(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "serial 6 refused: ZONEMD mismatch") || !strings.Contains(err.Error(), "keeping serial 5") {
		t.Fatalf("mismatched ZONEMD: %v", err)
	}
	b, _ := os.ReadFile(zoneFile)
	if st := s.Status(); st.Serial != 5 || st.LastResult != "failed" || strings.Contains(string(b), "okx.com") {
		t.Fatalf("after the refusal: %+v\n%s", st, b)
	}
	// The digest is checked while the file is written: the refused
	// version's temporary file is gone, the sidecar still matches.
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("files after the refusal: %v, want the zone file and its checksum", names)
	}
	if err := blocklist.VerifyCopy(zoneFile); err != nil {
		t.Fatalf("the zone file kept after the refusal: %v", err)
	}
	// Without ZONEMD: accepted (and reported) unless it is required.
	p.set(t, 7, false, false, "binance.com.rpz.test. 60 IN CNAME .", "okx.com.rpz.test. 60 IN CNAME .")
	if err := s.refresh(ctx, true); err != nil || s.Status().Zonemd != "absent" {
		t.Fatalf("zone without ZONEMD: %v %+v", err, s.Status())
	}
	req := newSec(true)
	p.set(t, 8, false, false, "bybit.com.rpz.test. 60 IN CNAME .")
	if err := req.refresh(ctx, true); err == nil || !strings.Contains(err.Error(), "--rpz-require-zonemd") {
		t.Fatalf("required ZONEMD missing: %v", err)
	}
	p.set(t, 9, true, false, "bybit.com.rpz.test. 60 IN CNAME .")
	if err := req.refresh(ctx, true); err != nil || req.Status().Serial != 9 {
		t.Fatalf("required ZONEMD present: %v %+v", err, req.Status())
	}
}

// TestFeedFromExportVerifiesZonemd: sinkhole's own export, transferred by
// a feed, verifies (AXFR, then IXFRs with its ZONEMD records replaced).
// A full transfer is checked with SIMPLE when the export publishes it
// (one pass, where a MERKLE3 build hashes every RRset) and the MERKLE3
// state is built after the version is in service, so each IXFR is then
// checked with MERKLE3; with MERKLE3 alone both are MERKLE3, with SIMPLE
// alone both SIMPLE (and no MERKLE3 state is kept).
func TestFeedFromExportVerifiesZonemd(t *testing.T) {
	for _, tc := range []struct {
		schemes    []uint8
		axfr, ixfr string
	}{
		{nil, "SIMPLE", "MERKLE3"},
		{[]uint8{ZonemdSchemeSimple}, "SIMPLE", "SIMPLE"},
		{[]uint8{ZonemdSchemeMerkle3}, "MERKLE3", "MERKLE3"},
	} {
		t.Run(fmt.Sprint(tc.schemes), func(t *testing.T) {
			p := startPrimary(t, "", map[string]string{"a.txt": "binance.com\n"}, ExportConfig{ZonemdSchemes: tc.schemes})
			s, err := NewSecondary(FeedConfig{Name: "regulator", Zone: "rpz.test", Primary: addrPort(t, p.addr), Dir: t.TempDir(),
				RequireZonemd: true, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := s.refresh(ctx, true); err != nil || s.Status().Zonemd != "verified" || s.Status().ZonemdScheme != tc.axfr {
				t.Fatalf("AXFR: %v %+v", err, s.Status())
			}
			if kept := s.zone.m3 != nil; kept != (tc.ixfr == "MERKLE3") {
				t.Fatalf("after the AXFR: MERKLE3 state kept %v", kept)
			}
			list := "binance.com\n"
			for i := range 4 {
				list += fmt.Sprintf("name%d.example\n", i)
				if i == 2 {
					list = "okx.com\n" + list[len("binance.com\n"):] // one removed too
				}
				writeFile(t, p.dir, "a.txt", list)
				p.reload(t)
				st := s.Status()
				if err := s.refresh(ctx, false); err != nil || s.Status().Serial != p.export.Serial() || s.Status().LastTransferType != "IXFR" ||
					s.Status().ZonemdScheme != tc.ixfr {
					t.Fatalf("IXFR %d: %v %+v (before %+v)", i, err, s.Status(), st)
				}
			}
		})
	}
}
