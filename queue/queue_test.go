package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type echoArgs struct {
	N    int    `json:"n"`
	Mode string `json:"mode,omitempty"`
}

func (echoArgs) Kind() string { return "test.echo" }

func (a echoArgs) Validate() error {
	if a.Mode == "forbidden" {
		return errors.New("mode: forbidden is not allowed")
	}
	return nil
}

const echoSchema = `{"type":"object","properties":{"n":{"type":"integer","minimum":0},"mode":{"type":"string"}},"required":["n"],"additionalProperties":false}`

type bundle struct {
	rdb    *redis.Client
	reg    *Registry
	client *Client
	insp   *asynq.Inspector
	calls  sync.Map // task id -> *atomic.Int32
	logs   *logbuf.Buffer
	// release unblocks "ignore-ctx" handlers.
	release chan struct{}
}

// setup gives a test its own Redis DB, a registry with test.echo whose
// behaviour the payload's mode decides, and a client.
func setup(t *testing.T, cfg ClientConfig) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	b := &bundle{rdb: srv.Client(t), reg: NewRegistry(), logs: &logbuf.Buffer{}, release: make(chan struct{})}
	err := Register(b.reg, echoSchema, func(ctx context.Context, s *jobs.Step, a echoArgs) error {
		v, _ := b.calls.LoadOrStore(s.TaskID, new(atomic.Int32))
		n := v.(*atomic.Int32).Add(1)
		switch a.Mode {
		case "flaky": // fail until attempt n
			if int(n) < a.N {
				return fmt.Errorf("flaky failure %d", n)
			}
		case "permanent":
			return jobs.Permanent(errors.New("bad request"))
		case "always":
			return errors.New("always fails")
		case "panic":
			panic("handler bug")
		case "snooze": // snooze once per attempt number until n calls
			if int(n) < a.N {
				return jobs.Snooze(10 * time.Millisecond)
			}
		case "sleep":
			<-ctx.Done()
			return ctx.Err()
		case "ignore-ctx": // a handler that ignores its context
			<-b.release
			return nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.client, err = NewClient(b.rdb, b.reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	return b
}

func (b *bundle) callCount(id string) int {
	v, ok := b.calls.Load(id)
	if !ok {
		return 0
	}
	return int(v.(*atomic.Int32).Load())
}

func (b *bundle) startWorker(t *testing.T, cfg WorkerConfig) *Worker {
	t.Helper()
	l := zerolog.New(b.logs)
	cfg.Logger = &l
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.DelayedCheckInterval == 0 {
		cfg.DelayedCheckInterval = 50 * time.Millisecond
	}
	cfg.ShutdownTimeout = 2 * time.Second
	w, err := NewWorker(b.rdb, b.reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	return w
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

func queueSize(t *testing.T, b *bundle, q string) int {
	t.Helper()
	info, err := b.insp.GetQueueInfo(q)
	if err != nil {
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return 0
		}
		t.Fatal(err)
	}
	return info.Size
}

func TestEnqueueRefusesBadInputBeforeRedis(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{MaxPayloadBytes: 64, Workflows: map[string]Workflow{"wf": {}}})
	ctx := context.Background()
	tests := []struct {
		name    string
		kind    string
		payload string
		opts    EnqueueOptions
		want    string
	}{
		{"unknown kind", "nope", `{}`, EnqueueOptions{}, `unknown task kind "nope"`},
		{"empty kind", "", `{}`, EnqueueOptions{}, "task kind is empty"},
		{"invalid json", "test.echo", `{"n":`, EnqueueOptions{}, "not valid JSON"},
		{"empty payload", "test.echo", ``, EnqueueOptions{}, "payload is empty"},
		{"schema type", "test.echo", `{"n":"x"}`, EnqueueOptions{}, "at /n"},
		{"schema required", "test.echo", `{}`, EnqueueOptions{}, "schema violation"},
		{"schema extra field", "test.echo", `{"n":1,"x":2}`, EnqueueOptions{}, "schema violation"},
		{"validator", "test.echo", `{"n":1,"mode":"forbidden"}`, EnqueueOptions{}, "mode: forbidden"},
		{"too big", "test.echo", `{"n":1,"mode":"` + strings.Repeat("x", 100) + `"}`, EnqueueOptions{}, "over the limit of 64"},
		{"unknown workflow", "test.echo", `{"n":1}`, EnqueueOptions{Workflow: "nope"}, `unknown workflow "nope" (configured: wf)`},
		{"bad queue", "test.echo", `{"n":1}`, EnqueueOptions{Queue: "a b"}, "may not contain spaces"},
		{"negative attempts", "test.echo", `{"n":1}`, EnqueueOptions{MaxAttempts: -1}, "must not be negative"},
		{"negative timeout", "test.echo", `{"n":1}`, EnqueueOptions{Timeout: -time.Second}, "timeout must not be negative"},
		{"blank key", "test.echo", `{"n":1}`, EnqueueOptions{Key: "  "}, "idempotency key is blank"},
		{"key with an escape", "test.echo", `{"n":1}`, EnqueueOptions{Key: "k\x1b[2J"}, "idempotency key contains the control character U+001B at byte offset 1"},
		{"key with a newline", "test.echo", `{"n":1}`, EnqueueOptions{Key: "k\n"}, "idempotency key contains the control character U+000A at byte offset 1"},
		{"key not UTF-8", "test.echo", `{"n":1}`, EnqueueOptions{Key: "k\xff"}, "idempotency key: invalid UTF-8 at byte offset 1"},
		{"run id not UTF-8", "test.echo", `{"n":1}`, EnqueueOptions{RunID: "r\xff"}, "run id: invalid UTF-8 at byte offset 1"},
		{"run id with BEL", "test.echo", `{"n":1}`, EnqueueOptions{RunID: "r\a"}, "run id contains the control character U+0007"},
		{"queue not UTF-8", "test.echo", `{"n":1}`, EnqueueOptions{Queue: "q\xff"}, "queue name: invalid UTF-8 at byte offset 1"},
		{"queue with an escape", "test.echo", `{"n":1}`, EnqueueOptions{Queue: "q\x1b"}, "queue name contains the control character U+001B"},
		{"base over max", "test.echo", `{"n":1}`, EnqueueOptions{RetryBase: time.Hour, RetryMax: time.Second}, "retry policy"},
	}
	for _, tt := range tests {
		_, err := b.client.Enqueue(ctx, tt.kind, []byte(tt.payload), tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	if n, err := b.rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("redis holds %d keys after refused enqueues (err %v), want 0", n, err)
	}
}

func TestWorkerRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{Retry: jobs.RetryPolicy{MaxAttempts: 5, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{MaxAttempts: 5, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":3,"mode":"flaky"}`), EnqueueOptions{RunID: "run-1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "success on attempt 3", func() bool {
		return strings.Contains(b.logs.String(), `"outcome":"success"`)
	})
	if got := b.callCount(r.ID); got != 3 {
		t.Fatalf("calls = %d, want 3", got)
	}
	lines := attemptLines(t, b.logs.String(), r.ID)
	if len(lines) != 3 {
		t.Fatalf("attempt lines = %d, want 3: %v", len(lines), lines)
	}
	for i, l := range lines {
		if int(l["attempt"].(float64)) != i+1 || l["run_id"] != "run-1" || l["kind"] != "test.echo" || l["queue"] != "default" {
			t.Fatalf("line %d: %v", i, l)
		}
		if _, ok := l["duration_ms"]; !ok {
			t.Fatalf("line %d has no duration_ms: %v", i, l)
		}
	}
	if lines[0]["outcome"] != "retry" || lines[0]["class"] != "retryable" || lines[2]["outcome"] != "success" {
		t.Fatalf("outcomes: %v", lines)
	}
}

func attemptLines(t *testing.T, logs, taskID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["message"] == "attempt" && m["task_id"] == taskID {
			out = append(out, m)
		}
	}
	return out
}

func TestWorkerPermanentDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	var dead atomic.Int32
	var deadClass atomic.Value
	b.startWorker(t, WorkerConfig{Observers: []jobs.Observer{jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) {
		if r.Outcome == jobs.OutcomeDead {
			dead.Add(1)
			deadClass.Store(r.Class)
		}
	})}})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"permanent"}`), EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "task archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if got := b.callCount(r.ID); got != 1 {
		t.Fatalf("calls = %d, want 1 (no retries for a permanent error)", got)
	}
	info, _ := b.insp.GetTaskInfo("default", r.ID)
	if !strings.Contains(info.LastErr, "bad request") {
		t.Fatalf("archived last error = %q", info.LastErr)
	}
	if dead.Load() != 1 || deadClass.Load() != jobs.ClassPermanent {
		t.Fatalf("dead results = %d class %v", dead.Load(), deadClass.Load())
	}
}

func TestWorkerExhaustsAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond}})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"always"}`), EnqueueOptions{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "task archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if got := b.callCount(r.ID); got != 3 {
		t.Fatalf("calls = %d, want exactly 3 attempts", got)
	}
	lines := attemptLines(t, b.logs.String(), r.ID)
	if last := lines[len(lines)-1]; last["outcome"] != "dead" {
		t.Fatalf("last outcome = %v", last["outcome"])
	}
}

func TestWorkerPanicIsCaughtAndRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond}})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"panic"}`), EnqueueOptions{MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	lines := attemptLines(t, b.logs.String(), r.ID)
	if len(lines) != 2 || lines[0]["class"] != "panic" || !strings.Contains(lines[0]["error"].(string), "handler bug") {
		t.Fatalf("lines: %v", lines)
	}
}

func TestSnoozeSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{})
	// One attempt only, snoozed three times: it must still succeed, because a
	// snooze spends nothing, even on the last attempt.
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":4,"mode":"snooze"}`), EnqueueOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "success after snoozes", func() bool { return b.callCount(r.ID) == 4 && queueSize(t, b, "default") == 0 })
	lines := attemptLines(t, b.logs.String(), r.ID)
	for i, l := range lines {
		if int(l["attempt"].(float64)) != 1 {
			t.Fatalf("line %d attempt = %v, want 1 (snooze spends no attempt)", i, l["attempt"])
		}
	}
	if lines[len(lines)-1]["outcome"] != "success" || lines[0]["outcome"] != "snooze" {
		t.Fatalf("outcomes: %v", lines)
	}
}

func TestTimeoutIsEnforcedInTheChain(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"sleep"}`), EnqueueOptions{Timeout: 50 * time.Millisecond, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	lines := attemptLines(t, b.logs.String(), r.ID)
	if len(lines) != 1 || lines[0]["class"] != "timeout" || lines[0]["outcome"] != "dead" {
		t.Fatalf("lines: %v", lines)
	}
}

func TestWorkflowPolicyAndQueue(t *testing.T) {
	t.Parallel()
	wfs := map[string]Workflow{"publish": {Queue: "pub", Retry: jobs.RetryPolicy{MaxAttempts: 2}}}
	b := setup(t, ClientConfig{Workflows: wfs})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{Workflow: "publish"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Queue != "pub" {
		t.Fatalf("queue = %q, want pub", r.Queue)
	}
	info, err := b.insp.GetTaskInfo("pub", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxRetry != 2 || info.Headers[jobs.HeaderWorkflow] != "publish" {
		t.Fatalf("task info: maxretry %d headers %v", info.MaxRetry, info.Headers)
	}
}

// decided is what the worker returns to asynq for one attempt of s that
// ended with err.
func decided(w *Worker, s *jobs.Step, err error) error {
	a := &attempt{step: *s}
	w.decide(&a.res, &a.step, err)
	return a.toAsynq()
}

func TestToAsynqDelayAndSentinels(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: WorkerConfig{
		Retry: jobs.RetryPolicy{MaxAttempts: 5, Base: time.Second, Max: 8 * time.Second},
		RandN: func(n int64) int64 { return n - 1 },
	}}
	s := &jobs.Step{Attempt: 3, MaxAttempts: 5, Headers: map[string]string{}}
	err := decided(w, s, errors.New("x"))
	if d := w.retryDelay(2, err, asynq.NewTask("k", nil)); d != 4*time.Second {
		t.Fatalf("delay = %v, want ceiling 4s with max rand", d)
	}
	if errors.Is(err, asynq.SkipRetry) || !isFailure(err) {
		t.Fatal("a retry must not skip retry and must count as failure")
	}
	perm := decided(w, s, jobs.Permanent(errors.New("bad")))
	if !errors.Is(perm, asynq.SkipRetry) || perm.Error() != "bad" {
		t.Fatalf("permanent: %v skip=%v", perm, errors.Is(perm, asynq.SkipRetry))
	}
	snooze := decided(w, s, jobs.Snooze(3*time.Second))
	if isFailure(snooze) || w.retryDelay(2, snooze, asynq.NewTask("k", nil)) != 3*time.Second {
		t.Fatal("snooze must not be a failure and must wait its delay")
	}
	ra := decided(w, s, jobs.RetryAfter(time.Hour, errors.New("429")))
	// Capped by max, jittered within max's top quarter (jobs.RetryPolicy.Delay);
	// RandN gives the top of the range, so max - max/4.
	if d := w.retryDelay(2, ra, asynq.NewTask("k", nil)); d != 6*time.Second {
		t.Fatalf("retry-after bounded by max: %v, want 6s", d)
	}
	// Per-task headers override the policy.
	s2 := &jobs.Step{Attempt: 1, MaxAttempts: 5, Headers: map[string]string{jobs.HeaderRetryBase: "100ms", jobs.HeaderRetryMax: "150ms"}}
	if d := w.retryDelay(0, decided(w, s2, errors.New("x")), asynq.NewTask("k", nil)); d != 100*time.Millisecond {
		t.Fatalf("per-task base: %v", d)
	}
}

func TestHandlerIgnoringItsContextGetsNoExtraRun(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	rc := newRecorders("r")[0]
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond},
		Observers: []jobs.Observer{rc}})
	defer close(b.release)
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"ignore-ctx"}`), EnqueueOptions{Timeout: 50 * time.Millisecond, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	// asynq's backstop (timeout + TimeoutGrace) ends the attempt; the reserve
	// retry then finds no attempt left and archives without a second run.
	waitFor(t, 15*time.Second, "archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if got := b.callCount(r.ID); got != 1 {
		t.Fatalf("handler ran %d times, want 1 (max attempts 1)", got)
	}
	// asynq's backstop decided the first attempt (observed as a retry,
	// class timeout); the reserve delivery ended dead, lease_expired. The
	// handler is still held, so no abandoned result yet.
	rc.mu.Lock()
	got := rc.got[r.ID]
	rc.mu.Unlock()
	if len(got) != 2 || got[0].Outcome != jobs.OutcomeRetry || got[0].Class != jobs.ClassTimeout || !got[0].Started.IsZero() ||
		got[1].Outcome != jobs.OutcomeDead || got[1].Class != jobs.ClassLeaseExpired {
		t.Fatalf("observed %+v, want a timeout retry from asynq's backstop, then dead lease_expired", got)
	}
	lines := attemptLines(t, b.logs.String(), r.ID)
	if len(lines) != 2 || lines[0]["class"] != "timeout" || lines[0]["outcome"] != "retry" || lines[1]["outcome"] != "dead" {
		t.Fatalf("attempt lines: %v", lines)
	}
}

