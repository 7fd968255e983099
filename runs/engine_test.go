package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// echoArgs is the payload of test.echo. Mode decides what the handler
// does: "" succeeds with output {"text": Text+"!"} and a little usage;
// "dead" fails permanently (after spending tokens) unless the bundle is
// healed; "fail" fails retryably; "cost" spends $0.5 and succeeds; "add"
// adds the steps of the bundle's toAdd and succeeds; "big" sets an output
// of 100 bytes.
type echoArgs struct {
	Text string `json:"text"`
	Mode string `json:"mode,omitempty"`
}

func (echoArgs) Kind() string { return "test.echo" }

const echoSchema = `{"type":"object","properties":{"text":{"type":"string","minLength":1},"mode":{"type":"string"}},"required":["text"],"additionalProperties":false}`

const testQueue = "runs"

type call struct {
	step, taskID, payload string
	attempt               int
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type bundle struct {
	rdb    *redis.Client
	reg    *queue.Registry
	client *queue.Client
	insp   *queue.Inspector
	runs   *Runs
	chain  jobs.Handler

	mu      sync.Mutex
	calls   []call
	capped  []CapEvent
	results []jobs.Result
	toAdd   []jobs.StepDef
	// during, when set, runs inside the handler before it returns.
	during func(ctx context.Context, s *jobs.Step)
	healed atomic.Bool
	// admitFail makes the client refuse that many enqueues.
	admitFail atomic.Int32
}

// threeSteps is a -> b -> c, each rendering the previous output.
func threeSteps() Workflow {
	return Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.input.topic}}"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}-b"}`)},
		{Name: "c", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.b.output.text}}-c"}`)},
	}}
}

// setup builds a bundle on its own Redis database with wfs (and "three",
// threeSteps) configured; mod changes the runs' Config.
func setup(t *testing.T, wfs map[string]Workflow, mod func(*Config)) *bundle {
	t.Helper()
	b := &bundle{rdb: redistest.Start(t).Client(t), reg: queue.NewRegistry()}
	if err := queue.Register(b.reg, echoSchema, b.handle); err != nil {
		t.Fatal(err)
	}
	all := map[string]Workflow{"three": threeSteps()}
	for k, v := range wfs {
		all[k] = v
	}
	qwfs := map[string]queue.Workflow{}
	for name := range all {
		qwfs[name] = queue.Workflow{Queue: testQueue}
	}
	var err error
	b.client, err = queue.NewClient(b.rdb, b.reg, queue.ClientConfig{
		Workflows: qwfs,
		Retry:     jobs.RetryPolicy{MaxAttempts: 3, Base: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		Admit: func(context.Context, string, queue.EnqueueOptions) error {
			if b.admitFail.Add(-1) >= 0 { // not asked by a run's own enqueues
				return errors.New("refused by the test")
			}
			b.admitFail.Store(0)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.insp = queue.NewInspector(b.rdb)
	nop := zerolog.Nop()
	cfg := Config{Workflows: all, Logger: &nop, OnCapped: func(_ context.Context, ev CapEvent) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.capped = append(b.capped, ev)
	}}
	if mod != nil {
		mod(&cfg)
	}
	b.runs, err = New(b.rdb, b.client, b.insp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.chain = jobs.Chain(b.reg.Handler(), b.runs.Middleware())
	return b
}

func (b *bundle) handle(ctx context.Context, s *jobs.Step, a echoArgs) error {
	b.mu.Lock()
	b.calls = append(b.calls, call{step: s.Name, taskID: s.TaskID, payload: string(s.Payload), attempt: s.Attempt})
	during, toAdd := b.during, b.toAdd
	b.mu.Unlock()
	if during != nil {
		during(ctx, s)
	}
	switch a.Mode {
	case "dead":
		s.ReportUsage(jobs.Usage{Model: "m-fail", TokensIn: 7, CostUSD: 0.07})
		if !b.healed.Load() {
			return jobs.Permanent(errors.New("boom in " + s.Name))
		}
	case "fail":
		return errors.New("transient trouble")
	case "snooze":
		return jobs.Snooze(time.Minute)
	case "cost":
		s.ReportUsage(jobs.Usage{Model: "m1", TokensIn: 100, TokensOut: 50, CostUSD: 0.5})
		return s.SetOutput(map[string]string{"text": a.Text + "$"})
	case "add":
		if err := s.AddSteps(toAdd...); err != nil {
			return err
		}
	case "big":
		return s.SetOutput(strings.Repeat("x", 98))
	}
	s.ReportUsage(jobs.Usage{Model: "m1", TokensIn: 10, TokensOut: 5, CostUSD: 0.001})
	return s.SetOutput(map[string]string{"text": a.Text + "!"})
}

func (b *bundle) callsOf(step string) []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []call
	for _, c := range b.calls {
		if c.step == step {
			out = append(out, c)
		}
	}
	return out
}

func (b *bundle) cappedEvents() []CapEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]CapEvent(nil), b.capped...)
}

