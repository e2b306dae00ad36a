package upstream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// doq is a DNS over QUIC upstream (RFC 9250): one connection, kept open
// and reused, a stream per query (so queries never wait for each other),
// message ID 0 on the wire; a broken connection is replaced on the next
// query, with backoff after failed dials.
type doq struct {
	addr    string
	tls     *tls.Config
	timeout time.Duration
	back    backoff

	mu  sync.Mutex
	cur *quic.Conn
}

func newDoQ(e encryptedAddr, tc *tls.Config, timeout time.Duration) *doq {
	return &doq{addr: net.JoinHostPort(e.host, fmt.Sprint(e.port)), tls: tc, timeout: timeout}
}

func (d *doq) Proto() string  { return "quic" }
func (d *doq) Dialed() string { return d.addr }

func (d *doq) conn(ctx context.Context) (*quic.Conn, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil && d.cur.Context().Err() == nil {
		return d.cur, false, nil
	}
	if err := d.back.ready(); err != nil {
		return nil, false, err
	}
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := quic.DialAddr(dctx, d.addr, d.tls, &quic.Config{HandshakeIdleTimeout: d.timeout, MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: 10 * time.Second})
	if err != nil {
		d.back.failed()
		return nil, false, err
	}
	d.back.ok()
	d.cur = c
	return c, true, nil
}

// Exchange asks q on a new stream of the open connection; a failure on a
// connection that was already open is retried once on a new one.
func (d *doq) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		c, fresh, err := d.conn(ctx)
		if err != nil {
			return nil, err
		}
		r, err := d.exchange(ctx, c, q)
		if err == nil || fresh || attempt > 0 || ctx.Err() != nil || c.Context().Err() == nil {
			return r, err
		}
	}
}

func (d *doq) exchange(ctx context.Context, c *quic.Conn, q *dns.Msg) (*dns.Msg, error) {
	sent := withID(padQuery(q), 0)
	out, err := sent.Pack()
	if err != nil {
		return nil, err
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0x3); st.CancelWrite(0x3) }) // DOQ_REQUEST_CANCELLED
	defer stop()
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out)))
	if _, err := st.Write(append(frame, out...)); err != nil {
		return nil, err
	}
	st.Close() // FIN: one query per stream
	var lb [2]byte
	if _, err := io.ReadFull(st, lb[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	b := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(st, b); err != nil {
		return nil, ctxErr(ctx, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	if err := validate(sent, r); err != nil {
		return nil, err
	}
	r.Id = q.Id
	return r, nil
}

// ctxErr reports the context's error when it is why a read failed.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (d *doq) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil {
		d.cur.CloseWithError(0, "")
	}
}
