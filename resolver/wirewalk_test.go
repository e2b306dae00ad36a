package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func packed(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCacheLifetime(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.com.", dns.TypeA)
	answer := func(rcode int, rrs []string, ns []string) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(q, rcode)
		for _, s := range rrs {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		for _, s := range ns {
			rr, _ := dns.NewRR(s)
			m.Ns = append(m.Ns, rr)
		}
		m.SetEdns0(1232, false)
		return m
	}
	soa := "example.com. 900 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 300"
	for _, c := range []struct {
		name string
		m    *dns.Msg
		want uint32
	}{
		{"smallest answer TTL", answer(dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1", "example.com. 30 IN A 192.0.2.2"}, []string{"example.com. 10 IN NS ns.example.com."}), 30},
		{"NXDOMAIN: SOA minimum below its TTL", answer(dns.RcodeNameError, nil, []string{soa}), 300},
		{"NODATA: SOA TTL below its minimum", answer(dns.RcodeSuccess, nil, []string{"example.com. 120 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 300"}), 120},
		{"negative without SOA", answer(dns.RcodeNameError, nil, nil), 0},
		{"SERVFAIL", answer(dns.RcodeServerFailure, nil, []string{soa}), 0},
		{"REFUSED", answer(dns.RcodeRefused, nil, nil), 0},
	} {
		if got := CacheLifetime(packed(t, c.m)); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, packed(t, answer(dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1"}, nil))[:30]} {
		if got := CacheLifetime(bad); got != 0 {
			t.Errorf("garbled %x: %d", bad, got)
		}
	}
}

func TestPadding(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.com.", dns.TypeA)
	plain := q.Copy()
	plain.SetEdns0(1232, false)
	pad := plain.Copy()
	pad.IsEdns0().Option = append(pad.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 32)})
	cookieAndPad := plain.Copy()
	cookieAndPad.IsEdns0().Option = append(cookieAndPad.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&dns.EDNS0_PADDING{Padding: nil})
	for _, c := range []struct {
		name string
		m    *dns.Msg
		want bool
	}{{"no EDNS", q, false}, {"EDNS without padding", plain, false}, {"padding", pad, true}, {"cookie and empty padding", cookieAndPad, true}} {
		if got := WantsPadding(packed(t, c.m)); got != c.want {
			t.Errorf("WantsPadding(%s) = %v", c.name, got)
		}
	}

	for _, n := range []int{0, 1, 20, 100} {
		r := new(dns.Msg)
		r.SetReply(q)
		for i := range n {
			rr, _ := dns.NewRR("example.com. 60 IN A 192.0.2." + string(rune('0'+i%10)))
			r.Answer = append(r.Answer, rr)
		}
		r.SetEdns0(1232, false)
		r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: 16, ExtraText: "blocked"})
		wire := packed(t, r)
		out := Pad(append([]byte(nil), wire...), 65535)
		if len(out)%PaddingBlock != 0 {
			t.Errorf("%d answers: padded to %d bytes", n, len(out))
		}
		back := new(dns.Msg)
		if err := back.Unpack(out); err != nil {
			t.Fatalf("%d answers: padded message does not parse: %v", n, err)
		}
		if len(back.Answer) != n || len(back.IsEdns0().Option) != 2 || back.IsEdns0().Option[1].Option() != dns.EDNS0PADDING {
			t.Errorf("%d answers: padded message %v", n, back)
		}
		if got := Pad(append([]byte(nil), wire...), len(wire)); len(got) != len(wire) {
			t.Errorf("%d answers: padded past the limit", n)
		}
	}
	// No OPT record, or OPT not last: unchanged.
	r := new(dns.Msg)
	r.SetReply(q)
	if wire := packed(t, r); len(Pad(wire, 65535)) != len(wire) {
		t.Error("padded a message without OPT")
	}
}
