package budget

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// clock is a settable clock.
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

// t0 starts a bucket of every size the tests use.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	rdb    *redis.Client
	clock  *clock
	b      *Budgets
	insp   *asynq.Inspector
	mu     sync.Mutex
	events []Event
}

func (tb *testBundle) kinds() []EventKind {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []EventKind
	for _, e := range tb.events {
		out = append(out, e.Kind)
	}
	return out
}

func setup(t *testing.T, policies map[string]Policy) *testBundle {
	t.Helper()
	srv := redistest.Start(t)
	tb := &testBundle{rdb: srv.Client(t), clock: &clock{t: t0}}
	tb.insp = asynq.NewInspectorFromRedisClient(tb.rdb)
	tb.b = tb.newBudgets(t, policies)
	return tb
}

func (tb *testBundle) newBudgets(t *testing.T, policies map[string]Policy) *Budgets {
	t.Helper()
	b, err := New(tb.rdb, Config{
		Workflows: policies,
		Now:       tb.clock.Now,
		OnChange: func(_ context.Context, e Event) {
			tb.mu.Lock()
			defer tb.mu.Unlock()
			tb.events = append(tb.events, e)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// observe hands n decided attempts of workflow to the observer, each with
// the given outcome.
func (tb *testBundle) observe(t *testing.T, workflow string, n int, outcome jobs.Outcome) {
	t.Helper()
	o := tb.b.Observer()
	for range n {
		o.Observe(context.Background(), &jobs.Step{Kind: "noop", Workflow: workflow}, &jobs.Result{Outcome: outcome})
	}
}

// touchQueue makes a queue known to asynq, so that its Inspector reports it.
func (tb *testBundle) touchQueue(t *testing.T, q string) {
	t.Helper()
	c := asynq.NewClientFromRedisClient(tb.rdb)
	if _, err := c.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(q)); err != nil {
		t.Fatal(err)
	}
}

func (tb *testBundle) paused(t *testing.T, q string) bool {
	t.Helper()
	info, err := tb.insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	return info.Paused
}

func (tb *testBundle) check(t *testing.T) []Status {
	t.Helper()
	sts, err := tb.b.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sts == nil {
		t.Fatal("Check did not act: another checker held the slot")
	}
	return sts
}

func (tb *testBundle) flush(t *testing.T) {
	t.Helper()
	if err := tb.b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCountersFlushAtomicallyAndSnoozesAreNotCounted(t *testing.T) {
	t.Parallel()
	tb := setup(t, map[string]Policy{"w": {SLO: 0.9, Window: 20 * time.Second}})
	ctx := context.Background()
	tb.observe(t, "w", 4, jobs.OutcomeSuccess)   // successes
	tb.observe(t, "w", 2, jobs.OutcomeRetry)     // retries
	tb.observe(t, "w", 1, jobs.OutcomeDead)      // dead
	tb.observe(t, "w", 1, jobs.OutcomeDead)      // dead at once
	tb.observe(t, "w", 5, jobs.OutcomeSnooze)    // snoozes: not attempts
	tb.observe(t, "w", 2, jobs.OutcomeAbandoned) // abandoned: neither
	tb.observe(t, "other", 3, jobs.OutcomeRetry) // no budget
	tb.observe(t, "", 3, jobs.OutcomeRetry)
	tb.clock.Advance(1500 * time.Millisecond) // the next bucket
	tb.observe(t, "w", 1, jobs.OutcomeRetry)

	// Counting touched no Redis.
	if n := tb.rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("counting wrote %d keys before the flush, want 0", n)
	}
	tb.flush(t)
	got := tb.rdb.HGetAll(ctx, countsKey("w")).Val()
	b0, b1 := t0.Unix(), t0.Unix()+1
	want := map[string]string{
		eventsField(b0): "8", failuresField(b0): "4",
		eventsField(b1): "1", failuresField(b1): "1",
		totalField: "5",
	}
	if len(got) != len(want) {
		t.Errorf("counters = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counters[%s] = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if ttl := tb.rdb.PTTL(ctx, countsKey("w")).Val(); ttl < 20*time.Second || ttl > 2*time.Minute {
		t.Errorf("counters TTL = %v, want a little over the 20s window", ttl)
	}
	if n := tb.rdb.Exists(ctx, countsKey("other"), countsKey("")).Val(); n != 0 {
		t.Errorf("workflows without a budget were counted")
	}
	// A second flush with nothing counted sends nothing.
	tb.flush(t)
	if got := tb.rdb.HGet(ctx, countsKey("w"), totalField).Val(); got != "5" {
		t.Errorf("total after an empty flush = %s, want 5", got)
	}

	// A flush that fails is sent again, with the same batch id, once.
	tb.observe(t, "w", 2, jobs.OutcomeRetry)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := tb.b.Flush(canceled); err == nil {
		t.Fatal("flush on a canceled context succeeded")
	}
	tb.observe(t, "w", 1, jobs.OutcomeSuccess)
	tb.flush(t)
	if got := tb.rdb.HGet(ctx, countsKey("w"), eventsField(b1)).Val(); got != "4" {
		t.Errorf("events in bucket 1 after a failed and a good flush = %s, want 4", got)
	}
	sts, err := tb.b.Statuses(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	if st := sts[0]; st.Events != 12 || st.Failures != 7 {
		t.Errorf("status events, failures = %d, %d; want 12, 7", st.Events, st.Failures)
	}
}

func TestFlushBatchIsAppliedOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t, map[string]Policy{"w": {SLO: 0.9}})
	ctx := context.Background()
	keys := []string{countsKey("w"), flushKey("w", "batch-1")}
	for range 2 {
		if err := flushScript.Run(ctx, tb.rdb, keys, 60000, 60000, 1, "e:1", 3, "f:1", 1).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := tb.rdb.HGet(ctx, countsKey("w"), "e:1").Val(); got != "3" {
		t.Fatalf("a batch sent twice counted %s events, want 3", got)
	}
}

func TestPauseResumeByHandAndRecovery(t *testing.T) {
	t.Parallel()
	tb := setup(t, map[string]Policy{
		"w":     {SLO: 0.9, Window: 20 * time.Second, MinEvents: 5, OnExhausted: ActionPause, Queue: "qp"},
		"quiet": {SLO: 0.9, Window: 20 * time.Second, MinEvents: 5, OnExhausted: ActionPause, Queue: "qq"},
	})
	tb.touchQueue(t, "qp")
	tb.touchQueue(t, "qq")

	// Four failures: below min_events, nothing happens.
	tb.observe(t, "w", 4, jobs.OutcomeDead)
	tb.flush(t)
	if st := tb.check(t)[1]; st.Exhausted || st.State != StateOK || tb.paused(t, "qp") {
		t.Fatalf("below min_events: %+v, paused %v", st, tb.paused(t, "qp"))
	}
	// The fifth exhausts the budget: the queue is paused in asynq.
	tb.clock.Advance(2 * time.Second)
	tb.observe(t, "w", 1, jobs.OutcomeDead)
	tb.flush(t)
	st := tb.check(t)[1]
	if !st.Exhausted || st.State != StatePaused || !st.PausedByBudget || !tb.paused(t, "qp") {
		t.Fatalf("exhausted: %+v, asynq paused %v", st, tb.paused(t, "qp"))
	}
	if tb.paused(t, "qq") {
		t.Fatal("another workflow's queue was paused")
	}
	if want := t0.Add(20 * time.Second); !st.Until.Equal(want) {
		t.Errorf("until = %v, want %v (when the first bucket leaves)", st.Until, want)
	}
	// A second checker in the same slot does not act.
	other := tb.newBudgets(t, tb.b.cfg.Workflows)
	if sts, err := other.Check(context.Background()); err != nil || sts != nil {
		t.Fatalf("second checker in one slot acted: %v, %v", sts, err)
	}

	// Resumed by hand while still exhausted: not paused again ...
	tb.clock.Advance(2 * time.Second)
	wasPaused, st, err := tb.b.Resume(context.Background(), "w")
	if err != nil || !wasPaused || !st.Held || st.State != StateExhausted {
		t.Fatalf("Resume = %v, %+v, %v", wasPaused, st, err)
	}
	if tb.paused(t, "qp") {
		t.Fatal("queue still paused after Resume")
	}
	tb.observe(t, "w", 3, jobs.OutcomeSuccess) // successes do not end the hold
	tb.flush(t)
	tb.clock.Advance(2 * time.Second)
	if st := tb.check(t)[1]; !st.Exhausted || !st.Held || tb.paused(t, "qp") {
		t.Fatalf("after a manual resume the checker paused again without new failures: %+v", st)
	}
	// ... until a new failure arrives.
	tb.observe(t, "w", 1, jobs.OutcomeDead)
	tb.flush(t)
	tb.clock.Advance(2 * time.Second)
	if st := tb.check(t)[1]; !st.PausedByBudget || !tb.paused(t, "qp") {
		t.Fatalf("new failure after a manual resume did not pause: %+v", st)
	}

	// A resume in asynqmon (not through Resume) is a manual resume too.
	if err := tb.insp.UnpauseQueue("qp"); err != nil {
		t.Fatal(err)
	}
	tb.clock.Advance(2 * time.Second)
	if st := tb.check(t)[1]; !st.Held || tb.paused(t, "qp") {
		t.Fatalf("checker fought a resume in asynqmon: %+v", st)
	}
	tb.observe(t, "w", 1, jobs.OutcomeDead)
	tb.flush(t)
	tb.clock.Advance(2 * time.Second)
	if tb.check(t); !tb.paused(t, "qp") {
		t.Fatal("new failure after an asynqmon resume did not pause")
	}

	// The failing buckets leave the 20s window: the budget recovers and the
	// queue is resumed.
	tb.clock.Advance(21 * time.Second)
	st = tb.check(t)[1]
	if st.Exhausted || st.State != StateOK || tb.paused(t, "qp") {
		t.Fatalf("after the window: %+v, paused %v", st, tb.paused(t, "qp"))
	}
	// A queue paused by a person is left alone.
	if err := tb.insp.PauseQueue("qq"); err != nil {
		t.Fatal(err)
	}
	tb.clock.Advance(2 * time.Second)
	if st := tb.check(t)[0]; st.State != StatePaused || st.PausedByBudget || !tb.paused(t, "qq") {
		t.Fatalf("a queue paused by hand: %+v", st)
	}
	want := []EventKind{EventExhausted, EventPaused, EventPaused, EventPaused, EventRecovered}
	if got := tb.kinds(); len(got) != len(want) || strings.Join(kindsStr(got), ",") != strings.Join(kindsStr(want), ",") {
		t.Errorf("events = %v, want %v", got, want)
	}
	// The stale buckets were pruned by the checker.
	if n := tb.rdb.HLen(context.Background(), countsKey("w")).Val(); n != 1 {
		t.Errorf("counter hash holds %d fields after the window passed, want 1 (the total)", n)
	}
}

func kindsStr(ks []EventKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func TestResetClearsAndResumes(t *testing.T) {
	t.Parallel()
	tb := setup(t, map[string]Policy{"w": {SLO: 0.9, Window: time.Minute, MinEvents: 1, OnExhausted: ActionPause, Queue: "qp"}})
	tb.touchQueue(t, "qp")
	tb.observe(t, "w", 3, jobs.OutcomeDead)
	tb.flush(t)
	tb.check(t)
	if !tb.paused(t, "qp") {
		t.Fatal("not paused")
	}
	before, resumed, err := tb.b.Reset(context.Background(), "w")
	if err != nil || !resumed || before.Failures != 3 || before.State != StatePaused {
		t.Fatalf("Reset = %+v, %v, %v", before, resumed, err)
	}
	if tb.paused(t, "qp") {
		t.Fatal("still paused after Reset")
	}
	sts, err := tb.b.Statuses(context.Background())
	if err != nil || sts[0].Events != 0 || sts[0].State != StateOK {
		t.Fatalf("after reset: %+v, %v", sts, err)
	}
	if _, _, err := tb.b.Reset(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Reset of an unknown workflow: %v", err)
	}
}

func TestRejectRefusesEnqueuesFromTheCache(t *testing.T) {
	t.Parallel()
	tb := setup(t, map[string]Policy{
		"w":     {SLO: 0.9, Window: 20 * time.Second, MinEvents: 5, OnExhausted: ActionReject},
		"alert": {SLO: 0.9, Window: 20 * time.Second, MinEvents: 5},
	})
	ctx := context.Background()
	reg := queue.NewRegistry()
	if err := queue.Register(reg, "", func(context.Context, *jobs.Step, noopArgs) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c, err := queue.NewClient(tb.rdb, reg, queue.ClientConfig{
		Workflows: map[string]queue.Workflow{"w": {Queue: "qr"}, "alert": {}},
		Admit:     tb.b.Admit,
	})
	if err != nil {
		t.Fatal(err)
	}
	tb.clock.Advance(3 * time.Second)
	if _, err := c.Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Workflow: "w"}); err != nil {
		t.Fatalf("enqueue with budget to spare: %v", err)
	}
	tb.observe(t, "w", 6, jobs.OutcomeDead)
	tb.observe(t, "alert", 6, jobs.OutcomeDead)
	tb.flush(t)
	// The cache read before the failures still admits, for CacheTTL.
	if _, err := c.Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Workflow: "w"}); err != nil {
		t.Fatalf("enqueue within the cache TTL: %v", err)
	}
	tb.clock.Advance(time.Second)
	_, err = c.Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Workflow: "w"})
	var ee *ExhaustedError
	if !errors.As(err, &ee) {
		t.Fatalf("enqueue to an exhausted reject budget: %v", err)
	}
	for _, want := range []string{`workflow "w" refuses new tasks`, "6 failures of 6 attempts over the last 20s", "slo 0.9 allows 0.6",
		"until about 2026-03-01T12:00:23Z (in 19s)", "agentq budget reset w"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n, _ := tb.insp.GetQueueInfo("qr"); n == nil || n.Size != 2 {
		t.Errorf("queue qr holds %+v, want the 2 admitted tasks", n)
	}
	// Alert and no-workflow enqueues are admitted.
	for _, wf := range []string{"alert", ""} {
		if _, err := c.Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Workflow: wf}); err != nil {
			t.Errorf("enqueue to %q: %v", wf, err)
		}
	}
	// When the failures leave the window, enqueues are admitted again.
	tb.clock.Advance(20 * time.Second)
	if _, err := c.Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Workflow: "w"}); err != nil {
		t.Errorf("enqueue after the window: %v", err)
	}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{SLO: 1}, "workflows.w.budget: slo must be between 0 and 1"},
		{Policy{SLO: 0.9, OnExhausted: "explode"}, `on_exhausted must be alert, pause or reject, got "explode"`},
		{Policy{SLO: 0.9, OnExhausted: ActionPause}, "pause needs the workflow's queue"},
		{Policy{SLO: 0.9, MinEvents: -1}, "min_events must not be negative"},
	}
	for _, tt := range tests {
		_, err := New(nil, Config{Workflows: map[string]Policy{"w": tt.p}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.p, err, tt.want)
		}
	}
}

