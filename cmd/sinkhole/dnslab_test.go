package main

// The DNS lab of the differential and DNSSEC tests: an authoritative BIND
// (from Debian's bind9, keys and signatures made by bind9-utils in the
// test) serving
//
//	dt.example.           signed, NSEC: CNAME chains, a DNAME, a wildcard,
//	                      a TXT set too big for 512 and 1232 bytes, many A
//	                      records, MX, SRV, CAA, an unknown type
//	nsec3.dt.example.     signed, NSEC3, a secure delegation (DS in the parent)
//	insecure.dt.example.  unsigned, an insecure delegation (no DS)
//
// on a free loopback port, with its own configuration and directory.
// Recursion is on so that BIND follows a CNAME from one of its zones into
// another, as the recursive upstream of a forwarder does; every name the
// tests ask is in its zones, so it never leaves loopback.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// labZone is the signed parent zone; every name of the lab is under it.
const labZone = "dt.example."

const labParent = `$TTL 300
@            SOA   ns1.dt.example. hostmaster.dt.example. 1 3600 600 86400 300
@            NS    ns1.dt.example.
@            MX    10 mail.dt.example.
@            TXT   "apex"
ns1          A     127.0.0.1
www          A     192.0.2.1
www          AAAA  2001:db8::1
mail         A     192.0.2.25
mail         AAAA  2001:db8::25
_sip._udp    SRV   0 0 5060 sip.dt.example.
sip          A     192.0.2.26
c1           CNAME c2
c2           CNAME c3
c3           CNAME www
cx           CNAME host.nsec3.dt.example.
cu           CNAME www.insecure.dt.example.
dangling     CNAME nowhere.dt.example.
old          DNAME new.dt.example.
x.new        A     192.0.2.50
*.wild       A     192.0.2.60
*.wild       TXT   "wildcard"
caa          CAA   0 issue "ca.example"
unknown      TYPE65280 \# 4 0a0b0c0d
nsec3        NS    ns1.nsec3.dt.example.
ns1.nsec3    A     127.0.0.1
insecure     NS    ns1.insecure.dt.example.
ns1.insecure A     127.0.0.1
`

const labNSEC3 = `$TTL 300
@            SOA   ns1.nsec3.dt.example. hostmaster.dt.example. 1 3600 600 86400 300
@            NS    ns1.nsec3.dt.example.
ns1          A     127.0.0.1
host         A     192.0.2.70
alias        CNAME host
*.w          TXT   "nsec3 wildcard"
`

const labInsecure = `$TTL 300
@            SOA   ns1.insecure.dt.example. hostmaster.dt.example. 1 3600 600 86400 300
@            NS    ns1.insecure.dt.example.
ns1          A     127.0.0.1
www          A     192.0.2.80
back         CNAME www.dt.example.
`

// labBigRecords are the sets that do not fit small answers: a TXT set of
// about 900 bytes (truncates at 512) and 90 A records (about 1.5 KB: truncate
// at 512 and 1232, fit 4096).
func labBigRecords() string {
	var b strings.Builder
	for i := 0; i < 14; i++ {
		fmt.Fprintf(&b, "big TXT \"%02d %s\"\n", i, strings.Repeat("x", 56))
	}
	for i := 1; i <= 90; i++ {
		fmt.Fprintf(&b, "many A 198.51.100.%d\n", i)
	}
	return b.String()
}

// dnsLab is a running lab.
type dnsLab struct {
	dir  string
	bind string // the authoritative BIND, host:port
	// anchor is the KSK of dt.example (a DNSKEY record), the trust anchor.
	anchor dns.RR
}

// run runs a bind9-utils command in dir, bounded.
func labRun(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// signZone writes zone's text to dir, makes a KSK and a ZSK and signs it
// (NSEC3 when nsec3), leaving dsset-ZONE. in dir. It returns the signed
// file's name and the KSK's DNSKEY record.
func signZone(t *testing.T, dir, zone, text string, nsec3 bool) (string, dns.RR) {
	t.Helper()
	keygen := lookBin(t, "dnssec-keygen", "bind9-utils")
	signer := lookBin(t, "dnssec-signzone", "bind9-utils")
	file := zone + "zone"
	if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ksk := labRun(t, dir, keygen, "-q", "-K", dir, "-a", "ECDSAP256SHA256", "-f", "KSK", "-n", "ZONE", zone)
	labRun(t, dir, keygen, "-q", "-K", dir, "-a", "ECDSAP256SHA256", "-n", "ZONE", zone)
	args := []string{"-q", "-K", dir, "-d", dir, "-S", "-o", zone, "-f", file + ".signed"}
	if nsec3 {
		args = append(args, "-3", "-", "-H", "0")
	}
	labRun(t, dir, signer, append(args, file)...)
	key, err := os.ReadFile(filepath.Join(dir, ksk+".key"))
	if err != nil {
		t.Fatal(err)
	}
	var anchor dns.RR
	for _, line := range strings.Split(string(key), "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if anchor, err = dns.NewRR(line); err != nil {
			t.Fatalf("%s: %v", ksk, err)
		}
	}
	if anchor == nil {
		t.Fatalf("no DNSKEY in %s.key", ksk)
	}
	return file + ".signed", anchor
}

