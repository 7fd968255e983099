package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// HeldAfterDefault is WorkerConfig.HeldAfter's default.
const HeldAfterDefault = 5 * time.Second

// heldHandlers counts handlers that are still running after asynq ended
// their attempt (its timeout backstop, a lease expiry, a shutdown). Go
// cannot stop a goroutine, so a handler that ignores its context keeps its
// goroutine and whatever it holds until it returns; asynq has already
// freed its slot and retried or requeued the task. Nothing else makes such
// a handler visible: each is logged once and counted (Worker.Held), so an
// operator can see the leak and restart the worker.
type heldHandlers struct {
	after time.Duration
	log   zerolog.Logger
	n     atomic.Int64
}

// track watches one attempt. Call the returned function when the handler
// returns. It costs one context.AfterFunc per attempt; the timer is made
// only for an attempt whose context ended while it ran.
func (h *heldHandlers) track(ctx context.Context, s *jobs.Step) (returned func()) {
	var (
		mu    sync.Mutex
		done  bool
		held  bool
		ended time.Time
		timer *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		ended = time.Now()
		timer = time.AfterFunc(h.after, func() {
			mu.Lock()
			defer mu.Unlock()
			if done {
				return
			}
			held = true
			n := h.n.Add(1)
			h.log.Warn().Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
				Str("workflow", s.Workflow).Str("run_id", s.RunID).Int("attempt", s.Attempt).
				Str("cause", context.Cause(ctx).Error()).Int64("held_handlers", n).
				Msg("handler still running after its attempt ended: it ignores its context and holds a goroutine until it returns")
		})
	})
	return func() {
		if stop() {
			return // the attempt's context never ended while it ran
		}
		mu.Lock()
		defer mu.Unlock()
		done = true
		if timer != nil {
			timer.Stop()
		}
		if held {
			n := h.n.Add(-1)
			h.log.Info().Str("task_id", s.TaskID).Str("kind", s.Kind).Int("attempt", s.Attempt).
				Int64("held_ms", time.Since(ended).Milliseconds()).Int64("held_handlers", n).
				Msg("held handler returned")
		}
	}
}
