package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/jobs"
)

func TestNotBeforeWholeSecond(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	for _, tt := range []struct {
		name string
		now  time.Time
		d    time.Duration
		want time.Duration
	}{
		{"due mid-second rounds up to the next second", base.Add(871 * time.Millisecond), time.Second, 1129 * time.Millisecond},
		{"due on a whole second stays", base.Add(500 * time.Millisecond), 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"sub-second delay", base.Add(100 * time.Millisecond), 300 * time.Millisecond, 900 * time.Millisecond},
		{"zero stays zero", base.Add(100 * time.Millisecond), 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := notBeforeWholeSecond(tt.now, tt.d)
			if got != tt.want {
				t.Fatalf("notBeforeWholeSecond(%v, %v) = %v, want %v", tt.now, tt.d, got, tt.want)
			}
			// asynq's schedule: due at the Unix second of now+got; that
			// second must not come before now+d.
			if due := time.Unix(tt.now.Add(got).Unix(), 0); tt.d > 0 && due.Before(tt.now.Add(tt.d)) {
				t.Fatalf("asynq would run it at %v, before the floor %v", due, tt.now.Add(tt.d))
			}
		})
	}
}

// TestAsynqRetryDelayHonoursRetryAfter checks the delay handed to asynq for a
// Retry-After: asynq truncates the due time to whole seconds, which must not
// bring the retry before the floor the tool asked for. Other delays pass
// through unchanged.
func TestAsynqRetryDelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: WorkerConfig{
		Retry: jobs.RetryPolicy{MaxAttempts: 5, Base: 100 * time.Millisecond, Max: time.Second},
		RandN: func(n int64) int64 { return 0 },
	}}
	s := &jobs.Step{Attempt: 1, MaxAttempts: 5, Headers: map[string]string{}}
	task := asynq.NewTask("k", nil)
	ra := decided(w, s, &jobs.HTTPError{Status: 429, RetryAfter: time.Second})
	answered := time.Now()
	d := w.asynqRetryDelay(0, ra, task)
	// asynq adds d to its time.Now, taken after the call.
	if due := time.Unix(time.Now().Add(d).Unix(), 0); due.Before(answered.Add(time.Second)) {
		t.Fatalf("delay %v: asynq runs it at %v, before the Retry-After floor %v", d, due, answered.Add(time.Second))
	}
	if d > 2*time.Second {
		t.Fatalf("delay %v: more than a second above the floor", d)
	}
	plain := decided(w, s, errors.New("x"))
	if d := w.asynqRetryDelay(0, plain, task); d != w.retryDelay(0, plain, task) {
		t.Fatalf("backoff delay changed: %v", d)
	}
	snooze := decided(w, s, jobs.Snooze(300*time.Millisecond))
	if d := w.asynqRetryDelay(0, snooze, task); d != 300*time.Millisecond {
		t.Fatalf("snooze delay changed: %v", d)
	}
}
