package dlq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestSweepRecordsATaskArchivedByHand(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.enqueue(t, "ok", queue.EnqueueOptions{RunID: "run-h", Key: "key-h"})
	if err := b.insp.ArchiveTask("default", id); err != nil {
		t.Fatal(err)
	}
	sw, err := b.store.Sweep(ctx)
	if err != nil || sw.Recorded != 1 {
		t.Fatalf("Sweep = %+v, %v; want 1 recorded", sw, err)
	}
	recs, _ := b.store.List(ctx, Filter{})
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := b.get(t, recs[0].ID)
	if r.TaskID != id || r.Class != ClassManual || r.Source != SourceReconciler || r.RunID != "run-h" || r.Key != "key-h" ||
		string(r.Payload) != `{"mode":"ok"}` || r.MaxAttempts != 3 || r.Status != StatusDead || len(r.History) != 1 || r.Note == "" {
		t.Fatalf("record = %+v", r)
	}
	// Seen once, recorded once.
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Recorded != 0 {
		t.Fatalf("second Sweep = %+v, %v", sw, err)
	}
	if n, _ := b.store.Count(ctx); n != 1 {
		t.Fatalf("%d records after two sweeps", n)
	}
	if got := b.counter(t, "agentq_dlq_recorded_total", map[string]string{"source": "reconciler"}); got != 1 {
		t.Fatalf("recorded{reconciler} = %v", got)
	}
}

// dequeueAsCrashed moves a pending task to active with a lease that expired
// a minute ago, exactly as asynq's dequeue script leaves a task whose worker
// then died (asynq v0.26, internal/rdb dequeueCmd), without a worker process
// to kill. The end-to-end test kills a real one.
var dequeueAsCrashed = redis.NewScript(`
local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[2])
if not id then return false end
redis.call("HSET", ARGV[2] .. id, "state", "active")
redis.call("HDEL", ARGV[2] .. id, "pending_since")
redis.call("ZADD", KEYS[3], ARGV[1], id)
return id`)

func TestSweepRecordsATaskArchivedByLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	// A task on its last attempt (no retry left), as any asynq client may
	// enqueue it.
	ac := asynq.NewClientFromRedisClient(b.rdb)
	info, err := ac.Enqueue(asynq.NewTaskWithHeaders("test.step", []byte(`{"mode":"ok"}`),
		map[string]string{jobs.HeaderRunID: "run-crash"}), asynq.MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := dequeueAsCrashed.Run(ctx, b.rdb,
		[]string{"asynq:{default}:pending", "asynq:{default}:active", "asynq:{default}:lease"},
		time.Now().Add(-time.Minute).Unix(), "asynq:{default}:t:").Text()
	if err != nil || got != info.ID {
		t.Fatalf("dequeue = %q, %v", got, err)
	}
	// A worker starting up runs asynq's recoverer, which archives the task:
	// its lease expired and it has no retry left. The worker's middleware
	// never sees it.
	b.startWorker(t)
	waitFor(t, 10*time.Second, "the recoverer to archive the task", func() bool { return b.taskState(t, info.ID) == queue.TaskArchived })
	if n, _ := b.store.Count(ctx); n != 0 {
		t.Fatalf("%d records before the sweep; the middleware cannot have seen this death", n)
	}
	sw, err := b.store.Sweep(ctx)
	if err != nil || sw.Recorded != 1 {
		t.Fatalf("Sweep = %+v, %v", sw, err)
	}
	recs, _ := b.store.List(ctx, Filter{})
	if len(recs) != 1 || recs[0].Class != jobs.ClassLeaseExpired || recs[0].RunID != "run-crash" || recs[0].TaskID != info.ID ||
		!strings.Contains(recs[0].Error, "lease expired") {
		t.Fatalf("records = %+v", recs)
	}
}

func TestSweepReflectsAsynqmonRunAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	b.failing.Store(true)
	w := b.startWorker(t)
	del := b.enqueue(t, "toggle", queue.EnqueueOptions{Key: "del"})
	run1 := b.enqueue(t, "toggle", queue.EnqueueOptions{Key: "run1"}) // dies at attempt 1
	run3 := b.enqueue(t, "flip", queue.EnqueueOptions{Key: "run3"})   // dies at attempt 3
	spent := b.enqueue(t, "fail", queue.EnqueueOptions{Key: "spent"})
	for _, id := range []string{del, run1, run3, spent} {
		waitFor(t, 10*time.Second, "archive of "+id, func() bool { return b.taskState(t, id) == queue.TaskArchived })
	}
	w.Shutdown()
	ids := map[string]string{}
	recs, _ := b.store.List(ctx, Filter{})
	for _, r := range recs {
		ids[r.TaskID] = r.ID
	}
	if len(ids) != 4 {
		t.Fatalf("records = %+v", recs)
	}
	if err := b.insp.DeleteTask("default", del); err != nil {
		t.Fatal(err)
	}
	if err := b.insp.RunTask("default", run1); err != nil {
		t.Fatal(err)
	}
	// Within the grace nothing is judged: the worker records a death just
	// before asynq archives the task.
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Deleted+sw.Rerun != 0 {
		t.Fatalf("Sweep within grace = %+v, %v", sw, err)
	}
	b.clock.Advance(2 * time.Minute)
	sw, err := b.store.Sweep(ctx)
	if err != nil || sw.Deleted != 1 || sw.Rerun != 1 || sw.Recorded != 0 {
		t.Fatalf("Sweep = %+v, %v; want 1 deleted, 1 rerun", sw, err)
	}
	if r := b.get(t, ids[del]); r.Status != StatusDeleted || !strings.Contains(r.Note, "deleted") || !r.Status.Replayable() {
		t.Fatalf("deleted record = %+v", r)
	}
	if r := b.get(t, ids[run1]); r.Status != StatusRerun {
		t.Fatalf("rerun record = %+v", r)
	}
	if r := b.get(t, ids[spent]); r.Status != StatusDead {
		t.Fatalf("untouched record = %+v", r)
	}

	// The rerun succeeds on attempt 1 (it died of a permanent error): that
	// is the happy path, unseen by the store; the next sweep finds the task
	// gone without failing.
	b.failing.Store(false)
	b.startWorker(t)
	waitFor(t, 10*time.Second, "the rerun to finish", func() bool { return b.taskState(t, run1) == gone })
	b.clock.Advance(2 * time.Minute)
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Resolved != 1 {
		t.Fatalf("Sweep after rerun = %+v, %v", sw, err)
	}
	if r := b.get(t, ids[run1]); r.Status != StatusResolved {
		t.Fatalf("rerun record after success = %+v", r)
	}
	// A task that spent its retries runs again with Attempt > 1: its success
	// resolves the record at once, through the middleware.
	if err := b.insp.RunTask("default", run3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rerun to resolve its record", func() bool { return b.get(t, ids[run3]).Status == StatusResolved })
	// A rerun that dies again appends to the same record.
	if err := b.insp.RunTask("default", spent); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the rerun to die again", func() bool { return b.get(t, ids[spent]).Attempts == 4 })
	if r := b.get(t, ids[spent]); r.Status != StatusDead || r.History[3].TaskID != spent {
		t.Fatalf("record after the rerun died = %+v", r)
	}
	if n, _ := b.store.Count(ctx); n != 4 {
		t.Fatalf("%d records, want 4", n)
	}
}

func TestSweepMarksAVanishedReplayDeleted(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "v"})
	rep, err := b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.insp.DeleteTask("default", rep.TaskID); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(2 * time.Minute)
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Deleted != 1 {
		t.Fatalf("Sweep = %+v, %v", sw, err)
	}
	if r := b.get(t, id); r.Status != StatusDeleted {
		t.Fatalf("record = %+v", r)
	}
	rep, err = b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil || rep.TaskID != "v-r2" {
		t.Fatalf("replay after vanish = %+v, %v", rep, err)
	}
}

func TestSweepAppendsAReplayArchivedOutsideTheWorker(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "x"})
	rep, err := b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The replay task is archived without a worker seeing it die (by hand
	// here; lease expiry on its last attempt looks the same to the store).
	if err := b.insp.ArchiveTask("default", rep.TaskID); err != nil {
		t.Fatal(err)
	}
	sw, err := b.store.Sweep(ctx)
	if err != nil || sw.Recorded != 1 {
		t.Fatalf("Sweep = %+v, %v", sw, err)
	}
	r := b.get(t, id)
	if r.Status != StatusDead || r.ArchivedTask != rep.TaskID || r.Attempts != 2 || r.History[1].Class != ClassManual {
		t.Fatalf("record = %+v", r)
	}
	if n, _ := b.store.Count(ctx); n != 1 {
		t.Fatalf("%d records, want the replay's death on the original", n)
	}
	if sw, _ := b.store.Sweep(ctx); sw.Recorded != 0 {
		t.Fatalf("second sweep recorded %d", sw.Recorded)
	}
}

