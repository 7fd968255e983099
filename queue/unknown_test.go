package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// startWorkerWith starts a worker of b's Redis on reg (not b's registry),
// its unknown-kind snoozes shortened to snooze.
func (b *bundle) startWorkerWith(t *testing.T, reg *Registry, cfg WorkerConfig, snooze time.Duration) *Worker {
	t.Helper()
	l := zerolog.New(b.logs)
	cfg.Logger = &l
	cfg.PollInterval = 5 * time.Millisecond
	cfg.DelayedCheckInterval = 50 * time.Millisecond
	cfg.ShutdownTimeout = 2 * time.Second
	w, err := NewWorker(b.rdb, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.unknown.snz = snooze
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	return w
}

// A rolling deploy: tasks of a kind only the newer worker has reach an
// older worker first. It snoozes them without spending an attempt, none is
// dead-lettered, and the newer worker runs each once.
func TestUnknownKindWaitsForAWorkerThatHasIt(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	ctx := context.Background()
	var ids []string
	for range 5 {
		r, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	old := b.startWorkerWith(t, NewRegistry(), WorkerConfig{UnknownKindWait: time.Minute}, 50*time.Millisecond)
	waitFor(t, 10*time.Second, "the old worker to snooze every task twice", func() bool {
		for _, id := range ids {
			if len(attemptLines(t, b.logs.String(), id)) < 2 {
				return false
			}
		}
		return true
	})
	old.Shutdown()
	if n := archived(t, b); n != 0 {
		t.Fatalf("%d tasks dead-lettered by the worker without the kind, want 0 (snoozed)", n)
	}
	for _, id := range ids {
		for _, l := range attemptLines(t, b.logs.String(), id) {
			if l["outcome"] != "snooze" || l["attempt"].(float64) != 1 {
				t.Fatalf("task %s: old worker's line %v, want a snooze of attempt 1", id, l)
			}
			if e, _ := l["error"].(string); !strings.Contains(e, `no handler for kind "test.echo" on this worker`) {
				t.Fatalf("task %s: the snooze does not say why: %v", id, l)
			}
		}
	}
	if n := strings.Count(b.logs.String(), "snoozing the task for a worker that has one"); n != len(ids) {
		t.Fatalf("%d warnings, want one per task (%d)", n, len(ids))
	}

	b.startWorker(t, WorkerConfig{})
	waitFor(t, 10*time.Second, "the new worker to run every task", func() bool {
		for _, id := range ids {
			if b.callCount(id) != 1 {
				return false
			}
		}
		return queueSize(t, b, "default") == 0
	})
	if n := archived(t, b); n != 0 {
		t.Fatalf("%d tasks dead-lettered, want 0", n)
	}
}

// A kind no worker has: dead-lettered as permanent once the wait is over,
// saying so; with a negative wait at once.
func TestUnknownKindDeadLettersAfterTheWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		wait time.Duration
		want string
	}{
		{"after the wait", 300 * time.Millisecond, "no worker with a handler for it took the task within worker.unknown_kind_wait (300ms)"},
		{"negative: at once", -1, `unknown task kind "test.echo" (registered: )`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{})
			r, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b.startWorkerWith(t, NewRegistry(), WorkerConfig{UnknownKindWait: tc.wait}, 50*time.Millisecond)
			waitFor(t, 10*time.Second, "the task to be dead-lettered", func() bool { return archived(t, b) == 1 })
			info, err := b.insp.GetTaskInfo("default", r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info.LastErr, tc.want) || info.Retried != 0 {
				t.Fatalf("dead letter: retried %d, error %q; want 0 and %q", info.Retried, info.LastErr, tc.want)
			}
			lines := attemptLines(t, b.logs.String(), r.ID)
			if last := lines[len(lines)-1]; last["outcome"] != "dead" || last["class"] != "permanent" {
				t.Fatalf("last line %v, want dead, permanent", last)
			}
			if tc.wait < 0 && len(lines) != 1 {
				t.Fatalf("%d lines, want 1 (dead-lettered at once)", len(lines))
			}
		})
	}
}

func archived(t *testing.T, b *bundle) int {
	t.Helper()
	info, err := b.insp.GetQueueInfo("default")
	if err != nil {
		t.Fatal(err)
	}
	return info.Archived
}

