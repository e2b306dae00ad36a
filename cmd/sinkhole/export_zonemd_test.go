package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
)

// TestExportZonemdChoice runs a primary with and without
// --rpz-export-zonemd, each with two secondaries (real processes' servers
// on loopback): one plain, one with --rpz-require-zonemd. With ZONEMD both
// load the zone, verify it and follow an edit by IXFR; without it the
// plain one loads and follows it ("absent"), the one that requires ZONEMD
// refuses every version and blocks nothing, saying why.
func TestExportZonemdChoice(t *testing.T) {
	for _, publish := range []bool{true, false} {
		name := "zonemd"
		if !publish {
			name = "no-zonemd"
		}
		t.Run(name, func(t *testing.T) {
			up := testUpstream(t)
			primaryAddr := freeAddr(t)
			feed := "regulator=rpz.test@" + primaryAddr
			plain := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--rpz-feed", feed, "--state-dir", t.TempDir())
			strict := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--rpz-feed", feed, "--rpz-require-zonemd", "regulator", "--state-dir", t.TempDir())
			lists := writeLists(t, map[string]string{"regulator.txt": "binance.com\n"})
			args := []string{"--upstream", up.Addr, "--rpz-export", "rpz.test", "--reload-debounce", "10ms", "--state-dir", t.TempDir(),
				"--rpz-notify", plain.addr, "--rpz-notify", strict.addr}
			if !publish {
				args = append(args, "--rpz-export-zonemd=false")
			}
			primary := startSinkholeOn(t, primaryAddr, lists, args...)
			if st := primary.in.feeds.Exporter().Status(); st.Zonemd != publish {
				t.Fatalf("export status says ZONEMD %v, want %v", st.Zonemd, publish)
			}
			// sinkhole status says when the export publishes no ZONEMD.
			out, errOut, code := runBin(t, "status", "--admin", primary.in.admin.Addr())
			if code != 0 || !strings.Contains(out, "RPZ export rpz.test: serial") || strings.Contains(out, "no ZONEMD") == publish ||
				strings.Contains(out, "ZONEMD SIMPLE+MERKLE3") != publish {
				t.Fatalf("sinkhole status: exit %d\n%s\n%s", code, out, errOut)
			}

			// The primary's apex ZONEMD: there, or NODATA.
			m := new(dns.Msg)
			m.SetQuestion("rpz.test.", dns.TypeZONEMD)
			r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, primaryAddr)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(r.Answer) == 2; got != publish || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("ZONEMD query: rcode %s, %d answers; want two (SIMPLE, MERKLE3): %v", dns.RcodeToString[r.Rcode], len(r.Answer), publish)
			}

			serial := func() uint32 { return primary.in.feeds.Exporter().Serial() }
			at := func(s *testServer, want uint32) func() bool {
				return func() bool { st := s.in.feeds.Status().Feeds[0]; return st.Loaded && st.Serial == want }
			}
			check := "verified"
			if !publish {
				check = "absent"
			}
			waitUntil(t, "the plain secondary to load the zone", time.Minute, at(plain, serial()))
			// A full transfer is checked with SIMPLE (one pass; the MERKLE3
			// state is built after it is in service), the IXFRs after it
			// with MERKLE3 (below).
			if st := plain.in.feeds.Status().Feeds[0]; st.Zonemd != check || (publish && st.ZonemdScheme != "SIMPLE") || !censored(plain.addr, "www.binance.com") {
				t.Fatalf("plain secondary: ZONEMD %q (want %q), blocks binance.com: %v", st.Zonemd, check, censored(plain.addr, "www.binance.com"))
			}
			// sinkhole status shows a secondary's serial and records.
			if out, errOut, code := runBin(t, "status", "--admin", plain.in.admin.Addr()); !feedRow(out, "regulator", serial(), plain.in.feeds.Status().Feeds[0].Records) ||
				strings.Contains(out, "ZONEMD verified (SIMPLE)") != publish {
				t.Fatalf("sinkhole status on the secondary: exit %d, want a feed row with serial %d and its records:\n%s\n%s", code, serial(), out, errOut)
			}
			if publish {
				waitUntil(t, "the strict secondary to load the zone", time.Minute, at(strict, serial()))
				if st := strict.in.feeds.Status().Feeds[0]; st.Zonemd != "verified" || !censored(strict.addr, "www.binance.com") {
					t.Fatalf("strict secondary: %+v", st)
				}
			} else {
				waitUntil(t, "the strict secondary to refuse the zone", time.Minute, func() bool {
					st := strict.in.feeds.Status().Feeds[0]
					return st.LastResult == "failed" && strings.Contains(st.LastError, "ZONEMD")
				})
				if st := strict.in.feeds.Status().Feeds[0]; st.Loaded || censored(strict.addr, "www.binance.com") {
					t.Fatalf("the secondary requiring ZONEMD serves a zone without one: %+v", st)
				}
			}

			// An edit at the primary goes out by IXFR.
			edited := time.Now()
			if err := os.WriteFile(filepath.Join(lists, "regulator.txt"), []byte("binance.com\nokx.com\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the plain secondary to block okx.com", time.Minute, func() bool { return censored(plain.addr, "okx.com") })
			waitUntil(t, "the plain secondary's status to show the new serial", time.Minute, at(plain, serial()))
			if st := plain.in.feeds.Status().Feeds[0]; st.LastTransferType != "IXFR" || st.Zonemd != check {
				t.Fatalf("plain secondary after the edit: %+v", st)
			}
			if publish {
				waitUntil(t, "the strict secondary to block okx.com", time.Minute, func() bool { return censored(strict.addr, "okx.com") })
				waitUntil(t, "the strict secondary's status to show the new serial", time.Minute, at(strict, serial()))
				if st := strict.in.feeds.Status().Feeds[0]; st.LastTransferType != "IXFR" || st.Zonemd != "verified" || st.ZonemdScheme != "MERKLE3" {
					t.Fatalf("strict secondary after the edit: %+v", st)
				}
				return
			}
			// The strict secondary was told of the new serial too; it still
			// refuses, and still blocks nothing.
			waitUntil(t, "the strict secondary to refuse the new version", time.Minute, func() bool {
				st := strict.in.feeds.Status().Feeds[0]
				return st.LastCheck.After(edited) && st.LastResult == "failed" && strings.Contains(st.LastError, "ZONEMD")
			})
			if censored(strict.addr, "okx.com") || censored(strict.addr, "binance.com") {
				t.Fatal("the secondary requiring ZONEMD blocks names from a zone without one")
			}
		})
	}
}

