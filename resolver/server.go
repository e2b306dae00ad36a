package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Observer is told about every answered (or dropped) query. It must not
// block (logs and metrics buffer) and must not keep req, resp or anything
// they hold (strings included: on the wire path req.Name aliases a buffer
// reused for the next query) after it returns. resp is nil for answers written straight from the cache's wire
// form; req.Info.Rcode always holds the response code and req.Msg may be nil.
type Observer func(req *Request, resp *dns.Msg)

// WireCache answers queries straight from their packets (see
// resolver/cache): it writes the answer into out and reports the Info and
// canonical name of the cached entry, or declines.
type WireCache interface {
	AnswerWire(q *WireQuery, gen uint64, out []byte, udp bool) (n int, info *Info, name string, ok bool)
}

// WireBlocker answers, straight from the packet, queries whose name a list
// blocks outright (see policy.Wire). n is 0 for the drop action.
type WireBlocker interface {
	// BlockWire fills d with the decision (observers see it; nobody keeps
	// it) and writes the answer into out.
	BlockWire(q *WireQuery, name string, snap *blocklist.Snapshot, out []byte, d *Decision) (n int, ok bool)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen holds host:port addresses; each gets UDP and TCP.
	Listen []string
	// Handler is the head of the chain.
	Handler Handler
	// Snapshot returns the list snapshot in service; each query takes one.
	Snapshot func() *blocklist.Snapshot
	// Observe is called for every query (may be nil).
	Observe Observer
	// Logger receives server events; slog.Default() if nil.
	Logger *slog.Logger
	// UDPSockets per listen address, sharing the port with SO_REUSEPORT
	// (default GOMAXPROCS).
	UDPSockets int
	// QueryTimeout bounds one query's trip through the chain (default 5s).
	QueryTimeout time.Duration
	// TCPMaxConns caps concurrent TCP connections (default 1024).
	TCPMaxConns int
	// TCPIdleTimeout closes a TCP connection with no query for this long
	// (default 10s, RFC 7766).
	TCPIdleTimeout time.Duration
	// TCPMaxInflight caps the queries handled at once on one TCP connection
	// (default 32); further pipelined queries wait.
	TCPMaxInflight int
	// MaxInflight caps the queries in the chain at once, over UDP and TCP
	// (default 10000); a query over the cap is dropped and counted.
	MaxInflight int
	// TCPMaxConnsPerClient caps the TCP connections one client address
	// holds at once (default 64), so that one slow or hostile client
	// cannot take every slot of TCPMaxConns.
	TCPMaxConnsPerClient int
	// Panics, when set, is incremented for every recovered handler panic.
	Panics *atomic.Uint64
	// Cache, when set, is tried on the raw packet before any parsing.
	Cache WireCache
	// Blocker, when set, answers blocked names from the raw packet after a
	// cache miss.
	Blocker WireBlocker
	// Notify, when set, answers NOTIFY messages (RFC 1996); without it they
	// get NOTIMP like every opcode but QUERY.
	Notify NotifyHandler
	// Transfer, when set, serves AXFR and IXFR requests that arrive over
	// TCP. Zone transfers over UDP, and over TCP without it, are REFUSED.
	Transfer TransferHandler
	// Admit, when set, is asked about every query before it is parsed
	// (client ACL, per-client rate limit). It must be fast and must not
	// block.
	Admit func(client netip.AddrPort, proto string) Admission
	// LimitResponse, when set, sees every UDP response, packed, before it
	// is written (response rate limiting); it must neither modify nor
	// retain resp. Answers written from the wire (a cache hit) go through
	// it too. TCP responses are never limited: a TCP client has proved
	// its address.
	LimitResponse func(client netip.AddrPort, resp []byte) Limit
}

// Admission is ServerConfig.Admit's verdict on a query.
type Admission uint8

// Admissions.
const (
	Admit  Admission = iota // serve the query
	Refuse                  // answer REFUSED without running the chain
	Drop                    // send nothing
)

// Limit is ServerConfig.LimitResponse's verdict on a UDP response.
type Limit uint8

