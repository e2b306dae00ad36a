package main

// Encrypted workloads: the cached names over DNS over TLS (dnsperf -m dot)
// and DNS over HTTPS (dnsperf -m doh, HTTP/2), against sinkhole's and
// Unbound's DoT and DoH listeners. A self-signed certificate is made in the
// work directory (dnsperf does not verify it).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func init() {
	workloads = append(workloads,
		// Over TLS: each dnsperf client keeps its connection open and
		// pipelines its queries (RFC 7858 with RFC 7766 framing).
		Workload{Name: "cached-dot", Title: "Cached names over TLS (dnsperf -m dot, connections kept open)", Queries: "cached", Mode: "dot"},
		// Over HTTPS (HTTP/2 POST, connections kept open, queries
		// multiplexed): driven by benchrun's own client (dohclient.go),
		// as dnsperf 2.10's DoH client loses answers that share a TLS
		// record.
		Workload{Name: "cached-doh", Title: "Cached names over HTTPS (benchrun doh-client, HTTP/2 POST, connections kept open)", Queries: "cached", Mode: "doh"},
	)
}

// encryptedPorts are a server's DoT and DoH listeners.
type encryptedPorts struct {
	DoT, DoH int
}

// newEncryptedPorts picks two free ports.
func newEncryptedPorts() (encryptedPorts, error) {
	var p encryptedPorts
	var err error
	if p.DoT, err = FreePort(); err != nil {
		return p, err
	}
	p.DoH, err = FreePort()
	return p, err
}

// perfTarget is the port dnsperf asks for workload w, and the options the
// transport needs.
func (s *Server) perfTarget(w Workload) (port int, args []string) {
	switch w.Mode {
	case "dot":
		return s.Enc.DoT, nil
	case "doh":
		return s.Enc.DoH, []string{"-O", "doh-uri=https://127.0.0.1:" + strconv.Itoa(s.Enc.DoH) + "/dns-query", "-O", "doh-method=POST"}
	}
	return s.Port, nil
}

// perfTool is the load generator of workload w: dnsperf, or for DoH this
// program's doh-client (dohclient.go), which takes dnsperf's options.
func (b *bench) perfTool(w Workload) string {
	if w.Mode == "doh" {
		if self, err := os.Executable(); err == nil {
			return self
		}
	}
	return b.dnsperf
}

// sinkholeEncryptedArgs are sinkhole's DoT and DoH listener flags.
func sinkholeEncryptedArgs(env *ServerEnv, p encryptedPorts) []string {
	return []string{"--listen-tls", fmt.Sprintf("127.0.0.1:%d", p.DoT), "--listen-https", fmt.Sprintf("127.0.0.1:%d", p.DoH),
		"--tls-cert", env.CertFile, "--tls-key", env.KeyFile}
}

// unboundEncryptedConf are Unbound's DoT and DoH listeners (server: lines).
func unboundEncryptedConf(env *ServerEnv, p encryptedPorts) string {
	return fmt.Sprintf(`	interface: 127.0.0.1@%[1]d
	interface: 127.0.0.1@%[2]d
	tls-port: %[1]d
	https-port: %[2]d
	tls-service-pem: %[3]q
	tls-service-key: %[4]q
	http-endpoint: "/dns-query"
	incoming-num-tcp: 1024
`, p.DoT, p.DoH, env.CertFile, env.KeyFile)
}

// writeBenchCert writes a self-signed certificate for 127.0.0.1 into dir.
func writeBenchCert(dir string) (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "benchrun"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return "", "", err
	}
	return cert, key, nil
}
