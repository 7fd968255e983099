package dlq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// ReplayOptions are the settings of one replay.
type ReplayOptions struct {
	// Payload replaces the record's payload; nil keeps it. It is validated
	// like any enqueue.
	Payload json.RawMessage
	// DryRun checks everything and reports the task a replay would enqueue,
	// changing nothing.
	DryRun bool
}

// Replayed says what a replay did.
type Replayed struct {
	// ID is the record replayed.
	ID string `json:"id"`
	// TaskID is the replay task: <original task id>-r<N>.
	TaskID string `json:"task_id"`
	Queue  string `json:"queue"`
	Kind   string `json:"kind"`
	// DryRun is true when nothing was changed.
	DryRun bool `json:"dry_run,omitempty"`
	// Existing is true when the replay task already existed: an earlier
	// replay enqueued it and then failed to record that.
	Existing bool `json:"existing,omitempty"`
	// ArchiveDeleted is true when the archived task was deleted from
	// asynq's archive.
	ArchiveDeleted bool `json:"archive_deleted"`
	// Warning reports a problem that did not stop the replay.
	Warning string `json:"warning,omitempty"`
}

// InvalidReplayError is a replay refused by enqueue validation: nothing was
// changed.
type InvalidReplayError struct {
	ID  string
	Err error
}

func (e *InvalidReplayError) Error() string {
	return fmt.Sprintf("dead letter %s: replay refused: %v", e.ID, e.Err)
}

func (e *InvalidReplayError) Unwrap() error { return e.Err }

// enqueueOptions rebuilds a record's enqueue: same queue, workflow, run,
// run step, key and per-task settings, the whole attempt budget, and
// lineage. A run step's replay is still that step of that run (the run
// engine continues the run when it succeeds); its run version is not
// carried: the one it died with is stale, and the engine knows the replay
// by its step and replay_of. A run step's payload "{}"
// (queue.RunStepPayload) is rendered by the worker, so the enqueue does
// not check it against the kind's schema.
func enqueueOptions(r Record) queue.EnqueueOptions {
	o := queue.EnqueueOptions{
		Queue: r.Queue, Workflow: r.Workflow, RunID: r.RunID, Key: r.Key, ReplayOf: r.ID,
		MaxAttempts: r.MaxAttempts,
	}
	if r.RunID != "" {
		o.Step = r.Step // a step without its run is refused by the enqueue
	}
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(r.Headers[name])
		if err != nil || d < 0 {
			return 0
		}
		return d
	}
	o.Timeout, o.RetryBase, o.RetryMax = dur(jobs.HeaderTimeout), dur(jobs.HeaderRetryBase), dur(jobs.HeaderRetryMax)
	return o
}

// Replay enqueues a record afresh: a new task <task id>-r<N> in the same
// queue with the same idempotency key and the full attempt budget, carrying
// the record id as replay_of; then it deletes the archived task from asynq.
// The record becomes replayed, and later resolved by the replay's success or
// dead again by its death. Of concurrent replays of one record exactly one
// enqueues a task: the status changes by compare and set, and the task id is
// deterministic. A refused payload changes nothing.
func (s *Store) Replay(ctx context.Context, id string, o ReplayOptions) (Replayed, error) {
	recs, err := s.readRecords(ctx, []string{id})
	if err != nil {
		return Replayed{}, err
	}
	if len(recs) == 0 {
		return Replayed{}, &NotFoundError{ID: id}
	}
	r := recs[0]
	out := Replayed{ID: id, Queue: r.Queue, Kind: r.Kind, DryRun: o.DryRun}
	if !r.Status.Replayable() {
		return out, &NotReplayableError{ID: id, Status: r.Status, ReplayTask: r.ReplayTask}
	}
	payload := []byte(r.Payload)
	if o.Payload != nil {
		payload = o.Payload
	}
	opts := enqueueOptions(r)
	if s.cfg.Check != nil {
		if err := s.cfg.Check(r.Kind, payload, opts); err != nil {
			return out, &InvalidReplayError{ID: id, Err: err}
		}
	}
	if o.DryRun {
		out.TaskID = r.TaskID + "-r" + strconv.Itoa(r.Replays+1)
		return out, nil
	}
	if s.cfg.Client == nil {
		return out, errors.New("dlq: replay needs a queue client (Config.Client)")
	}
	now := ms(s.cfg.Now())
	res, err := claimScript.Run(ctx, s.rdb, []string{recordKey(id), liveKey()}, id, now).StringSlice()
	if err != nil {
		return out, fmt.Errorf("dlq: replay %s: %w", id, err)
	}
	switch res[0] {
	case "missing":
		return out, &NotFoundError{ID: id}
	case "status":
		return out, &NotReplayableError{ID: id, Status: Status(res[1]), ReplayTask: res[2]}
	}
	taskID, archived := res[1], res[2]
	out.TaskID = taskID
	opts.TaskID = taskID
	// The original must be archived or gone: a task that is pending, active
	// or scheduled again (run from asynqmon, or requeued by a shutdown that
	// the record did not see) would run twice.
	if archived != "" && archived != taskID {
		if state, ierr := s.insp.State(ctx, r.Queue, archived); ierr == nil && state != queue.TaskGone && state != queue.TaskArchived {
			uctx, cancel := writeCtx(ctx)
			_ = unclaimScript.Run(uctx, s.rdb, []string{recordKey(id), liveKey()}, id, taskID, ms(s.cfg.Now())).Err()
			cancel()
			return out, &ActiveOriginalError{ID: id, TaskID: archived, State: state.String()}
		}
	}
	enq, err := s.cfg.Client.Enqueue(ctx, r.Kind, payload, opts)
	if err != nil {
		uctx, cancel := writeCtx(ctx)
		uerr := unclaimScript.Run(uctx, s.rdb, []string{recordKey(id), liveKey()}, id, taskID, ms(s.cfg.Now())).Err()
		cancel()
		if uerr != nil {
			return out, fmt.Errorf("dlq: replay %s: enqueue failed (%w) and the record could not be set back: %v", id, err, uerr)
		}
		var ve *queue.ValidationError
		if errors.As(err, &ve) || errors.Is(err, queue.ErrUnknownKind) {
			return out, &InvalidReplayError{ID: id, Err: err}
		}
		return out, fmt.Errorf("dlq: replay %s: %w", id, err)
	}
	out.Existing = enq.Duplicate
	if archived != "" && archived != taskID {
		deleted, derr := s.insp.DeleteTask(ctx, r.Queue, archived)
		out.ArchiveDeleted = deleted
		if derr != nil {
			out.Warning = fmt.Sprintf("archived task %s was not deleted from asynq: %v", archived, derr)
		}
	}
	s.log.Info().Str("dlq_id", id).Str("task_id", taskID).Str("run_id", r.RunID).Str("step", r.Step).
		Str("kind", r.Kind).Str("queue", r.Queue).Bool("edited_payload", o.Payload != nil).Msg("dead letter replayed")
	return out, nil
}

