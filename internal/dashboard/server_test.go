package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/redact"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// testBundle holds what a test needs around a Server.
type testBundle struct {
	opt  asynq.RedisClientOpt // the test's Redis, for asynq clients and asynqmon
	rdb  *redis.Client        // the test's Redis, for /healthz
	logs *logbuf.Buffer       // debug-level JSON log output
}

type setupOpts struct {
	cfg   Config
	extra map[string]http.Handler
	rdb   redis.UniversalClient // overrides bundle.rdb for /healthz when set
}

// setup builds a Server on a Redis of the test's own and serves its handler
// from an httptest.Server.
func setup(t *testing.T, o setupOpts) (*Server, *httptest.Server, *testBundle) {
	t.Helper()
	rs := redistest.Start(t)
	b := &testBundle{
		opt:  asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB},
		rdb:  rs.Client(t),
		logs: &logbuf.Buffer{},
	}
	rdb := o.rdb
	if rdb == nil {
		rdb = b.rdb
	}
	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	s, err := New(o.cfg, b.opt, rdb, log, o.extra)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts, b
}

type reqOpt func(*http.Request)

func withBasic(user, pass string) reqOpt {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func withBearer(token string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, opts ...reqOpt) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(body)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func enqueue(t *testing.T, opt asynq.RedisConnOpt, queue string) {
	t.Helper()
	c := asynq.NewClient(opt)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("dashboard:test", []byte(`{}`)), asynq.Queue(queue)); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()

	t.Run("redis up", func(t *testing.T) {
		t.Parallel()
		_, ts, _ := setup(t, setupOpts{})
		resp, body := do(t, http.MethodGet, ts.URL+"/healthz")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if strings.TrimSpace(body) != `{"status":"ok"}` {
			t.Errorf("body = %s, want {\"status\":\"ok\"}", body)
		}
	})

	t.Run("redis down", func(t *testing.T) {
		t.Parallel()
		down := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
		t.Cleanup(func() { _ = down.Close() })
		_, ts, b := setup(t, setupOpts{rdb: down})
		resp, body := do(t, http.MethodGet, ts.URL+"/healthz")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503; body %s", resp.StatusCode, body)
		}
		var got struct{ Status, Error string }
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if got.Status != "unavailable" || got.Error == "" {
			t.Errorf("body = %+v, want status unavailable with an error", got)
		}
		if !strings.Contains(b.logs.String(), "redis ping failed") {
			t.Errorf("logs lack the failed ping:\n%s", b.logs)
		}
	})

	t.Run("method not allowed", func(t *testing.T) {
		t.Parallel()
		_, ts, _ := setup(t, setupOpts{})
		resp, _ := do(t, http.MethodPost, ts.URL+"/healthz")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /healthz status = %d, want 405", resp.StatusCode)
		}
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()

	const (
		user     = "admin"
		password = "pa55-w0rd"
		token    = "t0ken-abc"
	)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "metrics") })
	extra := map[string]http.Handler{"/metrics": metrics}

	type check struct {
		path   string
		opts   []reqOpt
		status int
	}
	tests := []struct {
		name   string
		cfg    Config
		checks []check
	}{
		{
			name: "none configured",
			cfg:  Config{},
			checks: []check{
				{path: "/", status: 200},
				{path: "/api/queues", status: 200},
				{path: "/metrics", status: 200},
			},
		},
		{
			name: "basic",
			cfg:  Config{BasicAuthUser: user, BasicAuthPassword: password},
			checks: []check{
				{path: "/", status: 401},
				{path: "/api/queues", status: 401},
				{path: "/metrics", status: 401},
				{path: "/static/js/missing.js", status: 401},
				{path: "/", opts: []reqOpt{withBasic(user, "wrong")}, status: 401},
				{path: "/", opts: []reqOpt{withBasic("wrong", password)}, status: 401},
				{path: "/", opts: []reqOpt{withBearer(password)}, status: 401},
				{path: "/", opts: []reqOpt{withBasic(user, password)}, status: 200},
				{path: "/api/queues", opts: []reqOpt{withBasic(user, password)}, status: 200},
				{path: "/metrics", opts: []reqOpt{withBasic(user, password)}, status: 200},
				{path: "/healthz", status: 200},
			},
		},
		{
			name: "bearer",
			cfg:  Config{BearerToken: token},
			checks: []check{
				{path: "/", status: 401},
				{path: "/api/queues", status: 401},
				{path: "/metrics", status: 401},
				{path: "/", opts: []reqOpt{withBearer("wrong")}, status: 401},
				{path: "/", opts: []reqOpt{withBearer(token + "x")}, status: 401},
				{path: "/", opts: []reqOpt{withBasic(user, token)}, status: 401},
				{path: "/", opts: []reqOpt{withBearer(token)}, status: 200},
				{path: "/api/queues", opts: []reqOpt{withBearer(token)}, status: 200},
				{path: "/metrics", opts: []reqOpt{withBearer(token)}, status: 200},
				{path: "/metrics", opts: []reqOpt{func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) }}, status: 200},
				{path: "/healthz", status: 200},
			},
		},
		{
			name: "basic and bearer",
			cfg:  Config{Addr: "0.0.0.0:0", BasicAuthUser: user, BasicAuthPassword: password, BearerToken: token},
			checks: []check{
				{path: "/", status: 401},
				{path: "/", opts: []reqOpt{withBasic(user, password)}, status: 200},
				{path: "/", opts: []reqOpt{withBearer(token)}, status: 200},
				{path: "/", opts: []reqOpt{withBearer(password)}, status: 401},
				{path: "/healthz", status: 200},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, ts, b := setup(t, setupOpts{cfg: tt.cfg, extra: extra})
			for _, c := range tt.checks {
				resp, body := do(t, http.MethodGet, ts.URL+c.path, c.opts...)
				if resp.StatusCode != c.status {
					t.Errorf("GET %s (%d opts): status = %d, want %d; body %.200s", c.path, len(c.opts), resp.StatusCode, c.status, body)
				}
				if resp.StatusCode == http.StatusUnauthorized {
					ch := strings.Join(resp.Header.Values("WWW-Authenticate"), ", ")
					if tt.cfg.basicAuth() && !strings.Contains(ch, "Basic ") {
						t.Errorf("GET %s: WWW-Authenticate = %q, want a Basic challenge", c.path, ch)
					}
					if tt.cfg.bearerAuth() && !strings.Contains(ch, "Bearer ") {
						t.Errorf("GET %s: WWW-Authenticate = %q, want a Bearer challenge", c.path, ch)
					}
					if strings.Contains(body, "asynq") {
						t.Errorf("GET %s: 401 body leaks content: %.200s", c.path, body)
					}
				}
			}
			logs := b.logs.String()
			for _, secret := range []string{password, token} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs contain a secret:\n%s", logs)
				}
			}
		})
	}
}

