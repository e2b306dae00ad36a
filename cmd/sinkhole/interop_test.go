package main

// Interoperability with real DNS software from Debian (bind9, knot,
// unbound; installed by .ci/run): BIND and Knot as RPZ primaries for a
// sinkhole secondary (AXFR, NOTIFY, IXFR, TSIG), and Unbound as a
// secondary of sinkhole's exported zone. Each test skips when its daemon
// is not installed.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// daemon is an external DNS server started by a test.
type daemon struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startDaemon runs bin with args, logging into a buffer shown on failure,
// and stops it at cleanup.
func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), d.out.String())
		}
	})
	return d
}

// running fails the test at once when the daemon has exited.
func (d *daemon) running(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		t.Fatalf("%s exited: %v", filepath.Base(d.cmd.Path), d.cmd.ProcessState)
	default:
	}
}

func (d *daemon) hup(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// lookBin finds a daemon or skips the test; in CI (which installs every
// tool, see .ci/run) a missing one fails it.
func lookBin(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (apt-get install %s): .ci/run must install it", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

func hostPortOf(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// The TSIG key shared with the primaries (tsig-keygen format).
const interopKeyName = "sinkhole-feed"
const interopKeySecret = "3Jm8aUqR0gWc5bQ2rYpK1zNvT7xLdE4hF6iO9sAeC0M="

func writeInteropKey(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "feed.key")
	key := fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", interopKeyName, interopKeySecret)
	if err := os.WriteFile(p, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func rpzZoneText(serial int, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. %d 60 10 86400 60\n  NS ns.rpz.test.\nns A 127.0.0.1\n", serial)
	for _, n := range names {
		fmt.Fprintf(&b, "%s CNAME .\n*.%s CNAME .\n", n, n)
	}
	b.WriteString("academy.binance.com CNAME rpz-passthru.\n32.66.2.0.192.rpz-ip CNAME .\n")
	return b.String()
}

// primaryKind configures and starts one kind of primary serving
// dir/rpz.test.zone on addr, notifying notifyAddr, transfers and NOTIFY
// signed with the interop key.
type primaryKind struct {
	name, bin, pkg string
	start          func(t *testing.T, bin, dir, addr, notifyAddr string) *daemon
}

func startNamed(t *testing.T, bin, dir, addr, notifyAddr string) *daemon {
	host, port := hostPortOf(t, addr)
	nhost, nport := hostPortOf(t, notifyAddr)
	conf := fmt.Sprintf(namedOptions+`	recursion no;
	dnssec-validation no;
	notify explicit;
	notify-delay 0;
	also-notify { %[4]s port %[5]s; };
	ixfr-from-differences yes;
	allow-transfer { key %[6]s; };
	allow-query { any; };
};
key "%[6]s" { algorithm hmac-sha256; secret "%[7]s"; };
server %[4]s { keys { %[6]s; }; };
zone "rpz.test" { type primary; file "%[1]s/rpz.test.zone"; };
controls { };
`, dir, host, port, nhost, nport, interopKeyName, interopKeySecret)
	p := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, bin, "-g", "-c", p)
}

func startKnot(t *testing.T, bin, dir, addr, notifyAddr string) *daemon {
	host, port := hostPortOf(t, addr)
	nhost, nport := hostPortOf(t, notifyAddr)
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: %[2]s@%[3]s
log:
  - target: stderr
    any: info
database:
    storage: "%[1]s"
key:
  - id: %[6]s
    algorithm: hmac-sha256
    secret: %[7]s
remote:
  - id: sinkhole
    address: %[4]s@%[5]s
    key: %[6]s
acl:
  - id: transfer
    key: %[6]s
    action: transfer
template:
  - id: default
    storage: "%[1]s"
    zonefile-sync: -1
    zonefile-load: difference
    journal-content: changes
zone:
  - domain: rpz.test
    file: rpz.test.zone
    notify: sinkhole
    acl: transfer
`, dir, host, port, nhost, nport, interopKeyName, interopKeySecret)
	p := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, bin, "-c", p)
}

// TestInteropPrimaries: BIND and Knot serve an RPZ zone; sinkhole, their
// secondary, loads it by AXFR, then a zone edit at the primary reaches it
// by NOTIFY and IXFR. Every message is TSIG-signed.
func TestInteropPrimaries(t *testing.T) {
	for _, pk := range []primaryKind{
		{"bind9", "named", "bind9", startNamed},
		{"knot", "knotd", "knot", startKnot},
	} {
		t.Run(pk.name, func(t *testing.T) {
			bin := lookBin(t, pk.bin, pk.pkg)
			dir := t.TempDir()
			zoneFile := filepath.Join(dir, "rpz.test.zone")
			if err := os.WriteFile(zoneFile, []byte(rpzZoneText(1, "binance.com")), 0o644); err != nil {
				t.Fatal(err)
			}
			up := startUpstream(t, "academy.binance.com. 60 IN A 192.0.2.30", "cdn.allowed.test. 60 IN A 192.0.2.66")
			primaryAddr := freeAddr(t)
			sec := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--state-dir", t.TempDir(),
				"--rpz-feed", "regulator=rpz.test@"+primaryAddr, "--rpz-tsig", "regulator="+writeInteropKey(t, dir))
			d := pk.start(t, bin, dir, primaryAddr, sec.addr)
			feed := func() string {
				st := sec.in.feeds.Status().Feeds[0]
				return fmt.Sprintf("serial %d via %s (%s %s)", st.Serial, st.LastTransferType, st.LastResult, st.LastError)
			}
			waitUntil(t, pk.name+" AXFR to sinkhole", 15*time.Second, func() bool {
				d.running(t)
				return sec.in.feeds.Status().Feeds[0].Serial == 1
			})
			t.Logf("after start: %s", feed())
			for _, name := range []string{"binance.com", "www.binance.com", "cdn.allowed.test"} {
				if !censored(sec.addr, name) {
					t.Fatalf("%s not blocked; feed %s", name, feed())
				}
			}
			if r := sec.query(t, "udp", "academy.binance.com", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("passthru: %v", r)
			}
			// Edit the zone at the primary and reload it: NOTIFY, then IXFR.
			if err := os.WriteFile(zoneFile, []byte(rpzZoneText(2, "binance.com", "okx.com")), 0o644); err != nil {
				t.Fatal(err)
			}
			d.hup(t)
			took := waitUntil(t, "okx.com blocked after the primary's reload", 15*time.Second, func() bool { return censored(sec.addr, "okx.com") })
			st := sec.in.feeds.Status().Feeds[0]
			t.Logf("zone edit reached sinkhole %s after the reload signal: %s", took.Round(time.Millisecond), feed())
			if st.Serial != 2 || st.LastTransferType != "IXFR" {
				t.Fatalf("after the edit: %s, want serial 2 by IXFR", feed())
			}
		})
	}
}

// consumerKind configures and starts one kind of resolver that pulls
// sinkhole's exported zone (primary) and forwards other queries to
// upstream, listening on addr.
type consumerKind struct {
	name, bin, pkg string
	start          func(t *testing.T, bin, dir, addr, primary, upstream string) *daemon
}

// namedOptions opens the options clause of every BIND the tests start:
// its files in the directory %[1]s, listening on %[2]s port %[3]s (IPv4
// loopback only). The callers' formats go on with their own options.
const namedOptions = `options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	listen-on port %[3]s { %[2]s; };
	listen-on-v6 { none; };
`

// unboundServer opens the server: clause of every Unbound the tests start:
// in the foreground, logging to stderr, no chroot or user switch, its
// files in the directory %[1]s, listening on %[2]s@%[3]s (IPv4 loopback),
// and allowed to query loopback servers. The callers' formats go on with
// their own server: options.
const unboundServer = `server:
	interface: %[2]s@%[3]s
	do-daemonize: no
	use-syslog: no
	logfile: ""
	chroot: ""
	username: ""
	directory: "%[1]s"
	pidfile: "%[1]s/unbound.pid"
	do-ip6: no
	do-not-query-localhost: no
`

func startUnboundConsumer(t *testing.T, bin, dir, addr, primary, upstream string) *daemon {
	host, port := hostPortOf(t, addr)
	phost, pport := hostPortOf(t, primary)
	uhost, uport := hostPortOf(t, upstream)
	conf := fmt.Sprintf(unboundServer+`	access-control: 127.0.0.0/8 allow
	module-config: "respip iterator"
	verbosity: 1
	qname-minimisation: no
	cache-max-ttl: 0
	cache-max-negative-ttl: 0
	local-zone: "test." nodefault
rpz:
	name: rpz.test
	primary: %[4]s@%[5]s
	allow-notify: %[4]s
	zonefile: "%[1]s/rpz.test.zone"
	rpz-log: yes
forward-zone:
	name: "."
	forward-addr: %[6]s@%[7]s
remote-control:
	control-enable: no
`, dir, host, port, phost, pport, uhost, uport)
	p := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, bin, "-d", "-c", p)
}

func startNamedConsumer(t *testing.T, bin, dir, addr, primary, upstream string) *daemon {
	host, port := hostPortOf(t, addr)
	phost, pport := hostPortOf(t, primary)
	uhost, uport := hostPortOf(t, upstream)
	conf := fmt.Sprintf(namedOptions+`	recursion yes;
	allow-recursion { 127.0.0.0/8; };
	forwarders { %[6]s port %[7]s; };
	forward only;
	dnssec-validation no;
	notify no;
	max-cache-size 32M;
	response-policy { zone "rpz.test" min-update-interval 0; };
};
controls { };
zone "rpz.test" { type secondary; primaries { %[4]s port %[5]s; }; file "%[1]s/rpz.test.db"; };
`, dir, host, port, phost, pport, uhost, uport)
	p := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, bin, "-g", "-c", p)
}

// TestInteropConsumers: Unbound and BIND pull sinkhole's exported RPZ
// zone and block the same names as sinkhole; a list edit at sinkhole
// reaches them by NOTIFY and IXFR.
func TestInteropConsumers(t *testing.T) {
	for _, ck := range []consumerKind{
		{"unbound", "unbound", "unbound", startUnboundConsumer},
		{"bind9", "named", "bind9", startNamedConsumer},
	} {
		t.Run(ck.name, func(t *testing.T) {
			bin := lookBin(t, ck.bin, ck.pkg)
			// The upstream knows every name, so an NXDOMAIN can only come
			// from the policy zone.
			up := startUpstream(t,
				"binance.com. 60 IN A 192.0.2.50",
				"www.binance.com. 60 IN A 192.0.2.51",
				"www.allowed.test. 60 IN A 192.0.2.10",
				"academy.binance.com. 60 IN A 192.0.2.30",
				"cdn.allowed.test. 60 IN A 192.0.2.66",
				"okx.com. 60 IN A 192.0.2.40",
			)
			consumerAddr := freeAddr(t)
			list := "# platform: Binance\nbinance.com\n@@academy.binance.com\n192.0.2.66\n"
			lists := writeLists(t, map[string]string{"regulator.txt": list})
			primary := startSinkhole(t, lists, "--upstream", up.Addr, "--rpz-export", "rpz.test", "--state-dir", t.TempDir(),
				"--rpz-notify", consumerAddr, "--reload-debounce", "10ms")
			d := ck.start(t, bin, t.TempDir(), consumerAddr, primary.addr, up.Addr)
			// ask retries a lost or SERVFAIL answer (a busy machine can
			// time out the consumer's first upstream query).
			ask := func(name string) *dns.Msg {
				var r *dns.Msg
				for try := 0; try < 3; try++ {
					m := new(dns.Msg)
					m.SetQuestion(dns.Fqdn(name), dns.TypeA)
					c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
					var err error
					if r, _, err = c.Exchange(m, consumerAddr); err == nil && r.Rcode != dns.RcodeServerFailure {
						return r
					}
				}
				return r
			}
			nx := func(name string) func() bool {
				return func() bool {
					d.running(t)
					r := ask(name)
					return r != nil && r.Rcode == dns.RcodeNameError
				}
			}
			waitUntil(t, ck.name+" to load sinkhole's zone and block binance.com", 15*time.Second, nx("www.binance.com"))
			verdicts := map[string]bool{
				"binance.com": true, "www.binance.com": true, "cdn.allowed.test": true,
				"www.allowed.test": false, "academy.binance.com": false, "okx.com": false,
			}
			// Ask every name once first: BIND 9.18 with "forward only"
			// answers the very first query for a name unrewritten by a
			// response-IP trigger (seen with a local RPZ file too), and
			// rewrites from the second on.
			for name := range verdicts {
				ask(name)
			}
			// The consumer and sinkhole agree on every name.
			for name, blocked := range verdicts {
				if r := ask(name); (r != nil && r.Rcode == dns.RcodeNameError) != blocked {
					t.Errorf("%s: blocked(%s) = %v, want %v: %v", ck.name, name, !blocked, blocked, r)
				}
				if censored(primary.addr, name) != blocked {
					t.Errorf("sinkhole: blocked(%s) = %v, want %v", name, !blocked, blocked)
				}
			}
			// A list edit at sinkhole reaches the consumer (NOTIFY, then IXFR).
			if err := os.WriteFile(filepath.Join(lists, "regulator.txt"), []byte(list+"okx.com\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			took := waitUntil(t, ck.name+" to block okx.com after the edit", 15*time.Second, nx("okx.com"))
			t.Logf("list edit at sinkhole reached %s in %s", ck.name, took.Round(time.Millisecond))
			if log := primary.stderr.String(); !strings.Contains(log, "type=IXFR") {
				t.Errorf("%s did not fetch the change by IXFR; sinkhole log:\n%s", ck.name, log)
			}
		})
	}
}
