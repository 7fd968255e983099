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

// heldAttempt is one tracked attempt: one allocation, with the state the
// context's end and the handler's return share.
type heldAttempt struct {
	h    *heldHandlers
	ctx  context.Context
	s    *jobs.Step
	stop func() bool

	mu    sync.Mutex
	done  bool
	held  bool
	ended time.Time
	timer *time.Timer
}

// track watches one attempt. Call the returned function when the handler
// returns. It costs one context.AfterFunc per attempt; the timer is made
// only for an attempt whose context ended while it ran.
func (h *heldHandlers) track(ctx context.Context, s *jobs.Step) (returned func()) {
	return h.watch(ctx, s).returned
}

// watch is track without the returned closure: defer its returned method.
func (h *heldHandlers) watch(ctx context.Context, s *jobs.Step) *heldAttempt {
	a := &heldAttempt{h: h, ctx: ctx, s: s}
	a.stop = context.AfterFunc(ctx, a.contextEnded)
	return a
}

// contextEnded runs when asynq ends the attempt's context while the
// handler runs: after HeldAfter, the handler counts as held.
func (a *heldAttempt) contextEnded() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	a.ended = time.Now()
	a.timer = time.AfterFunc(a.h.after, a.heldNow)
}

func (a *heldAttempt) heldNow() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	a.held = true
	n := a.h.n.Add(1)
	s := a.s
	a.h.log.Warn().Str("task_id", s.TaskID).Str("kind", s.Kind).Str("queue", s.Queue).
		Str("workflow", s.Workflow).Str("run_id", s.RunID).Int("attempt", s.Attempt).
		Str("cause", context.Cause(a.ctx).Error()).Int64("held_handlers", n).
		Msg("handler still running after its attempt ended: it ignores its context and holds a goroutine until it returns")
}

// returned is called when the handler returns.
func (a *heldAttempt) returned() {
	if a.stop() {
		return // the attempt's context never ended while it ran
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done = true
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.held {
		n := a.h.n.Add(-1)
		s := a.s
		a.h.log.Info().Str("task_id", s.TaskID).Str("kind", s.Kind).Int("attempt", s.Attempt).
			Int64("held_ms", time.Since(a.ended).Milliseconds()).Int64("held_handlers", n).
			Msg("held handler returned")
	}
}
