package main

// Encrypted DNS with real clients from Debian (installed by .ci/run):
// kdig (knot-dnsutils) and dig (bind9-dnsutils) over TLS and HTTPS, curl
// resolving through DoH, and Unbound forwarding to sinkhole over TLS.
// Each test skips when its tool is not installed.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/tlscert/certtest"
)

// runTool runs a client with a deadline and returns its output.
func runTool(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kdig and dig over TLS and HTTPS: listed names get NXDOMAIN with EDE 16,
// others the upstream's answer; both verify the certificate against the
// test CA and the name.
func TestEncryptedDigKdig(t *testing.T) {
	kdig := lookBin(t, "kdig", "knot-dnsutils")
	dig := lookBin(t, "dig", "bind9-dnsutils")
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	dotHost, dotPort := hostPortOf(t, es.dot)
	dohHost, dohPort := hostPortOf(t, es.https)
	for _, c := range []struct {
		tool string
		args []string
	}{
		{kdig, []string{"@" + dotHost, "-p", dotPort, "+tls", "+tls-ca=" + es.caFile, "+tls-hostname=" + tlsName}},
		{kdig, []string{"@" + dohHost, "-p", dohPort, "+https", "+tls-ca=" + es.caFile, "+tls-hostname=" + tlsName}},
		{dig, []string{"@" + dotHost, "-p", dotPort, "+tls", "+tls-ca=" + es.caFile, "+tls-hostname=" + tlsName}},
		{dig, []string{"@" + dohHost, "-p", dohPort, "+https", "+tls-ca=" + es.caFile, "+tls-hostname=" + tlsName}},
		{dig, []string{"@" + dohHost, "-p", dohPort, "+https-get", "+tls-ca=" + es.caFile, "+tls-hostname=" + tlsName}},
	} {
		name := filepath.Base(c.tool) + " " + c.args[3]
		out, err := runTool(t, c.tool, append(c.args, "+edns", "www.blocked.example", "A")...)
		if err != nil || !strings.Contains(out, "NXDOMAIN") || !strings.Contains(out, "16 (Censored)") || !strings.Contains(out, "list.txt:2") {
			t.Errorf("%s www.blocked.example: %v\n%s", name, err, out)
		}
		out, err = runTool(t, c.tool, append(c.args, "allowed.example", "A")...)
		if err != nil || !strings.Contains(out, "NOERROR") || !strings.Contains(out, "192.0.2.10") {
			t.Errorf("%s allowed.example: %v\n%s", name, err, out)
		}
	}
	// A client that does not trust the CA gets no answer.
	out, err := runTool(t, kdig, "@"+dotHost, "-p", dotPort, "+tls-ca=/etc/ssl/certs/ca-certificates.crt", "+tls-hostname="+tlsName, "allowed.example")
	if err == nil && strings.Contains(out, "192.0.2.10") {
		t.Errorf("kdig with the wrong CA got an answer:\n%s", out)
	}
	waitUntil(t, "the refused handshake counted", 5*time.Second, func() bool {
		return statusOf(t, es.testServer).TLS.HandshakeFailures["dot"] > 0
	})
}

// curl --doh-url: a listed name does not resolve, an allowed one does and
// its page loads.
func TestEncryptedCurlDoH(t *testing.T) {
	curl := lookBin(t, "curl", "curl")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from "+r.Host) }))
	defer web.Close()
	_, webPort := hostPortOf(t, web.Listener.Addr().String())
	up := startUpstream(t, append(encRecords, "www.allowed.example. 300 IN A 127.0.0.1", "www.blocked.example. 300 IN A 127.0.0.1")...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	doh := "https://" + es.https + "/dns-query"
	out, err := runTool(t, curl, "-sS", "--max-time", "10", "--cacert", es.caFile, "--doh-url", doh, "http://www.allowed.example:"+webPort+"/")
	if err != nil || out != "hello from www.allowed.example:"+webPort {
		t.Errorf("curl www.allowed.example: %v %q", err, out)
	}
	out, err = runTool(t, curl, "-sS", "--max-time", "10", "--cacert", es.caFile, "--doh-url", doh, "http://www.blocked.example:"+webPort+"/")
	if err == nil || !strings.Contains(out, "resolve") {
		t.Errorf("curl www.blocked.example: %v %q, want a resolve failure", err, out)
	}
	if up.QueriesFor("www.blocked.example.") != 0 {
		t.Error("the blocked name reached the upstream")
	}
}

// Unbound forwards to sinkhole over TLS (forward-tls-upstream), verifying
// its certificate against the test CA: blocked names come back NXDOMAIN.
func TestEncryptedUnboundForwardsOverTLS(t *testing.T) {
	bin := lookBin(t, "unbound", "unbound")
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	dir := t.TempDir()
	addr := freeAddr(t)
	host, port := hostPortOf(t, addr)
	dh, dp := hostPortOf(t, es.dot)
	conf := fmt.Sprintf(unboundServer+`	access-control: 127.0.0.0/8 allow
	module-config: "iterator"
	verbosity: 1
	qname-minimisation: no
	tls-cert-bundle: "%[4]s"
forward-zone:
	name: "."
	forward-addr: %[5]s@%[6]s#%[7]s
	forward-tls-upstream: yes
remote-control:
	control-enable: no
`, dir, host, port, es.caFile, dh, dp, tlsName)
	p := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, "-d", "-c", p)
	var r *dns.Msg
	waitUntil(t, "unbound answering", 15*time.Second, func() bool {
		d.running(t)
		m := newQuery("allowed.example", dns.TypeA)
		var err error
		r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
		t.Errorf("allowed.example through unbound: %v", r)
	}
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(newQuery("www.blocked.example", dns.TypeA), addr)
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("www.blocked.example through unbound: %v %v", r, err)
	}
	m := es.metrics(t)
	if v := m.Value("sinkhole_queries_total", "type", "A", "proto", "dot", "result", "blocked"); v < 1 {
		t.Errorf("blocked DoT queries from unbound: %v", v)
	}
}

// startUnboundEncrypted runs Unbound as an encrypted upstream: DoT and
// DoH (HTTP/2) on loopback, with a certificate from ca for tlsName, and
// local data for up.test.
func startUnboundEncrypted(t *testing.T, ca *certtest.CA) (dotAddr, dohAddr string) {
	t.Helper()
	bin := lookBin(t, "unbound", "unbound")
	dir := t.TempDir()
	cert, key := ca.Issue(t, time.Time{}, tlsName, "127.0.0.1").Write(t, dir)
	dotAddr, dohAddr = freeAddr(t), freeAddr(t)
	_, dotPort := hostPortOf(t, dotAddr)
	_, dohPort := hostPortOf(t, dohAddr)
	conf := fmt.Sprintf(`server:
	interface: 127.0.0.1@%[2]s
	interface: 127.0.0.1@%[3]s
	tls-port: %[2]s
	https-port: %[3]s
	tls-service-key: "%[5]s"
	tls-service-pem: "%[4]s"
	http-endpoint: "/dns-query"
	do-daemonize: no
	use-syslog: no
	logfile: ""
	chroot: ""
	username: ""
	directory: "%[1]s"
	pidfile: "%[1]s/unbound.pid"
	do-ip6: no
	access-control: 127.0.0.0/8 allow
	module-config: "iterator"
	verbosity: 1
	local-zone: "up.test." static
	local-data: "www.up.test. 300 IN A 192.0.2.77"
	local-data: "blocked.example. 300 IN A 192.0.2.78"
remote-control:
	control-enable: no
`, dir, dotPort, dohPort, cert, key)
	p := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, "-d", "-c", p)
	tc := &tls.Config{RootCAs: ca.Pool(), ServerName: tlsName}
	waitUntil(t, "unbound serving DoT", 15*time.Second, func() bool {
		d.running(t)
		r, _, err := (&dns.Client{Net: "tcp-tls", TLSConfig: tc, Timeout: time.Second}).Exchange(newQuery("www.up.test", dns.TypeA), dotAddr)
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	return dotAddr, dohAddr
}

// sinkhole forwards over TLS and HTTPS to Unbound, verifying its
// certificate against the name with --upstream-ca; a dead encrypted
// upstream first in line fails over to the next.
func TestEncryptedUpstreamsUnbound(t *testing.T) {
	ca := certtest.NewCA(t, "upstream CA")
	dotAddr, dohAddr := startUnboundEncrypted(t, ca)
	caFile := ca.WriteCA(t, t.TempDir())
	dead := freeAddr(t) // nothing listens there
	lists := writeLists(t, map[string]string{"list.txt": encLists})
	for _, c := range []struct {
		name string
		ups  []string
	}{
		{"tls", []string{"tls://" + dotAddr + "#" + tlsName}},
		{"https", []string{"https://" + dohAddr + "/dns-query"}},
		{"https by name", []string{"https://" + tlsName + ":" + strings.Split(dohAddr, ":")[1] + "/dns-query"}},
		{"failover tls to https", []string{"tls://" + dead + "#" + tlsName, "https://" + dohAddr + "/dns-query"}},
		{"failover https to tls", []string{"https://" + dead + "/dns-query", "tls://" + dotAddr + "#" + tlsName}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"--upstream-ca", caFile, "--upstream-timeout", "1s"}
			for _, u := range c.ups {
				args = append(args, "--upstream", u)
			}
			if strings.Contains(c.name, "by name") {
				boot := startUpstream(t, tlsName+". 300 IN A 127.0.0.1")
				args = append(args, "--upstream-bootstrap", boot.Addr)
			}
			ts := startSinkhole(t, lists, args...)
			for i := range 3 {
				r := ts.query(t, "udp", "www.up.test", dns.TypeA)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.77") {
					t.Fatalf("query %d: %v", i, r)
				}
			}
			if r := ts.query(t, "tcp", "blocked.example", dns.TypeA); r.Rcode != dns.RcodeNameError {
				t.Errorf("blocked.example: %v", r)
			}
			ups := statusOf(t, ts).Upstreams
			last := ups[len(ups)-1]
			if last.Requests == 0 || last.Failures != 0 {
				t.Errorf("answering upstream %+v", last)
			}
			if len(ups) == 2 && ups[0].Failures == 0 {
				t.Errorf("dead upstream %+v", ups[0])
			}
			scheme, _, _ := strings.Cut(last.Addr, "://")
			if v := ts.metrics(t).Value("sinkhole_upstream_requests_total", "upstream", last.Addr, "transport", scheme); v < 1 {
				t.Errorf("requests to %s counted %v under transport %s", last.Addr, v, scheme)
			}
		})
	}
	// Without the CA the upstream's certificate is refused: SERVFAIL.
	ts := startSinkhole(t, lists, "--upstream", "tls://"+dotAddr+"#"+tlsName, "--upstream-timeout", "1s")
	if r := ts.query(t, "udp", "www.up.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("untrusted upstream certificate: %v", r)
	}
	if e := statusOf(t, ts).Upstreams[0].LastError; !strings.Contains(e, "certificate") {
		t.Errorf("last error %q", e)
	}
}
