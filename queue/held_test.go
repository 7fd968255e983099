package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/jobs"
)

func TestHeldHandlers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// cancelFirst ends the attempt's context before the handler returns.
		cancelFirst bool
		// after is HeldAfter.
		after    time.Duration
		wantHeld bool
	}{
		{name: "returns before its attempt ends", after: time.Millisecond},
		{name: "returns soon after its attempt ends", cancelFirst: true, after: time.Hour},
		{name: "runs on past HeldAfter", cancelFirst: true, after: time.Millisecond, wantHeld: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs logbuf.Buffer
			h := &heldHandlers{after: tc.after, log: zerolog.New(&logs)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			returned := h.track(ctx, &jobs.Step{TaskID: "t1", Kind: "k", Attempt: 2})
			if tc.cancelFirst {
				cancel()
			}
			if tc.wantHeld {
				waitFor(t, 5*time.Second, "the handler to count as held", func() bool { return h.n.Load() == 1 })
				if !strings.Contains(logs.String(), `"task_id":"t1"`) || !strings.Contains(logs.String(), "holds a goroutine") {
					t.Fatalf("no warning for the held handler: %s", logs.String())
				}
			}
			returned()
			if n := h.n.Load(); n != 0 {
				t.Fatalf("held = %d after the handler returned, want 0", n)
			}
			cancel()
			if got := strings.Contains(logs.String(), "held handler returned"); got != tc.wantHeld {
				t.Fatalf("logged a held handler's return: %v, want %v: %s", got, tc.wantHeld, logs.String())
			}
		})
	}
}

// TestWorkerCountsHeldHandlers runs a handler that ignores its context past
// asynq's own deadline through a real worker: Held counts it while it runs
// on, and the worker serves other tasks meanwhile.
func TestWorkerCountsHeldHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	w := b.startWorker(t, WorkerConfig{HeldAfter: 10 * time.Millisecond})
	defer close(b.release)
	// asynq's own deadline is the attempt timeout plus TimeoutGrace, so a
	// 1s timeout ends the attempt about 7s in.
	if _, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1,"mode":"ignore-ctx"}`), EnqueueOptions{Timeout: time.Second, MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the handler to count as held", func() bool { return w.Held() == 1 })
	r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "another task to run while one handler is held", func() bool { return b.callCount(r.ID) == 1 })
}
