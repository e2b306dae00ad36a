// Package dnstest runs small real DNS servers on loopback for tests and
// benchmarks: an upstream with known records, CNAME chains, answers too big
// for UDP, names that never answer, and injectable faults. It is built on
// miekg/dns and answers over UDP and TCP on one port. NeedTool finds the
// outside programs (readers, daemons) a test runs.
package dnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault makes the server misbehave for a name (or for every name).
type Fault int

// Faults a test can inject.
const (
	FaultNone         Fault = iota
	FaultSilent             // never answer
	FaultSlow               // answer after Server.Delay
	FaultWrongID            // answer with another message ID
	FaultWrongQ             // answer a different question
	FaultGarbage            // send random bytes
	FaultShort              // send a truncated (cut) packet
	FaultServFail           // answer SERVFAIL
	FaultRefused            // answer REFUSED
	FaultFormErr            // answer FORMERR
	FaultNotImp             // answer NOTIMP
	FaultNoEDNS             // answer FORMERR to queries with EDNS, normally to others (an old server)
	FaultNoEDNSNotImp       // answer NOTIMP to queries with EDNS, normally to others
	FaultIDBurst            // send Server.Burst answers with wrong IDs, then the answer
)

// Script edits the answer m the server is about to send to req (its records,
// header bits), or replaces it: it returns the message to send, nil to send
// nothing. It runs after faults that answer (FaultServFail and the like).
type Script func(req, m *dns.Msg) *dns.Msg

// Server is a loopback DNS server with a fixed set of records.
type Server struct {
	Addr string // host:port, UDP and TCP

	mu       sync.RWMutex
	records  map[string][]dns.RR // key: lower-case fqdn + "/" + type
	names    map[string]bool     // every owner name, lower-case fqdn
	faults   map[string]Fault    // key: lower-case fqdn, "*" for every name
	catchAll bool
	noSOA    bool
	scripts  map[string]Script   // key: lower-case fqdn, "*" for every name
	last     map[string]*dns.Msg // the last query for each name
	burst    map[string]bool     // names FaultIDBurst has sent its burst for
	// Delay is how long FaultSlow waits.
	Delay time.Duration
	// Burst is how many wrong-ID answers FaultIDBurst sends first.
	Burst int

	queries atomic.Int64
	perName sync.Map // name -> *atomic.Int64

	udp, tcp *dns.Server
}

// Options configures a Server.
type Options struct {
	// Addr to listen on; "127.0.0.1:0" if empty.
	Addr string
	// Records in zone-file syntax, one per entry, e.g. "www.example.com. 300 IN A 192.0.2.1".
	Records []string
	// CatchAll answers A and AAAA for any name not in Records with a
	// synthesized address (for load tests).
	CatchAll bool
	// NoSOA leaves the SOA out of negative answers.
	NoSOA bool
}

// Start starts a server. Close it when done.
func Start(o Options) (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}, names: map[string]bool{}, faults: map[string]Fault{},
		scripts: map[string]Script{}, last: map[string]*dns.Msg{}, burst: map[string]bool{}, catchAll: o.CatchAll, noSOA: o.NoSOA, Delay: 3 * time.Second, Burst: 1000}
	for _, r := range o.Records {
		if err := s.Add(r); err != nil {
			return nil, err
		}
	}
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	udpReady, tcpReady := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(udpReady) }}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(tcpReady) }}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-udpReady
	<-tcpReady
	return s, nil
}

// listenBoth opens UDP and TCP on the same port. With port 0 the port the
// kernel picks for UDP may be taken for TCP, so it retries.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for try := 0; try < 20; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if !strings.HasSuffix(addr, ":0") {
			break
		}
	}
	return nil, nil, lastErr
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Add adds one record in zone-file syntax.
func (s *Server) Add(record string) error {
	rr, err := dns.NewRR(record)
	if err != nil {
		return fmt.Errorf("dnstest: record %q: %w", record, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	k := name + "/" + dns.TypeToString[rr.Header().Rrtype]
	s.records[k] = append(s.records[k], rr)
	s.names[name] = true
	return nil
}

// Remove deletes every record of a name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	for k := range s.records {
		if strings.HasPrefix(k, name+"/") {
			delete(s.records, k)
		}
	}
	delete(s.names, name)
}

// SetFault makes the server misbehave for name ("*" for every name).
func (s *Server) SetFault(name string, f Fault) {
	setFor(s, s.faults, name, f, f == FaultNone)
}

// SetScript makes the server pass its answers for name ("*" for every name)
// through f; nil removes the script.
func (s *Server) SetScript(name string, f Script) {
	setFor(s, s.scripts, name, f, f == nil)
}

// setFor sets m[name] to v, or deletes it when clear, under s's lock.
func setFor[V any](s *Server, m map[string]V, name string, v V, clear bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "*" {
		name = strings.ToLower(dns.Fqdn(name))
	}
	if clear {
		delete(m, name)
		return
	}
	m[name] = v
}

// LastQuery returns a copy of the last query the server received for name,
// or nil.
func (s *Server) LastQuery(name string) *dns.Msg {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m := s.last[strings.ToLower(dns.Fqdn(name))]; m != nil {
		return m.Copy()
	}
	return nil
}