func TestUI(t *testing.T) {
	t.Parallel()
	_, ts, _ := setup(t, setupOpts{})

	for _, path := range []string{"/", "/queues/default"} { // the SPA serves index.html for its own routes
		resp, body := do(t, http.MethodGet, ts.URL+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status = %d, want 200", path, resp.StatusCode)
		}
		for _, marker := range []string{"<title>Asynq - Monitoring</title>", `window.FLAG_ROOT_PATH=""`, `<div id="root">`} {
			if !strings.Contains(body, marker) {
				t.Errorf("GET %s: body lacks %q", path, marker)
			}
		}
	}

	// The index must point at assets that are actually served from root.
	_, body := do(t, http.MethodGet, ts.URL+"/")
	m := regexp.MustCompile(`<script src="(/static/js/main\.[0-9a-f]+\.chunk\.js)">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("index.html has no root-relative main script:\n%.2000s", body)
	}
	resp, js := do(t, http.MethodGet, ts.URL+m[1])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status = %d, want 200", m[1], resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/javascript") {
		t.Errorf("GET %s: Content-Type = %q, want application/javascript", m[1], ct)
	}
	if !strings.Contains(js, "window.ROOT_PATH") {
		t.Errorf("GET %s: not the asynqmon bundle", m[1])
	}
}

func TestAPIQueues(t *testing.T) {
	t.Parallel()
	_, ts, b := setup(t, setupOpts{})
	enqueue(t, b.opt, "dash_api")

	resp, body := do(t, http.MethodGet, ts.URL+"/api/queues")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
	}
	var got struct {
		Queues []struct {
			Queue   string `json:"queue"`
			Pending int    `json:"pending"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if len(got.Queues) != 1 || got.Queues[0].Queue != "dash_api" || got.Queues[0].Pending != 1 {
		t.Errorf("queues = %+v, want one queue dash_api with 1 pending task", got.Queues)
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()

	tests := []struct {
		readOnly   bool
		wantStatus int
		wantPaused bool
	}{
		{readOnly: false, wantStatus: http.StatusNoContent, wantPaused: true},
		{readOnly: true, wantStatus: http.StatusMethodNotAllowed, wantPaused: false},
	}
	for _, tt := range tests {
		name := map[bool]string{false: "read-write", true: "read-only"}[tt.readOnly]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, ts, b := setup(t, setupOpts{cfg: Config{ReadOnly: tt.readOnly}})
			enqueue(t, b.opt, "dash_ro")

			resp, body := do(t, http.MethodPost, ts.URL+"/api/queues/dash_ro:pause")
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("POST pause: status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			resp, _ = do(t, http.MethodDelete, ts.URL+"/api/queues/dash_ro/pending_tasks:delete_all")
			if tt.readOnly && resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("DELETE pending tasks: status = %d, want 405", resp.StatusCode)
			}
			if resp, _ := do(t, http.MethodGet, ts.URL+"/api/queues"); resp.StatusCode != http.StatusOK {
				t.Errorf("GET /api/queues: status = %d, want 200", resp.StatusCode)
			}

			insp := asynq.NewInspector(b.opt)
			defer insp.Close()
			info, err := insp.GetQueueInfo("dash_ro")
			if err != nil {
				t.Fatalf("GetQueueInfo: %v", err)
			}
			if info.Paused != tt.wantPaused {
				t.Errorf("queue paused = %v, want %v", info.Paused, tt.wantPaused)
			}
			if tt.readOnly && info.Pending != 1 {
				t.Errorf("pending = %d, want 1 (read-only must not delete)", info.Pending)
			}
		})
	}
}

