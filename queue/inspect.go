package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// What asynq holds, for the packages that watch it without knowing asynq:
// dlq's reconciler and replay read asynq's archive and task states, budget
// pauses and resumes queues. asynq's keys and its Inspector stay here.

// TaskState is the state of a task in asynq, or TaskGone when asynq does
// not hold it.
type TaskState int

// Task states. TaskGone is the zero value: asynq holds no such task (it
// was deleted, trimmed from the archive, or finished without retention).
const (
	TaskGone TaskState = iota
	TaskActive
	TaskPending
	TaskScheduled
	TaskRetry
	TaskArchived
	TaskCompleted
	TaskAggregating
)

var taskStateNames = [...]string{"gone", "active", "pending", "scheduled", "retry", "archived", "completed", "aggregating"}

// String returns the state's name as asynq and asynqmon show it ("gone" for
// TaskGone).
func (s TaskState) String() string {
	if s < 0 || int(s) >= len(taskStateNames) {
		return "unknown(" + strconv.Itoa(int(s)) + ")"
	}
	return taskStateNames[s]
}

func taskStateOf(s asynq.TaskState) TaskState {
	switch s {
	case asynq.TaskStateActive:
		return TaskActive
	case asynq.TaskStatePending:
		return TaskPending
	case asynq.TaskStateScheduled:
		return TaskScheduled
	case asynq.TaskStateRetry:
		return TaskRetry
	case asynq.TaskStateArchived:
		return TaskArchived
	case asynq.TaskStateCompleted:
		return TaskCompleted
	case asynq.TaskStateAggregating:
		return TaskAggregating
	}
	return TaskGone
}

// TaskInfo is what asynq holds about one task.
type TaskInfo struct {
	ID, Queue string
	// Kind is the task's kind (asynq's task type).
	Kind  string
	State TaskState
	// Payload and Headers are the task's, as enqueued.
	Payload []byte
	Headers map[string]string
	// Retried counts the retries spent; MaxRetry is the retry budget.
	Retried, MaxRetry int
	// LastErr is the error of the last failed attempt, "" for none;
	// LastFailedAt is when it failed, zero for never.
	LastErr      string
	LastFailedAt time.Time
	// LeaseExpired reports that asynq ended the last attempt itself because
	// its lease expired: the worker running it crashed or lost Redis, and no
	// handler saw the failure.
	LeaseExpired bool
	// ArchivedOnFailure reports that asynq archived the task when an
	// attempt failed (a worker's outcome was dead: permanent, or retries
	// spent), not later by hand: asynq stamps such an archive with the
	// failure's time. False for a task archived by hand, by lease expiry,
	// or not archived.
	ArchivedOnFailure bool
}

// ArchiveMaxSize is how many tasks asynq keeps in one queue's archive: when
// it archives one more it deletes the oldest beyond this, without a word
// (asynq v0.26, internal/rdb maxArchiveSize).
const ArchiveMaxSize = 10000 - 1

// ArchiveMaxAge is how long asynq keeps an archived task before deleting it.
const ArchiveMaxAge = 90 * 24 * time.Hour

// Inspector reads and changes what asynq holds in Redis. It is safe for
// concurrent use; the caller keeps ownership of the Redis client.
type Inspector struct {
	rdb  redis.UniversalClient
	insp *asynq.Inspector
}

// NewInspector returns an Inspector on rdb.
func NewInspector(rdb redis.UniversalClient) *Inspector {
	return &Inspector{rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb)}
}

// Queues returns the names of the queues asynq knows (those that ever held
// a task).
func (in *Inspector) Queues(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	qs, err := in.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("queue: list queues: %w", err)
	}
	return qs, nil
}

// Task returns what asynq holds about task id of queue q. A task asynq does
// not hold is no error: its State is TaskGone.
func (in *Inspector) Task(ctx context.Context, q, id string) (TaskInfo, error) {
	if err := ctx.Err(); err != nil {
		return TaskInfo{}, err
	}
	info, err := in.insp.GetTaskInfo(q, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return TaskInfo{ID: id, Queue: q, State: TaskGone}, nil
	case err != nil:
		return TaskInfo{}, fmt.Errorf("queue: read task %s of %q: %w", id, q, err)
	}
	ti := TaskInfo{
		ID: info.ID, Queue: info.Queue, Kind: info.Type, State: taskStateOf(info.State),
		Payload: info.Payload, Headers: info.Headers, Retried: info.Retried, MaxRetry: info.MaxRetry,
		LastErr: info.LastErr, LastFailedAt: info.LastFailedAt,
		LeaseExpired: info.LastErr != "" && info.LastErr == asynq.ErrLeaseExpired.Error(),
	}
	if ti.State == TaskArchived && ti.LastErr != "" && !ti.LeaseExpired && !ti.LastFailedAt.IsZero() {
		// asynq's processor archives a failed task with the failure's
		// time (both in seconds); an archive by hand is stamped later.
		score, err := in.rdb.ZScore(ctx, asynqArchivedKey(q), id).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return TaskInfo{}, fmt.Errorf("queue: read task %s of %q: %w", id, q, err)
		default:
			ti.ArchivedOnFailure = int64(score) == ti.LastFailedAt.Unix()
		}
	}
	return ti, nil
}