// Limits.
const (
	Send     Limit = iota // send the response
	Suppress              // send nothing
	Slip                  // send an empty truncated (TC) response: a real client retries over TCP
)

// drainWindow is how long UDP sockets keep being read after Shutdown
// starts, so that queries already queued in the kernel are answered.
const drainWindow = 100 * time.Millisecond

// Server serves DNS over UDP and TCP on the configured addresses.
type Server struct {
	cfg        ServerConfig
	log        *slog.Logger
	udp        []*net.UDPConn
	tcp        []*net.TCPListener
	wg         sync.WaitGroup // in-flight queries
	loops      sync.WaitGroup // read and accept loops
	tcpSem     chan struct{}
	conns      sync.Map // net.Conn -> struct{}, for shutdown
	closing    atomic.Bool
	bufPool    sync.Pool
	tcpScratch sync.Pool

	perClient   sync.Mutex
	clientConns map[netip.Addr]int // open TCP connections per client address
	tcpRejected atomic.Uint64
	inflight    atomic.Int64 // queries in the chain
	overloaded  atomic.Uint64

	panicLast  atomic.Int64 // unix nanoseconds of the last panic logged
	panicQuiet atomic.Uint64
	panicStack atomic.Bool
}

// slowPathBuf is the size of the pooled buffers that carry a UDP query to
// the full path; larger packets get a buffer of their own.
const slowPathBuf = 4096

// NewServer validates cfg and returns a server that is not yet listening.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Handler == nil || cfg.Snapshot == nil {
		return nil, errors.New("resolver: server needs a handler and a snapshot source")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("resolver: no listen address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UDPSockets <= 0 {
		cfg.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	if cfg.TCPMaxConns <= 0 {
		cfg.TCPMaxConns = 1024
	}
	if cfg.TCPIdleTimeout <= 0 {
		cfg.TCPIdleTimeout = 10 * time.Second
	}
	if cfg.TCPMaxInflight <= 0 {
		cfg.TCPMaxInflight = 32
	}
	if cfg.TCPMaxConnsPerClient <= 0 {
		cfg.TCPMaxConnsPerClient = 64
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 10000
	}
	s := &Server{cfg: cfg, log: cfg.Logger, tcpSem: make(chan struct{}, cfg.TCPMaxConns), clientConns: map[netip.Addr]int{}}
	s.bufPool.New = func() any { b := make([]byte, 0, slowPathBuf); return &b }
	s.tcpScratch.New = func() any { return newWireScratch() }
	return s, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Start binds every listener and starts serving. On error nothing is left
// listening.
func (s *Server) Start() error {
	lc := net.ListenConfig{Control: reusePort}
	for _, addr := range s.cfg.Listen {
		var err error
		// With port 0 the kernel picks a UDP port that may be taken for
		// TCP; try a few times.
		for try := 0; try < 20; try++ {
			if err = s.bind(lc, addr); err == nil || !strings.HasSuffix(addr, ":0") {
				break
			}
		}
		if err != nil {
			s.closeListeners()
			return err
		}
	}
	for _, c := range s.udp {
		s.loops.Add(1)
		go s.udpLoop(c)
	}
	for _, l := range s.tcp {
		s.loops.Add(1)
		go s.acceptLoop(l)
	}
	for _, l := range s.tcp {
		s.log.Info("dns listening", "addr", l.Addr().String(), "udp_sockets", s.cfg.UDPSockets)
	}
	return nil
}

// bind opens the UDP sockets and the TCP listener of one address.
func (s *Server) bind(lc net.ListenConfig, addr string) error {
	ctx := context.Background()
	first, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("listen udp %s: %w", addr, err)
	}
	conns := []*net.UDPConn{first.(*net.UDPConn)}
	fail := func(err error) error {
		for _, c := range conns {
			c.Close()
		}
		return err
	}
	bound := first.LocalAddr().String() // resolves port 0
	for i := 1; i < s.cfg.UDPSockets; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", bound)
		if err != nil {
			return fail(fmt.Errorf("listen udp %s (socket %d): %w", bound, i+1, err))
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	ln, err := net.Listen("tcp", bound)
	if err != nil {
		return fail(fmt.Errorf("listen tcp %s: %w", bound, err))
	}
	s.udp = append(s.udp, conns...)
	s.tcp = append(s.tcp, ln.(*net.TCPListener))
	return nil
}

// Addrs returns the bound addresses (one per Listen entry, UDP and TCP share it).
func (s *Server) Addrs() []string {
	out := make([]string, len(s.tcp))
	for i, l := range s.tcp {
		out[i] = l.Addr().String()
	}
	return out
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
}

// Overloaded returns how many queries were dropped for being over
// MaxInflight.
func (s *Server) Overloaded() uint64 { return s.overloaded.Load() }

// TCPRejected returns how many TCP connections were closed at accept for
// being over TCPMaxConns or TCPMaxConnsPerClient.
func (s *Server) TCPRejected() uint64 { return s.tcpRejected.Load() }

// Shutdown stops reading new queries, answers the queries already received
// (including those queued in UDP socket buffers) until ctx ends, then
// closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	for _, l := range s.tcp {
		l.Close()
	}
	// Stop UDP reads once the queue is drained, but keep the sockets
	// writable for in-flight answers.
	for _, c := range s.udp {
		c.SetReadDeadline(time.Now().Add(drainWindow))
	}
	// TCP connections stop reading; queries already read are answered.
	s.conns.Range(func(k, _ any) bool { k.(net.Conn).SetReadDeadline(time.Now()); return true })
	done := make(chan struct{})
	go func() {
		// Every wg.Add happens in a read loop or a connection, so wait for
		// those before waiting for the queries.
		s.loops.Wait()
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: in-flight queries still running: %w", ctx.Err())
	}
	for _, c := range s.udp {
		c.Close()
	}
	s.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	s.loops.Wait()
	return err
}

