package runs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
)

func TestListNewestFirstWithFilters(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := setup(t, map[string]Workflow{"other": threeSteps()}, func(c *Config) { c.Now = clk.Now; c.Retention = 48 * time.Hour })
	ctx := context.Background()
	var ids []string
	for i, wf := range []string{"three", "other", "three", "three"} {
		st, err := b.runs.Start(ctx, wf, nil, StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.RunID)
		clk.Advance(time.Hour)
		if i == 2 {
			if err := b.runs.Cancel(ctx, st.RunID, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(o ListOptions) []string {
		t.Helper()
		out, err := b.runs.List(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range out {
			got = append(got, s.ID)
		}
		return got
	}
	eq := func(name string, got, want []string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", name, got, want)
			}
		}
	}
	eq("all", list(ListOptions{}), []string{ids[3], ids[2], ids[1], ids[0]})
	eq("workflow", list(ListOptions{Workflow: "other"}), []string{ids[1]})
	eq("status", list(ListOptions{Status: StatusCancelled}), []string{ids[2]})
	eq("running of three", list(ListOptions{Workflow: "three", Status: StatusRunning}), []string{ids[3], ids[0]})
	eq("since", list(ListOptions{Since: clk.Now().Add(-2 * time.Hour)}), []string{ids[3], ids[2]})
	eq("limit", list(ListOptions{Limit: 1}), []string{ids[3]})

	out, err := b.runs.List(ctx, ListOptions{Limit: 1})
	if err != nil || out[0].Workflow != "three" || out[0].Step != "a" || !out[0].Created.Equal(clk.Now().Add(-time.Hour)) {
		t.Fatalf("summary %+v, %v", out, err)
	}

	// A run whose state expired leaves the index when listed.
	b.rdb.Del(ctx, stateKey(ids[1]))
	eq("expired", list(ListOptions{}), []string{ids[3], ids[2], ids[0]})
	if _, err := b.rdb.ZScore(ctx, indexKey(), ids[1]).Result(); err == nil {
		t.Fatal("the expired run is still in the index")
	}
	// Runs created more than Retention ago leave it too.
	clk.Advance(45*time.Hour + 30*time.Minute)
	eq("past retention", list(ListOptions{}), []string{ids[3], ids[2]})
	if n := b.rdb.ZCard(ctx, indexKey()).Val(); n != 2 {
		t.Fatalf("index holds %d runs, want 2", n)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.runs.load(ctx, st.RunID)
	if err != nil {
		t.Fatal(err)
	}
	c := &change{doc: l.doc}
	for i := range historyMax + 50 {
		c.events = append(c.events, Event{Kind: "step_retry", Step: "a", Text: string(rune('a' + i%26))})
	}
	if _, _, _, err := b.runs.write(ctx, l.version, c); err != nil {
		t.Fatal(err)
	}
	run := b.get(t, st.RunID)
	if len(run.History) != historyMax || run.History[len(run.History)-1].Text != c.events[len(c.events)-1].Text {
		t.Fatalf("history holds %d events, want the newest %d", len(run.History), historyMax)
	}
	// A write computed from an old version is refused and changes nothing.
	if _, _, _, err := b.runs.write(ctx, l.version, &change{doc: l.doc}); !errors.Is(err, errConflict) {
		t.Fatalf("stale write: %v", err)
	}
	if b.get(t, st.RunID).Version != run.Version {
		t.Fatal("a stale write changed the version")
	}
}

func TestDurationCapBeforeAttempt(t *testing.T) {
	t.Parallel()
	clk := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := setup(t, nil, func(c *Config) { c.Now = clk.Now })
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "three", json.RawMessage(`{"topic":"d"}`), StartOptions{Caps: Caps{MaxDuration: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	if _, res := b.deliver(t, st.RunID, "a"); res.Outcome != jobs.OutcomeSuccess {
		t.Fatalf("a: %+v", res)
	}
	clk.Advance(61 * time.Second)
	_, res := b.deliver(t, st.RunID, "b")
	var ce *jobs.CapExceededError
	if res.Class != jobs.ClassCapExceeded || !errors.As(res.Err, &ce) || ce.Cap != "max_duration" || ce.Limit != "1m0s" {
		t.Fatalf("b: %+v", res)
	}
	run := b.get(t, st.RunID)
	if run.Status != StatusCapped || len(b.callsOf("b")) != 0 || !run.Ended.Equal(clk.Now()) {
		t.Fatalf("run %+v", run)
	}
}

func TestAttemptsCapCountsEveryAttempt(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Caps: Caps{MaxAttempts: 2}, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"fail"}`)},
	}}
	b := setup(t, map[string]Workflow{"flaky": wf}, nil)
	ctx := context.Background()
	st, err := b.runs.Start(ctx, "flaky", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; try <= 2; try++ {
		if _, res := b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Attempt, s.MaxAttempts = try, 5 }); res.Outcome != jobs.OutcomeRetry {
			t.Fatalf("attempt %d: %+v", try, res)
		}
	}
	_, res := b.deliver(t, st.RunID, "a", func(s *jobs.Step) { s.Attempt, s.MaxAttempts = 3, 5 })
	var ce *jobs.CapExceededError
	if res.Outcome != jobs.OutcomeDead || !errors.As(res.Err, &ce) || ce.Cap != "max_attempts" || ce.Value != "3" {
		t.Fatalf("third attempt: %+v", res)
	}
	run := b.get(t, st.RunID)
	if run.Status != StatusCapped || run.Attempts != 2 || len(b.callsOf("a")) != 2 || stepOf(t, run, "a").LastClass != jobs.ClassCapExceeded || !strings.Contains(stepOf(t, run, "a").LastError, "max_attempts") {
		t.Fatalf("run %+v, a %+v", run, stepOf(t, run, "a"))
	}
}

func TestSnoozeSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	wf := Workflow{Queue: testQueue, Caps: Caps{MaxAttempts: 1}, Steps: []jobs.StepDef{
		{Name: "a", Kind: "test.echo", Payload: json.RawMessage(`{"text":"a","mode":"snooze"}`)},
	}}
	b := setup(t, map[string]Workflow{"sleepy": wf}, nil)
	st, err := b.runs.Start(context.Background(), "sleepy", nil, StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, res := b.deliver(t, st.RunID, "a"); res.Outcome != jobs.OutcomeSnooze {
			t.Fatalf("delivery %d: %+v, want a snooze (not the attempts cap)", i, res)
		}
	}
	run := b.get(t, st.RunID)
	if run.Status != StatusRunning || run.Attempts != 0 || run.StepsStarted != 1 || len(b.callsOf("a")) != 3 ||
		stepOf(t, run, "a").Status != StepRetrying {
		t.Fatalf("run %+v a %+v", run, stepOf(t, run, "a"))
	}
}
