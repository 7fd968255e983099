package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/redact"
)

const (
	// HealthPath is the unauthenticated health endpoint.
	HealthPath = "/healthz"

	healthTimeout   = 2 * time.Second
	shutdownTimeout = 5 * time.Second
)

// Server is the dashboard HTTP server. Build it with New; serve it with Run,
// or with Listen followed by Serve; release it with Close.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	mon     *asynqmon.HTTPHandler
	handler http.Handler

	mu       sync.Mutex
	ln       net.Listener // bound by Listen, consumed by Serve
	closeErr error
	closed   bool
}

// New validates cfg and builds the handler tree: asynqmon (UI and /api/) at
// "/", GET /healthz answered by pinging rdb, and every handler in extra
// mounted at its key, a net/http ServeMux pattern such as "/metrics". When
// cfg configures authentication it guards everything but /healthz. Every
// request is logged at debug level. opt is the Redis asynqmon connects to;
// Close releases the connections it opens. rdb stays owned by the caller.
func New(cfg Config, opt asynq.RedisConnOpt, rdb redis.UniversalClient, log zerolog.Logger, extra map[string]http.Handler) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt == nil {
		return nil, errors.New("dashboard: nil asynq.RedisConnOpt")
	}
	if rdb == nil {
		return nil, errors.New("dashboard: nil redis client")
	}
	for _, pattern := range slices.Sorted(maps.Keys(extra)) {
		if extra[pattern] == nil {
			return nil, fmt.Errorf("dashboard: extra handler %q is nil", pattern)
		}
	}

	redacted := redactingFormatter{redact.New(cfg.RedactHeaders, cfg.RedactFields)}
	mon, err := newAsynqmon(asynqmon.Options{
		// asynqmon renders RootPath into its index.html as the prefix of its
		// assets and of the UI's API calls ("" -> "/static/...", "/api/...")
		// and uses it as the prefix of its router, so "" mounts it at "/".
		RootPath:         "",
		RedisConnOpt:     opt,
		ReadOnly:         cfg.ReadOnly,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(redacted.format),
		// agentq's handlers write no results today; a result written later
		// could echo a tool's answer, so it is masked the same way.
		ResultFormatter: asynqmon.ResultFormatterFunc(redacted.format),
	})
	if err != nil {
		return nil, err
	}

	s := &Server{cfg: cfg, log: log, mon: mon}
	mux := http.NewServeMux()
	mux.Handle(HealthPath, healthHandler(rdb, log))
	mux.Handle("/", requireAuth(cfg, mon))
	for _, pattern := range slices.Sorted(maps.Keys(extra)) {
		if err := handle(mux, pattern, requireAuth(cfg, extra[pattern])); err != nil {
			_ = mon.Close()
			return nil, err
		}
	}
	s.handler = logRequests(log, mux)
	return s, nil
}

// redactingFormatter shows task payloads and results with their secrets
// masked: http.call's request headers, token fields, credentials in URLs.
type redactingFormatter struct{ r *redact.Redactor }

// format returns data as the UI shows it: a JSON document masked by
// Redactor.JSON, printable text masked by Redactor.Text, and, like
// asynqmon's default formatter, "non-printable bytes" for anything else.
func (f redactingFormatter) format(_ string, data []byte) string {
	if out, ok := f.r.JSON(data); ok {
		return string(out)
	}
	if !printable(data) {
		return "non-printable bytes"
	}
	return f.r.Text(string(data))
}

// printable reports whether data is UTF-8 made of printable runes and
// white space.
func printable(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, r := range string(data) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// newAsynqmon turns asynqmon.New's panics on bad options into an error.
func newAsynqmon(opts asynqmon.Options) (h *asynqmon.HTTPHandler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dashboard: asynqmon: %v", r)
		}
	}()
	return asynqmon.New(opts), nil
}

// handle registers h at pattern, turning ServeMux's panic on a malformed or
// conflicting pattern (such as "/" or "/healthz") into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dashboard: extra handler %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Handler returns the server's root handler, for tests and for embedding in
// another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on the configured address and serves until ctx is done, then
// shuts down gracefully, waiting up to 5s for requests in flight. A listen
// error, such as the address being in use, is returned at once. It returns
// nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen binds the configured address and returns the bound address, which
// tells the port chosen for an address with port 0. Serve then serves on
// it.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("dashboard: listen: server is closed")
	}
	if s.ln != nil {
		return nil, errors.New("dashboard: listen: already listening")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		// err says "listen tcp ADDR: ..." already.
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Serve serves on the listener bound by Listen until ctx is done, then shuts
// down gracefully, waiting up to 5s for requests in flight before closing
// their connections. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	s.mu.Unlock()
	if ln == nil {
		return errors.New("dashboard: serve: not listening; call Listen first")
	}

	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(errorLogWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.log.Info().
		Str("addr", ln.Addr().String()).
		Bool("read_only", s.cfg.ReadOnly).
		Bool("auth", s.cfg.basicAuth() || s.cfg.bearerAuth()).
		Msg("dashboard listening")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("dashboard: serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("dashboard: shutdown: %w", err)
	}
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("dashboard: serve: %w", serveErr)
	}
	return err
}

// Close releases the Redis connections asynqmon opened and a listener bound
// by Listen but never served. It does not stop a running Serve; cancel its
// context for that. Calling Close more than once returns the first result.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	var errs []error
	if s.ln != nil {
		errs = append(errs, s.ln.Close())
		s.ln = nil
	}
	if err := s.mon.Close(); err != nil {
		errs = append(errs, fmt.Errorf("dashboard: close asynqmon: %w", err))
	}
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}

// healthHandler answers GET and HEAD with 200 {"status":"ok"} when rdb
// answers PING within 2s, else 503 {"status":"unavailable","error":"..."}.
func healthHandler(rdb redis.UniversalClient, log zerolog.Logger) http.Handler {
	type body struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()

		status, b := http.StatusOK, body{Status: "ok"}
		if err := rdb.Ping(ctx).Err(); err != nil {
			log.Warn().Err(err).Msg("dashboard health check: redis ping failed")
			status, b = http.StatusServiceUnavailable, body{Status: "unavailable", Error: "redis: " + err.Error()}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(b)
	})
}

// errorLogWriter sends net/http's internal error log (accept errors, bad
// TLS handshakes, handler panics) to zerolog at warn level.
type errorLogWriter struct{ log zerolog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