// TestAdmitReadsRedisOncePerCacheTTL counts the server's commands: a
// thousand enqueues within CacheTTL cost one read.
func TestAdmitReadsRedisOncePerCacheTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	rdb := redis.NewClient(srv.Options())
	defer rdb.Close()
	clk := &clock{t: t0}
	b, err := New(rdb, Config{Workflows: map[string]Policy{"w": {SLO: 0.9, OnExhausted: ActionReject}}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := func() int64 {
		n, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, line := range strings.Split(n, "\n") {
			if strings.HasPrefix(line, "cmdstat_hgetall:") {
				var c int64
				fmt.Sscanf(strings.TrimPrefix(line, "cmdstat_hgetall:"), "calls=%d", &c)
				total += c
			}
		}
		return total
	}
	for range 1000 {
		if err := b.Admit(ctx, "noop", queue.EnqueueOptions{Workflow: "w"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != 1 {
		t.Fatalf("1000 admits within the cache TTL read Redis %d times, want 1", got)
	}
	clk.Advance(CacheTTLDefault)
	for range 1000 {
		_ = b.Admit(ctx, "noop", queue.EnqueueOptions{Workflow: "w"})
	}
	if got := calls(); got != 2 {
		t.Fatalf("after the TTL: %d reads, want 2", got)
	}
}

// TestExhaustedErrorNamesCommand checks that the reset hint names the
// running program (Config.Command), not always "agentq".
func TestExhaustedErrorNamesCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, command, want string
	}{
		{name: "default", want: "`agentq budget reset w`"},
		{name: "own binary and Redis", command: "myagent --redis-url redis://h:6390/0", want: "`myagent --redis-url redis://h:6390/0 budget reset w`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := &ExhaustedError{Status: Status{Workflow: "w"}, Command: tc.command}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
}
