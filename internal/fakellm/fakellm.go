// Package fakellm is an OpenAI-compatible chat completions server for tests
// and `agentq dev`: deterministic replies, usage blocks whose token counts a
// test can compute (PromptTokens, CompletionTokens), structured output for
// simple JSON Schemas, and failures on demand. It listens on loopback only
// and keeps everything in memory.
//
// Model ids with a meaning of their own:
//
//   - "always-503" answers every request with 503 and an error body.
//   - "status-NNN" answers with status NNN (400 to 599) and an error body; a
//     429 carries Retry-After: 1.
//   - "bad-json" replies with content that fails the request's
//     response_format schema: {} when the schema requires properties, else
//     text that is not JSON. Without a response_format it replies normally.
//
// Any other model id gets a normal reply.
package fakellm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxRequestBytes bounds a request body; a larger one gets 413.
const MaxRequestBytes = 1 << 20

// Options configures a Server. The zero value answers every request.
type Options struct {
	// FailFirst429 answers the first FailFirst429 requests of each distinct
	// Idempotency-Key with 429 and Retry-After: 1, so that a step (whose
	// attempts share the key) is rate limited that often and then served.
	// Requests without the header share one count. Default 0: none.
	FailFirst429 int
	// APIKey, when set, is the bearer token every request must carry;
	// others get 401. Default "": no check.
	APIKey string
}

// Message is one chat message of a request.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one request the server saw, in arrival order.
type Request struct {
	// Path is the request path.
	Path string
	// Model is the model id asked for; empty when the body did not parse.
	Model string
	// IdempotencyKey is the Idempotency-Key header.
	IdempotencyKey string
	// Authorized reports whether the request carried a bearer token (the
	// right one, when Options.APIKey is set). The token is not kept.
	Authorized bool
	// Body is the request body as sent.
	Body []byte
	// Status is the status the server answered with.
	Status int
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API root to configure as a provider's base_url, e.g.
	// "http://127.0.0.1:40123/v1"; requests go to URL + "/chat/completions".
	URL string

	opts Options
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returns

	mu        sync.Mutex
	requests  []Request
	failed    map[string]int // 429s answered per Idempotency-Key
	closeOnce sync.Once
	closeErr  error
}

// Start listens on addr, which must be a loopback address ("" is
// 127.0.0.1:0, a free port), and serves until Close.
func Start(addr string, o Options) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("fakellm: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("fakellm: address %q is not a loopback address (use 127.0.0.1:PORT)", addr)
	}
	if o.FailFirst429 < 0 {
		return nil, fmt.Errorf("fakellm: fail_first_429 must not be negative, got %d", o.FailFirst429)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakellm: %w", err)
	}
	s := &Server{
		URL:    "http://" + ln.Addr().String() + "/v1",
		opts:   o,
		ln:     ln,
		done:   make(chan struct{}),
		failed: map[string]int{},
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return s, nil
}

// Close stops the server, ending open connections, and waits for it.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.srv.Close()
		<-s.done
	})
	return s.closeErr
}

// Requests returns a copy of the requests seen so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// PromptTokens is the prompt_tokens the server reports for msgs: the words
// of their contents (strings.Fields) plus one per message.
func PromptTokens(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(strings.Fields(m.Content)) + 1
	}
	return n
}

// CompletionTokens is the completion_tokens the server reports for a reply:
// the words of its content (strings.Fields).
func CompletionTokens(content string) int { return len(strings.Fields(content)) }

// Reply is the content the server answers msgs with when no response
// format is asked: "reply to: " and the last user message, cut to 200
// bytes.
func Reply(msgs []Message) string {
	last := ""
	for _, m := range msgs {
		if m.Role == "user" {
			last = m.Content
		}
	}
	return "reply to: " + cut(last, 200)
}

