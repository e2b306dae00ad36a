// Package doh serves DNS over HTTPS (RFC 8484) over HTTP/1.1 and HTTP/2 on
// TLS listeners, and over HTTP/3 (QUIC) with quic-go's http3: GET
// /dns-query?dns= (base64url, no padding) and POST /dns-query with
// application/dns-message. Each query goes to the DNS server's message
// path (resolver.Server.HandlePacket), so admission, the chain and the
// observers are those of every other transport; the client is the
// connection's peer, or the address a trusted reverse proxy passes in
// X-Forwarded-For or Forwarded.
package doh

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Packets is the DNS server's message path (resolver.Server.HandlePacket).
type Packets interface {
	HandlePacket(ctx context.Context, pkt []byte, client netip.AddrPort, proto string, maxSize int) ([]byte, bool)
}

// The transport's labels in metrics and logs.
const (
	Proto   = "doh"  // HTTP/1.1 and HTTP/2
	ProtoH3 = "doh3" // HTTP/3
)

// Path is where queries are served; "/dns-query/NAME" names the client.
const Path = "/dns-query"

// contentType is the DNS wire format's media type (RFC 8484 section 6).
const contentType = "application/dns-message"

// maxMessage is the largest DNS message.
const maxMessage = 65535

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Server Packets
	// TrustedProxies are the peers whose X-Forwarded-For and Forwarded
	// headers name the client; from anyone else they are ignored.
	TrustedProxies []netip.Prefix
	// AltSvc, when set, is sent as Alt-Svc on HTTP/1.1 and HTTP/2 answers
	// (the HTTP/3 listener's advertisement).
	AltSvc string
	Logger *slog.Logger
}

// Handler answers DoH requests.
type Handler struct {
	cfg    HandlerConfig
	altSvc []string // the Alt-Svc header's value, nil for none
}

// contentTypeValue is the answers' Content-Type header value (shared, never
// modified).
var contentTypeValue = []string{contentType}

// NewHandler returns the handler.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg}
	if cfg.AltSvc != "" {
		h.altSvc = []string{cfg.AltSvc}
	}
	return h
}

// ServeHTTP answers one request: 200 with the DNS answer (a DNS error is
// still 200), 400 for a request without a readable query, 404 for other
// paths, 405 for methods other than GET and POST, 413 for a body over 64
// KiB, 415 for a POST of another content type.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := clientName(r.URL.Path)
	if !ok {
		http.Error(w, "not found: DNS queries go to "+Path, http.StatusNotFound)
		return
	}
	var pkt []byte
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query().Get("dns")
		if q == "" {
			http.Error(w, "missing the dns parameter", http.StatusBadRequest)
			return
		}
		var err error
		if pkt, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "=")); err != nil {
			http.Error(w, "the dns parameter is not base64url", http.StatusBadRequest)
			return
		}
	case http.MethodPost:
		if ct := r.Header.Get("Content-Type"); !strings.EqualFold(strings.TrimSpace(strings.Split(ct, ";")[0]), contentType) {
			http.Error(w, "content type must be "+contentType, http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxMessage+1))
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxMessage {
			http.Error(w, "a DNS message is at most 65535 bytes", http.StatusRequestEntityTooLarge)
			return
		}
		pkt = body
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed: use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		http.Error(w, "not a DNS query", http.StatusBadRequest)
		return
	}
	proto := Proto
	if r.ProtoMajor == 3 {
		proto = ProtoH3
	}
	ctx := r.Context()
	if name != "" {
		ctx = query.WithClientName(ctx, name)
	}
	resp, send := h.cfg.Server.HandlePacket(ctx, pkt, h.client(r), proto, maxMessage)
	if !send {
		// Dropped (a drop policy, overload, a client refused by drop):
		// end the stream without an answer, as UDP sends none.
		panic(http.ErrAbortHandler)
	}
	// Canonical keys set directly, shared values: no allocation for them;
	// no Date header (an HTTP cache has Cache-Control, RFC 8484 5.1).
	hd := w.Header()
	hd["Content-Type"] = contentTypeValue
	hd["Content-Length"] = []string{strconv.Itoa(len(resp))}
	hd["Cache-Control"] = []string{"max-age=" + strconv.FormatUint(uint64(resolver.CacheLifetime(resp)), 10)}
	hd["Date"] = nil
	if h.altSvc != nil && r.ProtoMajor < 3 {
		hd["Alt-Svc"] = h.altSvc
	}
	w.Write(resp) // status 200 with the body, in one write
}

// clientName splits "/dns-query" or "/dns-query/NAME". A name is 1 to 63
// letters, digits, '-', '_' or '.'.
func clientName(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, Path)
	if !ok {
		return "", false
	}
	if rest == "" || rest == "/" {
		return "", true
	}
	name, ok := strings.CutPrefix(rest, "/")
	if !ok || len(name) > 63 {
		return "", false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", false
		}
	}
	return name, true
}

// client is the query's client: the peer, or, when the peer is a trusted
// proxy, the address it forwarded (the last one in the chain that is not
// itself a trusted proxy).
func (h *Handler) client(r *http.Request) netip.AddrPort {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !h.trusted(peer.Addr()) {
		return peer
	}
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		if !h.trusted(hops[i].Addr()) {
			return hops[i]
		}
	}
	if len(hops) > 0 {
		return hops[0] // every hop is a trusted proxy: the first one asked
	}
	return peer
}

func (h *Handler) trusted(a netip.Addr) bool {
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the client chain of the Forwarded (RFC 7239) "for="
// parameters, or else of X-Forwarded-For, oldest first. Entries that are
// not addresses (obfuscated identifiers, "unknown") end the chain there:
// nothing before them can be trusted.
func forwardedFor(h http.Header) []netip.AddrPort {
	var out []netip.AddrPort
	if fw := h.Values("Forwarded"); len(fw) > 0 {
		for _, elem := range strings.Split(strings.Join(fw, ","), ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				ap, ok := parseHop(strings.Trim(v, `"`))
				if !ok {
					out = out[:0]
					continue
				}
				out = append(out, ap)
			}
		}
		return out
	}
	for _, v := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(v, ",") {
			ap, ok := parseHop(strings.TrimSpace(hop))
			if !ok {
				out = out[:0]
				continue
			}
			out = append(out, ap)
		}
	}
	return out
}

// parseHop reads "IP", "IP:port", "[IPv6]" or "[IPv6]:port".
func parseHop(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}
