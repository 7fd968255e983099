package queue

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/internal/redistest"
)

// TestDepths fills two queues through asynq's own client and inspector and
// checks every count, the oldest pending task's age, pausing, the bound on
// queues, and a flushed script cache (on a Redis of its own: SCRIPT FLUSH
// is server-wide).
func TestDepths(t *testing.T) {
	t.Parallel()
	rdb := redistest.StartExclusive(t).Client(t)
	b := inspectBundle{in: NewInspector(rdb), ac: asynq.NewClientFromRedisClient(rdb), asynq: asynq.NewInspectorFromRedisClient(rdb)}
	ctx := context.Background()
	enqueue := func(q, id string, opts ...asynq.Option) {
		t.Helper()
		if _, err := b.ac.Enqueue(asynq.NewTask("test.kind", nil), append(opts, asynq.Queue(q), asynq.TaskID(id))...); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"p1", "p2", "p3"} {
		enqueue("alpha", id)
	}
	enqueue("alpha", "s1", asynq.ProcessIn(time.Hour))
	enqueue("alpha", "a1")
	if err := b.asynq.ArchiveTask("alpha", "a1"); err != nil {
		t.Fatal(err)
	}
	enqueue("beta", "s2", asynq.ProcessIn(time.Hour))
	if err := b.asynq.PauseQueue("beta"); err != nil {
		t.Fatal(err)
	}
	// p1 is the oldest pending task: say it has waited 90 seconds.
	since := time.Now().Add(-90 * time.Second).UnixNano()
	if err := rdb.HSet(ctx, asynqTaskKey("alpha", "p1"), "pending_since", strconv.FormatInt(since, 10)).Err(); err != nil {
		t.Fatal(err)
	}

	got, truncated, err := b.in.Depths(ctx, 0)
	if err != nil || truncated || len(got) != 2 {
		t.Fatalf("Depths = %+v, %v, %v; want two queues", got, truncated, err)
	}
	alpha, beta := got[0], got[1]
	if alpha.OldestPending < 90*time.Second || alpha.OldestPending > 120*time.Second {
		t.Errorf("alpha's oldest pending waited %v, want 90s and a little", alpha.OldestPending)
	}
	alpha.OldestPending = 0
	if want := (Depth{Queue: "alpha", Pending: 3, Scheduled: 1, Archived: 1}); alpha != want {
		t.Errorf("alpha = %+v, want %+v", alpha, want)
	}
	if want := (Depth{Queue: "beta", Scheduled: 1, Paused: true}); beta != want {
		t.Errorf("beta = %+v, want %+v", beta, want)
	}

	t.Run("bounded", func(t *testing.T) {
		got, truncated, err := b.in.Depths(ctx, 1)
		if err != nil || !truncated || len(got) != 1 || got[0].Queue != "alpha" {
			t.Fatalf("Depths(max 1) = %+v, %v, %v; want alpha only, truncated", got, truncated, err)
		}
	})
	t.Run("script cache flushed", func(t *testing.T) {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		got, _, err := b.in.Depths(ctx, 0)
		if err != nil || len(got) != 2 || got[0].Pending != 3 {
			t.Fatalf("Depths after SCRIPT FLUSH = %+v, %v", got, err)
		}
	})
	t.Run("a pending task without pending_since", func(t *testing.T) {
		// What asynq's requeue (a stopping worker putting its task back)
		// leaves: the head task p1 has no pending_since. The age is then
		// p2's, the nearest behind it that has one (60s here).
		if err := rdb.HDel(ctx, asynqTaskKey("alpha", "p1"), "pending_since").Err(); err != nil {
			t.Fatal(err)
		}
		p2 := time.Now().Add(-60 * time.Second).UnixNano()
		if err := rdb.HSet(ctx, asynqTaskKey("alpha", "p2"), "pending_since", strconv.FormatInt(p2, 10)).Err(); err != nil {
			t.Fatal(err)
		}
		got, _, err := b.in.Depths(ctx, 0)
		if err != nil || got[0].Pending != 3 || got[0].OldestPending < 60*time.Second || got[0].OldestPending > 90*time.Second {
			t.Fatalf("Depths = %+v, %v; want 3 pending, p2's age (60s and a little)", got, err)
		}
		// None of them has one: no age.
		for _, id := range []string{"p2", "p3"} {
			if err := rdb.HDel(ctx, asynqTaskKey("alpha", id), "pending_since").Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err = b.in.Depths(ctx, 0)
		if err != nil || got[0].Pending != 3 || got[0].OldestPending != 0 {
			t.Fatalf("Depths = %+v, %v; want 3 pending, no age", got, err)
		}
	})
}

// TestDepthsAfterRequeue: a worker stopped while its task ran puts it
// back at the head of the pending list without pending_since (asynq's
// shutdown requeue); the oldest pending age is then that of the task
// behind it, not 0. The stop is a real asynq.Server's.
func TestDepthsAfterRequeue(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	ac := asynq.NewClientFromRedisClient(rdb)
	for _, id := range []string{"first", "second"} {
		if _, err := ac.Enqueue(asynq.NewTask("test.kind", nil), asynq.Queue("rq"), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	// second has waited 45s.
	since := time.Now().Add(-45 * time.Second).UnixNano()
	if err := rdb.HSet(ctx, asynqTaskKey("rq", "second"), "pending_since", strconv.FormatInt(since, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"rq": 1}, ShutdownTimeout: 10 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		close(started)
		<-ctx.Done() // runs until the shutdown gives up on it
		return ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	<-started
	srv.Shutdown() // puts "first" back at the head, without pending_since

	head, err := rdb.LIndex(ctx, asynqPendingKey("rq"), -1).Result()
	if err != nil || head != "first" {
		t.Fatalf("head of pending = %q, %v; want the requeued task", head, err)
	}
	if n, _ := rdb.HExists(ctx, asynqTaskKey("rq", "first"), "pending_since").Result(); n {
		t.Fatal("the requeued task has pending_since: asynq changed, revisit depthScript's fallback")
	}
	got, _, err := NewInspector(rdb).Depths(ctx, 0)
	if err != nil || len(got) != 1 || got[0].Pending != 2 || got[0].Err != nil {
		t.Fatalf("Depths = %+v, %v; want rq with 2 pending", got, err)
	}
	if age := got[0].OldestPending; age < 45*time.Second || age > 75*time.Second {
		t.Errorf("oldest pending = %v, want second's age, 45s and a little", age)
	}
}

// TestDepthsOneQueueFails: a queue whose read fails (here its pending key
// is of the wrong type, as a Cluster master down fails its queues' reads)
// comes back with Err set; the others are read.
func TestDepthsOneQueueFails(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	ac := asynq.NewClientFromRedisClient(rdb)
	for _, q := range []string{"a", "c"} {
		if _, err := ac.Enqueue(asynq.NewTask("test.kind", nil), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.SAdd(ctx, asynqAllQueues, "b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, asynqPendingKey("b"), "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, truncated, err := NewInspector(rdb).Depths(ctx, 0)
	if err != nil || truncated || len(got) != 3 {
		t.Fatalf("Depths = %+v, %v, %v; want three queues", got, truncated, err)
	}
	for _, d := range got {
		switch d.Queue {
		case "b":
			if d.Err == nil || !strings.Contains(d.Err.Error(), `"b"`) || d.Pending != 0 {
				t.Errorf("b = %+v, want an error naming it and no counts", d)
			}
		default:
			if d.Err != nil || d.Pending != 1 {
				t.Errorf("%s = %+v, want 1 pending, no error", d.Queue, d)
			}
		}
	}
}

func TestDepthsNoQueues(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	got, truncated, err := b.in.Depths(context.Background(), 0)
	if err != nil || truncated || len(got) != 0 {
		t.Fatalf("Depths on an empty Redis = %+v, %v, %v", got, truncated, err)
	}
}
