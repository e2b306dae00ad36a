package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a running server's admin API.
type Client struct {
	Base  string // "http://127.0.0.1:8053"
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for an admin host:port.
func NewClient(addr, token string, timeout time.Duration) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + addr
	}
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Timeout: timeout}}
}

// UnreachableError means no HTTP answer came back at all.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "cannot reach the admin API: " + e.Err.Error() }

func (e *UnreachableError) Unwrap() error { return e.Err }

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return fmt.Sprintf("admin API answered %d: %s", e.Code, e.Msg) }

// do sends a request and decodes a JSON answer into out. A non-2xx answer
// is a *StatusError unless acceptBody is set, in which case the body is
// still decoded (reload returns its report with status 500).
func (c *Client) do(ctx context.Context, method, path string, out any, acceptBody bool) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &UnreachableError{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &UnreachableError{err}
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		if acceptBody && out != nil && json.Unmarshal(body, out) == nil {
			return &StatusError{resp.StatusCode, e.Error}
		}
		return &StatusError{resp.StatusCode, e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API: bad JSON: %w", err)
	}
	return nil
}

// Reload triggers a reload.
func (c *Client) Reload(ctx context.Context, opts ReloadOptions) (*ReloadResult, error) {
	var r ReloadResult
	path := "/v1/reload"
	if opts.Accept {
		path += "?accept=true"
	}
	err := c.do(ctx, http.MethodPost, path, &r, true)
	var se *StatusError
	if errors.As(err, &se) && r.Files != nil {
		return &r, err
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// History fetches the last list versions, newest first.
func (c *Client) History(ctx context.Context) (*History, error) {
	var h History
	if err := c.do(ctx, http.MethodGet, "/v1/history", &h, false); err != nil {
		return nil, err
	}
	return &h, nil
}

// Status fetches the status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", &s, false); err != nil {
		return nil, err
	}
	return &s, nil
}

// Readiness fetches /readyz (its body in both the ready and the not
// ready case).
func (c *Client) Readiness(ctx context.Context) (*Readiness, error) {
	var r Readiness
	err := c.do(ctx, http.MethodGet, "/readyz", &r, true)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusServiceUnavailable && r.Status != "" {
		return &r, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Explain asks for the decision on a name.
func (c *Client) Explain(ctx context.Context, name, qtype string) (*Explanation, error) {
	var e Explanation
	v := url.Values{"name": {name}, "type": {qtype}}
	if err := c.do(ctx, http.MethodGet, "/v1/query?"+v.Encode(), &e, false); err != nil {
		return nil, err
	}
	return &e, nil
}
