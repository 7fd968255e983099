package queue

import (
	"context"
	"testing"
	"time"
)

// TestProcessedTotal pins ProcessedTotal to asynq's own count (the
// inspector's ProcessedTotal): 0 before any attempt, then every ended
// attempt, failures included.
func TestProcessedTotal(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	ctx := context.Background()
	if n, err := ProcessedTotal(ctx, b.rdb, QueueDefault); err != nil || n != 0 {
		t.Fatalf("ProcessedTotal before any task = %d, %v; want 0", n, err)
	}
	for _, p := range []string{`{"n":1}`, `{"n":1}`, `{"n":1,"mode":"permanent"}`} {
		if _, err := b.client.Enqueue(ctx, "test.echo", []byte(p), EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w := b.startWorker(t, WorkerConfig{})
	defer w.Shutdown()
	waitFor(t, 10*time.Second, "asynq to count 3 processed", func() bool {
		qi, err := b.insp.GetQueueInfo(QueueDefault)
		return err == nil && qi.ProcessedTotal == 3
	})
	if n, err := ProcessedTotal(ctx, b.rdb, QueueDefault); err != nil || n != 3 {
		t.Fatalf("ProcessedTotal = %d, %v; want 3, as asynq's inspector says", n, err)
	}
	if n, err := ProcessedTotal(ctx, b.rdb, "other"); err != nil || n != 0 {
		t.Fatalf("ProcessedTotal of an unused queue = %d, %v; want 0", n, err)
	}
}
