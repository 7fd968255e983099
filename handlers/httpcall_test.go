package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/redact"
)

// testNow is the injected clock of every test handler.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type testBundle struct {
	srv  *httptest.Server
	call *HTTPCall
	// last holds the last request the server saw, body read into lastBody.
	last     atomic.Pointer[http.Request]
	lastBody atomic.Pointer[string]
	hits     atomic.Int32
}

// setup starts a loopback server answering with fn and returns a handler
// configured by cfg (Now defaults to testNow).
func setup(t *testing.T, cfg Config, fn http.HandlerFunc) *testBundle {
	t.Helper()
	b := &testBundle{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		s := string(body)
		b.lastBody.Store(&s)
		b.last.Store(r.Clone(context.Background()))
		fn(w, r)
	}))
	t.Cleanup(b.srv.Close)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	b.call = NewHTTPCall(cfg)
	return b
}

func status(code int, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

func step() *jobs.Step {
	return &jobs.Step{TaskID: "task-1", Kind: jobs.KindHTTPCall, Attempt: 1, MaxAttempts: 3}
}

func TestHandleStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		code      int
		headers   []string
		expect    []int
		wantClass jobs.Class
		wantRetry time.Duration
	}{
		{name: "200", code: 200, wantClass: jobs.ClassNone},
		{name: "204", code: 204, wantClass: jobs.ClassNone},
		{name: "201 expected", code: 201, expect: []int{201}, wantClass: jobs.ClassNone},
		{name: "404 expected", code: 404, expect: []int{200, 404}, wantClass: jobs.ClassNone},
		{name: "200 not in expect_status", code: 200, expect: []int{201}, wantClass: jobs.ClassPermanent},
		{name: "304 not expected", code: 304, wantClass: jobs.ClassPermanent},
		{name: "400", code: 400, wantClass: jobs.ClassPermanent},
		{name: "404", code: 404, wantClass: jobs.ClassPermanent},
		{name: "408", code: 408, wantClass: jobs.ClassRetryable},
		{name: "425", code: 425, wantClass: jobs.ClassRetryable},
		{name: "429", code: 429, wantClass: jobs.ClassRateLimited},
		{name: "500", code: 500, wantClass: jobs.ClassRetryable},
		{name: "503", code: 503, wantClass: jobs.ClassRetryable},
		{name: "503 expected is still retried", code: 503, expect: []int{200}, wantClass: jobs.ClassRetryable},
		{name: "429 Retry-After seconds", code: 429, headers: []string{"Retry-After", "7"},
			wantClass: jobs.ClassRateLimited, wantRetry: 7 * time.Second},
		{name: "429 Retry-After date", code: 429,
			headers:   []string{"Retry-After", testNow.Add(90 * time.Second).Format(http.TimeFormat)},
			wantClass: jobs.ClassRateLimited, wantRetry: 90 * time.Second},
		{name: "503 Retry-After seconds", code: 503, headers: []string{"Retry-After", "120"},
			wantClass: jobs.ClassRetryable, wantRetry: 2 * time.Minute},
		{name: "429 Retry-After garbage", code: 429, headers: []string{"Retry-After", "soon"},
			wantClass: jobs.ClassRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{}, status(tt.code, tt.headers...))
			err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL + "/x", ExpectStatus: tt.expect})
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			if tt.wantClass == jobs.ClassNone {
				return
			}
			var he *jobs.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("err %v is not a *jobs.HTTPError", err)
			}
			if he.Status != tt.code {
				t.Errorf("Status = %d, want %d", he.Status, tt.code)
			}
			if he.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", he.RetryAfter, tt.wantRetry)
			}
			if d, _ := jobs.RequestedDelay(err); d != tt.wantRetry {
				t.Errorf("RequestedDelay = %v, want %v", d, tt.wantRetry)
			}
			if want := "GET " + b.srv.URL + "/x: http " + itoa(tt.code); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q, want prefix %q", err, want)
			}
			if tt.code != http.StatusNotModified && !strings.Contains(he.Body, http.StatusText(tt.code)) {
				t.Errorf("Body = %q, want the response text", he.Body)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestHandleRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		step      *jobs.Step
		args      HTTPCallArgs
		wantMeth  string
		wantKey   string
		wantUA    string
		wantCT    string
		wantBody  string
		wantExtra map[string]string
	}{
		{name: "key from step", step: &jobs.Step{TaskID: "t1", Key: "k1"},
			wantMeth: "GET", wantKey: "k1", wantUA: "agentq"},
		{name: "key falls back to task id", step: &jobs.Step{TaskID: "t1"},
			wantMeth: "GET", wantKey: "t1", wantUA: "agentq"},
		{name: "payload key and agent win", step: &jobs.Step{TaskID: "t1", Key: "k1"},
			args:     HTTPCallArgs{Headers: map[string]string{"idempotency-key": "mine", "user-agent": "bot/1"}},
			wantMeth: "GET", wantKey: "mine", wantUA: "bot/1"},
		{name: "string body sent as text", step: step(),
			args:     HTTPCallArgs{Method: "POST", Body: json.RawMessage(`"hello \"world\""`)},
			wantMeth: "POST", wantKey: "task-1", wantUA: "agentq",
			wantCT: "text/plain; charset=utf-8", wantBody: `hello "world"`},
		{name: "object body sent as JSON", step: step(),
			args:     HTTPCallArgs{Method: "PUT", Body: json.RawMessage(`{"a": [1, 2]}`)},
			wantMeth: "PUT", wantKey: "task-1", wantUA: "agentq",
			wantCT: "application/json", wantBody: `{"a": [1, 2]}`},
		{name: "number body sent as JSON", step: step(),
			args:     HTTPCallArgs{Method: "PATCH", Body: json.RawMessage(`42`)},
			wantMeth: "PATCH", wantKey: "task-1", wantUA: "agentq", wantCT: "application/json", wantBody: `42`},
		{name: "given content type kept", step: step(),
			args: HTTPCallArgs{Method: "POST", Body: json.RawMessage(`"a=1&b=2"`),
				Headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "X-Trace": "abc"}},
			wantMeth: "POST", wantKey: "task-1", wantUA: "agentq",
			wantCT: "application/x-www-form-urlencoded", wantBody: "a=1&b=2", wantExtra: map[string]string{"X-Trace": "abc"}},
		{name: "null body sends none", step: step(),
			args:     HTTPCallArgs{Method: "DELETE", Body: json.RawMessage(`null`)},
			wantMeth: "DELETE", wantKey: "task-1", wantUA: "agentq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{}, status(200))
			tt.args.URL = b.srv.URL
			if err := b.call.Handle(t.Context(), tt.step, tt.args); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			r, body := b.last.Load(), *b.lastBody.Load()
			checks := map[string][2]string{
				"method":          {r.Method, tt.wantMeth},
				"Idempotency-Key": {r.Header.Get("Idempotency-Key"), tt.wantKey},
				"User-Agent":      {r.Header.Get("User-Agent"), tt.wantUA},
				"Content-Type":    {r.Header.Get("Content-Type"), tt.wantCT},
				"body":            {body, tt.wantBody},
			}
			for k, v := range tt.wantExtra {
				checks[k] = [2]string{r.Header.Get(k), v}
			}
			for name, c := range checks {
				if c[0] != c[1] {
					t.Errorf("%s = %q, want %q", name, c[0], c[1])
				}
			}
		})
	}
}

func TestHandleResponseLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		code      int
		expect    []int
		size      int
		endless   bool // write size bytes, then hold the body open until the client goes
		wantClass jobs.Class
	}{
		{name: "at the limit", code: 200, size: 16, wantClass: jobs.ClassNone},
		// The tool has acted: a large body must not dead-letter the step.
		{name: "over the limit succeeds", code: 200, size: 17, wantClass: jobs.ClassNone},
		{name: "over the limit on an expected 201", code: 201, expect: []int{201}, size: 1000, wantClass: jobs.ClassNone},
		{name: "endless body is not read to the end", code: 200, size: 64, endless: true, wantClass: jobs.ClassNone},
		{name: "over the limit on a 503 stays retryable", code: 503, size: 1000, wantClass: jobs.ClassRetryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			// A body read to its end would block until the 10s timeout.
			b := setup(t, Config{MaxResponseBytes: 16, Timeout: 10 * time.Second}, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.code)
				_, _ = io.WriteString(w, strings.Repeat("x", tt.size))
				if tt.endless {
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}
			})
			t.Cleanup(func() { close(release) })
			err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL, ExpectStatus: tt.expect})
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			var he *jobs.HTTPError
			if errors.As(err, &he) && len(he.Body) > 16 {
				t.Errorf("excerpt is %d bytes, more than the %d read", len(he.Body), 16)
			}
		})
	}
}

