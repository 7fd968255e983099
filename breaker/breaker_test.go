package breaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	rdb   *redis.Client
	clock *clock
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	srv := redistest.Start(t)
	return &testBundle{rdb: srv.Client(t), clock: &clock{t: t0}}
}

func (tb *testBundle) set(t *testing.T, s Settings) *Set {
	t.Helper()
	set, err := New(tb.rdb, Config{Default: s, Now: tb.clock.Now, RandN: func(int64) int64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

var errDown = &jobs.HTTPError{Status: 503}

// call runs one call through set and reports whether fn ran.
func call(set *Set, name string, err error) (ran bool, got error) {
	got = set.Do(context.Background(), name, func(context.Context) error {
		ran = true
		return err
	})
	return ran, got
}

func wantSnooze(t *testing.T, err error, state State, delay time.Duration) {
	t.Helper()
	var oe *OpenError
	if !errors.As(err, &oe) || oe.State != state || oe.Delay != delay {
		t.Fatalf("error = %v, want an OpenError %s for %v", err, state, delay)
	}
	var sz *jobs.SnoozeError
	if !errors.As(err, &sz) || sz.Delay != delay || jobs.Classify(err) != jobs.ClassSnooze {
		t.Fatalf("OpenError does not unwrap to a %v snooze: %v", delay, err)
	}
}

func TestOpensAfterConsecutiveFailuresSharedAcrossSets(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := Settings{Failures: 3, MinCalls: 100, Cooldown: time.Minute}
	a, b := tb.set(t, s), tb.set(t, s)

	// Two failures, a success (resets the run), three failures: open.
	for i, err := range []error{errDown, errDown, nil, errDown, errDown} {
		if ran, got := call(a, "api", err); !ran || got != err {
			t.Fatalf("call %d: ran %v err %v", i, ran, got)
		}
	}
	if sts, _ := a.List(context.Background()); len(sts) != 1 || sts[0].State != Closed || sts[0].ConsecutiveFailures != 2 {
		t.Fatalf("after 2 consecutive failures: %+v", sts)
	}
	// The third failure comes from the other process.
	if ran, _ := call(b, "api", errDown); !ran {
		t.Fatal("closed breaker did not call")
	}
	// Both processes now snooze without calling, until the next probe.
	for _, set := range []*Set{b, a} {
		tb.clock.Advance(LocalTTLDefault) // a's view is stale after this
		ran, err := call(set, "api", nil)
		if ran {
			t.Fatal("open breaker let a call through")
		}
		wantSnooze(t, err, Open, time.Minute-(tb.clock.Now().Sub(t0)))
	}
	// Other names are not affected.
	if ran, _ := call(a, "other", nil); !ran {
		t.Fatal("an open breaker blocked another dependency")
	}
	sts, err := b.List(context.Background())
	if err != nil || len(sts) != 1 {
		t.Fatalf("List = %+v, %v", sts, err)
	}
	st := sts[0]
	if st.Name != "api" || st.State != Open || st.ConsecutiveFailures != 3 || !st.OpenedAt.Equal(t0) || !st.NextProbe.Equal(t0.Add(time.Minute)) {
		t.Errorf("status = %+v", st)
	}
}

func TestOneProbeClosesOrReopens(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := Settings{Failures: 1, Cooldown: 30 * time.Second}
	a, b := tb.set(t, s), tb.set(t, s)
	call(a, "api", errDown) // opens
	tb.clock.Advance(30 * time.Second)

	// A probe in a, held open by a channel; b's call meanwhile is snoozed.
	release := make(chan error)
	probing := make(chan struct{})
	done := make(chan error)
	var probes atomic.Int32
	go func() {
		done <- a.Do(context.Background(), "api", func(context.Context) error {
			probes.Add(1)
			close(probing)
			return <-release
		})
	}()
	<-probing
	ran, err := call(b, "api", nil)
	if ran {
		t.Fatal("a second call went through while a probe runs")
	}
	wantSnooze(t, err, HalfOpen, ProbeWaitDefault)
	ran, err = call(a, "api", nil) // same process: snoozed without Redis
	if ran {
		t.Fatal("a second call in the probing process went through")
	}
	wantSnooze(t, err, HalfOpen, ProbeWaitDefault)
	if sts, _ := a.List(context.Background()); sts[0].State != HalfOpen {
		t.Fatalf("state while probing = %s, want half_open", sts[0].State)
	}

	// The probe fails: open again for another cool-down.
	release <- errDown
	if err := <-done; err != errDown {
		t.Fatalf("probe returned %v", err)
	}
	if sts, _ := a.List(context.Background()); sts[0].State != Open || !sts[0].NextProbe.Equal(tb.clock.Now().Add(30*time.Second)) {
		t.Fatalf("after a failed probe: %+v", sts[0])
	}
	tb.clock.Advance(LocalTTLDefault)
	if ran, _ := call(b, "api", nil); ran {
		t.Fatal("call went through after a failed probe")
	}

	// After the next cool-down the probe succeeds: closed, for everyone.
	tb.clock.Advance(30 * time.Second)
	if ran, err := call(b, "api", nil); !ran || err != nil {
		t.Fatalf("probe: ran %v err %v", ran, err)
	}
	tb.clock.Advance(LocalTTLDefault)
	for _, set := range []*Set{a, b} {
		if ran, err := call(set, "api", nil); !ran || err != nil {
			t.Fatalf("after a good probe: ran %v err %v", ran, err)
		}
	}
	if probes.Load() != 1 {
		t.Errorf("probes in a = %d, want 1", probes.Load())
	}
	if sts, _ := a.List(context.Background()); sts[0].State != Closed || sts[0].ConsecutiveFailures != 0 || sts[0].Calls != 0 {
		t.Fatalf("after a good probe: %+v", sts[0])
	}
}

func TestOpensOnFailureRate(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	set := tb.set(t, Settings{Failures: 100, FailureRate: 0.5, MinCalls: 4, RateWindow: 10 * time.Second})
	ctx := context.Background()
	for i, err := range []error{nil, errDown, nil, errDown} {
		if i%2 == 1 {
			if err := set.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		call(set, "api", err)
	}
	sts, _ := set.List(ctx)
	if st := sts[0]; st.State != Open || st.Calls != 4 || st.Failures != 2 || st.FailureRate != 0.5 {
		t.Fatalf("after 2 of 4 calls failed: %+v", st)
	}

	// Calls older than the window do not count.
	tb2 := setup(t)
	set2 := tb2.set(t, Settings{Failures: 100, FailureRate: 0.5, MinCalls: 4, RateWindow: 10 * time.Second})
	call(set2, "api", errDown)
	call(set2, "api", errDown)
	tb2.clock.Advance(11 * time.Second)
	call(set2, "api", nil)
	call(set2, "api", nil)
	if err := set2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	call(set2, "api", errDown)
	sts, _ = set2.List(ctx)
	if st := sts[0]; st.State != Closed || st.Calls != 3 || st.Failures != 1 {
		t.Fatalf("old failures counted: %+v", st)
	}
}

func TestIsFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("connection refused"), true},
		{&jobs.HTTPError{Status: 503}, true},
		{&jobs.HTTPError{Status: 429}, true},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{jobs.Permanent(&jobs.HTTPError{Status: 404}), false},
		{&jobs.PanicError{Value: "x"}, false},
		{jobs.Snooze(time.Second), false},
		{fmt.Errorf("call: %w", context.Canceled), false},
	}
	for _, tt := range tests {
		if got := IsFailure(tt.err); got != tt.want {
			t.Errorf("IsFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestHost(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`{"url":"https://API.example.com/v1?x=1"}`:   "api.example.com",
		`{"url":"http://127.0.0.1:8080/a"}`:          "127.0.0.1:8080",
		`{"url":"https://u:p@api.example.com:443/"}`: "api.example.com:443",
		`{"url":""}`: "",
		`not json`:   "",
	}
	for in, want := range tests {
		if got := Host([]byte(in)); got != want {
			t.Errorf("Host(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestDoWithoutSetCallsThrough(t *testing.T) {
	t.Parallel()
	ran := false
	if err := Do(context.Background(), "x", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Do without a Set: ran %v err %v", ran, err)
	}
}

// TestSnoozeSpendsNoAttempt runs a real asynq worker: once the breaker of a
// tool's host opens, its http.call steps are snoozed in asynq with Retried
// still 0, and after the cool-down one probe closes the breaker.
func TestSnoozeSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var failing atomic.Bool
	var hits atomic.Int32
	failing.Store(true)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(tool.Close)
	set := tb.set(t, Settings{Failures: 2, Cooldown: time.Hour})
	reg := queue.NewRegistry()
	if err := handlers.Register(reg, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	w, err := queue.NewWorker(tb.rdb, reg, queue.WorkerConfig{
		Queues:               map[string]int{"bq": 1},
		DelayedCheckInterval: 50 * time.Millisecond,
		Retry:                jobs.RetryPolicy{MaxAttempts: 5, Base: time.Hour, Max: time.Hour},
		Middleware:           []jobs.Middleware{set.Middleware()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	c, err := queue.NewClient(tb.rdb, reg, queue.ClientConfig{Queue: "bq", Retry: jobs.RetryPolicy{MaxAttempts: 5}})
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(tb.rdb)
	ctx := context.Background()
	payload := []byte(fmt.Sprintf(`{"url":%q}`, tool.URL+"/x"))
	enqueue := func() string {
		res, err := c.Enqueue(ctx, jobs.KindHTTPCall, payload, queue.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	waitInfo := func(id, what string, cond func(*asynq.TaskInfo) bool) *asynq.TaskInfo {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if info, err := insp.GetTaskInfo("bq", id); err == nil && cond(info) {
				return info
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("task %s never %s", id, what)
		return nil
	}
	// Two failures (retried in an hour) open the breaker.
	for range 2 {
		id := enqueue()
		waitInfo(id, "failed once", func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateRetry && i.Retried == 1 })
	}
	if hits.Load() != 2 {
		t.Fatalf("tool hits = %d, want 2", hits.Load())
	}
	// A new step is snoozed without calling the tool or spending an attempt.
	id := enqueue()
	info := waitInfo(id, "snoozed", func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateRetry })
	if info.Retried != 0 || !strings.Contains(info.LastErr, "breaker") || hits.Load() != 2 {
		t.Fatalf("snoozed task: retried %d, last error %q, tool hits %d", info.Retried, info.LastErr, hits.Load())
	}
	if d := time.Until(info.NextProcessAt); d < 50*time.Minute {
		t.Fatalf("snoozed until %v, want about the 1h cool-down", info.NextProcessAt)
	}
	// Run it again: still open, snoozed again, still no attempt spent.
	if err := insp.RunTask("bq", id); err != nil {
		t.Fatal(err)
	}
	waitInfo(id, "snoozed again", func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateRetry })
	if info, _ := insp.GetTaskInfo("bq", id); info.Retried != 0 || hits.Load() != 2 {
		t.Fatalf("second snooze: retried %d, tool hits %d", info.Retried, hits.Load())
	}
	// After the cool-down, with the tool back, the probe goes through and
	// closes the breaker; the step succeeds on its first attempt.
	failing.Store(false)
	tb.clock.Advance(time.Hour)
	if err := insp.RunTask("bq", id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for hits.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	waitClosed := time.Now().Add(10 * time.Second)
	for time.Now().Before(waitClosed) {
		if sts, _ := set.List(ctx); len(sts) == 1 && sts[0].State == Closed {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sts, _ := set.List(ctx); sts[0].State != Closed || hits.Load() != 3 {
		t.Fatalf("after the probe: %+v, tool hits %d (want 3: one probe)", sts, hits.Load())
	}
	// The breaker closes as the attempt ends, a moment before asynq deletes
	// the finished task: wait for that, as for the rest.
	gone := time.Now().Add(10 * time.Second)
	for {
		_, err := insp.GetTaskInfo("bq", id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			break
		}
		if time.Now().After(gone) {
			t.Fatalf("probe task still in asynq after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSnoozesAreJittered(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	set, err := New(tb.rdb, Config{Default: Settings{Failures: 1, FailureRate: 0.5, RateWindow: time.Minute, MinCalls: 10, Cooldown: 30 * time.Second},
		Now: tb.clock.Now, ProbeWait: 2 * time.Second, RandN: func(n int64) int64 { return n - 1 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = set.Do(ctx, "jit.example", func(context.Context) error { return errors.New("boom") })
	err = set.Do(ctx, "jit.example", func(context.Context) error { t.Fatal("call let through an open breaker"); return nil })
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Delay != 30*time.Second+2*time.Second-1 {
		t.Fatalf("snooze = %v, want the cooldown plus the injected jitter (2s-1ns)", err)
	}
}

// TestTimedOutCallsOpenTheBreaker: a call that ran out of time ended its own
// context; its failure is recorded all the same, so a tool that hangs opens
// its breaker like one that answers 503.
func TestTimedOutCallsOpenTheBreaker(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	set := tb.set(t, Settings{Failures: 2, MinCalls: 100, Cooldown: time.Minute})
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		err := set.Do(ctx, "slow", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want the deadline", i, err)
		}
	}
	tb.clock.Advance(LocalTTLDefault)
	ran, err := call(set, "slow", nil)
	if ran {
		t.Fatal("two timed-out calls did not open the breaker")
	}
	wantSnooze(t, err, Open, time.Minute-LocalTTLDefault)
}

// TestCallsWhoseStateReadFailedAreRecorded: a call whose context ended
// before the breaker could read its state is let through and its outcome
// recorded all the same (before, it was let through unrecorded, so a tool
// hanging past short deadlines never opened its breaker).
func TestCallsWhoseStateReadFailedAreRecorded(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	set := tb.set(t, Settings{Failures: 2, MinCalls: 100, Cooldown: time.Minute})
	for i := range 2 {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		err := set.Do(ctx, "expired", func(ctx context.Context) error { return ctx.Err() })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want the deadline", i, err)
		}
	}
	tb.clock.Advance(LocalTTLDefault)
	if ran, _ := call(set, "expired", nil); ran {
		t.Fatal("two failed calls whose state read failed did not open the breaker")
	}
}