// deliver runs one attempt of a run step through the middleware and the
// handler, decides it as the worker does and hands it to the observer.
func (b *bundle) deliver(t *testing.T, runID, step string, mod ...func(*jobs.Step)) (*jobs.Step, jobs.Result) {
	t.Helper()
	ctx := context.Background()
	s := &jobs.Step{RunID: runID, Name: step, Kind: "test.echo", Queue: testQueue, Workflow: "three",
		Payload: json.RawMessage(queue.RunStepPayload), TaskID: queue.TaskIDForKey(testQueue, stepKey(runID, step)),
		Attempt: 1, MaxAttempts: 3}
	for _, m := range mod {
		m(s)
	}
	err := b.chain.ProcessStep(ctx, s)
	res := workerResult(s, err)
	b.runs.Observer().Observe(ctx, s, &res)
	return s, res
}

// workerResult is the Result the worker hands its observers for an
// attempt of s that ended with err, for the outcomes these tests meet (the
// queue's own Decide is the queue's alone to call).
func workerResult(s *jobs.Step, err error) jobs.Result {
	r := jobs.Result{Err: err, Class: jobs.Classify(err), Usage: s.Usage(), Output: s.Output()}
	switch {
	case err == nil:
		r.Outcome = jobs.OutcomeSuccess
		return r
	case r.Class == jobs.ClassSnooze:
		r.Outcome = jobs.OutcomeSnooze
	case r.Class == jobs.ClassPermanent, r.Class == jobs.ClassCapExceeded, s.LastAttempt():
		r.Outcome = jobs.OutcomeDead
	default:
		r.Outcome = jobs.OutcomeRetry
	}
	r.Message = err.Error()
	return r
}

// failEnqueues makes the engine's next n enqueues of a step fail.
func (b *bundle) failEnqueues(n int32) {
	left := &atomic.Int32{}
	left.Store(n)
	b.runs.enqueueFault = func() error {
		if left.Add(-1) >= 0 {
			return errors.New("refused by the test")
		}
		return nil
	}
}