func TestHandleExcerpt(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, "line one\n\tline two "+strings.Repeat("é", 400))
	})
	err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL})
	var he *jobs.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("err %v is not a *jobs.HTTPError", err)
	}
	if len(he.Body) > maxExcerptBytes {
		t.Errorf("excerpt is %d bytes, want at most %d", len(he.Body), maxExcerptBytes)
	}
	if !strings.HasPrefix(he.Body, "line one line two é") || !strings.HasSuffix(he.Body, "é...") {
		t.Errorf("excerpt = %q, want one line cut at a rune with ...", he.Body)
	}
}

func TestHandleExcerptDropsControlCharacters(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, "a\x00b\x1b]0;pwned\x07\x1b[2Jc\u0085d")
	})
	err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL})
	var he *jobs.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("err %v is not a *jobs.HTTPError", err)
	}
	if he.Body != "a b ]0;pwned [2Jc d" {
		t.Errorf("excerpt = %q, want its control characters as spaces", he.Body)
	}
}

func TestHandleRedirects(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/again", http.StatusFound)
	})
	err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL})
	if got := jobs.Classify(err); got != jobs.ClassPermanent {
		t.Fatalf("Classify = %q, want permanent (err: %v)", got, err)
	}
	if got, want := b.hits.Load(), int32(MaxRedirects+1); got != want {
		t.Errorf("server saw %d requests, want %d", got, want)
	}
}

func TestHandleRedirectSecrets(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"Authorization": "Bearer SECRET-auth",
		"X-Api-Key":     "SECRET-key",
		"x-session":     "SECRET-session", // configured, not canonical
		"Cookie":        "sid=SECRET-cookie",
	}
	tests := []struct {
		name        string
		crossHost   bool
		client      *http.Client
		wantSecrets bool
	}{
		{name: "to another host", crossHost: true},
		{name: "to another host with the caller's client", crossHost: true, client: &http.Client{}},
		{name: "on the same host", crossHost: false, wantSecrets: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got atomic.Pointer[http.Header]
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := r.Header.Clone()
				got.Store(&h)
			}))
			t.Cleanup(target.Close)
			b := setup(t, Config{RedactHeaders: []string{"X-Session"}, Client: tt.client}, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/b":
					h := r.Header.Clone()
					got.Store(&h)
				case tt.crossHost:
					http.Redirect(w, r, target.URL+"/b", http.StatusFound)
				default:
					http.Redirect(w, r, "/b", http.StatusFound)
				}
			})
			headers := map[string]string{"X-Trace": "t1"}
			maps.Copy(headers, secrets)
			if err := b.call.Handle(t.Context(), step(), HTTPCallArgs{URL: b.srv.URL + "/a", Headers: headers}); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			h := got.Load()
			if h == nil {
				t.Fatal("the redirect target saw no request")
			}
			if v := h.Get("X-Trace"); v != "t1" {
				t.Errorf("X-Trace = %q, want t1 (only secret headers are dropped)", v)
			}
			for name, value := range secrets {
				if v := h.Get(name); (v == value) != tt.wantSecrets {
					t.Errorf("%s = %q at the redirect target, want sent: %v", name, v, tt.wantSecrets)
				}
			}
		})
	}
}

