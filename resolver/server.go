package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Observer is told about every answered (or dropped) query. It must not
// block (logs and metrics buffer) and must not keep req, resp or anything
// they hold (strings included: on the wire path req.Name aliases a buffer
// reused for the next query) after it returns. resp is nil for answers a
// stage's offer wrote straight from the packet (the fast path); req.Info.Rcode
// always holds the response code and req.Msg may be nil.
type Observer func(req *query.Request, resp *dns.Msg)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen holds host:port addresses; each gets UDP and TCP.
	Listen []string
	// Handler answers every query: the chain of stages (query.Chain). When
	// it is a query.Offerer (a *query.Pipeline is), its offers are tried on
	// each packet first, in chain order: the fast path.
	Handler query.Handler
	// Snapshot returns the list snapshot in service; each query takes one.
	Snapshot func() *blocklist.Snapshot
	// Observe is called for every query (may be nil).
	Observe Observer
	// Logger receives server events; slog.Default() if nil.
	Logger *slog.Logger
	// UDPSockets per listen address, sharing the port with SO_REUSEPORT
	// (default GOMAXPROCS).
	UDPSockets int
	// UDPBatch is how many datagrams one system call reads or writes on
	// each UDP socket (recvmmsg/sendmmsg; default DefaultUDPBatch); 1 reads
	// and writes one datagram per call.
	UDPBatch int
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

// enter registers a connection or packet of another transport (ServeConn,
// HandlePacket) for Shutdown to wait for; false once shutdown began. Call
// s.streams.Done when it is over.
func (s *Server) enter() bool {
	s.entry.RLock()
	defer s.entry.RUnlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}

// Server serves DNS over UDP and TCP on the configured addresses, and over
// the connections and messages other transports hand it (ServeConn,
// HandlePacket). Its files are split by job: server.go (configuration,
// listeners, shutdown), udp.go (the UDP read loop), tcp.go (stream
// connections), query.go (one query: admission, the fast path, the chain,
// observers) and respond.go (packing, truncation, framing, RRL, panics).
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	udp     []*net.UDPConn
	tcp     []*net.TCPListener
	wg      sync.WaitGroup // in-flight queries
	loops   sync.WaitGroup // read and accept loops
	tcpSem  chan struct{}
	conns   sync.Map // net.Conn -> struct{}, for shutdown
	closing atomic.Bool
	// entry guards closed: ServeConn and HandlePacket, called by other
	// transports, join streams only while the server is not shutting down.
	entry      sync.RWMutex
	closed     bool
	streams    sync.WaitGroup // connections and packets of ServeConn and HandlePacket
	bufPool    sync.Pool
	tcpScratch sync.Pool

	perClient   sync.Mutex
	clientConns map[netip.Addr]int // open TCP connections per client address
	tcpRejected atomic.Uint64
	inflight    atomic.Int64 // queries in the chain
	overloaded  atomic.Uint64

	offers    query.Offerer // the chain's fast path; nil for none
	malformed atomic.Uint64 // queries answered FORMERR

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
	if cfg.UDPBatch <= 0 {
		cfg.UDPBatch = DefaultUDPBatch
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
	s.offers, _ = cfg.Handler.(query.Offerer)
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
		go s.serveUDPSocket(c)
	}
	for _, l := range s.tcp {
		s.loops.Add(1)
		go s.acceptLoop(l)
	}
	for _, l := range s.tcp {
		s.log.Info("dns listening", "addr", l.Addr().String(), "udp_sockets", s.cfg.UDPSockets, "udp_batch", s.cfg.UDPBatch)
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

// Malformed returns how many queries were answered FORMERR for being
// malformed.
func (s *Server) Malformed() uint64 { return s.malformed.Load() }

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
	s.entry.Lock()
	s.closed = true
	s.entry.Unlock()
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
		s.streams.Wait()
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
	s.streams.Wait()
	return err
}
