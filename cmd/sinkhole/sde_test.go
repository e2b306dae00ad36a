package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/sde"
)

// sdeQuery asks name with the SDE option when withSDE.
func sdeQuery(t *testing.T, ts *testServer, proto, name string, withSDE bool) *dns.EDNS0_EDE {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	if withSDE {
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: sde.DefaultOptionCode})
	}
	r := ts.exchange(t, proto, m)
	return ede(r)
}

// TestStructuredDNSError: a client sending the SDE option gets the
// draft's I-JSON in EDE 16 (for name and answer-based blocks, from the
// cache too); other clients keep the plain text.
func TestStructuredDNSError(t *testing.T) {
	up := startUpstream(t, "ip.example. 60 IN A 203.0.113.5")
	lists := writeLists(t, map[string]string{
		"exchanges.txt": whyList,
		"mail.txt":      "# platform: OKX\n# authority: Ministry of Finance\n# order: MoF-2024-20\n# contact: appeals@regulator.example\nokx.com\n",
	})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--operator", "Example ISP")
	type obj struct {
		C []string `json:"c"`
		J string   `json:"j"`
		O string   `json:"o"`
		L string   `json:"l"`
		S *int     `json:"s"`
	}
	parse := func(e *dns.EDNS0_EDE) obj {
		t.Helper()
		var o obj
		if e == nil || e.InfoCode != dns.ExtendedErrorCodeCensored || json.Unmarshal([]byte(e.ExtraText), &o) != nil {
			t.Fatalf("EDE is not structured: %+v", e)
		}
		return o
	}
	for _, proto := range []string{"udp", "tcp"} {
		o := parse(sdeQuery(t, ts, proto, "www.binance.com", true))
		if o.J != "blocked by exchanges.txt:5 (Binance); authority: Ministry of Finance; order: MoF-2024-17; contact: https://appeal.example/" ||
			o.O != "Example ISP" || o.L != "en" || len(o.C) != 0 || o.S != nil {
			t.Fatalf("%s: %+v", proto, o)
		}
	}
	// A mail contact goes into "c" as a mailto: URI.
	o := parse(sdeQuery(t, ts, "udp", "okx.com", true))
	if len(o.C) != 1 || o.C[0] != "mailto:appeals@regulator.example" || strings.Contains(o.J, "appeals@") || !strings.Contains(o.J, "order: MoF-2024-20") {
		t.Fatalf("mail contact: %+v", o)
	}
	// Answer-based block, asked twice (the second from the cache).
	for i := 0; i < 2; i++ {
		if o := parse(sdeQuery(t, ts, "udp", "ip.example", true)); !strings.Contains(o.J, "order: MoF-2024-18") || !strings.Contains(o.J, "203.0.113.5") {
			t.Fatalf("answer-based block %d: %+v", i, o)
		}
		// And a client without the option, after it, gets plain text.
		if e := sdeQuery(t, ts, "udp", "ip.example", false); e == nil || strings.HasPrefix(e.ExtraText, "{") {
			t.Fatalf("plain client after an SDE client: %+v", e)
		}
	}
	if e := sdeQuery(t, ts, "udp", "www.binance.com", false); e == nil || e.ExtraText != "blocked by exchanges.txt:5 (Binance); authority: Ministry of Finance; order: MoF-2024-17; contact: https://appeal.example/" {
		t.Fatalf("plain client: %+v", e)
	}
}