func TestLeftOrigin(t *testing.T) {
	t.Parallel()
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		chain []string // the first request, the redirects, then the next request
		want  bool
	}{
		{chain: []string{"https://a.example/x", "https://a.example/y"}, want: false},
		{chain: []string{"https://a.example/x", "https://A.EXAMPLE/y"}, want: false},
		{chain: []string{"https://a.example/x", "https://b.example/y"}, want: true},
		{chain: []string{"https://a.example/x", "https://sub.a.example/y"}, want: true},
		{chain: []string{"http://127.0.0.1:1/x", "http://127.0.0.1:2/y"}, want: true},
		{chain: []string{"https://a.example/x", "http://a.example/y"}, want: true},
		{chain: []string{"http://a.example/x", "https://a.example/y"}, want: false}, // an upgrade is safe
		{chain: []string{"https://a.example/x", "https://b.example/y", "https://a.example/z"}, want: true},
	}
	for _, tt := range tests {
		var via []*http.Request
		for _, u := range tt.chain[:len(tt.chain)-1] {
			via = append(via, req(u))
		}
		if got := leftOrigin(req(tt.chain[len(tt.chain)-1]), via); got != tt.want {
			t.Errorf("leftOrigin(%v) = %v, want %v", tt.chain, got, tt.want)
		}
	}
}

// setupBlocking is setup with a server that answers only when the client
// goes away or the test ends.
func setupBlocking(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	release := make(chan struct{})
	b := setup(t, cfg, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return b
}

func TestHandleTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		args HTTPCallArgs
	}{
		{name: "config timeout", cfg: Config{Timeout: 50 * time.Millisecond}},
		{name: "payload timeout", args: HTTPCallArgs{Timeout: "50ms"}},
		{name: "payload timeout bounded by max", cfg: Config{Timeout: 10 * time.Millisecond, MaxTimeout: 50 * time.Millisecond},
			args: HTTPCallArgs{Timeout: "1h"}},
		{name: "client timeout", cfg: Config{Client: &http.Client{Timeout: 50 * time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupBlocking(t, tt.cfg)
			tt.args.URL = b.srv.URL + "/slow?token=SECRET"
			start := time.Now()
			err := b.call.Handle(t.Context(), step(), tt.args)
			if got := jobs.Classify(err); got != jobs.ClassTimeout {
				t.Fatalf("Classify = %q, want timeout (err: %v)", got, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v does not wrap context.DeadlineExceeded", err)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("took %v, the timeout was not applied", elapsed)
			}
			want := "GET " + b.srv.URL + "/slow?token=****: "
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q, want prefix %q", err, want)
			}
		})
	}
}

func TestHandleContextEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		ctx       func(t *testing.T) context.Context
		wantClass jobs.Class
		wantIs    error
	}{
		{name: "step deadline", wantClass: jobs.ClassTimeout, wantIs: context.DeadlineExceeded,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			}},
		{name: "step canceled", wantClass: jobs.ClassRetryable, wantIs: context.Canceled,
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				t.Cleanup(cancel)
				return ctx
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupBlocking(t, Config{})
			err := b.call.Handle(tt.ctx(t), step(), HTTPCallArgs{URL: b.srv.URL})
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("err %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

// refusedURL returns a loopback URL nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestHandleConnectionRefused(t *testing.T) {
	t.Parallel()
	h := NewHTTPCall(Config{})
	u := refusedURL(t)
	err := h.Handle(t.Context(), step(), HTTPCallArgs{Method: "POST", URL: u + "/x?api_key=SECRET"})
	if got := jobs.Classify(err); got != jobs.ClassRetryable {
		t.Fatalf("Classify = %q, want retryable (err: %v)", got, err)
	}
	var pe *jobs.PermanentError
	if errors.As(err, &pe) {
		t.Fatalf("err %v is permanent", err)
	}
	if want := "POST " + u + "/x?api_key=****: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want prefix %q", err, want)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("err %v does not keep the *net.OpError", err)
	}
}