// wireScratch is one read loop's (or one TCP query's) reusable state for
// answering without allocating.
type wireScratch struct {
	q        WireQuery
	decision Decision
	key      [262]byte
	name     [256]byte
	out      []byte
	req      Request
}

func newWireScratch() *wireScratch { return &wireScratch{out: make([]byte, dns.MaxMsgSize)} }

// fromWire answers pkt from the cache or, for a blocked name, from the
// wire blocker, into w.out, observing the query. It reports the answer's
// length (0: send nothing) and false when the full path must take it.
func (s *Server) fromWire(w *wireScratch, pkt []byte, from netip.AddrPort, proto string) (int, bool) {
	if (s.cfg.Cache == nil && s.cfg.Blocker == nil) || ParseWireQuery(pkt, w.key[:0], &w.q) != nil {
		return 0, false
	}
	snap := s.cfg.Snapshot()
	if s.cfg.Cache != nil {
		if n, info, name, ok := s.cfg.Cache.AnswerWire(&w.q, snap.Generation, w.out, proto == "udp"); ok {
			s.observeWire(w, name, from, proto, snap, info, true)
			return n, true
		}
	}
	if s.cfg.Blocker == nil {
		return 0, false
	}
	name, ok := dottedName(w.name[:0], w.q.Key)
	if !ok {
		return 0, false
	}
	n, ok := s.cfg.Blocker.BlockWire(&w.q, unsafe.String(unsafe.SliceData(name), len(name)), snap, w.out, &w.decision)
	if !ok {
		return 0, false
	}
	info := Info{Decision: &w.decision, Dropped: n == 0}
	if n > 0 {
		info.Rcode = int(w.out[3] & 0xF)
	}
	// The name aliases w.name: observers format or count, never keep it.
	s.observeWire(w, unsafe.String(unsafe.SliceData(name), len(name)), from, proto, snap, &info, false)
	return n, true
}

// observeWire tells the observer about a query answered on the wire path.
func (s *Server) observeWire(w *wireScratch, name string, from netip.AddrPort, proto string, snap *blocklist.Snapshot, info *Info, cached bool) {
	if s.cfg.Observe == nil {
		return
	}
	r := &w.req
	*r = Request{Name: name, Qtype: w.q.Qtype, Client: from, Proto: proto, Start: time.Now(), Snapshot: snap, Info: *info}
	r.Info.Cached = cached
	s.cfg.Observe(r, nil)
	*r = Request{}
}

