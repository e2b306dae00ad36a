package admin

import "time"

// Listener is an encrypted DNS listener in Status.
type Listener struct {
	Proto string `json:"proto"` // dot, doh (HTTP/1.1 and HTTP/2), doh3 or doq
	Addr  string `json:"addr"`
}

// TLSCert is the certificate the encrypted listeners serve, in Status.
type TLSCert struct {
	CertFile  string    `json:"cert_file"`
	KeyFile   string    `json:"key_file"`
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	LoadedAt  time.Time `json:"loaded_at"`
	// LastError is set when the files on disk do not load: the pair
	// above keeps serving.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// HandshakeFailures counts failed TLS handshakes per transport.
	HandshakeFailures map[string]uint64 `json:"handshake_failures,omitempty"`
}