func TestHandleInvalidArgs(t *testing.T) {
	t.Parallel()
	h := NewHTTPCall(Config{RedactFields: []string{"sig"}})
	err := h.Handle(t.Context(), step(), HTTPCallArgs{URL: "ftp://host/f?sig=SECRET"})
	if got := jobs.Classify(err); got != jobs.ClassPermanent {
		t.Fatalf("Classify = %q, want permanent (err: %v)", got, err)
	}
	if want := `http.call: url: must be an absolute http or https URL, got "ftp://host/f?sig=****"`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestHandleSecretsStayOut(t *testing.T) {
	t.Parallel()
	const secret = "SECRET"
	args := func(base string) HTTPCallArgs {
		u := strings.Replace(base, "http://", "http://user:"+secret+"pw@", 1)
		return HTTPCallArgs{
			Method: "POST",
			URL:    u + "/bot1:" + secret + "-path/v1/run?api_key=" + secret + "-q&mode=fast#access_token=" + secret + "-f",
			Headers: map[string]string{
				"Authorization": "Bearer " + secret + "-auth",
				"X-Custom":      secret + "-custom-header",
			},
			Body: json.RawMessage(`{"password":"` + secret + `-req"}`),
		}
	}
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, `{"error":"boom","password":"`+secret+`-body","echo":"Authorization: Bearer `+
			secret+`-auth","form":"client_secret=`+secret+`-form&x=1",`+
			`"headers":{"Authorization":"Basic `+secret+`","X-Api-Key":"`+secret+`-key"},"raw":"Cookie: sid=`+secret+`-c"}`)
	}
	tests := []struct {
		name      string
		handler   http.HandlerFunc // nil: nothing listens
		cfg       Config
		wantClass jobs.Class
	}{
		{name: "500 echoing secrets", handler: echo, wantClass: jobs.ClassRetryable},
		{name: "timeout", handler: nil, cfg: Config{Timeout: 50 * time.Millisecond}, wantClass: jobs.ClassTimeout},
		{name: "connection refused", wantClass: jobs.ClassRetryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var base string
			var h *HTTPCall
			switch {
			case tt.wantClass == jobs.ClassTimeout:
				b := setupBlocking(t, tt.cfg)
				base, h = b.srv.URL, b.call
			case tt.handler != nil:
				b := setup(t, tt.cfg, tt.handler)
				base, h = b.srv.URL, b.call
			default:
				base, h = refusedURL(t), NewHTTPCall(tt.cfg)
			}
			err := h.Handle(t.Context(), step(), args(base))
			if got := jobs.Classify(err); got != tt.wantClass {
				t.Fatalf("Classify = %q, want %q (err: %v)", got, tt.wantClass, err)
			}
			msg := err.Error()
			if strings.Contains(msg, secret) {
				t.Errorf("err leaks a secret: %q", msg)
			}
			for _, want := range []string{"POST http://user:****@", "/****/v1/run?", "api_key=****", "mode=fast"} {
				if !strings.Contains(msg, want) {
					t.Errorf("err = %q, want it to contain %q", msg, want)
				}
			}
		})
	}
}