// The decision on an injected clock: snoozes with the time left, the
// permanent failure after the wait, the bound on tracked tasks and its
// pruning.
func TestUnknownKindDecide(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	u := newUnknownKinds(WorkerConfig{UnknownKindWait: time.Minute, Now: func() time.Time { return now }, RandN: func(int64) int64 { return 0 }}, zerolog.Nop())
	u.max = 2
	unknown := func() error {
		_, err := NewRegistry().lookup("x")
		return jobs.Permanent(err)
	}
	step := func(id string) *jobs.Step { return &jobs.Step{TaskID: id, Queue: "default", Kind: "x"} }

	err := u.decide(step("a"), unknown())
	var uk *UnknownKindError
	if !errors.As(err, &uk) || uk.Delay != unknownKindSnooze || uk.Left != time.Minute || jobs.Classify(err) != jobs.ClassSnooze {
		t.Fatalf("first sight: %v (%T), want a 5s snooze with 1m left", err, err)
	}
	now = now.Add(59 * time.Second)
	if err := u.decide(step("a"), unknown()); !errors.As(err, &uk) || uk.Delay != time.Second {
		t.Fatalf("1s before the end: %v, want a snooze of the 1s left", err)
	}
	now = now.Add(time.Second)
	err = u.decide(step("a"), unknown())
	if jobs.Classify(err) != jobs.ClassPermanent || !errors.Is(err, ErrUnknownKind) || !strings.Contains(err.Error(), "within worker.unknown_kind_wait (1m0s)") {
		t.Fatalf("after the wait: %v (class %v), want permanent naming the wait", err, jobs.Classify(err))
	}
	if len(u.seen) != 0 {
		t.Fatalf("a dead-lettered task is still tracked: %v", u.seen)
	}

	// The bound: two tracked, a third is dead-lettered at once; once the
	// first two are stale (twice the wait), they make room.
	for _, id := range []string{"b", "c"} {
		if err := u.decide(step(id), unknown()); jobs.Classify(err) != jobs.ClassSnooze {
			t.Fatalf("task %s: %v, want a snooze", id, err)
		}
	}
	if err := u.decide(step("d"), unknown()); jobs.Classify(err) != jobs.ClassPermanent || !strings.Contains(err.Error(), "2 tasks of unknown kinds already wait") {
		t.Fatalf("past the bound: %v, want permanent", err)
	}
	now = now.Add(unknownKindForget + time.Second)
	if err := u.decide(step("d"), unknown()); jobs.Classify(err) != jobs.ClassSnooze {
		t.Fatalf("after pruning: %v, want a snooze", err)
	}

	// A task unseen for unknownKindForget is forgotten: the same id seen
	// again (its key enqueued afresh) waits the whole wait again, though its
	// first sight is longer than the wait ago.
	now = now.Add(unknownKindForget + time.Second)
	if err := u.decide(step("d"), unknown()); !errors.As(err, &uk) || uk.Left != time.Minute {
		t.Fatalf("seen again after it was forgotten: %v, want a snooze with the whole wait left", err)
	}
}

// Only a kind the registry lacks is waited for: a known kind's handler
// failing with an error that wraps ErrUnknownKind (an enqueue it made of a
// kind its client lacks) fails as that handler's error.
func TestUnknownKindAsksTheRegistry(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	if err := Register(reg, "", func(ctx context.Context, s *jobs.Step, a echoArgs) error {
		_, err := NewRegistry().lookup("child")
		return fmt.Errorf("enqueue child: %w", err)
	}); err != nil {
		t.Fatal(err)
	}
	u := newUnknownKinds(WorkerConfig{UnknownKindWait: time.Minute, Now: time.Now, RandN: func(int64) int64 { return 0 }}, zerolog.Nop())
	h := u.middleware(reg.Handler())
	err := h.ProcessStep(context.Background(), &jobs.Step{TaskID: "t", Queue: "default", Kind: "test.echo", Payload: []byte(`{"n":1}`)})
	if jobs.Classify(err) != jobs.ClassRetryable || !strings.HasPrefix(err.Error(), "enqueue child: ") {
		t.Fatalf("known kind's own error: %v (class %v), want it retryable as returned", err, jobs.Classify(err))
	}
	err = h.ProcessStep(context.Background(), &jobs.Step{TaskID: "t", Queue: "default", Kind: "nope", Payload: []byte(`{}`)})
	if jobs.Classify(err) != jobs.ClassSnooze {
		t.Fatalf("unknown kind: %v, want a snooze", err)
	}
}