// dottedName turns a cache key's wire name into the canonical dotted form
// the matchers use. It declines names with bytes a list entry cannot hold
// (such names go the full path, which spells them as miekg/dns does).
func dottedName(dst, key []byte) ([]byte, bool) {
	for i := 0; i < len(key); {
		l := int(key[i])
		if l == 0 {
			return dst, true
		}
		if len(dst) > 0 {
			dst = append(dst, '.')
		}
		for _, c := range key[i+1 : i+1+l] {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nil, false
			}
			dst = append(dst, c)
		}
		i += 1 + l
	}
	return nil, false
}

func (s *Server) udpLoop(c *net.UDPConn) {
	defer s.loops.Done()
	buf := make([]byte, dns.MaxMsgSize)
	w := newWireScratch()
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		if n < 12 {
			continue // not even a header: drop
		}
		if out, done := s.quickUDP(w, buf[:n], from); done {
			s.writeUDP(c, out, from)
			continue
		}
		bp := s.bufPool.Get().(*[]byte)
		pkt := append((*bp)[:0], buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP(c, pkt, from)
			if cap(pkt) <= slowPathBuf { // oversized packets do not stay pooled
				*bp = pkt[:0]
				s.bufPool.Put(bp)
			}
		}()
	}
}

// quickUDP settles, in the read loop, what needs no chain: admission
// (ACL, rate limit), then the wire path (a cache hit, a blocked name), with
// response rate limiting. done is false when the query must take the chain;
// out (nil: send nothing) may alias w.out.
func (s *Server) quickUDP(w *wireScratch, pkt []byte, from netip.AddrPort) (out []byte, done bool) {
	if out, pass := s.gate(pkt, from, "udp"); !pass {
		return out, true
	}
	m, ok := s.tryWire(w, pkt, from, "udp")
	switch {
	case !ok:
		return nil, false
	case m == 0:
		return nil, true // dropped
	}
	return s.limitUDP(w.out[:m], from), true
}

// answerUDP is the whole UDP path of one packet (quickUDP, then the chain).
func (s *Server) answerUDP(w *wireScratch, pkt []byte, from netip.AddrPort) []byte {
	if out, done := s.quickUDP(w, pkt, from); done {
		return out
	}
	return s.resolveUDP(pkt, from)
}

// serveUDP answers an admitted UDP query through the chain (the read loop
// ran quickUDP).
func (s *Server) serveUDP(c *net.UDPConn, pkt []byte, from netip.AddrPort) {
	defer s.recoverPacket(from, "udp")
	s.writeUDP(c, s.resolveUDP(pkt, from), from)
}

// writeUDP sends out to the client (nothing when out is nil).
func (s *Server) writeUDP(c *net.UDPConn, out []byte, from netip.AddrPort) {
	if out == nil {
		return
	}
	if _, err := c.WriteToUDPAddrPort(out, from); err != nil {
		s.log.Debug("udp write", "client", from.String(), "err", err)
	}
}

// tryWire is fromWire with the read loop protected: a panic on the wire
// path is counted and logged, and the query takes the full path.
func (s *Server) tryWire(w *wireScratch, pkt []byte, from netip.AddrPort, proto string) (n int, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if s.cfg.Panics != nil {
				s.cfg.Panics.Add(1)
			}
			s.logPanic("wire path panic; the query takes the full path", "client", from.String(), "proto", proto, "panic", fmt.Sprint(p))
			n, ok = 0, false
		}
	}()
	return s.fromWire(w, pkt, from, proto)
}

