package handlers

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentq/agentq/redact"
)

// Config defaults.
const (
	// TimeoutDefault is the request timeout used when a payload gives none.
	TimeoutDefault = 30 * time.Second
	// MaxTimeoutDefault is the largest timeout a payload may ask for.
	MaxTimeoutDefault = 10 * time.Minute
	// MaxResponseBytesDefault is the most response body bytes read (1 MiB).
	MaxResponseBytesDefault = 1 << 20
	// MaxRedirects is how many redirects the default client follows; after
	// that the last 3xx answer is classified like any other status.
	MaxRedirects = 5
)

// Config configures the built-in handlers. The zero value is usable.
type Config struct {
	// Timeout is the request timeout when the payload gives none; the
	// step's context may end it sooner. Default TimeoutDefault (30s).
	Timeout time.Duration
	// MaxTimeout is the largest timeout a payload may ask for; a larger one
	// is lowered to it. Default MaxTimeoutDefault (10m).
	MaxTimeout time.Duration
	// MaxResponseBytes is the most response body bytes read; the rest of a
	// larger body is dropped unread. It bounds memory only: an expected
	// status succeeds whatever the body's size, and an unexpected one keeps
	// an excerpt of what was read. Default MaxResponseBytesDefault (1 MiB).
	MaxResponseBytes int64
	// RedactHeaders are secret header names (case-insensitive) on top of
	// package redact's defaults (Authorization, Cookie, X-Api-Key and the
	// like). Default none.
	RedactHeaders []string
	// RedactFields are secret JSON field and query parameter names
	// (case-insensitive) on top of package redact's defaults (token,
	// password, sig, X-Amz-Signature and the like). Default none.
	RedactFields []string
	// Client sends the requests. NewHTTPCall uses a copy whose
	// CheckRedirect first deletes every secret header (see RedactHeaders)
	// from a redirect that leaves the original host or goes from https to
	// http, then applies the client's own policy (net/http's default when
	// nil). Default a client with dial and TLS handshake timeouts of 10s
	// that follows at most MaxRedirects redirects.
	Client *http.Client
	// Now is the clock used to turn a Retry-After HTTP date into a delay.
	// Default time.Now.
	Now func() time.Time
	// LLM configures the llm.chat kind. Default none.
	LLM LLMConfig
}

// Validate reports the first field that is out of range, naming it. Zero
// values are valid: they take their defaults.
func (c Config) Validate() error {
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("timeout: must not be negative, got %v", c.Timeout)
	case c.MaxTimeout < 0:
		return fmt.Errorf("max_timeout: must not be negative, got %v", c.MaxTimeout)
	case c.MaxResponseBytes < 0:
		return fmt.Errorf("max_response_bytes: must not be negative, got %d", c.MaxResponseBytes)
	}
	if d := c.withDefaults(); d.Timeout > d.MaxTimeout {
		return fmt.Errorf("max_timeout: %v is below timeout %v", d.MaxTimeout, d.Timeout)
	}
	return nil
}

// withDefaults fills every zero (or negative) field with its default.
func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(max(c.Timeout, 0), TimeoutDefault)
	c.MaxTimeout = cmp.Or(max(c.MaxTimeout, 0), MaxTimeoutDefault)
	c.MaxResponseBytes = cmp.Or(max(c.MaxResponseBytes, 0), MaxResponseBytesDefault)
	if c.Client == nil {
		c.Client = defaultClient()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// defaultClient returns a client whose transport bounds dialing and the TLS
// handshake; the whole request is bounded by its context.
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}

// checkRedirect follows at most MaxRedirects redirects and then hands back
// the last 3xx answer, which Handle classifies as a permanent failure.
func checkRedirect(_ *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// redirectClient returns a copy of c whose CheckRedirect deletes the headers
// r holds secret from a request once the redirect chain has left the
// original host or gone from https to http, then applies c's own policy.
// net/http strips only Authorization, Www-Authenticate and Cookie that way,
// and keeps them for a subdomain.
func redirectClient(c *http.Client, r *redact.Redactor) *http.Client {
	next := c.CheckRedirect
	if next == nil {
		next = func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 10 { // net/http's default policy
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
	}
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if leftOrigin(req, via) {
			for name := range req.Header {
				if r.SecretHeader(name) {
					delete(req.Header, name)
				}
			}
		}
		return next(req, via)
	}
	return &cc
}

// leftOrigin reports whether a redirect chain, via[0] its first request and
// req its next, has gone to another host than via[0]'s, or from https to
// http.
func leftOrigin(req *http.Request, via []*http.Request) bool {
	origin := via[0].URL
	left := func(u *url.URL) bool {
		return !strings.EqualFold(u.Host, origin.Host) || (origin.Scheme == "https" && u.Scheme != "https")
	}
	if left(req.URL) {
		return true
	}
	return slices.ContainsFunc(via[1:], func(v *http.Request) bool { return left(v.URL) })
}
