package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// counter counts the commands and pipelines a client sends.
type counter struct {
	gets, pipelines, cmds atomic.Int64
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.cmds.Add(1)
		if cmd.Name() == "get" {
			c.gets.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.pipelines.Add(1); return next(ctx, cmds) }
}

type bundle struct {
	rdb   *redis.Client
	count *counter
	l     *Ledger
	logs  *bytes.Buffer
	mu    sync.Mutex
	calls map[string]int // task id -> handler calls
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	b := &bundle{rdb: srv.Client(t), count: &counter{}, logs: &bytes.Buffer{}, calls: map[string]int{}}
	b.rdb.AddHook(b.count)
	log := zerolog.New(&syncWriter{w: b.logs})
	cfg.Logger = &log
	var err error
	if b.l, err = New(b.rdb, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.l.Close)
	return b
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (b *bundle) handler() jobs.Handler {
	return b.l.Middleware()(jobs.HandlerFunc(func(_ context.Context, s *jobs.Step) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.calls[s.TaskID]++
		return nil
	}))
}

// run is one attempt as the worker runs it: the middleware and the
// handler, then the observer with the attempt's Result (a success, or a
// retry of the error).
func (b *bundle) run(ctx context.Context, s *jobs.Step) error {
	err := b.handler().ProcessStep(ctx, s)
	r := &jobs.Result{Outcome: jobs.OutcomeSuccess}
	if err != nil {
		r = &jobs.Result{Outcome: jobs.OutcomeRetry, Class: jobs.ClassRetryable, Err: err, Message: err.Error()}
	}
	b.l.Observer().Observe(ctx, s, r)
	return err
}

func (b *bundle) callsOf(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[id]
}

func TestRepeatedDeliveryDoesNotCallTheHandler(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	step := func(id string, attempt int, key, payload, replayOf string) *jobs.Step {
		return &jobs.Step{TaskID: id, Kind: "http.call", Key: key, Payload: []byte(payload), Attempt: attempt, MaxAttempts: 3, ReplayOf: replayOf}
	}
	tests := []struct {
		name       string
		step       *jobs.Step
		wantCalled bool
	}{
		{"first delivery runs", step("t1", 1, "K", `{"a":1}`, ""), true},
		{"redelivery after a crash is answered from the ledger", step("t1", 2, "K", `{"a":1}`, ""), false},
		{"a replay of the same work is answered from the ledger", step("t1-r1", 1, "K", `{"a":1}`, "7"), false},
		{"an edited payload runs", step("t1-r2", 1, "K", `{"a":2}`, "7"), true},
		{"the original's redelivery is still answered after an edited success", step("t1", 3, "K", `{"a":1}`, ""), false},
		{"another key runs", step("t2", 2, "K2", `{"a":1}`, ""), true},
		{"no key always runs", step("t3", 2, "", `{"a":1}`, ""), true},
	}
	for _, tt := range tests {
		before := b.callsOf(tt.step.TaskID)
		if err := b.run(ctx, tt.step); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if called := b.callsOf(tt.step.TaskID) > before; called != tt.wantCalled {
			t.Errorf("%s: handler called = %v, want %v", tt.name, called, tt.wantCalled)
		}
		if tt.step.Answered == tt.wantCalled {
			t.Errorf("%s: Answered = %v with the handler called = %v", tt.name, tt.step.Answered, tt.wantCalled)
		}
	}
	e, ok, err := b.l.Lookup(ctx, "K", Digest("http.call", []byte(`{"a":2}`)))
	if err != nil || !ok || e.Digest != Digest("http.call", []byte(`{"a":2}`)) || e.TaskID != "t1-r2" {
		t.Fatalf("Lookup = %+v %v %v", e, ok, err)
	}
	if ttl := b.rdb.TTL(ctx, entryKey("K")).Val(); ttl < RetentionDefault-time.Minute || ttl > RetentionDefault {
		t.Fatalf("entry TTL = %v, want the retention", ttl)
	}
	if !strings.Contains(b.logs.String(), "handler not called") || strings.Contains(b.logs.String(), `"K"`) {
		t.Fatalf("logs = %s", b.logs.String())
	}
}