func TestExtraHandlers(t *testing.T) {
	t.Parallel()

	t.Run("metrics served", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "agentq_dashboard_test_total", Help: "Test counter."})
		reg.MustRegister(c)
		c.Inc()
		_, ts, _ := setup(t, setupOpts{extra: map[string]http.Handler{
			"/metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		}})
		resp, body := do(t, http.MethodGet, ts.URL+"/metrics")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200", resp.StatusCode)
		}
		if !strings.Contains(body, "agentq_dashboard_test_total 1") {
			t.Errorf("body lacks the test counter:\n%s", body)
		}
		// asynqmon's own /api/metrics route is not shadowed.
		if resp, _ := do(t, http.MethodGet, ts.URL+"/"); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /: status = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("bad extras refused", func(t *testing.T) {
		t.Parallel()
		rs := redistest.Start(t)
		opt := asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}
		ok := http.NotFoundHandler()
		for name, extra := range map[string]map[string]http.Handler{
			"root":    {"/": ok},
			"healthz": {"/healthz": ok},
			"nil":     {"/metrics": nil},
			"invalid": {"no-slash": ok},
		} {
			s, err := New(Config{}, opt, rs.Client(t), zerolog.Nop(), extra)
			if err == nil {
				_ = s.Close()
				t.Errorf("%s: New succeeded, want error", name)
			}
		}
	})
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	opt := asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}
	rdb := rs.Client(t)

	if _, err := New(Config{Addr: "0.0.0.0:8080"}, opt, rdb, zerolog.Nop(), nil); err == nil ||
		!strings.Contains(err.Error(), "dashboard.addr") {
		t.Errorf("New with unsafe addr: err = %v, want dashboard.addr error", err)
	}
	if _, err := New(Config{}, nil, rdb, zerolog.Nop(), nil); err == nil {
		t.Error("New with nil RedisConnOpt: want error")
	}
	if _, err := New(Config{}, opt, nil, zerolog.Nop(), nil); err == nil {
		t.Error("New with nil redis client: want error")
	}
}

func TestRequestLog(t *testing.T) {
	t.Parallel()
	_, ts, b := setup(t, setupOpts{cfg: Config{BearerToken: "tok"}})
	do(t, http.MethodGet, ts.URL+"/api/queues?secret=1")

	var entry struct {
		Level      string   `json:"level"`
		Method     string   `json:"method"`
		Path       string   `json:"path"`
		Status     int      `json:"status"`
		DurationMS *float64 `json:"duration_ms"`
	}
	line, _, _ := strings.Cut(b.logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("decode log line %q: %v", line, err)
	}
	if entry.Level != "debug" || entry.Method != "GET" || entry.Path != "/api/queues" ||
		entry.Status != http.StatusUnauthorized || entry.DurationMS == nil {
		t.Errorf("log entry = %s, want debug GET /api/queues 401 with duration_ms", line)
	}
	if strings.Contains(line, "secret") {
		t.Errorf("log entry has the query string: %s", line)
	}
}

