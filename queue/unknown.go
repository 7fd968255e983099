package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// Unknown kinds during a rolling deploy: a task whose kind this worker has
// no handler for is most often a task of a newer version's kind, enqueued
// while older workers still serve the queue. Dead-lettering it at once
// would fail work that a newer worker is about to run, so the worker
// snoozes it (no attempt spent) for up to WorkerConfig.UnknownKindWait,
// counted from when this worker first saw the task, and dead-letters it as
// permanent only after that.
const (
	// UnknownKindWaitDefault is WorkerConfig.UnknownKindWait's default.
	UnknownKindWaitDefault = 10 * time.Minute
	// unknownKindSnooze is how long one snooze of such a task lasts, before
	// jitter of up to a fifth more.
	unknownKindSnooze = 5 * time.Second
	// maxUnknownKindTasks bounds the tasks one worker tracks; past it (after
	// dropping the stale ones) a newly seen task is dead-lettered at once.
	maxUnknownKindTasks = 10000
	// unknownKindForget is how long a tracked task may go unseen before it
	// is forgotten: another worker took it (the usual end of a rolling
	// deploy), and a later task with the same id (the same idempotency key
	// enqueued again) is a new task whose wait starts afresh. Snoozes bring
	// a waiting task back every few seconds, to this worker or another.
	unknownKindForget = 5 * time.Minute
)

// UnknownKindError is the snooze of a task whose kind this worker has no
// handler for: it unwraps to a jobs.Snooze, so the task is rescheduled after
// Delay without spending an attempt, and says why in the attempt's line.
type UnknownKindError struct {
	Kind  string
	Delay time.Duration
	// Left is how much of WorkerConfig.UnknownKindWait remains before the
	// task is dead-lettered.
	Left time.Duration
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("no handler for kind %q on this worker: snoozed for %v for a worker that has one (dead-lettered in %v if none takes it)",
		e.Kind, e.Delay.Round(time.Millisecond), e.Left.Round(time.Second))
}

// Unwrap returns the snooze, for jobs.Classify and the queue.
func (e *UnknownKindError) Unwrap() error { return jobs.Snooze(e.Delay) }

// unknownKinds tracks the tasks of unknown kinds this worker has seen, by
// queue and task id, with when it first saw each.
type unknownKinds struct {
	wait  time.Duration // <= 0: dead-letter at once
	snz   time.Duration // unknownKindSnooze; a field for tests
	max   int
	now   func() time.Time
	randN func(int64) int64
	log   zerolog.Logger

	mu   sync.Mutex
	seen map[pendingKey]*unknownTask
}

// unknownTask is when a worker first and last saw a task of an unknown kind.
type unknownTask struct{ first, last time.Time }

func newUnknownKinds(cfg WorkerConfig, log zerolog.Logger) *unknownKinds {
	return &unknownKinds{
		wait: cfg.UnknownKindWait, snz: unknownKindSnooze, max: maxUnknownKindTasks,
		now: cfg.Now, randN: cfg.RandN, log: log, seen: map[pendingKey]*unknownTask{},
	}
}

// middleware wraps the registry's handler: a step whose kind the registry
// does not have (its *missingKindError, not a handler's own error that
// wraps ErrUnknownKind) is snoozed while the wait lasts, then fails
// permanently with the registry's error.
func (u *unknownKinds) middleware(next jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
		err := next.ProcessStep(ctx, s)
		if _, ok := errors.AsType[*missingKindError](err); ok {
			return u.decide(s, err)
		}
		return err
	})
}

// decide returns the snooze of task s, or err itself (permanent) with the
// reason the wait ended.
func (u *unknownKinds) decide(s *jobs.Step, err error) error {
	if u.wait <= 0 {
		return err
	}
	cause := err
	if pe, ok := errors.AsType[*jobs.PermanentError](err); ok {
		cause = pe.Err
	}
	k := pendingKey{s.Queue, s.TaskID}
	now := u.now()
	u.mu.Lock()
	t, ok := u.seen[k]
	if ok && now.Sub(t.last) > unknownKindForget {
		ok = false // a new task with the same id
	}
	if !ok {
		if len(u.seen) >= u.max {
			u.prune(now)
		}
		if len(u.seen) >= u.max {
			u.mu.Unlock()
			return jobs.Permanent(fmt.Errorf("%w; not kept for a worker that has a handler: %d tasks of unknown kinds already wait on this worker", cause, u.max))
		}
		t = &unknownTask{first: now}
		u.seen[k] = t
	}
	t.last = now
	left := u.wait - now.Sub(t.first)
	if left <= 0 {
		delete(u.seen, k)
		u.mu.Unlock()
		return jobs.Permanent(fmt.Errorf("%w; no worker with a handler for it took the task within worker.unknown_kind_wait (%v)", cause, u.wait))
	}
	u.mu.Unlock()
	if !ok {
		u.log.Warn().Str("task_id", s.TaskID).Str("queue", s.Queue).Str("kind", s.Kind).Dur("wait", u.wait).
			Msg("no handler for this kind here (a newer worker's kind during a rolling deploy?): snoozing the task for a worker that has one")
	}
	d := u.snz + time.Duration(u.randN(int64(u.snz)/5+1))
	return &UnknownKindError{Kind: s.Kind, Delay: min(d, left), Left: left}
}

// prune drops the tasks not seen for unknownKindForget: another worker
// took them. u.mu is held.
func (u *unknownKinds) prune(now time.Time) {
	for k, t := range u.seen {
		if now.Sub(t.last) > unknownKindForget {
			delete(u.seen, k)
		}
	}
}