func TestFirstDeliveryDoesNotReadTheLedger(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for i := range 10 {
		if err := b.run(context.Background(), &jobs.Step{TaskID: fmt.Sprint(i), Key: fmt.Sprint("k", i), Attempt: 1, MaxAttempts: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.count.gets.Load(); n != 0 {
		t.Fatalf("%d ledger reads on first deliveries, want 0", n)
	}
	// Other outcomes record nothing.
	before := b.count.pipelines.Load()
	for _, o := range []jobs.Outcome{jobs.OutcomeRetry, jobs.OutcomeDead, jobs.OutcomeSnooze, jobs.OutcomeAbandoned} {
		b.l.Observer().Observe(context.Background(), &jobs.Step{TaskID: "f", Key: "kf", Attempt: 1},
			&jobs.Result{Outcome: o, Err: errors.New("x")})
	}
	if b.count.pipelines.Load() != before {
		t.Fatal("a failure wrote to the ledger")
	}
}

func TestGroupCommitSharesRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	const n = 512
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- b.l.Record(context.Background(), Entry{Key: fmt.Sprint("key-", i), Digest: "d", At: time.Now(), TaskID: fmt.Sprint(i)})
		}()
	}
	before := b.count.pipelines.Load()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	trips := b.count.pipelines.Load() - before
	t.Logf("%d concurrent writes in %d round trips (%.1f per trip)", n, trips, float64(n)/float64(trips))
	if trips > n/8 {
		t.Fatalf("%d round trips for %d writes; group commit should share them", trips, n)
	}
	// Every caller returned after its own write landed.
	for i := range n {
		if _, ok, err := b.l.Lookup(context.Background(), fmt.Sprint("key-", i), "d"); err != nil || !ok {
			t.Fatalf("entry %d missing after Record returned: %v", i, err)
		}
	}
}

func TestRecordAfterCloseFails(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	if err := b.l.Record(context.Background(), Entry{Key: "a", Digest: "d", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b.l.Close()
	if err := b.l.Record(context.Background(), Entry{Key: "b", Digest: "d", At: time.Now()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close = %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{Retention: time.Millisecond}, {CommitBatch: -1}, {CommitWindow: time.Minute}} {
		if _, err := New(nil, cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

// TestObserverCommitsWithTheQueueOrItself: the success entry goes to the
// queue's completion when the queue takes it (no write of the ledger's
// own), and is written before Observe returns when it does not.
func TestObserverCommitsWithTheQueueOrItself(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Retention: time.Hour})
	ctx := context.Background()
	s := &jobs.Step{TaskID: "t1", Kind: "http.call", Key: "K", Payload: []byte(`{"a":1}`), Attempt: 1, MaxAttempts: 3}
	digest := Digest(s.Kind, s.Payload)
	for _, tt := range []struct {
		name  string
		taken bool
	}{
		{"the queue commits it with its completion", true},
		{"the queue cannot: written before Observe returns", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []jobs.CompletionWrite
			r := &jobs.Result{Outcome: jobs.OutcomeSuccess}
			r.SetAtCompletion(func(w jobs.CompletionWrite) bool { got = append(got, w); return tt.taken })
			before := b.count.pipelines.Load()
			b.l.Observer().Observe(ctx, s, r)
			if len(got) != 1 {
				t.Fatalf("AtCompletion called %d times, want 1", len(got))
			}
			w := got[0]
			e, err := decode("K", w.Value)
			if w.Key != entryKey("K") || w.Field != digest || w.TTL != time.Hour || err != nil || e.TaskID != "t1" || e.Digest != digest {
				t.Fatalf("completion write %+v (%+v, %v), want the entry Record writes", w, e, err)
			}
			wrote := b.count.pipelines.Load() > before
			if wrote == tt.taken {
				t.Fatalf("ledger wrote itself = %v with the queue taking the write = %v", wrote, tt.taken)
			}
			if !tt.taken {
				if _, ok, err := b.l.Lookup(ctx, "K", digest); err != nil || !ok {
					t.Fatalf("entry missing after Observe returned: %v", err)
				}
			}
		})
	}
	// A step the middleware answered from the ledger is not recorded again.
	answered := *s
	answered.Answered = true
	r := &jobs.Result{Outcome: jobs.OutcomeSuccess}
	r.SetAtCompletion(func(jobs.CompletionWrite) bool { t.Fatal("an answered step was recorded again"); return false })
	before := b.count.pipelines.Load()
	b.l.Observer().Observe(ctx, &answered, r)
	if b.count.pipelines.Load() != before {
		t.Fatal("an answered step was written again")
	}
}
