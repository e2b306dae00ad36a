package doh

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientName(t *testing.T) {
	for _, c := range []struct {
		path, name string
		ok         bool
	}{
		{"/dns-query", "", true},
		{"/dns-query/", "", true},
		{"/dns-query/router-42", "router-42", true},
		{"/dns-query/home.lan_1", "home.lan_1", true},
		{"/dns-query/a/b", "", false},
		{"/dns-query/bad name", "", false},
		{"/dns-queryx", "", false},
		{"/", "", false},
		{"/dns-query/" + string(make([]byte, 64)), "", false},
	} {
		name, ok := clientName(c.path)
		if name != c.name || ok != c.ok {
			t.Errorf("clientName(%q) = %q, %v; want %q, %v", c.path, name, ok, c.name, c.ok)
		}
	}
}

func TestClientAddress(t *testing.T) {
	h := NewHandler(HandlerConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	for _, c := range []struct {
		name   string
		peer   string
		header http.Header
		want   string
	}{
		{"untrusted peer: headers ignored", "192.0.2.1:5000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "192.0.2.1:5000"},
		{"trusted, no header", "10.0.0.1:5000", nil, "10.0.0.1:5000"},
		{"X-Forwarded-For", "10.0.0.1:5000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0"},
		{"rightmost untrusted hop", "10.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.1, 10.0.0.2"}}, "198.51.100.1:0"},
		{"two header lines", "10.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9", "198.51.100.1"}}, "198.51.100.1:0"},
		{"Forwarded with port", "[::1]:443", http.Header{"Forwarded": {`for="[2001:db8::7]:4711";proto=https`}}, "[2001:db8::7]:4711"},
		{"Forwarded wins", "10.0.0.1:5000", http.Header{"Forwarded": {"for=198.51.100.2"}, "X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.2:0"},
		{"obfuscated hop", "10.0.0.1:5000", http.Header{"Forwarded": {"for=_hidden, for=10.0.0.3"}}, "10.0.0.3:0"},
		{"mapped IPv4", "10.0.0.1:5000", http.Header{"X-Forwarded-For": {"::ffff:198.51.100.1"}}, "198.51.100.1:0"},
		{"garbage", "10.0.0.1:5000", http.Header{"X-Forwarded-For": {"not an address"}}, "10.0.0.1:5000"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: c.header}
		if got := h.client(r).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