func (b *bundle) pending(t *testing.T) []string {
	t.Helper()
	ids, err := b.rdb.LRange(context.Background(), "asynq:{"+testQueue+"}:pending", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (b *bundle) get(t *testing.T, id string) *Run {
	t.Helper()
	run, err := b.runs.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func stepOf(t *testing.T, run *Run, name string) StepState {
	t.Helper()
	for _, s := range run.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("run %s has no step %q", run.ID, name)
	return StepState{}
}

func outputText(t *testing.T, s StepState) string {
	t.Helper()
	var o struct{ Text string }
	if err := json.Unmarshal(s.Output, &o); err != nil {
		t.Fatalf("step %s output %s: %v", s.Name, s.Output, err)
	}
	return o.Text
}

func hasEvent(run *Run, kind, step string) bool {
	for _, ev := range run.History {
		if ev.Kind == kind && (step == "" || ev.Step == step) {
			return true
		}
	}
	return false
}

func (b *bundle) startWorker(t *testing.T) {
	t.Helper()
	nop := zerolog.Nop()
	w, err := queue.NewWorker(b.rdb, b.reg, queue.WorkerConfig{
		Concurrency: 2, Loops: 1, Queues: map[string]int{testQueue: 1},
		PollInterval: 5 * time.Millisecond, DelayedCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, Logger: &nop,
		Retry:      jobs.RetryPolicy{MaxAttempts: 3, Base: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		Middleware: []jobs.Middleware{b.runs.Middleware()},
		Observers: []jobs.Observer{b.runs.Observer(), jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.results = append(b.results, *r)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
}

// waitStatus polls run id until its status is want: asynq, not the test,
// decides when tasks move.
func (b *bundle) waitStatus(t *testing.T, id string, want Status) *Run {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var run *Run
	for time.Now().Before(deadline) {
		run = b.get(t, id)
		if run.Status == want {
			return run
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("run %s is %s (%s), want %s; steps %+v", id, run.Status, run.Reason, want, run.Steps)
	return nil
}

func TestRunOutputsFlowBetweenSteps(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	b.startWorker(t)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"gophers"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Duplicate || !strings.HasPrefix(st.RunID, "r_") {
		t.Fatalf("started %+v", st)
	}
	run := b.waitStatus(t, st.RunID, StatusSucceeded)
	want := map[string]string{"a": "gophers!", "b": "gophers!-b!", "c": "gophers!-b!-c!"}
	for i, name := range []string{"a", "b", "c"} {
		s := run.Steps[i]
		if s.Name != name || s.Status != StepSucceeded || outputText(t, s) != want[name] || s.Attempts != 1 ||
			s.TaskID != queue.TaskIDForKey(testQueue, st.RunID+"/"+name) || s.Queue != testQueue || s.Started.IsZero() {
			t.Errorf("step %d = %+v, want %s succeeded with output %q", i, s, name, want[name])
		}
		calls := b.callsOf(name)
		if len(calls) != 1 {
			t.Fatalf("step %s ran %d times", name, len(calls))
		}
	}
	if p := b.callsOf("b")[0].payload; p != `{"text":"gophers!-b"}` {
		t.Errorf("step b got payload %s", p)
	}
	if run.TokensIn != 30 || run.TokensOut != 15 || run.Attempts != 3 || run.StepsStarted != 3 ||
		run.ByModel["m1"].TokensIn != 30 || run.ByModel["m1"].Attempts != 3 || run.Steps[1].ByModel["m1"].Attempts != 1 || run.Ended.IsZero() {
		t.Errorf("run totals %+v by model %+v steps %d", run.Totals, run.ByModel, run.StepsStarted)
	}
	for _, k := range []string{"started", "step_queued", "step_succeeded", "succeeded"} {
		if !hasEvent(run, k, "") {
			t.Errorf("history has no %s event: %+v", k, run.History)
		}
	}
	if ttl := b.rdb.PTTL(ctx, stateKey(st.RunID)).Val(); ttl <= 0 || ttl > RetentionDefault {
		t.Errorf("finished run's state expires in %v, want within the retention", ttl)
	}
	if ttl := b.rdb.PTTL(ctx, historyKey(st.RunID)).Val(); ttl <= 0 {
		t.Errorf("finished run's history expires in %v", ttl)
	}
	list, err := b.runs.List(ctx, ListOptions{})
	if err != nil || len(list) != 1 || list[0].ID != st.RunID || list[0].Status != StatusSucceeded || list[0].Step != "c" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestRepeatedDeliveryDoesNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"x"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aTask, bTask := queue.TaskIDForKey(testQueue, st.RunID+"/a"), queue.TaskIDForKey(testQueue, st.RunID+"/b")
	if p := b.pending(t); len(p) != 1 || p[0] != aTask {
		t.Fatalf("pending after start = %v", p)
	}

	// a succeeds and its success is stored, but the enqueue of b fails
	// (as it may on Redis Cluster, where the two are two calls): the
	// attempt snoozes, spending no attempt, so that also a last attempt
	// comes back to repair the enqueue (its usage already counted with the
	// success).
	b.runs.apart = true
	b.failEnqueues(1)
	s, res := b.deliver(t, st.RunID, "a")
	if res.Outcome != jobs.OutcomeSnooze || s.Answered || len(b.callsOf("a")) != 1 || !strings.Contains(res.Message, "refused by the test") {
		t.Fatalf("first delivery: %+v answered=%v calls=%d", res, s.Answered, len(b.callsOf("a")))
	}
	if string(s.Payload) != `{"text":"x"}` {
		t.Errorf("the step's payload is not the rendered one: %s", s.Payload)
	}
	run := b.get(t, st.RunID)
	if a := stepOf(t, run, "a"); a.Status != StepSucceeded || a.TokensIn != 10 || run.TokensIn != 10 || outputText(t, a) != "x!" {
		t.Fatalf("after the first delivery: a %+v, run %+v", a, run.Totals)
	}
	if p := b.pending(t); len(p) != 1 {
		t.Fatalf("pending %v, want a's task only (the test leaves it there)", p)
	}

	// The retry: the run holds a's success, the handler is not called and
	// the lost enqueue of b is repaired.
	s, res = b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Attempt = 2 })
	if res.Outcome != jobs.OutcomeSuccess || !s.Answered || len(b.callsOf("a")) != 1 {
		t.Fatalf("repeated delivery: %+v answered=%v calls=%d", res, s.Answered, len(b.callsOf("a")))
	}
	if p := b.pending(t); len(p) != 2 || p[0] != bTask {
		t.Fatalf("pending after the repair = %v, want b's task %s first", p, bTask)
	}
	v := b.get(t, st.RunID).Version

	// Once more: nothing runs, nothing is enqueued twice, nothing changes.
	s, _ = b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Attempt = 3 })
	run = b.get(t, st.RunID)
	if !s.Answered || len(b.callsOf("a")) != 1 || len(b.pending(t)) != 2 || run.Version != v ||
		stepOf(t, run, "a").Attempts != 1 || run.TokensIn != 10 {
		t.Fatalf("third delivery: answered=%v pending %v version %d (was %d) run %+v", s.Answered, b.pending(t), run.Version, v, run.Totals)
	}
}

func TestFallbackReplacesDeadStep(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"primary","mode":"dead"}`), Fallback: "a2", MaxAttempts: 1},
		{Name: "a2", Kind: "test.echo", Payload: json.RawMessage(`{"text":"alt"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}+{{.steps.a2.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"fb": wf}, nil)
	b.startWorker(t)
	st, err := b.runs.Start(context.Background(), "fb", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := b.waitStatus(t, st.RunID, StatusSucceeded)
	if names := []string{run.Steps[0].Name, run.Steps[1].Name, run.Steps[2].Name}; names[0] != "a" || names[1] != "a2" || names[2] != "b" {
		t.Fatalf("plan order %v", names)
	}
	a, a2, bs := run.Steps[0], run.Steps[1], run.Steps[2]
	if a.Status != StepReplaced || a.Replacement != "a2" || !strings.Contains(a.LastError, "boom in a") || a.LastClass != jobs.ClassPermanent ||
		a.TokensIn != 7 || a.CostUSD != 0.07 {
		t.Errorf("a = %+v", a)
	}
	if a2.Status != StepSucceeded || a2.FallbackFor != "a" || outputText(t, a2) != "alt!" {
		t.Errorf("a2 = %+v", a2)
	}
	if bs.Status != StepSucceeded || outputText(t, bs) != "alt!+alt!!" {
		t.Errorf("b = %+v (the fallback's output must stand in for a's)", bs)
	}
	if run.TokensIn != 27 || run.StepsStarted != 3 || !hasEvent(run, "fallback", "a") || run.ByModel["m-fail"].TokensIn != 7 {
		t.Errorf("run %+v started %d history %+v", run.Totals, run.StepsStarted, run.History)
	}
}

func TestDeadStepFailsRunAndReplayContinuesIt(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.input.topic}}"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}","mode":"dead"}`), MaxAttempts: 1},
		{Name: "c", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.b.output.text}}c"}`)},
	}}
	b := setup(t, map[string]Workflow{"failing": wf}, nil)
	b.startWorker(t)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "failing", json.RawMessage(`{"topic":"t"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := b.waitStatus(t, st.RunID, StatusFailed)
	bs := stepOf(t, run, "b")
	if bs.Status != StepDead || !strings.Contains(run.Reason, "b") || !strings.Contains(run.Reason, "boom in b") ||
		stepOf(t, run, "c").Status != StepPending || run.Ended.IsZero() || len(b.callsOf("c")) != 0 {
		t.Fatalf("failed run %+v", run)
	}
	if ttl := b.rdb.PTTL(ctx, stateKey(st.RunID)).Val(); ttl <= 0 {
		t.Errorf("failed run's state does not expire: %v", ttl)
	}
	dead := b.callsOf("b")[0]

	// A replay as dlq does it: the rendered payload, lineage, a new task
	// id, the step's key.
	b.healed.Store(true)
	if _, err := b.client.Enqueue(ctx, "test.echo", []byte(dead.payload), queue.EnqueueOptions{
		Queue: testQueue, Workflow: "failing", RunID: st.RunID, Step: "b", Key: st.RunID + "/b",
		ReplayOf: "dlq-1", TaskID: dead.taskID + "-r1",
	}); err != nil {
		t.Fatal(err)
	}
	run = b.waitStatus(t, st.RunID, StatusSucceeded)
	if c := stepOf(t, run, "c"); c.Status != StepSucceeded || outputText(t, c) != "t!!c!" {
		t.Errorf("c after the replay = %+v", c)
	}
	if bs := stepOf(t, run, "b"); bs.Status != StepSucceeded || bs.Attempts != 2 || bs.TaskID != dead.taskID+"-r1" {
		t.Errorf("b after the replay = %+v", bs)
	}
	if !hasEvent(run, "replayed", "b") || run.Reason != "" {
		t.Errorf("history %+v reason %q", run.History, run.Reason)
	}
	if ttl := b.rdb.PTTL(ctx, stateKey(st.RunID)).Val(); ttl <= 0 {
		t.Errorf("succeeded run's state does not expire: %v", ttl)
	}
}

func TestCostCapStopsRunAtNextStep(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Caps: Caps{MaxCostUSD: 0.4}, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"cost"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"b"}`)},
		{Name: "c", Kind: "test.echo", Payload: json.RawMessage(`{"text":"c"}`)},
	}}
	b := setup(t, map[string]Workflow{"spendy": wf}, nil)
	b.startWorker(t)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "spendy", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, st.RunID, StatusCapped)
	// Wait for b's dead letter: the run was capped after a, b is stopped.
	var bRes jobs.Result
	deadline := time.Now().Add(20 * time.Second)
	for found := false; !found; {
		if time.Now().After(deadline) {
			t.Fatal("b was never dead-lettered")
		}
		b.mu.Lock()
		for _, r := range b.results {
			if r.Outcome == jobs.OutcomeDead {
				bRes, found = r, true
			}
		}
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	var ce *jobs.CapExceededError
	if bRes.Class != jobs.ClassCapExceeded || !errors.As(bRes.Err, &ce) || ce.Cap != "max_cost_usd" || ce.Limit != "$0.4" || ce.Value != "$0.5" {
		t.Fatalf("b's result %+v", bRes)
	}
	run := b.get(t, st.RunID)
	if len(b.callsOf("b")) != 0 || len(b.callsOf("c")) != 0 || stepOf(t, run, "b").Status != StepSkipped ||
		stepOf(t, run, "c").Status != StepPending || !strings.Contains(run.Reason, "max_cost_usd") || run.CostUSD != 0.5 {
		t.Fatalf("capped run %+v", run)
	}
	info, err := b.insp.Task(ctx, testQueue, stepOf(t, run, "b").TaskID)
	if err != nil || info.State != queue.TaskArchived {
		t.Errorf("b's task is %v (%v), want archived", info.State, err)
	}
	if evs := b.cappedEvents(); len(evs) != 1 || evs[0].RunID != st.RunID || evs[0].Err.Cap != "max_cost_usd" || evs[0].Step != "b" {
		t.Errorf("OnCapped got %+v, want one event naming b, the step the cap stops", evs)
	}
}

func TestStepsCapBeforeAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"x"}`), StartOptions{Caps: Caps{MaxSteps: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, res := b.deliver(t, st.RunID, "a"); res.Outcome != jobs.OutcomeSuccess {
		t.Fatalf("a: %+v", res)
	}
	for try := 1; try <= 2; try++ {
		s, res := b.deliver(t, st.RunID, "b", func(s *jobs.Step) { s.Attempt = try })
		var ce *jobs.CapExceededError
		if res.Outcome != jobs.OutcomeDead || res.Class != jobs.ClassCapExceeded || !errors.As(res.Err, &ce) ||
			ce.Cap != "max_steps" || ce.Limit != "1" || s.Answered {
			t.Fatalf("delivery %d of b: %+v", try, res)
		}
	}
	run := b.get(t, st.RunID)
	if run.Status != StatusCapped || run.Caps.MaxSteps != 1 || run.StepsStarted != 1 || len(b.callsOf("b")) != 0 ||
		stepOf(t, run, "b").Status != StepSkipped {
		t.Fatalf("run %+v", run)
	}
	if evs := b.cappedEvents(); len(evs) != 1 || evs[0].Step != "b" {
		t.Fatalf("OnCapped got %+v, want exactly one", evs)
	}
	if err := b.runs.Cancel(ctx, st.RunID, ""); err == nil || !strings.Contains(err.Error(), "capped") {
		t.Fatalf("cancel of a capped run: %v", err)
	}
}

func TestCancelStopsNextStep(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()

	t.Run("while a step runs", func(t *testing.T) {
		st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"x"}`), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.during = func(ctx context.Context, s *jobs.Step) {
			if err := b.runs.Cancel(ctx, s.RunID, "user\nasked"); err != nil {
				t.Error(err)
			}
		}
		b.mu.Unlock()
		s, res := b.deliver(t, st.RunID, "a")
		b.mu.Lock()
		b.during = nil
		b.mu.Unlock()
		if res.Outcome != jobs.OutcomeSuccess || s.Answered {
			t.Fatalf("the running step: %+v", res)
		}
		run := b.get(t, st.RunID)
		if run.Status != StatusCancelled || run.Reason != "cancelled: user asked" || stepOf(t, run, "a").Status != StepSucceeded ||
			stepOf(t, run, "b").Status != StepSkipped || stepOf(t, run, "c").Status != StepSkipped || !hasEvent(run, "cancelled", "") {
			t.Fatalf("cancelled run %+v", run)
		}
		for _, id := range b.pending(t) {
			if id == queue.TaskIDForKey(testQueue, st.RunID+"/b") {
				t.Fatal("b was enqueued after the cancel")
			}
		}
		// Cancelling again is no error (it retries the deletes), and keeps
		// the first reason.
		if err = b.runs.Cancel(ctx, st.RunID, "again"); err != nil {
			t.Fatalf("second cancel: %v", err)
		}
		if run := b.get(t, st.RunID); !strings.Contains(run.Reason, "user asked") || strings.Contains(run.Reason, "again") {
			t.Fatalf("reason after a second cancel: %q", run.Reason)
		}
	})

	t.Run("while a step is queued", func(t *testing.T) {
		st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"y"}`), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b.deliver(t, st.RunID, "a")
		bTask := queue.TaskIDForKey(testQueue, st.RunID+"/b")
		if state, _ := b.insp.State(ctx, testQueue, bTask); state != queue.TaskPending {
			t.Fatalf("b's task is %v before the cancel", state)
		}
		if err := b.runs.Cancel(ctx, st.RunID, ""); err != nil {
			t.Fatal(err)
		}
		if state, _ := b.insp.State(ctx, testQueue, bTask); state != queue.TaskGone {
			t.Fatalf("b's task is %v after the cancel, want deleted", state)
		}
		// Delivered anyway (it was taken before the delete): not run.
		calls := len(b.callsOf("b"))
		s, res := b.deliver(t, st.RunID, "b")
		if res.Outcome != jobs.OutcomeSuccess || !s.Answered || len(b.callsOf("b")) != calls {
			t.Fatalf("b of a cancelled run: %+v answered=%v", res, s.Answered)
		}
		if run := b.get(t, st.RunID); run.Status != StatusCancelled || run.Reason != "cancelled" || stepOf(t, run, "b").Status != StepSkipped {
			t.Fatalf("run %+v", run)
		}
	})

	if err := b.runs.Cancel(ctx, "r_nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel of an unknown run: %v", err)
	}
}

func TestKeyedStartIsIdempotentAndRepairs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	// The first start stores the run but its enqueue fails (as if it
	// crashed between the two, which on Redis Cluster are two calls).
	b.runs.apart = true
	b.failEnqueues(1)
	first, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"k"}`), StartOptions{Key: "order-7"})
	if err == nil || !strings.Contains(err.Error(), "not enqueued") || first.RunID == "" {
		t.Fatalf("first start: %+v, %v", first, err)
	}
	if p := b.pending(t); len(p) != 0 {
		t.Fatalf("pending %v", p)
	}
	second, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"other"}`), StartOptions{Key: "order-7"})
	if err != nil || !second.Duplicate || second.RunID != first.RunID {
		t.Fatalf("second start: %+v, %v", second, err)
	}
	if p := b.pending(t); len(p) != 1 || p[0] != queue.TaskIDForKey(testQueue, first.RunID+"/a") {
		t.Fatalf("the repair did not enqueue a: pending %v", p)
	}
	third, err := b.runs.Start(ctx, "three", nil, StartOptions{Key: "order-7"})
	if err != nil || !third.Duplicate || third.RunID != first.RunID || len(b.pending(t)) != 1 {
		t.Fatalf("third start: %+v, %v, pending %v", third, err, b.pending(t))
	}
	if run := b.get(t, first.RunID); string(run.Input) != `{"topic":"k"}` || run.Key != "order-7" {
		t.Fatalf("the duplicate changed the run: %+v", run)
	}
	other, err := b.runs.Start(ctx, "three", nil, StartOptions{Key: "order-8"})
	if err != nil || other.Duplicate || other.RunID == first.RunID {
		t.Fatalf("another key: %+v, %v", other, err)
	}
	x, _ := b.runs.Start(ctx, "three", nil, StartOptions{})
	y, _ := b.runs.Start(ctx, "three", nil, StartOptions{})
	if x.RunID == y.RunID || x.Duplicate || y.Duplicate {
		t.Fatalf("unkeyed starts %+v %+v", x, y)
	}
}

func TestStartRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]Workflow{"other": threeSteps()}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, workflow, input string
		o                     StartOptions
		want                  string
	}{
		{"unknown workflow", "nope", `{}`, StartOptions{}, `unknown workflow "nope" (configured: other, three)`},
		{"invalid JSON", "three", `{"a":`, StartOptions{}, "input is not valid JSON"},
		{"trailing data", "three", `{} {}`, StartOptions{}, "input is not valid JSON"},
		{"array", "three", `[1]`, StartOptions{}, "input must be a JSON object, got an array"},
		{"string", "three", `"x"`, StartOptions{}, "input must be a JSON object, got a string"},
		{"number", "three", `12`, StartOptions{}, "input must be a JSON object, got a number"},
		{"too big", "three", `{"x":"` + strings.Repeat("y", maxInputBytes) + `"}`, StartOptions{}, "over the limit"},
		{"negative cap", "three", `{}`, StartOptions{Caps: Caps{MaxCostUSD: -1}}, "caps: max_cost_usd: must be a finite, non-negative number of US dollars (0 for no cap), got -1"},
		{"infinite cost cap", "three", `{}`, StartOptions{Caps: Caps{MaxCostUSD: math.Inf(1)}}, "caps: max_cost_usd: must be a finite, non-negative number of US dollars (0 for no cap), got +Inf"},
		{"blank key", "three", `{}`, StartOptions{Key: "  "}, "run key is blank"},
		{"control key", "three", `{}`, StartOptions{Key: "a\x00b"}, "control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.runs.Start(ctx, tc.workflow, json.RawMessage(tc.input), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if p := b.pending(t); len(p) != 0 {
		t.Fatalf("a refused start enqueued %v", p)
	}
	for _, in := range []string{"", "null", " {} "} {
		st, err := b.runs.Start(ctx, "three", json.RawMessage(in), StartOptions{})
		if err != nil {
			t.Fatalf("input %q: %v", in, err)
		}
		if run := b.get(t, st.RunID); string(run.Input) != "{}" {
			t.Fatalf("input %q stored as %s", in, run.Input)
		}
	}
}

func TestConcurrentChangesAllLand(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v0 := b.get(t, st.RunID).Version
	const n = 12
	var wg sync.WaitGroup
	obs := b.runs.Observer()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &jobs.Step{RunID: st.RunID, Name: "a", Kind: "test.echo", Attempt: i + 1, MaxAttempts: n + 1}
			obs.Observe(ctx, s, &jobs.Result{Outcome: jobs.OutcomeRetry, Class: jobs.ClassRetryable, Err: errors.New("e"),
				Message: fmt.Sprintf("e%d", i), Usage: jobs.Usage{Model: "m", TokensIn: 1, CostUSD: 0.25}})
		}()
	}
	wg.Wait()
	run := b.get(t, st.RunID)
	a := stepOf(t, run, "a")
	if run.TokensIn != n || run.CostUSD != 0.25*n || a.TokensIn != n || run.ByModel["m"].TokensIn != n || run.ByModel["m"].Attempts != n || a.Status != StepRetrying {
		t.Fatalf("after %d concurrent changes: run %+v, a %+v", n, run.Totals, a)
	}
	if run.Version != v0+n {
		t.Fatalf("version %d, want %d", run.Version, v0+n)
	}
	if retries := len(run.History) - 2; retries != n {
		t.Fatalf("%d step_retry events, want %d", retries, n)
	}
}

func TestStepsAddedAtRunTime(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "plan", Kind: "test.echo", Payload: json.RawMessage(`{"text":"p","mode":"add"}`)},
		{Name: "last", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.x.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"planner": wf}, func(c *Config) { c.MaxSteps = 4 })
	ctx := context.Background()
	deliver := func(t *testing.T, id, step string) jobs.Result {
		_, res := b.deliver(t, id, step, func(s *jobs.Step) { s.Workflow = "planner" })
		return res
	}

	t.Run("good", func(t *testing.T) {
		b.mu.Lock()
		b.toAdd = []jobs.StepDef{
			{Name: "x", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.plan.output.text}}-x"}`)},
		}
		b.mu.Unlock()
		st, err := b.runs.Start(ctx, "planner", nil, StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []string{"plan", "x", "last"} {
			if res := deliver(t, st.RunID, step); res.Outcome != jobs.OutcomeSuccess {
				t.Fatalf("%s: %+v", step, res)
			}
		}
		run := b.get(t, st.RunID)
		if run.Status != StatusSucceeded || len(run.Steps) != 3 || run.Steps[1].Name != "x" || !run.Steps[1].Added ||
			outputText(t, run.Steps[2]) != "p!-x!!" || !hasEvent(run, "steps_added", "plan") {
			t.Fatalf("run %+v", run)
		}
	})

	for _, tc := range []struct {
		name string
		add  []jobs.StepDef
		want string
	}{
		{"unknown kind", []jobs.StepDef{{Name: "y", Kind: "nope"}}, `unknown kind "nope"`},
		{"name taken", []jobs.StepDef{{Name: "last", Kind: "test.echo"}}, `"last"`},
		{"over max steps", []jobs.StepDef{{Name: "y1", Kind: "test.echo"}, {Name: "y2", Kind: "test.echo"}, {Name: "y3", Kind: "test.echo"}}, "max_steps"},
		{"empty name", []jobs.StepDef{{Kind: "test.echo"}}, "step name is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.mu.Lock()
			b.toAdd = tc.add
			b.mu.Unlock()
			st, err := b.runs.Start(ctx, "planner", nil, StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res := deliver(t, st.RunID, "plan")
			if res.Outcome != jobs.OutcomeDead || res.Class != jobs.ClassPermanent || !strings.Contains(res.Message, tc.want) ||
				!strings.Contains(res.Message, `step "plan"`) {
				t.Fatalf("result %+v, want dead naming %q", res, tc.want)
			}
			run := b.get(t, st.RunID)
			if run.Status != StatusFailed || len(run.Steps) != 2 || stepOf(t, run, "plan").TokensIn != 10 {
				t.Fatalf("run %+v", run)
			}
		})
	}
}