func TestSweepKeepsWhatAsynqTrims(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	// A death the worker recorded whose archived task asynq has since
	// dropped: its archive keeps tasks for 90 days.
	id := b.deadDirect(t, Death{TaskID: "old"})
	b.clock.Advance(91 * 24 * time.Hour)
	if _, err := b.store.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	r := b.get(t, id)
	if r.Status != StatusDead || r.ArchivedTask != "" || !strings.Contains(r.Note, "trims") {
		t.Fatalf("record = %+v", r)
	}
	if b.rdb.ZScore(ctx, liveKey(), id).Err() != redis.Nil {
		t.Fatal("record still watched")
	}
}

func TestPurgeTombstonesAndDeletesTheArchivedTask(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	task := b.enqueue(t, "ok", queue.EnqueueOptions{})
	if err := b.insp.ArchiveTask("default", task); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	recs, _ := b.store.List(ctx, Filter{})
	purged, err := b.store.Purge(ctx, recs[0].ID, "nope")
	if err != nil || len(purged) != 1 || !purged[0].ArchiveDeleted {
		t.Fatalf("Purge = %+v, %v", purged, err)
	}
	if b.taskState(t, task) != gone {
		t.Fatal("archived task still in asynq")
	}
	if _, err := b.store.Get(ctx, recs[0].ID); err == nil {
		t.Fatal("record still there")
	}
	// Archived again by hand under the same id would be a new death; the
	// tombstone only stops the reconciler from resurrecting the purged one
	// while asynq still held it. Simulate asynq holding it still:
	if err := b.rdb.ZAdd(ctx, "asynq:{default}:archived", redis.Z{Score: 1, Member: task}).Err(); err != nil {
		t.Fatal(err)
	}
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Recorded != 0 {
		t.Fatalf("Sweep after purge = %+v, %v", sw, err)
	}
}

// TestSweepRecordsAWorkerDeathCaptureMissed: a worker's dead outcome whose
// capture write did not land (here: no capture observer at all) is
// recorded by the sweep with what asynq tells: its last error, permanent
// or retries spent, the attempt it died on; never as archived by hand.
// A task archived by hand is still manual.
func TestSweepRecordsAWorkerDeathCaptureMissed(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	log := zerolog.New(b.logs)
	w, err := queue.NewWorker(b.rdb, b.reg, queue.WorkerConfig{
		Concurrency: 2, PollInterval: 5 * time.Millisecond, DelayedCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, Logger: &log,
		Retry: jobs.RetryPolicy{MaxAttempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	permanent := b.enqueue(t, "permanent", queue.EnqueueOptions{RunID: "run-p"})
	spent := b.enqueue(t, "fail", queue.EnqueueOptions{})
	waitFor(t, 20*time.Second, "both tasks archived", func() bool {
		return b.taskState(t, permanent) == queue.TaskArchived && b.taskState(t, spent) == queue.TaskArchived
	})
	w.Shutdown()
	byHand := b.enqueue(t, "ok", queue.EnqueueOptions{})
	if err := b.insp.ArchiveTask("default", byHand); err != nil {
		t.Fatal(err)
	}
	if sw, err := b.store.Sweep(ctx); err != nil || sw.Recorded != 3 {
		t.Fatalf("Sweep = %+v, %v; want 3 recorded", sw, err)
	}
	recs, err := b.store.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Record{}
	for _, r := range recs {
		got[r.TaskID] = b.get(t, r.ID)
	}
	tests := []struct {
		name     string
		id       string
		class    jobs.Class
		attempt  int
		errorHas string
	}{
		{"permanent", permanent, jobs.ClassPermanent, 1, "bad request"},
		{"retries spent", spent, jobs.ClassRetryable, 3, "upstream broke"},
		{"archived by hand", byHand, ClassManual, 0, "archived by hand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := got[tc.id]
			if !ok {
				t.Fatalf("no record of task %s", tc.id)
			}
			last := r.History[len(r.History)-1]
			if r.Class != tc.class || r.Source != SourceReconciler || last.Attempt != tc.attempt || !strings.Contains(last.Error, tc.errorHas) {
				t.Fatalf("record = class %s source %s attempt %d error %q; want %s, reconciler, %d, %q",
					r.Class, r.Source, last.Attempt, last.Error, tc.class, tc.attempt, tc.errorHas)
			}
			if tc.class != ClassManual && (strings.Contains(r.Note, "by hand") || strings.Contains(r.Note, "outside")) {
				t.Errorf("a worker's death is noted %q", r.Note)
			}
		})
	}
}
