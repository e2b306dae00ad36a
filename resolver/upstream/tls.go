package upstream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// dot is a DNS over TLS upstream (RFC 7858): one connection, kept open
// and reused, with queries pipelined on it (RFC 7766 section 6.2.1.1) and
// answers matched by message ID; a broken connection is replaced on the
// next query, with backoff after failed dials.
type dot struct {
	addr    string // IP:port
	tls     *tls.Config
	timeout time.Duration
	back    backoff

	mu  sync.Mutex
	cur *dotConn
}

func newDoT(e encryptedAddr, tc *tls.Config, timeout time.Duration) *dot {
	return &dot{addr: net.JoinHostPort(e.host, fmt.Sprint(e.port)), tls: tc, timeout: timeout}
}

func (d *dot) Proto() string  { return "tls" }
func (d *dot) Dialed() string { return d.addr }

// dotConn is one open connection and the queries waiting on it.
type dotConn struct {
	c       *tls.Conn
	wmu     sync.Mutex
	nextID  atomic.Uint32
	mu      sync.Mutex
	pending map[uint16]chan *dns.Msg
	err     error         // why it died
	dead    chan struct{} // closed when the connection is done
}

// Exchange sends q on the open connection (dialing one if there is none)
// and waits for its answer. A query that fails on a connection that was
// already open (the server closed it while idle) is retried once on a new
// one.
func (d *dot) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		c, fresh, err := d.conn(ctx)
		if err != nil {
			return nil, err
		}
		r, err := c.exchange(ctx, q)
		if err == nil || fresh || attempt > 0 || ctx.Err() != nil || !c.isDead() {
			return r, err
		}
	}
}

// conn returns the open connection, or dials one; fresh reports a new one.
func (d *dot) conn(ctx context.Context) (*dotConn, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil && !d.cur.isDead() {
		return d.cur, false, nil
	}
	if err := d.back.ready(); err != nil {
		return nil, false, err
	}
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", d.addr)
	if err != nil {
		d.back.failed()
		return nil, false, err
	}
	tc := tls.Client(raw, d.tls)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		d.back.failed()
		return nil, false, fmt.Errorf("TLS handshake: %w", err)
	}
	d.back.ok()
	c := &dotConn{c: tc, pending: map[uint16]chan *dns.Msg{}, dead: make(chan struct{})}
	c.nextID.Store(uint32(dns.Id()))
	go c.read()
	d.cur = c
	return c, true, nil
}

func (c *dotConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// exchange sends q under an ID unique on this connection, and waits.
func (c *dotConn) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	ch := make(chan *dns.Msg, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	var id uint16
	for {
		id = uint16(c.nextID.Add(1))
		if _, taken := c.pending[id]; !taken {
			break
		}
	}
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	sent := withID(padQuery(q), id)
	out, err := sent.Pack()
	if err != nil {
		return nil, err
	}
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out)))
	frame = append(frame, out...)
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.c.SetWriteDeadline(dl)
	} else {
		c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	_, err = c.c.Write(frame)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, err
	}
	select {
	case r := <-ch:
		if err := validate(sent, r); err != nil {
			return nil, err
		}
		r.Id = q.Id
		return r, nil
	case <-c.dead:
		return nil, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read delivers answers to their queries until the connection fails.
func (c *dotConn) read() {
	var lb [2]byte
	for {
		if _, err := io.ReadFull(c.c, lb[:]); err != nil {
			c.fail(err)
			return
		}
		b := make([]byte, binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c.c, b); err != nil {
			c.fail(err)
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			continue // garbled: the query waiting for it times out
		}
		c.mu.Lock()
		ch := c.pending[r.Id]
		delete(c.pending, r.Id)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// fail marks the connection dead with err and closes it.
func (c *dotConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed by the upstream")
		}
		c.err = err
		close(c.dead)
	}
	c.mu.Unlock()
	c.c.Close()
}

// Close closes the connection.
func (d *dot) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		d.cur.fail(errors.New("upstream closed"))
	}
}