func TestShutdownCutOffIsAbandonedNotAFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	var seen atomic.Value
	var dead atomic.Int32
	observe := jobs.ObserverFunc(func(_ context.Context, _ *jobs.Step, r *jobs.Result) { seen.Store(r.Outcome) })
	w := b.startWorker(t, WorkerConfig{Observers: []jobs.Observer{observe, countDead(&dead)}})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"sleep"}`), EnqueueOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "handler to start", func() bool { return b.callCount(r.ID) == 1 })
	w.Shutdown() // waits ShutdownTimeout, requeues the task, cancels its context
	waitFor(t, 5*time.Second, "an observer to see the outcome", func() bool { return seen.Load() != nil })
	if got := seen.Load(); got != jobs.OutcomeAbandoned {
		t.Fatalf("observer saw %v, want %v", got, jobs.OutcomeAbandoned)
	}
	if dead.Load() != 0 {
		t.Fatal("a cut-off attempt was reported dead")
	}
	info, err := b.insp.GetTaskInfo("default", r.ID)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("task after shutdown: %+v %v, want pending (requeued)", info, err)
	}
}

func TestNoAttemptLeftIsDeadLeaseExpired(t *testing.T) {
	t.Parallel()
	s := &jobs.Step{Attempt: 4, MaxAttempts: 3}
	err := guardAttempt(jobs.HandlerFunc(func(context.Context, *jobs.Step) error {
		t.Fatal("handler ran with no attempt left")
		return nil
	})).ProcessStep(context.Background(), s)
	if r := Decide(s, err, testPolicy, nil); r.Outcome != jobs.OutcomeDead || r.Class != jobs.ClassLeaseExpired {
		t.Fatalf("Decide = %s/%s, want dead/lease_expired", r.Outcome, r.Class)
	}
}

func TestRedactReachesLogAndStoredError(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{Redact: func(s string) string { return strings.ReplaceAll(s, "bad request", "b** *******") }})
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"permanent"}`), EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "archived", func() bool {
		info, err := b.insp.GetTaskInfo("default", r.ID)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	info, _ := b.insp.GetTaskInfo("default", r.ID)
	if strings.Contains(info.LastErr, "bad request") || strings.Contains(b.logs.String(), "bad request") {
		t.Fatalf("unredacted text reached asynq (%q) or the log", info.LastErr)
	}
}