func TestListenServe(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s, err := New(Config{Addr: "127.0.0.1:0"}, asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}, rs.Client(t), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	addr, err := s.Listen()
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := s.Listen(); err == nil {
		t.Error("second Listen: want error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	url := "http://" + addr.String()
	if resp, body := do(t, http.MethodGet, url+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: status = %d, body %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodGet, url+"/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Asynq - Monitoring") {
		t.Fatalf("GET /: status = %d, want the asynqmon page", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("still accepting connections after Serve returned")
	}
}

func TestServeWithoutListen(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s, err := New(Config{}, asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}, rs.Client(t), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve without Listen: want error")
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	opt := asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}

	t.Run("stops when ctx is done", func(t *testing.T) {
		t.Parallel()
		s, err := New(Config{Addr: "127.0.0.1:0"}, opt, rs.Client(t), zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run with canceled ctx = %v, want nil", err)
		}
	})

	t.Run("address in use", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		s, err := New(Config{Addr: l.Addr().String()}, opt, rs.Client(t), zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })

		done := make(chan error, 1)
		go func() { done <- s.Run(context.Background()) }()
		select {
		case err := <-done:
			var opErr *net.OpError
			if !errors.As(err, &opErr) {
				t.Errorf("Run = %v, want a listen *net.OpError", err)
			}
			// Named once, and "listen" once: net's error says it.
			want := "dashboard: listen tcp " + l.Addr().String() + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, want) || strings.Count(msg, "dashboard") != 1 || strings.Count(msg, "listen") != 1 {
				t.Errorf("Run = %q, want it to start %q and name the dashboard and listen once", msg, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return the listen error")
		}
	})
}

func TestClose(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	s, err := New(Config{Addr: "127.0.0.1:0"}, asynq.RedisClientOpt{Addr: rs.Addr, DB: rs.DB}, rs.Client(t), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("listener still open after Close")
	}
	if _, err := s.Listen(); err == nil {
		t.Error("Listen after Close: want error")
	}
}

func TestAPIRedactsPayloads(t *testing.T) {
	t.Parallel()
	const payload = `{"method":"POST","url":"https://tool.example/bot1:SECRET-path/run?token=SECRET-q&mode=fast",` +
		`"headers":{"Authorization":"Bearer SECRET-auth","X-Api-Key":"SECRET-key","X-Session":"SECRET-session",` +
		`"X-Trace":"trace-1"},"body":{"password":"SECRET-body","otp":"SECRET-otp","n":1}}`
	tests := []struct {
		name       string
		cfg        Config
		wantSecret []string // secrets still shown: names this config does not know
	}{
		{name: "built-in names", wantSecret: []string{"SECRET-otp", "SECRET-session"}},
		{name: "configured names", cfg: Config{RedactHeaders: []string{"x-session"}, RedactFields: []string{"OTP"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, ts, b := setup(t, setupOpts{cfg: tt.cfg})
			c := asynq.NewClient(b.opt)
			defer c.Close()
			info, err := c.Enqueue(asynq.NewTask("http.call", []byte(payload)), asynq.Queue("dash_redact"))
			if err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			for _, path := range []string{"/api/queues/dash_redact/pending_tasks", "/api/queues/dash_redact/tasks/" + info.ID} {
				resp, body := do(t, http.MethodGet, ts.URL+path)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: status = %d, body %s", path, resp.StatusCode, body)
				}
				for _, want := range []string{"****", "trace-1", "mode=fast"} {
					if !strings.Contains(body, want) {
						t.Errorf("GET %s: body lacks %q: %s", path, want, body)
					}
				}
				leaked := regexp.MustCompile(`SECRET-[a-z]+`).FindAllString(body, -1)
				slices.Sort(leaked)
				if !slices.Equal(leaked, tt.wantSecret) {
					t.Errorf("GET %s: secrets shown %v, want %v: %s", path, leaked, tt.wantSecret, body)
				}
			}
		})
	}
}

func TestRedactingFormatter(t *testing.T) {
	t.Parallel()
	f := redactingFormatter{redact.New(nil, nil)}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "json", in: `{"headers":{"Cookie":"sid=s1","Accept":"*/*"}}`, want: `{"headers":{"Accept":"*/*","Cookie":"****"}}`},
		{name: "text", in: "token=abc\nAuthorization: Basic dXNlcjpwYXNz", want: "token=****\nAuthorization: Basic ****"},
		{name: "non-printable", in: "\x00\x01token=abc", want: "non-printable bytes"},
		{name: "not UTF-8", in: "\xff\xfe", want: "non-printable bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := f.format("http.call", []byte(tt.in)); got != tt.want {
				t.Errorf("format = %q, want %q", got, tt.want)
			}
		})
	}
}