// resolveUDP answers an admitted UDP query through the chain.
func (s *Server) resolveUDP(pkt []byte, from netip.AddrPort) []byte {
	req, resp := s.handle(pkt, from, "udp")
	if resp == nil {
		return nil
	}
	resp.Compress = true
	size := dns.MinMsgSize
	if req != nil {
		size = ClientUDPSize(req)
	}
	if resp.Len() > size {
		resp.Truncate(size)
	}
	out, err := resp.Pack()
	if err != nil {
		s.log.Warn("pack response", "err", err)
		return nil
	}
	return s.limitUDP(out, from)
}

// limitUDP applies response rate limiting to a packed UDP answer: it
// returns out, nil to send nothing, or a slipped (truncated) answer.
func (s *Server) limitUDP(out []byte, from netip.AddrPort) []byte {
	if s.cfg.LimitResponse == nil {
		return out
	}
	switch s.cfg.LimitResponse(from, out) {
	case Suppress:
		return nil
	case Slip:
		return slipped(out)
	}
	return out
}

// answerTCP returns the wire-format answer to a TCP query (nil for none):
// admission, the wire path, then the chain.
func (s *Server) answerTCP(w *wireScratch, pkt []byte, from netip.AddrPort) []byte {
	if out, pass := s.gate(pkt, from, "tcp"); !pass {
		return out
	}
	if n, ok := s.tryWire(w, pkt, from, "tcp"); ok {
		if n == 0 {
			return nil // dropped
		}
		return w.out[:n]
	}
	_, resp := s.handle(pkt, from, "tcp")
	if resp == nil {
		return nil
	}
	resp.Compress = true
	if resp.Len() > dns.MaxMsgSize {
		resp.Truncate(dns.MaxMsgSize)
	}
	out, err := resp.Pack()
	if err != nil || len(out) > dns.MaxMsgSize {
		s.log.Warn("pack response", "err", err, "bytes", len(out))
		return nil
	}
	return out
}

func (s *Server) acceptLoop(l *net.TCPListener) {
	defer s.loops.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.tcpSem <- struct{}{}:
		default:
			// Over the connection cap: refuse at once rather than queue.
			s.tcpRejected.Add(1)
			conn.Close()
			continue
		}
		client := addrPortOf(conn.RemoteAddr()).Addr().Unmap()
		if !s.claimClientConn(client) {
			s.tcpRejected.Add(1)
			conn.Close()
			<-s.tcpSem
			continue
		}
		s.conns.Store(conn, struct{}{})
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.serveTCPConn(conn)
			s.conns.Delete(conn)
			conn.Close()
			s.releaseClientConn(client)
			<-s.tcpSem
		}()
	}
}

// claimClientConn counts a new connection from client, refusing it when the
// client already holds TCPMaxConnsPerClient.
func (s *Server) claimClientConn(client netip.Addr) bool {
	s.perClient.Lock()
	defer s.perClient.Unlock()
	if s.clientConns[client] >= s.cfg.TCPMaxConnsPerClient {
		return false
	}
	s.clientConns[client]++
	return true
}

func (s *Server) releaseClientConn(client netip.Addr) {
	s.perClient.Lock()
	defer s.perClient.Unlock()
	if s.clientConns[client] <= 1 {
		delete(s.clientConns, client)
		return
	}
	s.clientConns[client]--
}