// TestExcerptWindow checks that excerpt masks only the first excerptWindow
// bytes of a large body, and that no secret running past that window
// shows half of itself.
func TestExcerptWindow(t *testing.T) {
	t.Parallel()
	h := &HTTPCall{redact: redact.New(nil, nil)}
	pad := func(n int) string { return strings.Repeat(" ", n) }
	tests := []struct {
		name     string
		body     string
		want     string // "" when only leaks and the length matter
		leaks    []string
		maxBytes int
	}{
		{name: "short body", body: "error: password=hunter2", want: "error: password=****"},
		{name: "secret at the start of a large body", body: "password=hunter2 " + strings.Repeat("x ", 1<<19),
			leaks: []string{"hunter2"}},
		{name: "URL across the window's end", body: pad(excerptWindow-12) + "http://user:hunter2@host/ more",
			want: "...", leaks: []string{"hun", "user:h"}},
		{name: "token path segment across the window's end",
			body: pad(excerptWindow-24) + "https://h/s/aB3dE5gH7jK9mN1pQ3sT5vX7aB3dE5gH7 more", want: "...", leaks: []string{"aB3dE"}},
		{name: "quoted value across the window's end", body: pad(excerptWindow-20) + `password="correct horse battery staple"`,
			leaks: []string{"correct", "horse"}},
		{name: "one token longer than the window", body: strings.Repeat("A", excerptWindow+1), want: redact.Mask + "..."},
		{name: "adversarial megabyte", body: strings.Repeat("=", 1<<20), maxBytes: maxExcerptBytes},
		{name: "large body cut with an ellipsis", body: "upstream down" + pad(excerptWindow), want: "upstream down..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := h.excerpt([]byte(tt.body))
			if tt.want != "" && got != tt.want {
				t.Errorf("excerpt = %q, want %q", got, tt.want)
			}
			if len(got) > maxExcerptBytes {
				t.Errorf("excerpt is %d bytes, want at most %d", len(got), maxExcerptBytes)
			}
			for _, leak := range tt.leaks {
				if strings.Contains(got, leak) {
					t.Errorf("excerpt %q leaks %q", got, leak)
				}
			}
		})
	}
}