// startLab builds the zones and starts BIND on a free loopback port.
func startLab(t *testing.T) *dnsLab {
	t.Helper()
	named := lookBin(t, "named", "bind9")
	lab := &dnsLab{dir: t.TempDir()}
	child, _ := signZone(t, lab.dir, "nsec3.dt.example.", labNSEC3, true)
	if err := os.WriteFile(filepath.Join(lab.dir, "insecure.dt.example.zone"), []byte(labInsecure), 0o644); err != nil {
		t.Fatal(err)
	}
	parentText := labParent + labBigRecords() + "$INCLUDE " + filepath.Join(lab.dir, "dsset-nsec3.dt.example.") + "\n"
	parent, anchor := signZone(t, lab.dir, labZone, parentText, false)
	lab.anchor = anchor

	for try := 0; ; try++ {
		lab.bind = freeAddr(t)
		host, port := hostPortOf(t, lab.bind)
		conf := fmt.Sprintf(namedOptions+`	recursion yes;
	allow-recursion { 127.0.0.0/8; };
	qname-minimization off;
	dnssec-validation no;
	notify no;
	allow-query { any; };
};
controls { };
zone "dt.example" { type primary; file "%[1]s/%[4]s"; };
zone "nsec3.dt.example" { type primary; file "%[1]s/%[5]s"; };
zone "insecure.dt.example" { type primary; file "%[1]s/insecure.dt.example.zone"; };
`, lab.dir, host, port, parent, child)
		p := filepath.Join(lab.dir, "named.conf")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, named, "-g", "-n", "1", "-c", p)
		if waitServing(d, lab.bind, "www.dt.example.", 20*time.Second) {
			return lab
		}
		if try == 2 {
			t.Fatalf("BIND did not serve on %s:\n%s", lab.bind, d.out.String())
		}
		d.stop() // the port was taken meanwhile, or BIND was too slow: again
	}
}

// stop ends the daemon now (its cleanup then has nothing to do).
func (d *daemon) stop() {
	d.cmd.Process.Kill()
	<-d.done
}

// waitServing asks addr for name's A record until it answers NOERROR, the
// daemon exits, or d passes.
func waitServing(dm *daemon, addr, name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	for time.Now().Before(deadline) {
		select {
		case <-dm.done:
			return false
		default:
		}
		if r, _, err := c.Exchange(m, addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// startUnbound runs Unbound on a free loopback port as a plain
// (non-validating) forwarder to upstream, like sinkhole.
func startUnbound(t *testing.T, upstream string) string {
	t.Helper()
	return startUnboundWith(t, upstream, `module-config: "iterator"`)
}

// startUnboundWith runs Unbound forwarding everything to upstream, with
// extra server options.
func startUnboundWith(t *testing.T, upstream, extra string) string {
	t.Helper()
	bin := lookBin(t, "unbound", "unbound")
	dir := t.TempDir()
	uhost, uport := hostPortOf(t, upstream)
	for try := 0; ; try++ {
		addr := freeAddr(t)
		host, port := hostPortOf(t, addr)
		conf := fmt.Sprintf(unboundServer+`	access-control: 127.0.0.0/8 allow_snoop
	%[6]s
	verbosity: 1
	qname-minimisation: no
	prefetch: no
	num-threads: 1
	outgoing-range: 64
	num-queries-per-thread: 64
forward-zone:
	name: "."
	forward-addr: %[4]s@%[5]s
remote-control:
	control-enable: no
`, dir, host, port, uhost, uport, extra)
		p := filepath.Join(dir, "unbound.conf")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, bin, "-d", "-c", p)
		if waitServing(d, addr, "www.dt.example.", 20*time.Second) {
			return addr
		}
		if try == 2 {
			t.Fatalf("Unbound did not serve on %s:\n%s", addr, d.out.String())
		}
		d.stop()
	}
}
