package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestCaptureRecordsDeathWithHistoryAlertAndOneWarning(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.startWorker(t)
	taskID := b.enqueue(t, "fail", queue.EnqueueOptions{RunID: "run-1", Key: "k-1", Workflow: ""})
	waitFor(t, 10*time.Second, "the task to be archived", func() bool { return b.taskState(t, taskID) == 5 })

	recs, err := b.store.List(context.Background(), Filter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %d records, %v; want 1", len(recs), err)
	}
	r := b.get(t, recs[0].ID)
	if r.Status != StatusDead || r.TaskID != taskID || r.ArchivedTask != taskID || r.RunID != "run-1" || r.Key != "k-1" ||
		r.Kind != "test.step" || r.Queue != "default" || r.Source != SourceWorker || r.MaxAttempts != 3 || r.Class != jobs.ClassRetryable {
		t.Fatalf("record = %+v", r)
	}
	if string(r.Payload) != `{"mode":"fail"}` {
		t.Fatalf("payload = %s", r.Payload)
	}
	if r.Attempts != 3 || len(r.History) != 3 {
		t.Fatalf("attempts = %d, history = %+v; want 3", r.Attempts, r.History)
	}
	for i, a := range r.History {
		if a.Attempt != i+1 || a.TaskID != taskID || a.Class != jobs.ClassRetryable {
			t.Errorf("history[%d] = %+v", i, a)
		}
		if strings.Contains(a.Error, "s3cr3t") || !strings.Contains(a.Error, "token=****") {
			t.Errorf("history[%d] error not redacted: %q", i, a.Error)
		}
	}
	if r.FirstFailedAt.IsZero() || r.FailedAt.Before(r.FirstFailedAt) {
		t.Fatalf("first %v last %v", r.FirstFailedAt, r.FailedAt)
	}
	if n := b.rdb.Exists(context.Background(), pendingKey("default", taskID)).Val(); n != 0 {
		t.Fatal("pending attempts left behind after death")
	}
	warn := b.logs.lines("dead letter recorded")
	if len(warn) != 1 || warn[0]["level"] != "warn" || warn[0]["run_id"] != "run-1" ||
		!strings.Contains(warn[0]["message"].(string), "agentq dlq replay "+r.ID) {
		t.Fatalf("warning lines = %v", warn)
	}
	alerts := b.alerts.all()
	if len(alerts) != 1 || alerts[0].ID != r.ID || alerts[0].Replay != "agentq dlq replay "+r.ID || alerts[0].RunID != "run-1" ||
		strings.Contains(alerts[0].Text, "s3cr3t") {
		t.Fatalf("alerts = %+v", alerts)
	}
	if got := b.counter(t, "agentq_dlq_recorded_total", map[string]string{"source": "worker"}); got != 1 {
		t.Fatalf("recorded metric = %v", got)
	}
}

// countingHook counts the commands a client sends.
type countingHook struct{ n *int64 }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { *h.n++; return next(ctx, cmd) }
}
func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { *h.n++; return next(ctx, cmds) }
}

func TestObserverRoundTripsPerOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	var calls int64
	rdb := redis.NewClient(b.srv.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(countingHook{&calls})
	s, err := New(rdb, Config{Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("x")
	tests := []struct {
		name  string
		step  jobs.Step
		res   jobs.Result
		calls int64
	}{
		{"first attempt succeeds", jobs.Step{Attempt: 1, MaxAttempts: 3}, jobs.Result{Outcome: jobs.OutcomeSuccess}, 0},
		{"snooze", jobs.Step{Attempt: 1, MaxAttempts: 3},
			jobs.Result{Outcome: jobs.OutcomeSnooze, Class: jobs.ClassSnooze, Err: jobs.Snooze(time.Second)}, 0},
		{"abandoned", jobs.Step{Attempt: 3, MaxAttempts: 3},
			jobs.Result{Outcome: jobs.OutcomeAbandoned, Class: jobs.ClassAbandoned, Err: &jobs.AbandonedError{Cause: context.Canceled}}, 0},
		{"retry", jobs.Step{Attempt: 1, MaxAttempts: 3}, jobs.Result{Outcome: jobs.OutcomeRetry, Class: jobs.ClassRetryable, Err: boom}, 1},
		{"retry succeeds", jobs.Step{Attempt: 2, MaxAttempts: 3}, jobs.Result{Outcome: jobs.OutcomeSuccess}, 1},
		{"replay succeeds", jobs.Step{Attempt: 1, MaxAttempts: 3, ReplayOf: "7"}, jobs.Result{Outcome: jobs.OutcomeSuccess}, 1},
		{"dead", jobs.Step{Attempt: 3, MaxAttempts: 3}, jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassRetryable, Err: boom}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The first run warms the connection and loads the scripts; the
			// second is counted.
			for run := range 2 {
				calls = 0
				st, res := tt.step, tt.res
				st.TaskID, st.Queue, st.Kind = fmt.Sprint("t-", tt.name, run), "default", "test.step"
				s.Observer().Observe(context.Background(), &st, &res)
			}
			if calls != tt.calls {
				t.Errorf("%d Redis round trips, want %d", calls, tt.calls)
			}
		})
	}
}

func TestDeadAppendsToTheReplayedRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "orig", RunID: "r"})
	rep, err := b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil || rep.TaskID != "orig-r1" {
		t.Fatalf("Replay = %+v, %v", rep, err)
	}
	if r := b.get(t, id); r.Status != StatusReplayed || r.ReplayTask != "orig-r1" || r.Replays != 1 {
		t.Fatalf("after replay: %+v", r)
	}
	// The replay fails twice, then dies: asynq archives it.
	if err := b.insp.ArchiveTask("default", "orig-r1"); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		if err := b.store.AddAttempt(ctx, "default", "orig-r1", Attempt{At: b.clock.Now(), Attempt: n, TaskID: "orig-r1", Class: jobs.ClassRetryable, Error: "again"}); err != nil {
			t.Fatal(err)
		}
	}
	again, mode, err := b.store.Dead(ctx, Death{Queue: "default", TaskID: "orig-r1", Kind: "test.step", ReplayOf: id,
		Payload: []byte(`{"mode":"toggle"}`), MaxAttempts: 3, Source: SourceWorker,
		Final: Attempt{At: b.clock.Now(), Attempt: 3, TaskID: "orig-r1", Class: jobs.ClassTimeout, Error: "slow"}})
	if err != nil || again != id || mode != modeAppended {
		t.Fatalf("Dead = %q %q %v; want the same record appended", again, mode, err)
	}
	r := b.get(t, id)
	if r.Status != StatusDead || r.Attempts != 4 || len(r.History) != 4 || r.ArchivedTask != "orig-r1" || r.Class != jobs.ClassTimeout {
		t.Fatalf("dead again: %+v", r)
	}
	if r.History[0].TaskID != "orig" || r.History[3].TaskID != "orig-r1" || r.History[3].Attempt != 3 {
		t.Fatalf("history = %+v", r.History)
	}
	if n, _ := b.store.Count(ctx); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
	// Replay again; its success resolves the record.
	rep, err = b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil || rep.TaskID != "orig-r2" {
		t.Fatalf("second Replay = %+v, %v", rep, err)
	}
	if got, err := b.store.Succeeded(ctx, "default", "orig-r2", id); err != nil || got != id {
		t.Fatalf("Succeeded = %q, %v", got, err)
	}
	if r := b.get(t, id); r.Status != StatusResolved || r.ResolvedAt == nil {
		t.Fatalf("after success: %+v", r)
	}
	// A stale success of the first replay task changes nothing.
	if got, _ := b.store.Succeeded(ctx, "default", "orig-r1", id); got != "" {
		t.Fatalf("stale success resolved %q", got)
	}
}