func TestHandleOutput(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("a", maxOutputBodyBytes+10)
	tests := []struct {
		name          string
		code          int
		expect        []int
		headers       []string
		body          string
		limit         int64
		want          string // the output's body as JSON
		wantTruncated bool
	}{
		{name: "JSON", code: 200, headers: []string{"Content-Type", "application/json; charset=utf-8"},
			body: `{"id": 7, "tags": ["a"]}`, want: `{"id":7,"tags":["a"]}`},
		{name: "+json", code: 201, headers: []string{"Content-Type", "application/problem+json"}, body: `[1,2]`, want: `[1,2]`},
		// net/http would sniff text/plain; the nil value stops it.
		{name: "JSON without a content type", code: 200, headers: []string{"Content-Type", ""}, body: `{"ok":true}`, want: `{"ok":true}`},
		{name: "text", code: 200, headers: []string{"Content-Type", "text/plain"}, body: `{"looks":"like json"}`,
			want: `"{\"looks\":\"like json\"}"`},
		{name: "broken JSON is text", code: 200, headers: []string{"Content-Type", "application/json"}, body: `{"a":`, want: `"{\"a\":"`},
		{name: "invalid UTF-8 is replaced", code: 200, headers: []string{"Content-Type", "text/plain"}, body: "a\xffb", want: "\"a\uFFFDb\""},
		{name: "empty", code: 204, want: `""`},
		{name: "expected 404", code: 404, expect: []int{404}, headers: []string{"Content-Type", "application/json"},
			body: `{"error":"gone"}`, want: `{"error":"gone"}`},
		{name: "larger than 64 KiB", code: 200, headers: []string{"Content-Type", "application/json"}, body: `"` + big + `"`,
			want: `"` + `\"` + big[:maxOutputBodyBytes-1] + `"`, wantTruncated: true},
		{name: "cut by max_response_bytes", code: 200, headers: []string{"Content-Type", "application/json"}, limit: 8,
			body: `{"a":"0123456789"}`, want: `"{\"a\":\"01"`, wantTruncated: true},
		{name: "exactly max_response_bytes", code: 200, headers: []string{"Content-Type", "application/json"}, limit: 8,
			body: `{"a":12}`, want: `{"a":12}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{MaxResponseBytes: tt.limit}, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(tt.headers); i += 2 {
					if tt.headers[i+1] == "" {
						w.Header()[tt.headers[i]] = nil
						continue
					}
					w.Header().Set(tt.headers[i], tt.headers[i+1])
				}
				w.WriteHeader(tt.code)
				_, _ = io.WriteString(w, tt.body)
			})
			s := step()
			if err := b.call.Handle(t.Context(), s, HTTPCallArgs{URL: b.srv.URL, ExpectStatus: tt.expect}); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			var out struct {
				Status        int
				Headers       map[string]string
				Body          json.RawMessage
				BodyTruncated bool `json:"body_truncated"`
			}
			if err := json.Unmarshal(s.Output(), &out); err != nil {
				t.Fatalf("output %s: %v", s.Output(), err)
			}
			if out.Status != tt.code {
				t.Errorf("status = %d, want %d", out.Status, tt.code)
			}
			if string(out.Body) != tt.want {
				got := string(out.Body)
				t.Errorf("body = %.80s... (%d bytes), want %.80s... (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			if out.BodyTruncated != tt.wantTruncated {
				t.Errorf("body_truncated = %v, want %v", out.BodyTruncated, tt.wantTruncated)
			}
		})
	}
}

func TestHandleOutputHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RedactHeaders: []string{"X-Session"}}, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Add("Set-Cookie", "sid=S3cretCookie")
		h.Set("X-Session", "S3cretSession")
		h.Set("X-Note", "see Bearer S3cretBearerT0ken")
		h.Add("X-Multi", "a")
		h.Add("X-Multi", "b")
		h.Set("X-Long", strings.Repeat("é", maxOutputHeaderBytes))
		for i := range 100 {
			h.Set(fmt.Sprintf("X-Z%03d", i), "v")
		}
		_, _ = io.WriteString(w, "ok")
	})
	s := step()
	if err := b.call.Handle(t.Context(), s, HTTPCallArgs{URL: b.srv.URL}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(s.Output()), "S3cret") {
		t.Errorf("output leaks a secret header: %s", s.Output())
	}
	var out HTTPCallOutput
	if err := json.Unmarshal(s.Output(), &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"content-type": "text/plain",
		"set-cookie":   redact.Mask,
		"x-session":    redact.Mask,
		"x-multi":      "a, b",
	}
	for k, v := range want {
		if out.Headers[k] != v {
			t.Errorf("headers[%q] = %q, want %q", k, out.Headers[k], v)
		}
	}
	if v := out.Headers["x-long"]; len(v) > maxOutputHeaderBytes || !utf8.ValidString(v) || v == "" {
		t.Errorf("x-long is %d bytes (valid UTF-8: %v), want at most %d", len(v), utf8.ValidString(v), maxOutputHeaderBytes)
	}
	if len(out.Headers) != maxOutputHeaders {
		t.Errorf("%d headers kept, want %d", len(out.Headers), maxOutputHeaders)
	}
	if out.Body != "ok" {
		t.Errorf("body = %v, want ok", out.Body)
	}
}

func TestHandleNoOutputOnFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, status(503))
	s := step()
	if err := b.call.Handle(t.Context(), s, HTTPCallArgs{URL: b.srv.URL}); err == nil {
		t.Fatal("Handle succeeded on a 503")
	}
	if s.Output() != nil {
		t.Errorf("a failed call recorded output %s", s.Output())
	}
}

// TestHTTPCallOutputOfControlBytesStaysBounded: a text body of control
// bytes, six bytes each in JSON, is cut so that the output stays within
// twice the body bound.
func TestHTTPCallOutputOfControlBytesStaysBounded(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(bytes.Repeat([]byte{1}, 70000))
	}))
	t.Cleanup(srv.Close)
	s := &jobs.Step{}
	if err := NewHTTPCall(Config{}).Handle(t.Context(), s, HTTPCallArgs{URL: srv.URL}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Output()); n > 2*maxOutputBodyBytes+4096 {
		t.Fatalf("output is %d bytes, over %d", n, 2*maxOutputBodyBytes+4096)
	}
	if !bytes.Contains(s.Output(), []byte(`"body_truncated":true`)) {
		t.Fatalf("output %.200s... does not say the body was cut", s.Output())
	}
}