// Queries returns how many queries the server has received.
func (s *Server) Queries() int64 { return s.queries.Load() }

// QueriesFor returns how many queries named name.
func (s *Server) QueriesFor(name string) int64 {
	if v, ok := s.perName.Load(strings.ToLower(dns.Fqdn(name))); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (s *Server) count(name string) {
	s.queries.Add(1)
	v, _ := s.perName.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.count(name)
	s.mu.Lock()
	s.last[name] = req.Copy()
	fault, ok := s.faults[name]
	if !ok {
		fault = s.faults["*"]
	}
	script, ok := s.scripts[name]
	if !ok {
		script = s.scripts["*"]
	}
	burst := 0
	if fault == FaultIDBurst && !s.burst[name] {
		s.burst[name], burst = true, s.Burst
	}
	s.mu.Unlock()
	m := s.answer(req)
	edns := req.IsEdns0() != nil
	switch fault {
	case FaultSilent:
		return
	case FaultSlow:
		time.Sleep(s.Delay)
	case FaultWrongID:
		m.Id = req.Id + 1
	case FaultWrongQ:
		m.Question[0].Name = "wrong." + m.Question[0].Name
	case FaultGarbage:
		w.Write([]byte("\x13\x37garbage that is not a DNS message at all"))
		return
	case FaultShort:
		out, _ := m.Pack()
		w.Write(out[:len(out)/2])
		return
	case FaultServFail:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
	case FaultRefused:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
	case FaultFormErr:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
	case FaultNotImp:
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
	case FaultNoEDNS, FaultNoEDNSNotImp:
		if edns {
			rcode := dns.RcodeFormatError
			if fault == FaultNoEDNSNotImp {
				rcode = dns.RcodeNotImplemented
			}
			m = new(dns.Msg)
			m.SetRcode(req, rcode)
		}
	case FaultIDBurst:
		bad := m.Copy()
		for i := 0; i < burst; i++ {
			bad.Id = req.Id + 1 + uint16(i%65535)
			w.WriteMsg(bad)
		}
	}
	if script != nil {
		if m = script(req, m); m == nil {
			return
		}
	}
	if w.LocalAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer builds the authoritative-style answer, following CNAMEs inside the
// server's records.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(4096, opt.Do())
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for hops := 0; hops < 8; hops++ {
		if rrs := s.records[name+"/"+dns.TypeToString[q.Qtype]]; len(rrs) > 0 {
			m.Answer = append(m.Answer, copyRRs(rrs, q.Name, hops == 0)...)
			return m
		}
		if rrs := s.records[name+"/CNAME"]; len(rrs) > 0 && q.Qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, copyRRs(rrs, "", false)...)
			name = strings.ToLower(rrs[0].(*dns.CNAME).Target)
			continue
		}
		break
	}
	if len(m.Answer) > 0 {
		return m
	}
	if s.names[name] {
		m.Ns = s.negative(name)
		return m
	}
	if s.catchAll {
		switch q.Qtype {
		case dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 3600 IN A 192.0.2.53")
			m.Answer = append(m.Answer, rr)
			return m
		case dns.TypeAAAA:
			rr, _ := dns.NewRR(q.Name + " 3600 IN AAAA 2001:db8::53")
			m.Answer = append(m.Answer, rr)
			return m
		}
		m.Ns = s.negative(name)
		return m
	}
	m.Rcode = dns.RcodeNameError
	m.Ns = s.negative(name)
	return m
}

// negative returns the authority section of a negative answer.
func (s *Server) negative(name string) []dns.RR {
	if rr := s.soa(name); rr != nil {
		return []dns.RR{rr}
	}
	return nil
}

func (s *Server) soa(name string) dns.RR {
	if s.noSOA {
		return nil
	}
	labels := dns.SplitDomainName(name)
	zone := "."
	if len(labels) >= 2 {
		zone = dns.Fqdn(strings.Join(labels[len(labels)-2:], "."))
	}
	rr, _ := dns.NewRR(zone + " 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30")
	return rr
}

// copyRRs copies records; when echo is set the owner takes the case of the
// question (as real servers do).
func copyRRs(rrs []dns.RR, qname string, echo bool) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		if echo && qname != "" {
			out[i].Header().Name = qname
		}
	}
	return out
}

// Silent is a UDP and TCP endpoint that accepts queries and never answers,
// standing for a dead upstream.
type Silent struct {
	Addr string
	pc   net.PacketConn
	ln   net.Listener
}

// StartSilent starts a black hole on loopback.
func StartSilent() (*Silent, error) {
	pc, ln, err := listenBoth("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Silent{Addr: pc.LocalAddr().String(), pc: pc, ln: ln}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return s, nil
}

// Close stops the black hole.
func (s *Silent) Close() { s.pc.Close(); s.ln.Close() }

// NeedTool returns the path of the command name (from Debian package pkg).
// When it is missing the test fails under CI (which installs it) and is
// skipped elsewhere.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (Debian package %s; .ci/run installs it)", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return p
}