// chatRequest is the part of a request the server reads.
type chatRequest struct {
	Model          string    `json:"model"`
	Messages       []Message `json:"messages"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

// ServeHTTP answers one request; Server is an http.Handler so that tests
// may mount it on their own server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key")}
	status := s.serve(w, r, &rec)
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rec *Request) int {
	if r.URL.Path != "/v1/chat/completions" && r.URL.Path != "/chat/completions" {
		return writeError(w, http.StatusNotFound, "not_found", "unknown path "+strconv.Quote(r.URL.Path)+" (use /v1/chat/completions)")
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "use POST")
	}
	token, hasToken := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	rec.Authorized = hasToken && token != "" && (s.opts.APIKey == "" || token == s.opts.APIKey)
	if s.opts.APIKey != "" && !rec.Authorized {
		return writeError(w, http.StatusUnauthorized, "invalid_api_key", "missing or incorrect API key")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return writeError(w, http.StatusBadRequest, "invalid_request_error", "cannot read the body")
	}
	if len(body) > MaxRequestBytes {
		return writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "body larger than 1 MiB")
	}
	rec.Body = body
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return writeError(w, http.StatusBadRequest, "invalid_request_error", "body is not a chat completions request: "+err.Error())
	}
	rec.Model = req.Model
	switch {
	case req.Model == "":
		return writeError(w, http.StatusBadRequest, "invalid_request_error", "model is required")
	case len(req.Messages) == 0:
		return writeError(w, http.StatusBadRequest, "invalid_request_error", "messages must not be empty")
	}
	if s.rateLimited(rec.IdempotencyKey) {
		w.Header().Set("Retry-After", "1")
		return writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "rate limited (fake)")
	}
	if code, ok := failStatus(req.Model); ok {
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		return writeError(w, code, "fake_failure", fmt.Sprintf("model %s fails with %d", req.Model, code))
	}

	content := Reply(req.Messages)
	if rf := req.ResponseFormat; rf != nil && rf.Type == "json_schema" && rf.JSONSchema != nil {
		var schema map[string]any
		_ = json.Unmarshal(rf.JSONSchema.Schema, &schema) // a bad schema gets a string
		var v any
		if req.Model == "bad-json" {
			if required, _ := schema["required"].([]any); len(required) > 0 {
				v = map[string]any{}
			} else {
				content = "this is not JSON"
			}
		} else {
			v = example(schema, Reply(req.Messages), 0)
		}
		if v != nil {
			b, _ := json.Marshal(v)
			content = string(b)
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"id":      fmt.Sprintf("chatcmpl-fake-%d", s.count()),
		"object":  "chat.completion",
		"created": 0,
		"model":   req.Model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": content},
			"finish_reason": "stop",
		}},
		"usage": map[string]any{
			"prompt_tokens":     PromptTokens(req.Messages),
			"completion_tokens": CompletionTokens(content),
			"total_tokens":      PromptTokens(req.Messages) + CompletionTokens(content),
		},
	})
}

// rateLimited counts a request against key and reports whether it gets a 429.
func (s *Server) rateLimited(key string) bool {
	if s.opts.FailFirst429 == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed[key] >= s.opts.FailFirst429 {
		return false
	}
	s.failed[key]++
	return true
}

func (s *Server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests) + 1
}

// failStatus returns the status a failing model id asks for.
func failStatus(model string) (int, bool) {
	if model == "always-503" {
		return http.StatusServiceUnavailable, true
	}
	if n, ok := strings.CutPrefix(model, "status-"); ok {
		if code, err := strconv.Atoi(n); err == nil && code >= 400 && code <= 599 {
			return code, true
		}
	}
	return 0, false
}

// Bounds of example: its recursion and the values it makes in all (object
// properties and array items multiply).
const (
	maxDepth  = 16
	maxValues = 10000
)

// example returns a value meeting simple schemas: the first of const, enum
// and examples; an object with every property (required ones at least);
// an array with its minItems items (one by default); text for strings, the
// minimum (or 1) for numbers, true for booleans. anyOf and oneOf take their
// first branch; a $ref or anything it does not know gets text, and so does
// what lies deeper than maxDepth or beyond the first maxValues values.
func example(schema any, text string, depth int) any {
	budget := maxValues
	return exampleOf(schema, text, depth, &budget)
}

func exampleOf(schema any, text string, depth int, budget *int) any {
	*budget--
	m, ok := schema.(map[string]any)
	if !ok || depth > maxDepth || *budget < 0 {
		return text
	}
	if v, ok := m["const"]; ok {
		return v
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	if e, ok := m["examples"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if b, ok := m[k].([]any); ok && len(b) > 0 {
			return exampleOf(b[0], text, depth+1, budget)
		}
	}
	typ, _ := m["type"].(string)
	if list, ok := m["type"].([]any); ok {
		for _, t := range list {
			if t, _ := t.(string); t != "" && t != "null" {
				typ = t
				break
			}
		}
	}
	if typ == "" {
		if _, ok := m["properties"]; ok {
			typ = "object"
		}
	}
	switch typ {
	case "object":
		obj := map[string]any{}
		props, _ := m["properties"].(map[string]any)
		for name, p := range props {
			obj[name] = exampleOf(p, text, depth+1, budget)
		}
		if req, ok := m["required"].([]any); ok {
			for _, r := range req {
				if name, ok := r.(string); ok {
					if _, done := obj[name]; !done {
						obj[name] = text
					}
				}
			}
		}
		return obj
	case "array":
		n := 1
		if f, ok := m["minItems"].(float64); ok {
			n = int(min(max(f, 0), 8))
		}
		if f, ok := m["maxItems"].(float64); ok && f < float64(n) {
			n = int(max(f, 0))
		}
		arr := make([]any, n)
		for i := range arr {
			arr[i] = exampleOf(m["items"], text, depth+1, budget)
		}
		return arr
	case "integer", "number":
		if f, ok := m["minimum"].(float64); ok {
			return f
		}
		return 1
	case "boolean":
		return true
	case "null":
		return nil
	}
	return text
}

// writeError answers with an OpenAI-style error body.
func writeError(w http.ResponseWriter, code int, typ, msg string) int {
	return writeJSON(w, code, map[string]any{"error": map[string]any{"message": msg, "type": typ}})
}

func writeJSON(w http.ResponseWriter, code int, v any) int {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"message":"cannot encode the reply","type":"server_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
	return code
}

// cut returns s cut to at most n bytes at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

var _ http.Handler = (*Server)(nil)
