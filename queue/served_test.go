package queue

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentq/agentq/internal/redistest"
)

// TestServedQueuesMatchesAsynq pins ServedQueues to what a real asynq
// server writes: its queues while it runs, none once it stopped.
func TestServedQueuesMatchesAsynq(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	insp := NewInspector(rdb)
	ctx := context.Background()
	got, err := insp.ServedQueues(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("no server: got %v, %v; want none", got, err)
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues: map[string]int{"alpha": 1, "beta": 3}, Concurrency: 1, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Shutdown()
		}
	})
	want := map[string]bool{"alpha": true, "beta": true}
	// The heartbeater writes the server's record as the server starts.
	waitFor(t, 5*time.Second, "the server's record", func() bool {
		got, err = insp.ServedQueues(ctx)
		return err == nil && len(got) > 0
	})
	if !maps.Equal(got, want) {
		t.Fatalf("served = %v, want %v", got, want)
	}
	srv.Shutdown()
	stopped = true
	if got, err = insp.ServedQueues(ctx); err != nil || len(got) != 0 {
		t.Fatalf("after shutdown: got %v, %v; want none", got, err)
	}
}

func TestServedQueuesSkipsBadAndStoppedRecords(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	entry := func(q string) []byte {
		e := protowire.AppendTag(nil, 1, protowire.BytesType)
		e = protowire.AppendString(e, q)
		e = protowire.AppendTag(e, 2, protowire.VarintType)
		return protowire.AppendVarint(e, 1)
	}
	record := func(status string, queues ...string) string {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, "host")
		for _, q := range queues {
			b = protowire.AppendTag(b, siQueues, protowire.BytesType)
			b = protowire.AppendBytes(b, entry(q))
		}
		b = protowire.AppendTag(b, siStatus, protowire.BytesType)
		b = protowire.AppendString(b, status)
		return string(b)
	}
	live := float64(time.Now().Add(time.Minute).Unix())
	for _, s := range []struct {
		key, val string
		score    float64
	}{
		{"asynq:servers:{host:1:a}", record("active", "q1", "q2"), live},
		{"asynq:servers:{host:1:b}", record("stopped", "q3"), live},
		{"asynq:servers:{host:1:c}", "\xff\xff\xff", live},
		{"asynq:servers:{host:1:d}", record("active", "q4"), float64(time.Now().Add(-time.Minute).Unix())},
		{"asynq:servers:{host:1:e}", "", live}, // indexed, record gone
	} {
		if s.val != "" {
			rdb.Set(ctx, s.key, s.val, 0)
		}
		rdb.ZAdd(ctx, asynqAllServers, redis.Z{Score: s.score, Member: s.key})
	}
	got, err := NewInspector(rdb).ServedQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"q1": true, "q2": true}; !maps.Equal(got, want) {
		t.Fatalf("served = %v, want %v", got, want)
	}
}
