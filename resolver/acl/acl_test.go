package acl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{" 192.0.2.0/24 ", "192.0.2.0/24", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"::/0", "::/0", ""},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24", ""},
		{"::ffff:192.0.2.1", "192.0.2.1/32", ""},
		{"10.0.0.0/0", "", `"10.0.0.0/0" has bits set past /0 (did you mean 0.0.0.0/0?)`},
		{"192.168.1.1/16", "", `"192.168.1.1/16" has bits set past /16 (did you mean 192.168.0.0/16?)`},
		{"0.0.0.0", "", `"0.0.0.0" is no client address (0.0.0.0/0 admits every client of its family)`},
		{"::", "", `"::" is no client address`},
		{"fe80::1%eth0", "", "want an address or a prefix"},
		{"10.0.0.0/33", "", "want an address or a prefix"},
		{"example.com", "", "want an address or a prefix"},
		{"", "", "empty prefix"},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want error %q", tt.in, p, err, tt.err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

func TestContains(t *testing.T) {
	def := MustParse(DefaultAllow...)
	tests := []struct {
		set  *Set
		addr string
		want bool
	}{
		{def, "127.0.0.1", true},
		{def, "127.255.255.255", true},
		{def, "::1", true},
		{def, "::2", false},
		{def, "10.1.2.3", true},
		{def, "11.0.0.0", false},
		{def, "9.255.255.255", false},
		{def, "172.15.255.255", false},
		{def, "172.16.0.0", true},
		{def, "172.31.255.255", true},
		{def, "172.32.0.0", false},
		{def, "192.168.44.1", true},
		{def, "100.64.0.1", true},
		{def, "100.128.0.0", false},
		{def, "fd00::1", true},
		{def, "fc00::", true},
		{def, "fe00::", false},
		{def, "2001:db8::1", false},
		{def, "8.8.8.8", false},
		{def, "::ffff:10.0.0.1", true}, // v4 client on a dual-stack socket
		{def, "::ffff:8.8.8.8", false},
		{MustParse("0.0.0.0/0"), "255.255.255.255", true},
		{MustParse("0.0.0.0/0"), "2001:db8::1", false},
		{MustParse("::/0"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		{MustParse("::/0"), "192.0.2.1", false},
		{MustParse("::/0"), "::ffff:192.0.2.1", false}, // an IPv4 client, even on a dual-stack socket
		{MustParse("0.0.0.0/0"), "::ffff:192.0.2.1", true},
		{New(netip.MustParsePrefix("::ffff:192.0.2.0/120")), "192.0.2.9", true},
		{MustParse("2001:db8::/64"), "2001:db8::ffff:ffff:ffff:ffff", true},
		{MustParse("2001:db8::/64"), "2001:db8:0:1::", false},
		{MustParse("2001:db8::/63"), "2001:db8:0:1::5", true},
		{MustParse("2001::/16"), "2001:ffff::", true},
		{MustParse("2001::/16"), "2002::", false},
		{MustParse("192.0.2.1", "192.0.2.2"), "192.0.2.2", true},
		{MustParse("192.0.2.1", "192.0.2.3"), "192.0.2.2", false},
		{&Set{}, "127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := tt.set.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%s contains %s = %v, want %v", tt.set, tt.addr, got, tt.want)
		}
	}
	if def.Contains(netip.Addr{}) {
		t.Error("the zero address is in the default set")
	}
}

func TestMerge(t *testing.T) {
	s := MustParse("192.0.2.0/25", "192.0.2.128/25", "192.0.2.5", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/33", "2001:db8:8000::/33", "2001:db8::1")
	if len(s.v4) != 2 || s.v4[1] != (span4{0xc0000200, 0xc00002ff}) {
		t.Errorf("v4 spans %x", s.v4)
	}
	if len(s.v6) != 1 || !s.Contains(netip.MustParseAddr("2001:db8:ffff::1")) || s.Contains(netip.MustParseAddr("2001:db9::")) {
		t.Errorf("v6 spans %x", s.v6)
	}
	if got := s.String(); !strings.HasPrefix(got, "192.0.2.0/25,192.0.2.128/25,192.0.2.5/32") {
		t.Errorf("String() = %s", got)
	}
	// Adjacent at the top of the space must not wrap.
	all := MustParse("0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1")
	if len(all.v4) != 1 || len(all.v6) != 1 || !all.Contains(netip.MustParseAddr("255.255.255.255")) {
		t.Errorf("halves: %x %x", all.v4, all.v6)
	}
}

func TestPublicSize(t *testing.T) {
	tests := []struct {
		allow  []string
		v4, v6 float64
	}{
		{DefaultAllow, 0, 0},
		{[]string{"192.0.2.0/24"}, 256, 0},
		{[]string{"10.0.0.0/7"}, 1 << 24, 0}, // 11/8 is public
		{[]string{"0.0.0.0/0"}, 1<<32 - (1<<24 + 1<<20 + 1<<16 + 1<<22 + 1<<24 + 1<<16), 0},
		{[]string{"2001:db8::/32"}, 0, float64(1<<32) * float64(1<<64)},
		{[]string{"fc00::/6"}, 0, 7 * float64(1<<54) * float64(1<<64)}, // fe00::/7 less fe80::/10; fc00::/7 is not public
	}
	for _, tt := range tests {
		v4, v6 := MustParse(tt.allow...).PublicSize()
		if v4 != tt.v4 || v6 != tt.v6 {
			t.Errorf("%v: public sizes %g, %g; want %g, %g", tt.allow, v4, v6, tt.v4, tt.v6)
		}
	}
}

func TestPublicListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:53": false, "[::1]:53": false, "localhost:53": false, "10.0.0.53:53": false,
		"192.168.1.1:53": false, "[fd00::53]:53": false, "[fe80::1%eth0]:53": false, "100.64.0.1:53": false,
		"0.0.0.0:53": true, "[::]:53": true, ":53": true, "203.0.113.53:53": true, "[2001:db8::53]:53": true,
		"dns.example.net:53": true, "nonsense": true,
	} {
		if got := PublicListen(addr); got != want {
			t.Errorf("PublicListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestCheckOpen(t *testing.T) {
	tests := []struct {
		listen []string
		allow  []string
		err    string
	}{
		// Loopback or private listeners accept any list.
		{[]string{"127.0.0.1:53"}, []string{"0.0.0.0/1", "128.0.0.0/1"}, ""},
		{[]string{"10.0.0.53:53", "[fd00::53]:53"}, []string{"0.0.0.0/0", "::/0"}, ""},
		// Public listeners: the default and ISP-sized lists are fine.
		{[]string{"0.0.0.0:53"}, DefaultAllow, ""},
		{[]string{"203.0.113.53:53"}, []string{"203.0.113.0/24", "198.51.100.0/22", "2001:db8::/32", "10.0.0.0/8"}, ""},
		{[]string{"[::]:53"}, []string{"11.0.0.0/8"}, ""}, // exactly a /8
		{[]string{"[::]:53"}, []string{"2001::/16"}, ""},
		// Explicit /0: a deliberate open resolver.
		{[]string{"0.0.0.0:53"}, []string{"0.0.0.0/0"}, ""},
		{[]string{"0.0.0.0:53"}, []string{"0.0.0.0/0", "::/0"}, ""},
		// Wide lists without the explicit /0.
		{[]string{"127.0.0.1:53", "0.0.0.0:53"}, []string{"0.0.0.0/1", "128.0.0.0/1"}, "public IPv4 addresses (more than a /8) and 0.0.0.0:53 is a public address: that is an open resolver"},
		{[]string{"203.0.113.53:53"}, []string{"8.0.0.0/7"}, "IPv4"},
		{[]string{"[::]:53"}, []string{"0.0.0.0/0", "2000::/3"}, "public IPv6 addresses (more than a /16) and [::]:53 is a public address"},
		{[]string{"[::]:53"}, []string{"::/0", "64.0.0.0/2"}, "IPv4"},
		// IPv4-mapped prefixes count as the IPv4 prefixes they map, and
		// are not the literal 0.0.0.0/0.
		{[]string{"[::]:53"}, []string{"::ffff:0:0/96"}, "public IPv4 addresses (more than a /8)"},
		{[]string{"[::]:53"}, []string{"::ffff:0:0/97"}, "IPv4"},
		{[]string{"0.0.0.0:53"}, []string{"::ffff:8.0.0.0/103"}, "IPv4"},
		{[]string{"[::]:53"}, []string{"::ffff:11.0.0.0/104"}, ""}, // a /8
		{[]string{"[::]:53"}, []string{"::ffff:0:0/96", "0.0.0.0/0"}, ""},
	}
	for _, tt := range tests {
		err := CheckOpen(tt.listen, MustParse(tt.allow...))
		if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("listen %v allow %v: %v; want %q", tt.listen, tt.allow, err, tt.err)
		}
	}
}

func TestContainsDoesNotAllocate(t *testing.T) {
	s := MustParse(DefaultAllow...)
	a4, a6 := netip.MustParseAddr("192.168.7.7"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { s.Contains(a4); s.Contains(a6) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

func BenchmarkContains(b *testing.B) {
	s := MustParse(DefaultAllow...)
	addrs := []netip.Addr{netip.MustParseAddr("192.168.7.7"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::5")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Contains(addrs[i&3])
	}
}
