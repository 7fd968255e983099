package runs

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// R2: a deferred-start step that runs over 1s is marked running by the
// timer (attempt counted); when it then snoozes, the attempt is not taken
// back (counted is never stored for a deferred start).
func TestEngineSnoozeAfterMarkRunningCountsAnAttempt(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"b","mode":"snooze"}`)},
	}}
	b := setup(t, map[string]Workflow{"sn": wf}, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "sn", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wfMod := func(s *jobs.Step) { s.Workflow = "sn" }
	b.deliver(t, st.RunID, "a", wfMod)
	bv := b.pendingVersion(t, st.RunID, "b")
	b.during = func(ctx context.Context, s *jobs.Step) {
		if s.Name == "b" {
			time.Sleep(1300 * time.Millisecond)
		}
	}
	_, res := b.deliver(t, st.RunID, "b", wfMod, func(s *jobs.Step) { s.Headers = map[string]string{jobs.HeaderRunVersion: bv} })
	run := b.get(t, st.RunID)
	t.Logf("outcome %s; b attempts %d, run attempts %d", res.Outcome, stepOf(t, run, "b").Attempts, run.Attempts)
	if stepOf(t, run, "b").Attempts != 0 {
		t.Errorf("a snooze spent an attempt (b attempts %d, want 0)", stepOf(t, run, "b").Attempts)
	}
	// Same with the start written up front (no cache): taken back.
}

// R3: two concurrent deliveries of one step (lease expiry redelivery, a
// duplicate) both run and both spend; the second success's usage is
// dropped ("already") and, with a deferred start, the first's attempt is
// never counted.
func TestEngineConcurrentDeliveriesLoseUsageAndAttempt(t *testing.T) {
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"c"}`), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t, st.RunID, "a")
	bv := b.pendingVersion(t, st.RunID, "b")
	before := b.get(t, st.RunID)
	inW := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	b.during = func(ctx context.Context, s *jobs.Step) {
		if s.Name == "b" && s.Attempt == 1 {
			once.Do(func() { close(inW) })
			<-release
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// W: the worker that queued b, from its cache: deferred start.
		b.deliver(t, st.RunID, "b", func(s *jobs.Step) { s.Headers = map[string]string{jobs.HeaderRunVersion: bv} })
	}()
	<-inW
	// X: another worker gets b again (lease expired on W; asynq retried).
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.deliver(t, st.RunID, "b", func(s *jobs.Step) { s.Attempt = 2 })
	}()
	time.Sleep(200 * time.Millisecond) // X is in its handler (attempt 2 does not block)
	<-done
	close(release)
	wg.Wait()
	run := b.get(t, st.RunID)
	bs := stepOf(t, run, "b")
	t.Logf("calls of b %d; b attempts %d tokens %d; run tokens %d (was %d)", len(b.callsOf("b")), bs.Attempts, bs.TokensIn+bs.TokensOut, run.TokensIn+run.TokensOut, before.TokensIn+before.TokensOut)
	if n := len(b.callsOf("b")); n == 2 && bs.Attempts != 2 {
		t.Errorf("b ran twice, but %d attempt(s) counted", bs.Attempts)
	}
	if n := len(b.callsOf("b")); n == 2 && bs.TokensIn+bs.TokensOut != 30 {
		t.Errorf("b ran twice spending 15 tokens each, run holds %d for b", bs.TokensIn+bs.TokensOut)
	}
}

// R4: a step whose attempt the lease sweeper declared dead (observer with
// a synthesized Step) while its handler still ran: the fallback is queued;
// then the late success is stored over StepReplaced and the next step is
// queued too: fallback and next step both run.
func TestEngineLateSuccessAfterSweeperDeadRunsFallbackAndNext(t *testing.T) {
	wf := Workflow{Queue: testQueue, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a"}`), Fallback: "a2", MaxAttempts: 1},
		{Name: "a2", Kind: "test.echo", Payload: json.RawMessage(`{"text":"alt"}`)},
		{Name: "b", Kind: "test.echo", Payload: json.RawMessage(`{"text":"{{.steps.a.output.text}}"}`)},
	}}
	b := setup(t, map[string]Workflow{"fb": wf}, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "fb", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inA, release := make(chan struct{}), make(chan struct{})
	b.during = func(ctx context.Context, s *jobs.Step) {
		if s.Name == "a" {
			close(inA)
			<-release
		}
	}
	av := b.pendingVersion(t, st.RunID, "a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.deliver(t, st.RunID, "a", func(s *jobs.Step) {
			s.Workflow = "fb"
			s.MaxAttempts = 1
			s.Headers = map[string]string{jobs.HeaderRunVersion: av}
		})
	}()
	<-inA
	// The sweeper: a's lease expired, asynq has no retry left: dead.
	syn := &jobs.Step{TaskID: queue.TaskIDForKey(testQueue, stepKey(st.RunID, "a")), Kind: "test.echo", Queue: testQueue,
		Workflow: "fb", RunID: st.RunID, Name: "a", Attempt: 1, MaxAttempts: 1}
	b.runs.Observer().Observe(ctx, syn, &jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassLeaseExpired,
		Err: errors.New("asynq: task lease expired"), Message: "asynq: task lease expired"})
	close(release)
	<-done
	run := b.get(t, st.RunID)
	var line string
	for _, s := range run.Steps {
		line += s.Name + ":" + string(s.Status) + " "
	}
	t.Logf("run %s; steps %s; pending %v", run.Status, line, b.pending(t))
	if stepOf(t, run, "a2").Status == StepQueued && stepOf(t, run, "b").Status == StepQueued {
		t.Errorf("fallback a2 and next step b are both queued (a both replaced and succeeded)")
	}
}

var _ = strconv.Itoa