// ActiveOriginalError refuses a replay whose original task is live in asynq
// again (pending, active, scheduled or retrying): replaying it would run the
// step twice.
type ActiveOriginalError struct {
	ID, TaskID, State string
}

func (e *ActiveOriginalError) Error() string {
	return fmt.Sprintf("dead letter %s: its task %s is %s in asynq again (run from asynqmon, or requeued); replay refused so the step does not run twice", e.ID, e.TaskID, e.State)
}

// ReplayInFlightDefault is how many replays of one ReplayMany run at once.
const ReplayInFlightDefault = 16

// ReplayManyOptions bound a bulk replay.
type ReplayManyOptions struct {
	// Rate bounds the replays started per second (a token bucket of one:
	// the first starts at once, then one every 1/Rate). Default 0: no bound.
	Rate float64
	// InFlight bounds the replays running at once.
	// Default ReplayInFlightDefault (16).
	InFlight int
	// Progress, when set, is called once after each replay, never from two
	// goroutines at once.
	Progress func()
}

// CheckReplayRate refuses a replay rate that is not a finite, non-negative
// number of replays per second.
func CheckReplayRate(r float64) error {
	if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		return fmt.Errorf("rate must be a finite, non-negative number of replays per second, got %v", r)
	}
	return nil
}

// ReplayOutcome is the result of one replay of ReplayMany: Err is nil when
// Replayed holds what was done.
type ReplayOutcome struct {
	ID       string
	Replayed Replayed
	Err      error
}

// ReplayMany replays ids as Replay does, at most m.InFlight at once and m.Rate
// per second, and returns one outcome per id, in the order of ids. One
// failed replay does not stop the others; when ctx ends, the replays not
// yet started fail with ctx's error. It returns an error only for invalid
// options.
func (s *Store) ReplayMany(ctx context.Context, ids []string, o ReplayOptions, m ReplayManyOptions) ([]ReplayOutcome, error) {
	if err := CheckReplayRate(m.Rate); err != nil {
		return nil, fmt.Errorf("dlq: replay: %w", err)
	}
	if m.InFlight < 0 {
		return nil, fmt.Errorf("dlq: replay: in_flight must not be negative, got %d", m.InFlight)
	}
	limit := rate.Inf
	if m.Rate > 0 {
		limit = rate.Limit(m.Rate)
	}
	lim := rate.NewLimiter(limit, 1)
	out := make([]ReplayOutcome, len(ids))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(cmp.Or(m.InFlight, ReplayInFlightDefault))
	for i, id := range ids {
		g.Go(func() error {
			out[i].ID = id
			if err := lim.Wait(ctx); err != nil {
				out[i].Err = cmp.Or(ctx.Err(), err)
			} else {
				out[i].Replayed, out[i].Err = s.Replay(ctx, id, o)
			}
			if m.Progress != nil {
				mu.Lock()
				m.Progress()
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // every goroutine returns nil: failures are per id
	return out, nil
}
