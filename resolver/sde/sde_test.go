package sde

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

func TestHasOption(t *testing.T) {
	opt := func(code uint16, data string) []byte {
		b := binary.BigEndian.AppendUint16(nil, code)
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		return append(b, data...)
	}
	tests := []struct {
		name string
		opts []byte
		want bool
	}{
		{"none", nil, false},
		{"alone", opt(DefaultOptionCode, ""), true},
		{"after a cookie", append(opt(10, "12345678"), opt(DefaultOptionCode, "")...), true},
		{"with data (ignored)", opt(DefaultOptionCode, "xx"), true},
		{"other only", opt(10, "12345678"), false},
		{"truncated", opt(10, "12345678")[:6], false},
		{"length past the end", append(opt(10, "")[:2], 0xff, 0xff), false},
	}
	for _, tt := range tests {
		if got := hasOption(tt.opts, DefaultOptionCode); got != tt.want {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

func TestContactURI(t *testing.T) {
	for in, want := range map[string]string{
		"appeals@regulator.example":   "mailto:appeals@regulator.example",
		"mailto:a@b.example":          "mailto:a@b.example",
		"tel:+86-10-1234-5678":        "tel:+86-10-1234-5678",
		"https://appeal.example/":     "",
		"Ministry of Finance, Room 5": "",
	} {
		if got := ContactURI(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestUDPSizeFallback: a structured text that would not fit the client's
// UDP size loses "j" and "o" first (keeping "c").
func TestUDPSizeFallback(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 120)
	os.WriteFile(filepath.Join(dir, "l.txt"), []byte("# platform: "+long+"\n# authority: "+long+"\n# order: "+long+"\n# contact: a@b.example\nbinance.com\n"), 0o644)
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	snap := st.Current()
	m := snap.MatchName("binance.com")
	d := &query.Decision{Snapshot: snap, Rule: m.Rule, Action: blocklist.ActionNXDomain, Enforced: true, Trigger: query.TriggerQName}
	s := &Stage{Operator: long}
	s.Link(query.HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		req.Info.Decision = d
		r := query.Reply(req.Msg, dns.RcodeNameError)
		query.AddEDE(r, dns.ExtendedErrorCodeCensored, d.Reason())
		return r, nil
	}))
	ask := func(size uint16) string {
		q := new(dns.Msg)
		q.SetQuestion("binance.com.", dns.TypeA)
		q.SetEdns0(size, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: DefaultOptionCode})
		req := query.NewRequest(q, netip.MustParseAddrPort("192.0.2.1:5353"), "udp", snap)
		r, err := s.ServeDNS(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if r.Len() > max(int(size), 512) {
			t.Fatalf("answer of %d bytes for a %d-byte client", r.Len(), size)
		}
		for _, o := range r.IsEdns0().Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
		return ""
	}
	if got := ask(1232); !strings.Contains(got, `"j":`) || !strings.Contains(got, `"o":`) {
		t.Fatalf("1232 bytes: %s", got)
	}
	if got := ask(512); got != `{"c":["mailto:a@b.example"]}` {
		t.Fatalf("512 bytes: %s", got)
	}
}