// rpz-export-zonemd is read from the configuration file and the
// environment like every flag, and defaults to publishing.
func TestExportZonemdConfig(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	state := t.TempDir()
	for _, tc := range []struct {
		yaml, env string
		noZonemd  bool
		schemes   []uint8
	}{
		{"rpz-export: rpz.test\n", "", false, nil},
		{"rpz-export: rpz.test\nrpz-export-zonemd: false\n", "", true, nil},
		{"rpz-export: rpz.test\n", "false", true, nil},
		{"rpz-export: rpz.test\nrpz-export-zonemd: false\n", "true", false, nil},
		{"rpz-export: rpz.test\nrpz-export-zonemd: merkle3\n", "", false, []uint8{rpz.ZonemdSchemeMerkle3}},
		{"rpz-export: rpz.test\n", "simple", false, []uint8{rpz.ZonemdSchemeSimple}},
		{"rpz-export: rpz.test\n", "Simple, MERKLE3", false, []uint8{rpz.ZonemdSchemeSimple, rpz.ZonemdSchemeMerkle3}},
		{"rpz-export: rpz.test\nrpz-export-zonemd: none\n", "", true, nil},
	} {
		t.Setenv("SINKHOLE_RPZ_EXPORT_ZONEMD", tc.env)
		if tc.env == "" {
			os.Unsetenv("SINKHOLE_RPZ_EXPORT_ZONEMD")
		}
		cfg, err := loadServeConfig(t, "--config", writeConfig(t, tc.yaml+"state-dir: "+state+"\n"), "--lists", lists)
		if err != nil {
			t.Fatalf("%q, env %q: %v", tc.yaml, tc.env, err)
		}
		if cfg.feeds.Export != "rpz.test" || cfg.feeds.NoZonemd != tc.noZonemd || !slices.Equal(cfg.feeds.ZonemdSchemes, tc.schemes) {
			t.Errorf("%q, env %q: export %q, no ZONEMD %v, schemes %v; want %v %v", tc.yaml, tc.env, cfg.feeds.Export, cfg.feeds.NoZonemd,
				cfg.feeds.ZonemdSchemes, tc.noZonemd, tc.schemes)
		}
	}
	os.Unsetenv("SINKHOLE_RPZ_EXPORT_ZONEMD")
	if _, err := loadServeConfig(t, "--config", writeConfig(t, "rpz-export: rpz.test\nrpz-export-zonemd: merkle9\nstate-dir: "+state+"\n"), "--lists", lists); err == nil ||
		!strings.Contains(err.Error(), `unknown ZONEMD scheme "merkle9"`) {
		t.Errorf("an unknown scheme: %v", err)
	}
}

// feedRow reports whether sinkhole status's output has the feed's row
// with this serial and record count.
func feedRow(out, feed string, serial uint32, records int) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[0] == feed && f[1] == "rpz" && f[3] == strconv.FormatUint(uint64(serial), 10) && f[4] == strconv.Itoa(records) {
			return records > 0
		}
	}
	return false
}