func TestTaskIDReuseAfterReplayCreatesANewRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	first := b.deadDirect(t, Death{TaskID: "k-abc"})
	if _, err := b.store.Replay(ctx, first, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Succeeded(ctx, "default", "k-abc-r1", first); err != nil {
		t.Fatal(err)
	}
	// Later the same deterministic task id dies again: a new story.
	second := b.deadDirect(t, Death{TaskID: "k-abc"})
	if second == first {
		t.Fatalf("death of a reused task id appended to resolved record %s", first)
	}
	if r := b.get(t, first); r.Status != StatusResolved {
		t.Fatalf("first record = %s", r.Status)
	}
}

func TestListSelectors(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	now := b.clock.Now()
	mk := func(task, q, wf, kind string, class jobs.Class, msg string, ago time.Duration) string {
		run := ""
		if wf != "" {
			run = "run-" + wf
		}
		return b.deadDirect(t, Death{TaskID: task, Queue: q, Workflow: wf, RunID: run, Kind: kind,
			Final: Attempt{At: now.Add(-ago), Class: class, Error: msg}})
	}
	a := mk("a", "default", "research", "http.call", jobs.ClassRetryable, "http 503 Service Unavailable", time.Hour)
	c := mk("c", "critical", "research", "http.call", jobs.ClassPermanent, "http 400 Bad Request", 2*time.Hour)
	d := mk("d", "default", "publish", "noop", jobs.ClassTimeout, "attempt timed out after 5s", 48*time.Hour)
	e := mk("e", "default", "", "http.call", jobs.ClassPanic, "panic: nil map", time.Minute)
	if !b.store.mark(ctx, d, StatusDead, "archived_task", "d", StatusDeleted, "test") {
		t.Fatal("mark failed")
	}
	tests := []struct {
		name string
		f    Filter
		want []string // newest failure first
	}{
		{"all", Filter{}, []string{e, a, c, d}},
		{"queue", Filter{Queue: "critical"}, []string{c}},
		{"workflow", Filter{Workflow: "research"}, []string{a, c}},
		{"run", Filter{RunID: "run-publish"}, []string{d}},
		{"kind", Filter{Kind: "noop"}, []string{d}},
		{"error text, any case", Filter{Error: "SERVICE unavailable"}, []string{a}},
		{"class", Filter{Class: jobs.ClassPanic}, []string{e}},
		{"since", Filter{Since: now.Add(-90 * time.Minute)}, []string{e, a}},
		{"status", Filter{Statuses: []Status{StatusDeleted}}, []string{d}},
		{"statuses", Filter{Statuses: []Status{StatusDead}}, []string{e, a, c}},
		{"limit", Filter{Limit: 2}, []string{e, a}},
		{"combined", Filter{Queue: "default", Kind: "http.call", Since: now.Add(-3 * time.Hour)}, []string{e, a}},
		{"none", Filter{Workflow: "nope"}, nil},
	}
	for _, tt := range tests {
		recs, err := b.store.List(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}

	st, err := b.store.Stats(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 4 || st.ByStatus["dead"] != 3 || st.ByStatus["deleted"] != 1 || st.ByQueue["default"] != 3 ||
		st.ByWorkflow["research"] != 2 || st.ByWorkflow[""] != 1 || st.ByKind["http.call"] != 3 || st.ByClass["panic"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if st.Oldest == nil || st.Oldest.ID != d {
		t.Fatalf("oldest = %+v, want %s", st.Oldest, d)
	}
	if st, _ := b.store.Stats(ctx, Filter{Workflow: "research"}); st.Total != 2 || st.Oldest.ID != c {
		t.Fatalf("filtered stats = %+v", st)
	}
	if st, _ := b.store.Stats(ctx, Filter{RunID: "run-research"}); st.Total != 2 || st.Oldest.ID != c {
		t.Fatalf("stats of one run = %+v", st)
	}
}

func TestRetentionDropsWithLogAndMetric(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RetentionAge: time.Hour, RetentionCount: 3})
	ctx := context.Background()
	now := b.clock.Now()
	var ids []string
	for i, ago := range []time.Duration{3 * time.Hour, 2 * time.Hour, 30 * time.Minute, 20 * time.Minute, 10 * time.Minute, time.Minute} {
		ids = append(ids, b.deadDirect(t, Death{TaskID: fmt.Sprint("t", i), Final: Attempt{At: now.Add(-ago)}}))
	}
	tr, err := b.store.Trim(ctx)
	if err != nil || tr.ByAge != 2 || tr.ByCount != 1 {
		t.Fatalf("Trim = %+v, %v; want 2 by age, 1 by count", tr, err)
	}
	recs, _ := b.store.List(ctx, Filter{})
	if len(recs) != 3 || recs[2].ID != ids[3] {
		t.Fatalf("left %d records, oldest %v; want the 3 newest", len(recs), recs)
	}
	lines := b.logs.lines("dead-letter retention dropped records")
	if len(lines) != 2 || lines[0]["reason"] != "age" || lines[0]["dropped"] != 2.0 || lines[1]["reason"] != "count" {
		t.Fatalf("retention log lines = %v", lines)
	}
	if got := b.counter(t, "agentq_dlq_trimmed_total", map[string]string{"reason": "age"}); got != 2 {
		t.Fatalf("trimmed{age} = %v", got)
	}
	if got := b.counter(t, "agentq_dlq_trimmed_total", map[string]string{"reason": "count"}); got != 1 {
		t.Fatalf("trimmed{count} = %v", got)
	}
	if v := b.rdb.Get(ctx, taskKey("default", "t0")).Val(); v != tombstone {
		t.Fatalf("task of a trimmed record maps to %q, want a tombstone", v)
	}
	// No retention: nothing is ever dropped.
	s, _ := New(b.rdb, Config{Now: func() time.Time { return now.Add(365 * 24 * time.Hour) }})
	if tr, err := s.Trim(ctx); err != nil || tr != (Trimmed{}) {
		t.Fatalf("Trim without retention = %+v, %v", tr, err)
	}
	if n, _ := b.store.Count(ctx); n != 3 {
		t.Fatalf("%d records after a trim without retention", n)
	}
}

func TestTwentyThousandRecordsListedAndCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	const n = 20000
	base := b.clock.Now()
	start := time.Now()
	for lo := 0; lo < n; lo += 1000 {
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < lo+1000; i++ {
				task := fmt.Sprintf("task-%05d", i)
				// 20 records share each millisecond, so paging crosses
				// equal scores.
				at := base.Add(time.Duration(i/20) * time.Millisecond)
				a := Attempt{At: at, Attempt: 1, TaskID: task, Class: jobs.ClassPermanent, Error: "http 400"}
				deadScript.Eval(ctx, p, []string{seqKey(), indexKey(), liveKey(), pendingKey("default", task), taskKey("default", task)},
					keyPrefix, ms(at), SourceWorker, "default", task, "http.call", "wf", "run", "", "", `{"url":"x"}`, "{}", 3,
					"permanent", "http 400", ms(at), a.encode(), "")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("inserted %d records in %v", n, time.Since(start))

	start = time.Now()
	recs, err := b.store.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	listed := time.Since(start)
	seen := map[string]bool{}
	for i, r := range recs {
		seen[r.ID] = true
		if i > 0 && r.FailedAt.After(recs[i-1].FailedAt) {
			t.Fatalf("list out of order at %d", i)
		}
	}
	if len(recs) != n || len(seen) != n {
		t.Fatalf("listed %d records (%d distinct), want %d", len(recs), len(seen), n)
	}
	start = time.Now()
	st, err := b.store.Stats(ctx, Filter{})
	if err != nil || st.Total != n || st.ByQueue["default"] != n || st.ByClass["permanent"] != n {
		t.Fatalf("stats = %+v, %v", st, err)
	}
	t.Logf("listed %d records in %v, stats in %v", n, listed, time.Since(start))
	// Since and Limit page from the index too.
	recs, _ = b.store.List(ctx, Filter{Since: base.Add(999 * time.Millisecond)})
	if len(recs) != 20*1 {
		t.Fatalf("since the last ms: %d records, want 20", len(recs))
	}
	if recs, _ = b.store.List(ctx, Filter{Limit: 1234}); len(recs) != 1234 {
		t.Fatalf("limit: %d records", len(recs))
	}
}