// serveTCPConn reads length-prefixed queries until the client goes idle,
// answering pipelined queries concurrently (RFC 7766 6.2.1.1).
func (s *Server) serveTCPConn(conn net.Conn) {
	from := addrPortOf(conn.RemoteAddr())
	var wmu sync.Mutex
	inflight := make(chan struct{}, s.cfg.TCPMaxInflight)
	var lenBuf [2]byte
	var cw sync.WaitGroup
	defer cw.Wait()
	for !s.closing.Load() {
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if s.closing.Load() {
			return // Shutdown may have set its deadline before ours
		}
		if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n < 12 {
			return
		}
		// The body must follow promptly; a trickling client is cut off.
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		pkt := make([]byte, n)
		if _, err := io.ReadFull(conn, pkt); err != nil {
			return
		}
		inflight <- struct{}{}
		s.wg.Add(1)
		cw.Add(1)
		go func() {
			defer func() { <-inflight; cw.Done(); s.wg.Done() }()
			if s.cfg.Transfer != nil && isTransferQuery(pkt) {
				s.serveTransfer(conn, &wmu, pkt, from)
				return
			}
			defer s.recoverPacket(from, "tcp")
			w := s.tcpScratch.Get().(*wireScratch)
			defer s.tcpScratch.Put(w)
			out := s.answerTCP(w, pkt, from)
			if out == nil {
				return
			}
			frame := make([]byte, 2+len(out))
			binary.BigEndian.PutUint16(frame, uint16(len(out)))
			copy(frame[2:], out)
			wmu.Lock()
			conn.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
			_, err := conn.Write(frame)
			wmu.Unlock()
			if err != nil {
				conn.Close()
			}
		}()
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// gate asks ServerConfig.Admit about a query. It is called once per query,
// at its entry point, before any answer path. pass reports whether the
// query is to be answered; when it is not, out is what to send instead:
// nothing, or REFUSED (rate limited like any UDP answer).
func (s *Server) gate(pkt []byte, from netip.AddrPort, proto string) (out []byte, pass bool) {
	if s.cfg.Admit == nil {
		return nil, true
	}
	switch s.cfg.Admit(from, proto) {
	case Admit:
		return nil, true
	case Drop:
		return nil, false
	}
	req, resp := refused(pkt)
	if resp == nil {
		return nil, false
	}
	resp.Compress = true
	if proto == "udp" && resp.Len() > ClientUDPSize(req) {
		resp.Truncate(ClientUDPSize(req))
	}
	out, err := resp.Pack()
	if err != nil || len(out) > dns.MaxMsgSize {
		return nil, false
	}
	if proto == "udp" {
		out = s.limitUDP(out, from)
	}
	return out, false
}

// handle parses and answers one admitted query. It returns the parsed
// request (nil when the packet was not a query) and the response (nil to
// stay silent).
func (s *Server) handle(pkt []byte, from netip.AddrPort, proto string) (*dns.Msg, *dns.Msg) {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil {
		return nil, formErr(pkt)
	}
	if m.Response {
		return nil, nil // never answer answers
	}
	if m.Opcode != dns.OpcodeQuery {
		if m.Opcode == dns.OpcodeNotify && s.cfg.Notify != nil {
			return m, s.cfg.Notify(pkt, m, from)
		}
		r := Reply(m, dns.RcodeNotImplemented)
		r.Question = m.Question
		return m, r
	}
	if len(m.Question) != 1 {
		return m, Reply(m, dns.RcodeFormatError)
	}
	if qt := m.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return m, Reply(m, dns.RcodeRefused) // transfers run only over TCP, in serveTransfer
	}
	if opt := m.IsEdns0(); opt != nil && opt.Version() != 0 {
		r := Reply(m, dns.RcodeBadVers)
		return m, r
	}
	if s.inflight.Add(1) > int64(s.cfg.MaxInflight) {
		// Overloaded (say, every upstream hangs under a flood): shed the
		// query rather than pile up goroutines waiting on the chain.
		s.inflight.Add(-1)
		s.overloaded.Add(1)
		return m, nil
	}
	defer s.inflight.Add(-1)
	req := NewRequest(m, from, proto, s.cfg.Snapshot())
	resp := s.run(req)
	if resp != nil {
		req.Info.Rcode = resp.Rcode
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(req, resp)
	}
	if req.Info.Dropped {
		return m, nil
	}
	return m, resp
}

// refused answers a query from a client the ACL does not admit: REFUSED
// with the question, or nothing when the packet is not a query.
func refused(pkt []byte) (*dns.Msg, *dns.Msg) {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil || m.Response || len(m.Question) > 1 {
		return nil, nil
	}
	return m, Reply(m, dns.RcodeRefused)
}

// slipped is what response rate limiting sends instead of a packed answer
// now and then: its header with TC set and its question, no records, so
// that a real client retries over TCP while a spoofed victim receives
// little. It works on the wire, for answers that were never unpacked.
func slipped(out []byte) []byte {
	if len(out) < 12 {
		return nil
	}
	end := 12
	if out[4] != 0 || out[5] != 0 {
		end = questionEnd(out)
	}
	r := make([]byte, end)
	copy(r, out[:end])
	r[2] |= 0x02 // TC
	if end == 12 {
		r[4], r[5] = 0, 0
	} else {
		r[4], r[5] = 0, 1
	}
	for i := 6; i < 12; i++ {
		r[i] = 0 // no answer, authority or additional records
	}
	return r
}

// questionEnd returns the offset just past the first question of a packed
// message, or 12 (the header only) when it cannot be read: the question
// name of a message sinkhole packed is never compressed.
func questionEnd(m []byte) int {
	off := 12
	for off < len(m) {
		c := int(m[off])
		switch {
		case c == 0:
			if off+5 <= len(m) {
				return off + 5
			}
			return 12
		case c&0xc0 != 0:
			return 12
		}
		off += 1 + c
	}
	return 12
}

// recoverPacket is the last line of defence of a query's goroutine: a panic
// outside the chain (parsing, hooks, packing) drops the packet, is counted
// and logged.
func (s *Server) recoverPacket(from netip.AddrPort, proto string) {
	if p := recover(); p != nil {
		if s.cfg.Panics != nil {
			s.cfg.Panics.Add(1)
		}
		s.logPanic("query panic; dropped", "client", from.String(), "proto", proto, "panic", fmt.Sprint(p))
	}
}

// logPanic logs a recovered panic at most once a second, so that a packet
// that triggers one cannot flood the log; the count of panics not logged
// goes with the next line, and the stack with the first.
func (s *Server) logPanic(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.panicLast.Load()
	if last != 0 && now-last < int64(time.Second) || !s.panicLast.CompareAndSwap(last, now) {
		s.panicQuiet.Add(1)
		return
	}
	args = append(args, "not_logged", s.panicQuiet.Swap(0))
	if !s.panicStack.Swap(true) {
		args = append(args, "stack", string(debug.Stack()))
	}
	s.log.Error(msg, args...)
}

// run calls the chain, turning errors and panics into SERVFAIL.
func (s *Server) run(req *Request) (resp *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			if s.cfg.Panics != nil {
				s.cfg.Panics.Add(1)
			}
			s.logPanic("query handler panic; answered SERVFAIL", "name", req.Name, "type", dns.TypeToString[req.Qtype],
				"client", req.Client.String(), "proto", req.Proto, "panic", fmt.Sprint(p))
			resp = ServFail(req.Msg, dns.ExtendedErrorCodeOther, "internal error")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.QueryTimeout)
	defer cancel()
	resp, err := s.cfg.Handler.ServeDNS(ctx, req)
	if err != nil {
		var ede *EDEError
		if errors.As(err, &ede) {
			resp = ServFail(req.Msg, ede.Code, ede.Text)
		} else {
			resp = ServFail(req.Msg, dns.ExtendedErrorCodeOther, "")
		}
		s.log.Debug("query failed", "name", req.Name, "type", dns.TypeToString[req.Qtype], "err", err)
	}
	if resp == nil {
		resp = ServFail(req.Msg, dns.ExtendedErrorCodeOther, "no response")
	}
	resp.Id = req.Msg.Id
	return resp
}

// formErr answers a packet that does not parse, when its header does.
func formErr(pkt []byte) *dns.Msg {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil
	}
	m := new(dns.Msg)
	m.Id = binary.BigEndian.Uint16(pkt)
	m.Response = true
	m.Opcode = int(pkt[2]>>3) & 0xF
	m.Rcode = dns.RcodeFormatError
	return m
}

// EDEError is an error that carries the Extended DNS Error the client should
// see in its SERVFAIL.
type EDEError struct {
	Code uint16
	Text string
	Err  error
}

// Error returns the text and the underlying error.
func (e *EDEError) Error() string {
	if e.Err != nil {
		return e.Text + ": " + e.Err.Error()
	}
	return e.Text
}

// Unwrap returns the underlying error.
func (e *EDEError) Unwrap() error { return e.Err }
