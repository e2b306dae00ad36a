package tlscert

import (
	"crypto/tls"
	"sync/atomic"
)

// Handshakes counts the TLS handshakes started on listeners that do not
// report their failures (QUIC: quic-go's listeners only hand over
// connections whose handshake completed). A handshake starts with the
// ClientHello (GetConfigForClient); the listener counts those that
// complete; the difference is the failures, including the few handshakes
// still under way (a round trip each, or until the handshake timeout for a
// stalled one, which then fails).
type Handshakes struct {
	started atomic.Uint64
}

// Config returns a copy of base that counts the handshakes it starts.
func (h *Handshakes) Config(base *tls.Config) *tls.Config {
	c := base.Clone()
	getConfig := base.GetConfigForClient
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		h.started.Add(1)
		if getConfig != nil {
			return getConfig(hello)
		}
		return nil, nil
	}
	return c
}

// Failures returns the handshakes started that did not complete, given how
// many did (the listener's count).
func (h *Handshakes) Failures(completed uint64) uint64 {
	s := h.started.Load()
	if s < completed {
		return 0
	}
	return s - completed
}