func TestPayloadErrorsArePermanent(t *testing.T) {
	t.Parallel()
	wfs := map[string]Workflow{
		"broken": {Queue: testQueue, Steps: []jobs.StepDef{
			{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.input.x"}`)}}},
		"schema": {Queue: testQueue, Steps: []jobs.StepDef{
			{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.input.empty}}"}`)}}},
		"big": {Queue: testQueue, Steps: []jobs.StepDef{
			{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"x","mode":"big"}`)}}},
	}
	b := setup(t, wfs, func(c *Config) { c.MaxOutputBytes = 64 })
	ctx := context.Background()
	for _, tc := range []struct{ workflow, want string }{
		{"broken", "text"},
		{"schema", "/text"},
		{"big", "100 bytes, over the limit of 64"},
	} {
		t.Run(tc.workflow, func(t *testing.T) {
			st, err := b.runs.Start(ctx, tc.workflow, json.RawMessage(`{"empty":""}`), StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, res := b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Workflow = tc.workflow })
			if res.Outcome != jobs.OutcomeDead || res.Class != jobs.ClassPermanent || !strings.Contains(res.Message, `step "a"`) ||
				!strings.Contains(res.Message, tc.want) {
				t.Fatalf("result %+v, want a permanent error naming step a and %q", res, tc.want)
			}
			if run := b.get(t, st.RunID); run.Status != StatusFailed || stepOf(t, run, "a").Status != StepDead {
				t.Fatalf("run %+v", run)
			}
		})
	}
	if n := len(b.callsOf("a")); n != 1 {
		t.Fatalf("the handler ran %d times, want once (only for the big output)", n)
	}
}

func TestMiddlewarePassesOtherTasksAndRefusesGoneRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	plain := &jobs.Step{Kind: "test.echo", Payload: json.RawMessage(`{"text":"plain"}`), RunID: "r_x", Attempt: 1, MaxAttempts: 1}
	if err := b.chain.ProcessStep(ctx, plain); err != nil || len(b.callsOf("")) != 1 || string(plain.Payload) != `{"text":"plain"}` {
		t.Fatalf("a step outside runs: %v, calls %d", err, len(b.callsOf("")))
	}
	gone := &jobs.Step{Kind: "test.echo", Payload: json.RawMessage(`{}`), RunID: "r_gone", Name: "a", Attempt: 1, MaxAttempts: 3}
	err := b.chain.ProcessStep(ctx, gone)
	if jobs.Classify(err) != jobs.ClassPermanent || !strings.Contains(err.Error(), "r_gone") {
		t.Fatalf("a step of a gone run: %v", err)
	}
	st, _ := b.runs.Start(ctx, "three", nil, StartOptions{})
	stray := &jobs.Step{Kind: "test.echo", Payload: json.RawMessage(`{}`), RunID: st.RunID, Name: "zz", Attempt: 1, MaxAttempts: 3}
	if err := b.chain.ProcessStep(ctx, stray); jobs.Classify(err) != jobs.ClassPermanent || !strings.Contains(err.Error(), `"zz"`) {
		t.Fatalf("a step the run does not have: %v", err)
	}
	if _, err := b.runs.Get(ctx, "r_gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a gone run: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	step := func(name, fb string) jobs.StepDef { return jobs.StepDef{Name: name, Kind: "k", Fallback: fb} }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"retention", Config{Retention: time.Millisecond}, "retention must be at least 1m"},
		{"retention under the minimum", Config{Retention: 30 * time.Second}, "retention must be at least 1m"},
		{"output over the limit", Config{MaxOutputBytes: MaxOutputBytesLimit + 1}, "max_output_bytes must be at most"},
		{"no steps", Config{Workflows: map[string]Workflow{"w": {}}}, "workflows.w: no steps"},
		{"dup step", Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", ""), step("a", "")}}}}, `"a" is used twice`},
		{"unknown fallback", Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", "z")}}}}, `fallback "z"`},
		{"own fallback", Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", "a")}}}}, "its own fallback"},
		{"only fallbacks", Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", "b"), step("b", "a")}}}}, "nothing runs first"},
		{"bad template", Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{{Name: "a", Kind: "k", Payload: json.RawMessage(`{`)}}}}}, "not valid JSON"},
		{"negative cap", Config{Workflows: map[string]Workflow{"w": {Caps: Caps{MaxTokens: -1}, Steps: []jobs.StepDef{step("a", "")}}}}, "max_tokens"},
		{"too many steps", Config{MaxSteps: 1, Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", ""), step("b", "")}}}}, "over max_steps 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(rdb, nil, nil, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	r, err := New(rdb, nil, nil, Config{Workflows: map[string]Workflow{"w": {Steps: []jobs.StepDef{step("a", "")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if wfs := r.Workflows(); len(wfs) != 1 || wfs["w"].Name != "w" {
		t.Fatalf("Workflows() = %+v", wfs)
	}
	if _, err := r.Start(context.Background(), "w", nil, StartOptions{}); err == nil {
		t.Fatal("a Runs without a queue client started a run")
	}
}

func FuzzNormalizeInput(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"a":1}`, `[`, `"x"`, `{"a":{"b":[1,2,{"c":null}]}}`, "{\"\xff\":1}", `{} x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := normalizeInput(json.RawMessage(in))
		if err != nil {
			return
		}
		v, err := decodeValue(out)
		if err != nil {
			t.Fatalf("accepted %q as %q, which does not decode: %v", in, out, err)
		}
		if _, ok := v.(map[string]any); !ok {
			t.Fatalf("accepted %q as %q, not an object", in, out)
		}
	})
}

func TestKeyedRunStartedAgainAfterRetention(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"dead"}`), MaxAttempts: 1},
	}}
	b := setup(t, map[string]Workflow{"once": wf}, nil)
	b.startWorker(t)
	ctx := context.Background()
	first, err := b.runs.Start(ctx, "once", nil, StartOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, first.RunID, StatusFailed)
	// The run's state expires (long after its task was archived: the
	// observer marks the run failed before asynq archives the task); its
	// dead task stays in asynq's archive.
	taskID := queue.TaskIDForKey(testQueue, stepKey(first.RunID, "a"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		state, err := b.insp.State(ctx, testQueue, taskID)
		if err == nil && state == queue.TaskArchived {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first run's task is %v (%v), not archived", state, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.rdb.Del(ctx, stateKey(first.RunID), historyKey(first.RunID))
	b.healed.Store(true)
	again, err := b.runs.Start(ctx, "once", nil, StartOptions{Key: "k"})
	if err != nil || again.Duplicate || again.RunID != first.RunID {
		t.Fatalf("start after the first run expired: %+v, %v", again, err)
	}
	run := b.waitStatus(t, again.RunID, StatusSucceeded)
	if len(b.callsOf("a")) != 2 || stepOf(t, run, "a").Attempts != 1 {
		t.Fatalf("run %+v, calls %d", run, len(b.callsOf("a")))
	}
}

func TestFallbackChainsAndSharedFallbacks(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"{{.input.a}}"}`), Fallback: "b"},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"b","mode":"{{.input.b}}"}`), Fallback: "c"},
		{Name: "c", Kind: "test.echo", Payload: json.RawMessage(`{"text":"c"}`)},
		{Name: "d", Kind: "test.echo", Payload: json.RawMessage(`{"text":"d","mode":"{{.input.d}}"}`), Fallback: "c"},
		{Name: "last", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}/{{.steps.d.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"chain": wf}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, input string
		deliveries  []string
		status      Status
		order       string // name:status:fallback_for, in Get's order
		last        string
	}{
		{"fallback of a fallback", `{"a":"dead","b":"dead","d":""}`, []string{"a", "b", "c", "d", "last"}, StatusSucceeded,
			"a:replaced: b:replaced:a c:succeeded:b d:succeeded: last:succeeded:", "c!/d!!"},
		{"shared fallback for the later step", `{"a":"","b":"","d":"dead"}`, []string{"a", "d", "c", "last"}, StatusSucceeded,
			"a:succeeded: b:pending: d:replaced: c:succeeded:d last:succeeded:", "a!/c!!"},
		{"each its own fallback", `{"a":"dead","b":"","d":"dead"}`, []string{"a", "b", "d", "c", "last"}, StatusSucceeded,
			"a:replaced: b:succeeded:a d:replaced: c:succeeded:d last:succeeded:", "b!/c!!"},
		{"shared fallback used up", `{"a":"dead","b":"dead","d":"dead"}`, []string{"a", "b", "c", "d"}, StatusFailed,
			"a:replaced: b:replaced:a c:succeeded:b d:dead: last:pending:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := b.runs.Start(ctx, "chain", json.RawMessage(tc.input), StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range tc.deliveries {
				run := b.get(t, st.RunID)
				if s := stepOf(t, run, step); s.Status != StepQueued {
					t.Fatalf("before delivering %s: it is %s; run %+v", step, s.Status, run.Steps)
				}
				b.deliver(t, st.RunID, step, func(s *jobs.Step) { s.Workflow = "chain" })
			}
			run := b.get(t, st.RunID)
			var order []string
			for _, s := range run.Steps {
				order = append(order, s.Name+":"+string(s.Status)+":"+s.FallbackFor)
			}
			if got := strings.Join(order, " "); run.Status != tc.status || got != tc.order {
				t.Fatalf("run %s (%s) steps %s, want %s steps %s", run.Status, run.Reason, got, tc.status, tc.order)
			}
			if tc.last != "" {
				if got := outputText(t, stepOf(t, run, "last")); got != tc.last {
					t.Fatalf("last rendered %q, want %q", got, tc.last)
				}
			}
		})
	}
}
