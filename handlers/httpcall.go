package handlers

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/redact"
)

// Methods an http.call may use.
var httpMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// Headers Handle sets unless the payload gives them.
const (
	// HeaderIdempotencyKey carries the step's idempotency key to the tool.
	HeaderIdempotencyKey = "Idempotency-Key"
	// UserAgent is the User-Agent sent with every call.
	UserAgent = "agentq"
)

// maxExcerptBytes bounds the response body excerpt in an HTTPError.
const maxExcerptBytes = 256

// HTTPCallSchema is the JSON Schema (draft 2020-12) of an http.call payload.
// The URL is checked by HTTPCallArgs.Validate rather than by a pattern, so
// that a refused URL is quoted with its secrets masked.
const HTTPCallSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "http.call",
  "description": "One HTTP request to a tool; the response status decides the outcome.",
  "type": "object",
  "additionalProperties": false,
  "required": ["url"],
  "properties": {
    "method": {
      "description": "HTTP method; default GET.",
      "type": "string",
      "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    },
    "url": {
      "description": "Absolute http or https URL.",
      "type": "string",
      "minLength": 1
    },
    "headers": {
      "description": "Request headers by name.",
      "type": "object",
      "additionalProperties": {"type": "string"}
    },
    "body": {
      "description": "A string is sent as its text; any other JSON value is sent as JSON."
    },
    "timeout": {
      "description": "Request timeout as a Go duration, e.g. \"10s\"; default and maximum set by the worker.",
      "type": "string",
      "minLength": 1
    },
    "expect_status": {
      "description": "Statuses counted as success; default any 2xx.",
      "type": "array",
      "items": {"type": "integer", "minimum": 100, "maximum": 599}
    }
  }
}`

// HTTPCallArgs is the payload of an http.call task.
type HTTPCallArgs struct {
	// Method is the HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or
	// OPTIONS. Default GET.
	Method string `json:"method,omitempty"`
	// URL is the absolute http or https URL to call. Required.
	URL string `json:"url"`
	// Headers are request headers by name. Idempotency-Key and User-Agent
	// given here replace the ones agentq sets.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the request body. A JSON string is sent as its text (with
	// Content-Type text/plain; charset=utf-8 unless given); any other JSON
	// value is sent as JSON (Content-Type application/json unless given).
	// JSON null or nothing sends no body.
	Body json.RawMessage `json:"body,omitempty"`
	// Timeout is the request timeout as a Go duration, e.g. "10s". Default
	// the worker's Config.Timeout; bounded by its Config.MaxTimeout.
	Timeout string `json:"timeout,omitempty"`
	// ExpectStatus lists the statuses counted as success. Default any 2xx.
	ExpectStatus []int `json:"expect_status,omitempty"`
}

// Kind returns jobs.KindHTTPCall.
func (HTTPCallArgs) Kind() string { return jobs.KindHTTPCall }

// defaultRedactor masks the default names only. Validate uses it, having no
// configuration. It is built on first use: its regexps take time to
// compile, and most runs of the CLI (--help, enqueue with a file) never
// need it.
var defaultRedactor = sync.OnceValue(func() *redact.Redactor { return redact.New(nil, nil) })

// Validate checks the payload beyond its schema. Each error names the field
// and quotes the bad value, a URL with its secrets masked.
func (a HTTPCallArgs) Validate() error { return a.validate(defaultRedactor()) }

func (a HTTPCallArgs) validate(r *redact.Redactor) error {
	if a.Method != "" && !slices.Contains(httpMethods, a.Method) {
		return fmt.Errorf("method: %q is not supported (use one of %s)", a.Method, strings.Join(httpMethods, ", "))
	}
	if a.URL == "" {
		return errors.New("url: is required")
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		// *url.Error quotes the raw URL; its cause names only the bad part.
		reason := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			reason = ue.Err.Error()
		}
		return fmt.Errorf("url: %q does not parse: %s", r.URL(a.URL), r.Text(reason))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url: must be an absolute http or https URL, got %q", r.URL(a.URL))
	}
	seen := make(map[string]string, len(a.Headers))
	for name, value := range a.Headers {
		if !validHeaderName(name) {
			return fmt.Errorf("headers: %q is not a valid header name", name)
		}
		if i := strings.IndexFunc(value, invalidHeaderValueRune); i >= 0 {
			return fmt.Errorf("headers: value of %q contains the control character %U at byte offset %d (Go's HTTP client refuses to send it)", name, value[i], i)
		}
		canon := http.CanonicalHeaderKey(name)
		if canon == "Host" && !validHost(value) {
			return fmt.Errorf("headers: Host %q is not a host or host:port", value)
		}
		if other, dup := seen[canon]; dup {
			return fmt.Errorf("headers: %q and %q name the same header", min(name, other), max(name, other))
		}
		seen[canon] = name
	}
	if len(a.Body) > 0 && !json.Valid(a.Body) {
		return errors.New("body: is not valid JSON")
	}
	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil {
			return fmt.Errorf("timeout: %q is not a duration (use e.g. \"10s\")", a.Timeout)
		}
		if d <= 0 {
			return fmt.Errorf("timeout: must be positive, got %q", a.Timeout)
		}
	}
	for _, code := range a.ExpectStatus {
		if code < 100 || code > 599 {
			return fmt.Errorf("expect_status: %d is not an HTTP status", code)
		}
	}
	return nil
}

// invalidHeaderValueRune reports whether r may not stand in a header value
// (RFC 9110 field-value): control characters other than horizontal tab.
func invalidHeaderValueRune(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }

// validHost reports whether v is a host or host:port that a Host header
// may carry: it parses as a URL's authority and is nothing more.
func validHost(v string) bool {
	if v == "" || strings.ContainsAny(v, "/?#@ \t") {
		return false
	}
	u, err := url.Parse("http://" + v)
	return err == nil && u.Host == v && u.Hostname() != ""
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// HTTPCall runs http.call steps: one HTTP request whose answer decides the
// outcome. A status in ExpectStatus (any 2xx by default) succeeds; 408, 425,
// 429 and 5xx return a retryable *jobs.HTTPError carrying Retry-After; other
// statuses return a permanent one.
//
// A step may run more than once: a retry after a timeout or a lost
// connection repeats a request the tool may already have carried out.
// Running twice safely is the tool's job: every request carries an
// Idempotency-Key header, the step's idempotency key or else its task id,
// both stable across attempts, and a tool that honours it answers a repeat
// without acting twice.
//
// Error strings name the method and the URL with secrets masked; they never
// hold header values. It is safe for concurrent use.
type HTTPCall struct {
	cfg    Config
	redact *redact.Redactor
}

// NewHTTPCall returns an HTTPCall configured by cfg. Fields that are zero
// or out of range take their defaults; check cfg with Config.Validate first
// to refuse them instead.
func NewHTTPCall(cfg Config) *HTTPCall {
	cfg = cfg.withDefaults()
	cfg.Timeout = min(cfg.Timeout, cfg.MaxTimeout)
	redact := redact.New(cfg.RedactHeaders, cfg.RedactFields)
	cfg.Client = redirectClient(cfg.Client, redact)
	return &HTTPCall{cfg: cfg, redact: redact}
}

// Redactor returns the redactor the handler masks secrets with.
func (h *HTTPCall) Redactor() *redact.Redactor { return h.redact }

// Handle sends the request a describes and classifies the answer. It
// returns nil on an expected status, however large the body (at most
// Config.MaxResponseBytes of it is read), and records the answer as the
// step's output (HTTPCallOutput); a permanent error for an invalid
// payload, an unexpected status below 400, or a 4xx other than 408, 425 and
// 429; an error wrapping context.DeadlineExceeded when the request times
// out; and a retryable error otherwise.
func (h *HTTPCall) Handle(ctx context.Context, s *jobs.Step, a HTTPCallArgs) error {
	if err := a.validate(h.redact); err != nil {
		return jobs.Permanent(fmt.Errorf("%s: %w", jobs.KindHTTPCall, err))
	}
	method := cmp.Or(a.Method, http.MethodGet)
	call := &callError{op: method + " " + h.redact.URL(a.URL)}

	timeout := h.cfg.Timeout
	if a.Timeout != "" {
		d, _ := time.ParseDuration(a.Timeout) // checked by validate
		timeout = min(d, h.cfg.MaxTimeout)
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	body, contentType := requestBody(a.Body)
	req, err := http.NewRequestWithContext(reqCtx, method, a.URL, body)
	if err != nil {
		// The error quotes the raw URL, so it is not kept.
		return jobs.Permanent(call.with("cannot build the request", nil))
	}
	for name, value := range a.Headers {
		if http.CanonicalHeaderKey(name) == "Host" {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
	if key := idempotencyKey(s); key != "" && req.Header.Get(HeaderIdempotencyKey) == "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	if contentType != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", contentType)
	}

	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return h.transportError(ctx, reqCtx, call, timeout, err)
	}
	defer resp.Body.Close()

	limit := h.cfg.MaxResponseBytes
	if h.expected(a.ExpectStatus, resp.StatusCode) {
		// The tool has done the work: keep at most maxOutputBodyBytes (and
		// a byte more, to tell a cut body) for the step's output, read at
		// most limit bytes in all and drop the rest by closing the body,
		// never failing the step for its size, which a retry or a replay
		// would only repeat.
		keep := min(limit, maxOutputBodyBytes+1)
		data, err := io.ReadAll(io.LimitReader(resp.Body, keep))
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, limit-int64(len(data))))
		}
		if err != nil {
			return h.transportError(ctx, reqCtx, call, timeout, err)
		}
		if s == nil {
			return nil
		}
		if err := s.SetOutput(h.output(resp, data)); err != nil {
			// Not reached: the output is built from strings and checked
			// JSON. The call is done; failing it would repeat it.
			_ = s.SetOutput(HTTPCallOutput{Status: resp.StatusCode})
		}
		return nil
	}
	// An unexpected status decides the outcome; a body too large or cut
	// short only shortens the excerpt.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	he := &jobs.HTTPError{Status: resp.StatusCode, Body: h.excerpt(data)}
	if d, ok := jobs.ParseRetryAfter(resp.Header.Get("Retry-After"), h.cfg.Now()); ok {
		he.RetryAfter = d
	}
	err = call.with(he.Error(), he)
	if resp.StatusCode < 400 || jobs.ClassifyHTTPStatus(resp.StatusCode) == jobs.ClassPermanent {
		return jobs.Permanent(err)
	}
	return err
}

// Bounds of an http.call step's output.
const (
	// maxOutputBodyBytes bounds the response body kept as output (64 KiB).
	maxOutputBodyBytes = 64 << 10
	// maxOutputHeaders bounds the response headers kept as output; the
	// first by name are kept.
	maxOutputHeaders = 64
	// maxOutputHeaderBytes bounds one header's value kept as output.
	maxOutputHeaderBytes = 1 << 10
)

// HTTPCallOutput is the output an http.call step records on success
// (Step.SetOutput); later steps of its run see it as
// .steps.<name>.output.
type HTTPCallOutput struct {
	// Status is the response status.
	Status int `json:"status"`
	// Headers are the response headers by lower-case name, values of one
	// name joined with ", ", secret ones masked (Config.RedactHeaders and
	// package redact's defaults, such as Set-Cookie), each value cut to
	// 1 KiB, at most 64 names (the first by name).
	Headers map[string]string `json:"headers"`
	// Body is the response body: its JSON value when the response is JSON
	// (a JSON Content-Type, or none and a body that parses) of at most
	// 64 KiB; else its text, invalid UTF-8 replaced, cut to 64 KiB. The
	// body is the tool's data and is not masked.
	Body any `json:"body"`
	// BodyTruncated reports a body longer than 64 KiB (or than
	// Config.MaxResponseBytes), of which Body holds the start as text.
	BodyTruncated bool `json:"body_truncated,omitempty"`
}

// output builds the step's output from a response and the start of its
// body, read up to maxOutputBodyBytes+1 bytes.
func (h *HTTPCall) output(resp *http.Response, data []byte) HTTPCallOutput {
	out := HTTPCallOutput{Status: resp.StatusCode, Headers: map[string]string{}}
	names := slices.Sorted(maps.Keys(resp.Header))
	for _, name := range names[:min(len(names), maxOutputHeaders)] {
		lower := strings.ToLower(name)
		value := h.redact.Header(name, strings.Join(resp.Header.Values(name), ", "))
		out.Headers[lower] = truncateUTF8(strings.ToValidUTF8(value, "\uFFFD"), maxOutputHeaderBytes)
	}
	truncated := len(data) > maxOutputBodyBytes ||
		(int64(len(data)) == h.cfg.MaxResponseBytes && resp.ContentLength != int64(len(data)))
	if !truncated && utf8.Valid(data) && json.Valid(data) && jsonBody(resp.Header.Get("Content-Type"), data) {
		out.Body = json.RawMessage(data)
		return out
	}
	text := truncateUTF8(strings.ToValidUTF8(string(data), "\uFFFD"), maxOutputBodyBytes)
	// JSON escapes a control character as six bytes: cut the text until
	// its JSON form fits twice the bound too, so that an output never
	// outgrows what a run stores (runs.max_output_bytes).
	for len(text) > 0 && jsonStringLen(text) > 2*maxOutputBodyBytes {
		text, truncated = truncateUTF8(text, len(text)/2), true
	}
	out.Body = text
	out.BodyTruncated = truncated
	return out
}

// jsonStringLen is the length of s encoded as a JSON string.
func jsonStringLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b)
}

// jsonBody reports whether a body is to be read as JSON: its Content-Type
// is JSON (application/json, or a +json type), or it has none and the body
// is not empty.
func jsonBody(contentType string, data []byte) bool {
	if len(bytes.TrimSpace(data)) == 0 {
		return false
	}
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// truncateUTF8 cuts s to at most n bytes at a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// idempotencyKey returns the step's idempotency key, else its task id; both
// are stable across attempts.
func idempotencyKey(s *jobs.Step) string {
	if s == nil {
		return ""
	}
	return cmp.Or(s.Key, s.TaskID)
}

// expected reports whether code counts as success.
func (h *HTTPCall) expected(want []int, code int) bool {
	if len(want) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(want, code)
}

// requestBody returns the body to send and its default Content-Type.
func requestBody(raw json.RawMessage) (io.Reader, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return strings.NewReader(s), "text/plain; charset=utf-8"
		}
	}
	return bytes.NewReader(raw), "application/json"
}

// transportError turns a failure to get or read an answer into an outcome:
// a timeout wraps context.DeadlineExceeded (jobs.ClassTimeout), anything
// else stays retryable. The message is rebuilt from the redacted URL, since
// *url.Error quotes the raw one.
func (h *HTTPCall) transportError(parent, reqCtx context.Context, call *callError, timeout time.Duration, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case parent.Err() != nil && !errors.Is(parent.Err(), context.DeadlineExceeded):
		return call.with("canceled: "+parent.Err().Error(), parent.Err())
	case parent.Err() != nil:
		return call.with("step deadline exceeded", context.DeadlineExceeded)
	case reqCtx.Err() != nil:
		return call.with(fmt.Sprintf("no answer within the %v timeout", timeout), context.DeadlineExceeded)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		// A deadline of the client or its transport, not ours.
		return call.with("timed out: "+h.redact.Text(err.Error()), context.DeadlineExceeded)
	}
	return call.with(h.redact.Text(err.Error()), err)
}

// excerptWindow bounds the bytes of a response body that excerpt masks:
// masking the whole body (up to max_response_bytes) to keep 256 bytes of
// it would cost time for nothing.
const excerptWindow = 16 << 10

// excerpt returns at most maxExcerptBytes of body on one line of printable
// text, secrets masked before it is cut, so that a cut cannot expose half a
// secret. Only the first excerptWindow bytes are masked, cut before the
// last white space, quote, angle bracket or backslash in them: those end
// every URL and token the Redactor finds in text, so none that runs past
// the window is cut short (a URL cut before its '@', a token cut below the
// length that marks it), and masking runs to the end of a cut line or
// quoted value. A window with no such byte is one token, shown as a mask.
// White space runs are collapsed after masking, so the excerpt may come
// from anywhere in the window.
func (h *HTTPCall) excerpt(body []byte) string {
	windowed := len(body) > excerptWindow
	if windowed {
		i := bytes.LastIndexAny(body[:excerptWindow], " \t\n\v\f\r\"'<>\\")
		if i < 0 {
			return redact.Mask + "..."
		}
		body = body[:i]
	}
	s := h.redact.Text(strings.ToValidUTF8(string(body), "\uFFFD"))
	// Control characters (NUL, terminal escape sequences) become spaces:
	// the excerpt is shown in logs, `agentq dlq` output and alerts.
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)), " ")
	const ellipsis = "..."
	if windowed && len(s) <= maxExcerptBytes-len(ellipsis) {
		return s + ellipsis
	}
	if !windowed && len(s) <= maxExcerptBytes {
		return s
	}
	cut := maxExcerptBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// callError is a failed call: the operation ("GET https://host/p?key=****"),
// a message with secrets masked, and the cause for errors.Is and errors.As.
type callError struct {
	op  string
	msg string
	err error
}

// with returns a copy of c with msg and cause set.
func (c *callError) with(msg string, cause error) *callError {
	return &callError{op: c.op, msg: msg, err: cause}
}

func (c *callError) Error() string { return c.op + ": " + c.msg }
func (c *callError) Unwrap() error { return c.err }
