package queue

import (
	"context"
	"strconv"
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
		if err := rdb.HDel(ctx, asynqTaskKey("alpha", "p1"), "pending_since").Err(); err != nil {
			t.Fatal(err)
		}
		got, _, err := b.in.Depths(ctx, 0)
		if err != nil || got[0].Pending != 3 || got[0].OldestPending != 0 {
			t.Fatalf("Depths = %+v, %v; want 3 pending, no age", got, err)
		}
	})
}

func TestDepthsNoQueues(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	got, truncated, err := b.in.Depths(context.Background(), 0)
	if err != nil || truncated || len(got) != 0 {
		t.Fatalf("Depths on an empty Redis = %+v, %v, %v", got, truncated, err)
	}
}
