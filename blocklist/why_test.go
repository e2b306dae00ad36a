package blocklist

import (
	"net/netip"
	"strings"
	"testing"
)

// TestWhyDirectives checks "# authority:", "# order:" and "# contact:":
// they apply like "# platform:" to the entries that follow, until set
// again (empty clears), are kept per rule and end up in the reason text.
func TestWhyDirectives(t *testing.T) {
	list := strings.Join([]string{
		"# platform: Binance",
		"# authority: Ministry of Finance",
		"# order: MoF-2024-17",
		"# contact: https://appeal.example/",
		"binance.com",
		"203.0.113.0/24",
		"# order: MoF-2024-18",
		"okx.com",
		"# authority:",
		"# order:",
		"# contact:",
		"# platform:",
		"plain.example",
	}, "\n")
	st, _ := load(t, map[string]string{"x.txt": list})
	snap := st.Current()
	tests := []struct {
		name   string
		want   Why
		reason string
	}{
		{"binance.com", Why{"Ministry of Finance", "MoF-2024-17", "https://appeal.example/"},
			"blocked by x.txt:5 (Binance); authority: Ministry of Finance; order: MoF-2024-17; contact: https://appeal.example/"},
		{"okx.com", Why{"Ministry of Finance", "MoF-2024-18", "https://appeal.example/"},
			"blocked by x.txt:8 (Binance); authority: Ministry of Finance; order: MoF-2024-18; contact: https://appeal.example/"},
		{"plain.example", Why{}, "blocked by x.txt:13"},
	}
	for _, tt := range tests {
		m := snap.MatchName(tt.name)
		if !m.Blocked() {
			t.Fatalf("%s not blocked", tt.name)
		}
		r := snap.Rule(m.Rule)
		if r.Why != tt.want || snap.RuleWhy(m.Rule) != tt.want {
			t.Errorf("%s: why %+v, want %+v", tt.name, r.Why, tt.want)
		}
		if r.Reason() != tt.reason || string(snap.AppendReason(nil, m.Rule)) != tt.reason {
			t.Errorf("%s: reason %q / %q, want %q", tt.name, r.Reason(), snap.AppendReason(nil, m.Rule), tt.reason)
		}
	}
	ip := snap.MatchIP(netip.MustParseAddr("203.0.113.9"))
	if got := snap.Rule(ip.Rule).Why.Order; got != "MoF-2024-17" {
		t.Errorf("IP rule order %q", got)
	}
}

func TestWhyDirectiveErrors(t *testing.T) {
	for in, want := range map[string]string{
		"# order: " + strings.Repeat("x", 121): "f.txt:1: order longer than 120 bytes",
		`# contact: say "hi"`:                  `f.txt:1: contact must not contain '#'`,
		"# authority: a\\b":                    `f.txt:1: authority must not contain`,
		"# authority: tab\there":               `f.txt:1: authority must not contain`,
	} {
		errs := parseList("f.txt", strings.NewReader(in), &recorder{})
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), want) {
			t.Errorf("%q: errors %v, want %q", in, errs, want)
		}
	}
}

// TestRPZApexDirectives: TXT directives at an RPZ zone's apex apply to all
// its rules, in both RPZ readers; an apex ZONEMD is zone data, not a
// warning.
func TestRPZApexDirectives(t *testing.T) {
	zone := `$ORIGIN rpz.test.
@ 60 IN SOA ns. admin. 1 60 60 600 60
@ 60 IN NS ns.
@ 60 IN ZONEMD 1 1 1 ` + strings.Repeat("ab", 48) + `
@ 60 IN TXT "authority: Ministry of Finance"
@ 60 IN TXT "platform: Binance"
@ 60 IN TXT "note: something else"
binance.com 60 IN CNAME .
*.binance.com 60 IN CNAME .
`
	parsers := map[string]func(*recorder) []*LineError{
		"stream":  func(r *recorder) []*LineError { return parseRPZ("z.rpz", strings.NewReader(zone), r) },
		"general": func(r *recorder) []*LineError { return parseRPZData("z.rpz", []byte(zone), r) },
	}
	for name, parse := range parsers {
		r := &recorder{}
		errs := parse(r)
		if len(errs) != 0 {
			t.Fatalf("%s: %v", name, errs)
		}
		if r.sec.Authority != "Ministry of Finance" || r.sec.Platform != "Binance" || len(r.out) != 2 {
			t.Fatalf("%s: section %+v, rules %v", name, r.sec, r.out)
		}
		if len(r.warns) != 1 || !strings.Contains(r.warns[0].Text, "note: something else") {
			t.Fatalf("%s: warnings %v", name, r.warns)
		}
	}
}
