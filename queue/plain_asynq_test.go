package queue

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/jobs"
)

// TestPlainAsynqMaxRetry pins what the README says of a task a plain asynq
// client enqueued with MaxRetry(n): agentq reads asynq's max retry as the
// task's attempts (it keeps asynq's last retry in reserve, as for its own
// tasks, so that a snooze on the last attempt is not archived), so the task
// runs n times (once for n = 0) and then is archived, asynq's last retry
// unused; MaxRetry(n+1) gives the n+1 attempts asynq would.
func TestPlainAsynqMaxRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond}})
	ac := asynq.NewClientFromRedisClient(b.rdb)
	tests := []struct {
		name     string
		maxRetry int
		attempts int
	}{
		{"MaxRetry(0): one attempt", 0, 1},
		{"MaxRetry(1): one attempt", 1, 1},
		{"MaxRetry(3): three attempts", 3, 3},
	}
	ids := make([]string, len(tests))
	for i, tc := range tests {
		info, err := ac.EnqueueContext(context.Background(), asynq.NewTask("test.echo", []byte(`{"n":1,"mode":"always"}`)), asynq.MaxRetry(tc.maxRetry))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = info.ID
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			waitFor(t, 10*time.Second, "the task to be archived", func() bool {
				info, err := b.insp.GetTaskInfo("default", ids[i])
				return err == nil && info.State == asynq.TaskStateArchived
			})
			if got := b.callCount(ids[i]); got != tc.attempts {
				t.Fatalf("MaxRetry(%d): %d attempts, want %d", tc.maxRetry, got, tc.attempts)
			}
		})
	}
}