// State returns the state of task id of queue q in asynq, TaskGone when it
// holds no such task. An empty id is TaskGone.
func (in *Inspector) State(ctx context.Context, q, id string) (TaskState, error) {
	if id == "" {
		return TaskGone, nil
	}
	info, err := in.Task(ctx, q, id)
	return info.State, err
}

// DeleteTask deletes task id of queue q from asynq (any state but active).
// It reports whether it deleted it: a task asynq does not hold is no error.
func (in *Inspector) DeleteTask(ctx context.Context, q, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	err := in.insp.DeleteTask(q, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return false, nil
	}
	return false, fmt.Errorf("queue: delete task %s of %q: %w", id, q, err)
}

// EachArchived calls fn with pages of about pageSize ids of the tasks in
// asynq's archive of queue q. It scans (ZSCAN), so it never blocks Redis:
// a task archived for the whole scan is seen at least once, one archived or
// deleted during it may be seen or not. fn's error stops the scan and is
// returned.
func (in *Inspector) EachArchived(ctx context.Context, q string, pageSize int64, fn func(ids []string) error) error {
	var cursor uint64
	for {
		page, next, err := in.rdb.ZScan(ctx, asynqArchivedKey(q), cursor, "", pageSize).Result()
		if err != nil {
			return fmt.Errorf("queue: scan the archive of %q: %w", q, err)
		}
		// ZSCAN returns member, score, member, score...
		ids := make([]string, 0, len(page)/2)
		for i := 0; i < len(page); i += 2 {
			ids = append(ids, page[i])
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return err
			}
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
}

// TaskRef names one task of one queue.
type TaskRef struct {
	Queue, ID string
}

// InArchive reports, in one round trip, which of tasks are in asynq's
// archive of their queue.
func (in *Inspector) InArchive(ctx context.Context, tasks []TaskRef) ([]bool, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.FloatCmd, len(tasks))
	_, err := in.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range tasks {
			cmds[i] = p.ZScore(ctx, asynqArchivedKey(t.Queue), t.ID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("queue: read the archive: %w", err)
	}
	out := make([]bool, len(tasks))
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			out[i] = true
		case !errors.Is(err, redis.Nil):
			// Pipelined reports the first error only: a later one is not
			// an answer either.
			return nil, fmt.Errorf("queue: read the archive: %w", err)
		}
	}
	return out, nil
}

// ArchiveSize returns how many tasks asynq's archive of queue q holds.
func (in *Inspector) ArchiveSize(ctx context.Context, q string) (int64, error) {
	n, err := in.rdb.ZCard(ctx, asynqArchivedKey(q)).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: size of the archive of %q: %w", q, err)
	}
	return n, nil
}

// ArchiveTrims reports whether asynq's archive of queue q is full, so that
// asynq deletes its oldest task whenever it archives one more.
func (in *Inspector) ArchiveTrims(ctx context.Context, q string) (bool, error) {
	n, err := in.ArchiveSize(ctx, q)
	return n >= ArchiveMaxSize, err
}

// Pause pauses queue q as asynq and asynqmon do: asynq's servers stop
// taking its tasks until Unpause. It reports whether it paused the queue;
// a queue already paused is no error.
func (in *Inspector) Pause(ctx context.Context, q string) (bool, error) {
	if q == "" {
		return false, errors.New("queue: pause: empty queue name")
	}
	ok, err := in.rdb.SetNX(ctx, asynqPausedKey(q), time.Now().Unix(), 0).Result()
	if err != nil {
		return false, fmt.Errorf("queue: pause %q: %w", q, err)
	}
	return ok, nil
}

// Unpause resumes queue q. It reports whether the queue was paused; a
// queue that was not is no error.
func (in *Inspector) Unpause(ctx context.Context, q string) (bool, error) {
	if q == "" {
		return false, errors.New("queue: unpause: empty queue name")
	}
	n, err := in.rdb.Del(ctx, asynqPausedKey(q)).Result()
	if err != nil {
		return false, fmt.Errorf("queue: unpause %q: %w", q, err)
	}
	return n > 0, nil
}

// Paused reports, in one round trip, which of queues are paused, by
// agentq, asynqmon or anyone else. It reads asynq's pause marker only,
// not asynq's queue statistics, so it is cheap enough to call every few
// seconds.
func (in *Inspector) Paused(ctx context.Context, queues ...string) ([]bool, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(queues))
	_, err := in.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range queues {
			cmds[i] = p.Exists(ctx, asynqPausedKey(q))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: read paused queues: %w", err)
	}
	out := make([]bool, len(queues))
	for i, c := range cmds {
		out[i] = c.Val() > 0
	}
	return out, nil
}

// ForgetQueue removes queue q from asynq's set of queue names, shared by
// every process, so that asynq, asynqmon and Queues no longer list it; it
// never touches the set's other members nor q's tasks. It is for a caller
// that removed every key of a queue it alone used (QueueKeyPrefixes). It
// reports whether q was listed; a queue that was not is no error.
func (in *Inspector) ForgetQueue(ctx context.Context, q string) (bool, error) {
	if q == "" {
		return false, errors.New("queue: forget queue: empty queue name")
	}
	n, err := in.rdb.SRem(ctx, asynqAllQueues, q).Result()
	if err != nil {
		return false, fmt.Errorf("queue: forget queue %q: %w", q, err)
	}
	return n > 0, nil
}
