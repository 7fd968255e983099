package metrics

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/queue"
)

// TestQueueGaugesFromRedis fills real queues through asynq and scrapes
// the gauges: depth by state, the oldest pending age, pausing, and the
// dead-letter count.
func TestQueueGaugesFromRedis(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ac := asynq.NewClientFromRedisClient(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	for i := range 4 {
		if _, err := ac.Enqueue(asynq.NewTask("k", nil), asynq.Queue("jobs"), asynq.TaskID("p"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ac.Enqueue(asynq.NewTask("k", nil), asynq.Queue("jobs"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Enqueue(asynq.NewTask("k", nil), asynq.Queue("held"), asynq.TaskID("a1")); err != nil {
		t.Fatal(err)
	}
	if err := ins.ArchiveTask("held", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := ins.PauseQueue("held"); err != nil {
		t.Fatal(err)
	}
	// The oldest pending task of jobs (p0) has waited two minutes.
	since := time.Now().Add(-2 * time.Minute).UnixNano()
	if err := rdb.HSet(context.Background(), "asynq:{jobs}:t:p0", "pending_since", strconv.FormatInt(since, 10)).Err(); err != nil {
		t.Fatal(err)
	}

	in := queue.NewInspector(rdb)
	reg := prometheus.NewRegistry()
	if err := RegisterQueues(reg, QueueConfig{
		Depths:      func(ctx context.Context) ([]queue.Depth, bool, error) { return in.Depths(ctx, 0) },
		DeadLetters: func(context.Context) (int64, error) { return 7, nil },
	}); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, Handler(reg))
	wantLines(t, out,
		`agentq_queue_depth{queue="jobs",state="pending"} 4`,
		`agentq_queue_depth{queue="jobs",state="scheduled"} 1`,
		`agentq_queue_depth{queue="jobs",state="active"} 0`,
		`agentq_queue_depth{queue="jobs",state="retry"} 0`,
		`agentq_queue_depth{queue="jobs",state="archived"} 0`,
		`agentq_queue_depth{queue="held",state="archived"} 1`,
		`agentq_queue_depth{queue="held",state="pending"} 0`,
		`agentq_queue_oldest_pending_seconds{queue="held"} 0`,
		`agentq_queue_paused{queue="held"} 1`,
		`agentq_queue_paused{queue="jobs"} 0`,
		`agentq_queue_depth_truncated 0`,
		`agentq_queue_depth_errors 0`,
		`agentq_dlq_records 7`,
	)
	age := -1.0
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, `agentq_queue_oldest_pending_seconds{queue="jobs"} `); ok {
			age, _ = strconv.ParseFloat(v, 64)
		}
	}
	if age < 120 || age > 150 {
		t.Errorf("oldest pending of jobs = %v s, want 120 and a little:\n%s", age, out)
	}
}

// TestQueueGaugesOneQueueFails: one queue whose read fails (its pending
// key holds a string, as a Cluster master down fails its queues' reads)
// is left out and counted; the other queues' gauges are served.
func TestQueueGaugesOneQueueFails(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	ac := asynq.NewClientFromRedisClient(rdb)
	for _, q := range []string{"a", "c"} {
		if _, err := ac.Enqueue(asynq.NewTask("k", nil), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.SAdd(ctx, "asynq:queues", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "asynq:{b}:pending", "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	in := queue.NewInspector(rdb)
	reg := prometheus.NewRegistry()
	if err := RegisterQueues(reg, QueueConfig{
		Depths: func(ctx context.Context) ([]queue.Depth, bool, error) { return in.Depths(ctx, 0) },
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("Gather: %v; one queue's failure should not fail the scrape", err)
	}
	out := scrape(t, Handler(reg))
	wantLines(t, out,
		`agentq_queue_depth{queue="a",state="pending"} 1`,
		`agentq_queue_depth{queue="c",state="pending"} 1`,
		`agentq_queue_paused{queue="c"} 0`,
		`agentq_queue_depth_errors 1`,
	)
	if strings.Contains(out, `queue="b"`) {
		t.Errorf("queue b, not read, has gauges:\n%s", out)
	}
}

// TestQueueGaugesReadError: a failed read is reported in the scrape
// (promhttp ContinueOnError) and the rest is still served.
func TestQueueGaugesReadError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "other_gauge", Help: "x"})
	g.Set(3)
	reg.MustRegister(g)
	if err := RegisterQueues(reg, QueueConfig{
		Depths: func(context.Context) ([]queue.Depth, bool, error) { return nil, false, errors.New("redis down") },
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "redis down") {
		t.Fatalf("Gather error = %v, want the read error", err)
	}
	wantLines(t, scrape(t, Handler(reg)), "other_gauge 3")
	if err := RegisterQueues(prometheus.NewRegistry(), QueueConfig{}); err == nil {
		t.Fatal("RegisterQueues without Depths: no error")
	}
}
