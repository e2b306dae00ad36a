package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DNS response codes the probe tells apart.
const (
	rcodeNoError  = 0
	rcodeNXDomain = 3
)

// probeInterval is how often WaitNXDomain asks.
const probeInterval = 20 * time.Millisecond

// query packs a recursive query for name, type A, class IN.
func query(id uint16, name string) ([]byte, error) {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	b[2] = 0x01 // RD
	binary.BigEndian.PutUint16(b[4:], 1)
	for l := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if len(l) == 0 || len(l) > 63 {
			return nil, fmt.Errorf("probe: bad name %q", name)
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0, 0, 1, 0, 1) // root, type A, class IN
	return b, nil
}

// Ask sends one UDP query for name to addr and returns the response code.
func Ask(ctx context.Context, addr, name string, timeout time.Duration) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	id := uint16(time.Now().UnixNano())
	q, err := query(id, name)
	if err != nil {
		return 0, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(q); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		// Skip anything that is not the answer to this query.
		if n < 12 || binary.BigEndian.Uint16(buf) != id || buf[2]&0x80 == 0 {
			continue
		}
		return int(buf[3] & 0x0f), nil
	}
}

// WaitNXDomain asks addr for name every probeInterval until it answers
// NXDOMAIN, and returns when that happened. It gives up after timeout, or
// as soon as alive reports the server gone.
func WaitNXDomain(ctx context.Context, addr, name string, timeout time.Duration, alive func() error) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		if err := alive(); err != nil {
			return time.Time{}, err
		}
		rc, err := Ask(ctx, addr, name, 200*time.Millisecond)
		switch {
		case err == nil && rc == rcodeNXDomain:
			return time.Now(), nil
		case err == nil:
			last = fmt.Errorf("rcode %d", rc)
		default:
			last = err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(probeInterval):
		}
	}
	return time.Time{}, fmt.Errorf("no NXDOMAIN for %s from %s within %s (last: %v)", name, addr, timeout, last)
}
