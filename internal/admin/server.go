package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist/history"
)

// Backend is what the admin API asks of the running server.
type Backend interface {
	// Reload rereads the lists now.
	Reload(ctx context.Context, opts ReloadOptions) (*ReloadResult, error)
	// Status describes the server.
	Status() *Status
	// Explain decides name/qtype and says why; qtype is a type mnemonic
	// such as "A". It returns a *ParamError for a bad name or type.
	Explain(ctx context.Context, name, qtype string) (*Explanation, error)
	// Readiness reports whether every list source has a version in
	// service and DNS listens, and what is missing or withheld.
	Readiness() *Readiness
}

// ReloadOptions are the parameters of POST /v1/reload.
type ReloadOptions struct {
	// Accept applies the versions the shrink guard would hold (?accept=true).
	Accept bool
	// Client is the API client's address (who asked, for the list history).
	Client string
}

// ParamError is a bad request parameter; the API answers 400 with it.
type ParamError struct{ Msg string }

func (e *ParamError) Error() string { return e.Msg }

// Config configures the admin server.
type Config struct {
	Addr    string
	Token   string // when non-empty, every request needs "Authorization: Bearer <token>"
	Backend Backend
	// Metrics, when set, serves GET /metrics.
	Metrics http.Handler
	// History, when set, serves GET /v1/history.
	History func() []history.Version
	// Pprof mounts Go's profiler under /debug/pprof/ (behind the token).
	Pprof  bool
	Logger *slog.Logger
}

// Server is the running admin API.
type Server struct {
	cfg  Config
	http *http.Server
	ln   net.Listener
	log  *slog.Logger
}

// maxParamLen caps query parameters; a DNS name is at most 253 characters.
const maxParamLen = 1024

// IsLoopback reports whether a host:port listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Listen binds the admin address. A non-loopback address needs a token.
func Listen(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("admin: no backend")
	}
	if !IsLoopback(cfg.Addr) && cfg.Token == "" {
		return nil, fmt.Errorf("admin API on non-loopback address %s needs --admin-token-file", cfg.Addr)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Addr, err)
	}
	s := &Server{cfg: cfg, ln: ln, log: cfg.Logger}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "token", cfg.Token != "")
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close(ctx context.Context) error { return s.http.Shutdown(ctx) }

type route struct {
	method string
	h      http.HandlerFunc
}

// Handler returns the API's routes, with authentication.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		"/v1/reload": {http.MethodPost, s.reload},
		"/v1/status": {http.MethodGet, s.status},
		"/v1/query":  {http.MethodGet, s.query},
		"/healthz":   {http.MethodGet, s.healthz},
		"/readyz":    {http.MethodGet, s.readyz},
	}
	if s.cfg.Metrics != nil {
		routes["/metrics"] = route{http.MethodGet, s.cfg.Metrics.ServeHTTP}
	}
	if s.cfg.History != nil {
		routes["/v1/history"] = route{http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, History{Versions: s.cfg.History()})
		}}
	}
	var prof http.Handler
	if s.cfg.Pprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		prof = mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sinkhole"`)
			writeJSON(w, http.StatusUnauthorized, Error{"missing or wrong bearer token"})
			return
		}
		if prof != nil && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			prof.ServeHTTP(w, r)
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok {
			writeJSON(w, http.StatusNotFound, Error{"no such route: " + r.URL.Path})
			return
		}
		if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", rt.method)
			writeJSON(w, http.StatusMethodNotAllowed, Error{fmt.Sprintf("method %s not allowed; use %s", r.Method, rt.method)})
			return
		}
		rt.h(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	opts := ReloadOptions{Client: r.RemoteAddr}
	for k, v := range r.URL.Query() {
		if k != "accept" || len(v) != 1 {
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("unknown or repeated parameter %q (want accept=true)", k)})
			return
		}
		switch v[0] {
		case "true", "1", "yes", "":
			opts.Accept = true
		case "false", "0", "no":
		default:
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("accept=%q: want true or false", v[0])})
			return
		}
	}
	res, err := s.cfg.Backend.Reload(r.Context(), opts)
	if err != nil {
		if res == nil {
			res = &ReloadResult{}
		}
		res.OK, res.Error = false, err.Error()
		writeJSON(w, http.StatusInternalServerError, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Backend.Status())
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k, v := range q {
		if k != "name" && k != "type" {
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("unknown parameter %q (want name and type)", k)})
			return
		}
		if len(v) != 1 || len(v[0]) > maxParamLen {
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("parameter %q must be given once and be at most %d bytes", k, maxParamLen)})
			return
		}
	}
	name := q.Get("name")
	if name == "" {
		writeJSON(w, http.StatusBadRequest, Error{"missing parameter name"})
		return
	}
	qtype := q.Get("type")
	if qtype == "" {
		qtype = "A"
	}
	ex, err := s.cfg.Backend.Explain(r.Context(), name, qtype)
	if err != nil {
		var pe *ParamError
		if errors.As(err, &pe) {
			writeJSON(w, http.StatusBadRequest, Error{pe.Msg})
			return
		}
		writeJSON(w, http.StatusInternalServerError, Error{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ex)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 while every list source and file has a version in
// service and DNS listens, else 503; the body says what is missing, and
// which files' versions on disk are withheld (held, refused, settling)
// while their last good version serves.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.cfg.Backend.Readiness()
	if !rd.Ready {
		rd.Status = "not ready"
		writeJSON(w, http.StatusServiceUnavailable, rd)
		return
	}
	rd.Status = "ready"
	writeJSON(w, http.StatusOK, rd)
}
