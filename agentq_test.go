package agentq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// PublishArgs is a kind the tests fail on purpose.
type PublishArgs struct {
	Doc string `json:"doc"`
}

func (PublishArgs) Kind() string { return "publish" }

type bundle struct {
	rt     *agentq.Runtime
	alerts chan dlq.Alert
	cfg    config.Config
}

// setup builds a runtime on a Redis of its own whose publish kind fails
// permanently, with an alert webhook that hands dead-letter alerts to
// b.alerts.
func setup(t *testing.T, opts agentq.Options) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	b := &bundle{alerts: make(chan dlq.Alert, 4)}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a dlq.Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil && a.Event == "dead_letter" {
			b.alerts <- a
		}
	}))
	t.Cleanup(hook.Close)
	b.cfg = config.Default()
	b.cfg.Redis.URL = srv.URL
	b.cfg.Alerts.WebhookURL = hook.URL
	b.cfg.Log.Level = "error"
	opts.Register = func(reg *queue.Registry) error {
		return queue.Register(reg, `{"type":"object"}`, func(context.Context, *jobs.Step, PublishArgs) error {
			return jobs.Permanent(errors.New("publish refused"))
		})
	}
	opts.LogTo = io.Discard
	rt, err := agentq.New(b.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	b.rt = rt
	return b
}

// TestWorkerRunsEveryPart runs a failing step through a worker built by the
// runtime alone, as a Go program would: it is dead-lettered (capture), the
// alert names the program (Options.Name), the metrics count it, and the
// user's middleware ran inside the chain.
func TestWorkerRunsEveryPart(t *testing.T) {
	t.Parallel()
	var inner []string
	mw := func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
			err := next.ProcessStep(ctx, s)
			inner = append(inner, s.Kind)
			return err
		})
	}
	b := setup(t, agentq.Options{Name: "publisher", Middleware: []jobs.Middleware{mw}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := b.rt.Client().EnqueueArgs(ctx, PublishArgs{Doc: "a"}, queue.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := b.rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var a dlq.Alert
	select {
	case a = <-b.alerts:
	case <-time.After(20 * time.Second):
		t.Fatal("no dead-letter alert")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.Kind != "publish" || a.Class != jobs.ClassPermanent {
		t.Errorf("alert = %+v", a)
	}
	if want := "publisher --redis-url " + b.cfg.Redis.URL + " dlq replay " + a.ID; a.Replay != want {
		t.Errorf("replay command = %q, want %q", a.Replay, want)
	}
	rec, err := b.rt.DeadLetters().Get(context.Background(), a.ID)
	if err != nil || rec.Status != dlq.StatusDead || rec.Kind != "publish" {
		t.Errorf("dead letter = %+v, %v", rec, err)
	}
	if len(inner) != 1 || inner[0] != "publish" {
		t.Errorf("user middleware saw %v, want one publish step", inner)
	}
	body := scrape(t, b.rt.MetricsHandler())
	for _, want := range []string{
		`agentq_dead_letters_total{kind="publish",workflow=""} 1`,
		`agentq_attempts_total{kind="publish",workflow=""} 1`,
		"agentq_handlers_held 0",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestNoGlobalRegisterer checks that a worker registers nothing with
// Prometheus' global registry.
func TestNoGlobalRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{})
	w, err := b.rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "agentq_") {
			t.Errorf("%s is registered globally", mf.GetName())
		}
	}
}

// TestOptionsRegisterer checks that metrics go to the Registerer given.
func TestOptionsRegisterer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, agentq.Options{Registerer: reg})
	w, err := b.rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"agentq_handlers_held", "agentq_alerts_sent_total"} {
		if !names[want] {
			t.Errorf("%s is not in the given registry (%d metrics there)", want, len(names))
		}
	}
}

func TestNewRefusesABadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{name: "dedupe window", edit: func(c *config.Config) { c.Enqueue.DedupeWindow = 500 * time.Millisecond }, want: "enqueue.dedupe_window"},
		{name: "concurrency", edit: func(c *config.Config) { c.Worker.Concurrency = 0 }, want: "worker.concurrency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			tc.edit(&cfg)
			_, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard})
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Key != tc.want {
				t.Fatalf("New: %v, want a config.FieldError for %s", err, tc.want)
			}
		})
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// TestProgramObserversSeeTheDecidedResult: Options.Observers get the
// Result the queue decided, after the runtime's own observers (the dead
// letter is recorded by the time the program's observer sees it).
func TestProgramObserversSeeTheDecidedResult(t *testing.T) {
	t.Parallel()
	type seen struct {
		outcome jobs.Outcome
		class   jobs.Class
		dead    int
	}
	got := make(chan seen, 1)
	var b *bundle
	obs := jobs.ObserverFunc(func(ctx context.Context, s *jobs.Step, r *jobs.Result) {
		recs, err := b.rt.DeadLetters().List(ctx, dlq.Filter{})
		if err != nil {
			t.Errorf("list dead letters: %v", err)
		}
		got <- seen{r.Outcome, r.Class, len(recs)}
	})
	b = setup(t, agentq.Options{Observers: []jobs.Observer{obs}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := b.rt.Client().EnqueueArgs(ctx, PublishArgs{Doc: "a"}, queue.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := b.rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var s seen
	select {
	case s = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the program's observer saw no Result")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.outcome != jobs.OutcomeDead || s.class != jobs.ClassPermanent || s.dead != 1 {
		t.Errorf("observer saw %+v, want dead, permanent, with the dead letter already recorded", s)
	}
}

// TestWorkerLifecycle: a Runtime builds one Worker; Close from another
// goroutine ends Run, with the queue shut down first.
func TestWorkerLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, agentq.Options{})
	w, err := b.rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if w2, err := b.rt.NewWorker(context.Background()); err == nil || !strings.Contains(err.Error(), "already built its Worker") {
		if w2 != nil {
			w2.Close()
		}
		t.Fatalf("second NewWorker: %v, want the one-Worker error", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	// Run has started the queue once a step runs.
	if _, err := b.rt.Client().Enqueue(context.Background(), "noop", []byte(`{}`), queue.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := queue.ProcessedTotal(context.Background(), b.rt.Redis(), queue.QueueDefault)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never processed the step")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := w.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestWorkerRunWaitsForRedis: a Go program's Worker.Run started before its
// Redis waits for it, as `agentq worker` does, starts taking tasks once it
// answers, and Runtime.Close stops it.
func TestWorkerRunWaitsForRedis(t *testing.T) {
	t.Parallel()
	port := redistest.FreePort(t)
	cfg := config.Default()
	cfg.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	logs := &logbuf.Buffer{}
	rt, err := agentq.New(cfg, agentq.Options{LogTo: logs})
	if err != nil {
		t.Fatal(err)
	}
	w, err := rt.NewWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("waiting for redis")
	if strings.Contains(logs.String(), "worker starting") {
		t.Fatalf("the worker started before Redis answered:\n%s", logs.String())
	}
	redistest.StartOnPort(t, port, t.TempDir())
	waitLog("worker starting")
	if _, err := rt.Client().Enqueue(context.Background(), "noop", []byte(`{}`), queue.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLog(`"outcome":"success"`)

	// Close stops the worker it built and is idempotent.
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Runtime.Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after Runtime.Close")
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("second Close: %v, want the first's result (nil)", err)
	}
}

// TestRunEndsWhileWaitingForRedis: ctx ending or Close while Run waits for
// a Redis that never answers ends Run without an error.
func TestRunEndsWhileWaitingForRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		own  bool // the program brings its Redis client (Options.Redis)
		stop func(cancel context.CancelFunc, rt *agentq.Runtime)
	}{
		{"ctx ends", false, func(cancel context.CancelFunc, _ *agentq.Runtime) { cancel() }},
		{"Runtime.Close", false, func(_ context.CancelFunc, rt *agentq.Runtime) { _ = rt.Close() }},
		{"the program's client, ctx ends", true, func(cancel context.CancelFunc, _ *agentq.Runtime) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", redistest.FreePort(t))
			logs := &logbuf.Buffer{}
			opts := agentq.Options{LogTo: logs}
			if tc.own {
				rdb := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(cfg.Redis.URL, "redis://"), "/0"), MaxRetries: -1})
				t.Cleanup(func() { _ = rdb.Close() })
				opts.Redis = rdb
			}
			rt, err := agentq.New(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close() })
			w, err := rt.NewWorker(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), "waiting for redis") {
				if time.Now().After(deadline) {
					t.Fatalf("Run never waited for Redis:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			tc.stop(cancel, rt)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v, want nil", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
}
