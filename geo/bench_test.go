package geo_test

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/geo/geotest"
)

// benchDB builds country and ASN databases of n networks each (half IPv4
// /20s, half IPv6 /40s) spread over 250 countries and 5,000 ASes, and
// returns them opened with addresses inside those networks.
func benchDB(b *testing.B, n int) (*geo.DB, []netip.Addr) {
	b.Helper()
	rnd := rand.New(rand.NewPCG(7, 7))
	var cs []geotest.Country
	var as []geotest.ASN
	var ips []netip.Addr
	for i := range n {
		var p netip.Prefix
		if i%2 == 0 {
			v := uint32(i/2) << 12 // consecutive /20s from 0.0.0.0
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 20)
		} else {
			v := uint64(i/2) << 24 // consecutive /40s inside 2001:db8::/32... and beyond
			var a [16]byte
			a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
			for k := range 8 {
				a[4+k] = byte(v >> (56 - 8*k))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 40).Masked()
		}
		iso := fmt.Sprintf("%c%c", 'A'+rnd.IntN(25), 'A'+rnd.IntN(10))
		cs = append(cs, geotest.Country{Prefix: p.String(), ISO: iso})
		asn := uint32(64512 + rnd.IntN(5000))
		as = append(as, geotest.ASN{Prefix: p.String(), Number: asn, Org: fmt.Sprintf("Org %d", asn)})
		if i < 4096 {
			ips = append(ips, p.Addr().Next())
		}
	}
	dir := b.TempDir()
	d, err := geo.Open(geo.Options{
		CountryPath: geotest.CountryFile(b, dir, "c.mmdb", cs, geotest.Options{}),
		ASNPath:     geotest.ASNFile(b, dir, "a.mmdb", as, geotest.Options{}),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	rnd.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
	return d, ips
}

// BenchmarkGeoLookup is one Lookup (country and ASN) of an answer address.
func BenchmarkGeoLookup(b *testing.B) {
	d, ips := benchDB(b, 20000)
	for _, ip := range ips {
		if in := d.Lookup(ip); in.Country == "" || in.ASN == 0 {
			b.Fatalf("%s: %+v", ip, in)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		d.Lookup(ips[i&(len(ips)-1)])
		i++
	}
}
