package dlq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// Swept says what one reconciler sweep found and did.
type Swept struct {
	// Recorded counts archived tasks the worker never reported (lease
	// expiry, archived by hand) that now have a record or a new attempt.
	Recorded int `json:"recorded"`
	// Rerun, Deleted and Resolved count records whose status the sweep
	// changed to that status.
	Rerun    int `json:"rerun"`
	Deleted  int `json:"deleted"`
	Resolved int `json:"resolved"`
	// Trimmed is what retention dropped (only RunReconciler trims).
	Trimmed Trimmed `json:"trimmed"`
}

// Sweep reconciles the store with asynq once:
//
//   - every task in asynq's archive of every queue that no record reflects
//     gets one (or, for a replay or a task run again from asynqmon, its
//     record gets the attempt and is dead again): lease expiry after a
//     worker crash and tasks archived by hand are caught here;
//   - a dead record whose archived task left the archive becomes rerun
//     when asynq holds the task in another state (run from asynqmon), and
//     deleted when asynq no longer has it (deleted from asynqmon);
//   - a rerun record whose task is gone from asynq without failing again
//     is resolved;
//   - a replayed record whose replay task is gone from asynq without an
//     outcome becomes deleted (replayable again).
//
// Records are judged only once they have not changed for Grace.
//
// It reads asynq's archived sets with ZSCAN, so every task archived for the
// whole sweep is seen once at least, and it is safe to run concurrently with
// workers and with other sweeps.
func (s *Store) Sweep(ctx context.Context) (Swept, error) {
	var sw Swept
	queues, err := s.insp.Queues(ctx)
	if err != nil {
		return sw, fmt.Errorf("dlq: sweep: list queues: %w", err)
	}
	for _, q := range queues {
		n, err := s.sweepArchive(ctx, q)
		sw.Recorded += n
		if err != nil {
			return sw, err
		}
	}
	if err := s.sweepLive(ctx, &sw); err != nil {
		return sw, err
	}
	return sw, nil
}

func (s *Store) sweepArchive(ctx context.Context, q string) (int, error) {
	recorded := 0
	err := s.insp.EachArchived(ctx, q, pageSize, func(ids []string) error {
		keys := make([]string, len(ids))
		args := make([]any, 0, len(ids)+1)
		args = append(args, keyPrefix)
		for i, id := range ids {
			keys[i] = taskKey(q, id)
			args = append(args, id)
		}
		known, err := knownScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
		if err != nil {
			return fmt.Errorf("dlq: sweep archive of %q: %w", q, err)
		}
		for i, id := range ids {
			if known[i] == 1 {
				continue
			}
			ok, err := s.recordArchived(ctx, q, id)
			if err != nil {
				return err
			}
			if ok {
				recorded++
			}
		}
		return nil
	})
	if err != nil {
		return recorded, fmt.Errorf("dlq: sweep: %w", err)
	}
	return recorded, nil
}

// recordArchived records an archived task the worker did not report.
func (s *Store) recordArchived(ctx context.Context, q, id string) (bool, error) {
	info, err := s.insp.Task(ctx, q, id)
	if err != nil {
		return false, fmt.Errorf("dlq: sweep: %w", err)
	}
	if info.State != queue.TaskArchived {
		return false, nil
	}
	class, note := ClassManual, "archived by hand (asynqmon, Inspector or another client), not by a worker's outcome"
	attempt := info.Retried
	msg := info.LastErr
	switch {
	case info.ArchivedOnFailure:
		// A worker's dead outcome whose capture did not land (the worker
		// logged why): keep what asynq tells, its last error and whether
		// its retries were spent; the worker's finer class is not kept.
		// agentq's worker gives asynq its attempts as MaxRetry (the
		// record's MaxAttempts) and archives a dead outcome itself.
		class = jobs.ClassPermanent
		if info.Retried+1 >= info.MaxRetry {
			class = jobs.ClassRetryable
		}
		note = "archived by a worker when its last attempt failed, but the worker's dead-letter record did not land: recorded from asynq's archive (class " +
			string(class) + ": retries spent or not; asynq keeps no finer class)"
		attempt = info.Retried + 1
	case info.LeaseExpired:
		class = jobs.ClassLeaseExpired
		note = "archived by asynq after its lease expired: the worker running its last attempt crashed or lost Redis"
		attempt = info.Retried + 1
		msg = "lease expired: the worker crashed or lost Redis during the attempt"
	}
	if msg == "" {
		msg = "archived by hand"
	}
	at := info.LastFailedAt
	if at.IsZero() {
		at = s.cfg.Now()
	}
	h := info.Headers
	_, mode, err := s.Dead(ctx, Death{
		Queue: q, TaskID: id, Kind: info.Kind, Workflow: h[jobs.HeaderWorkflow], RunID: h[jobs.HeaderRunID],
		Step: h[jobs.HeaderStep], Key: h[jobs.HeaderKey], ReplayOf: h[jobs.HeaderReplayOf], Payload: info.Payload, Headers: h,
		MaxAttempts: max(info.MaxRetry, 1), Source: SourceReconciler, Note: note,
		Final: Attempt{At: at, Attempt: attempt, TaskID: id, Class: class, Error: s.redact(msg)},
	})
	if err != nil {
		return false, err
	}
	if mode != modeCreated && mode != modeAppended {
		return false, nil
	}
	s.log.Warn().Str("task_id", id).Str("queue", q).Str("kind", info.Kind).Str("run_id", h[jobs.HeaderRunID]).
		Str("step", h[jobs.HeaderStep]).Str("class", string(class)).Str("mode", mode).Msg("reconciler recorded a dead letter the worker never reported: " + note)
	return true, nil
}

var liveFields = []string{"id", "status", "queue", "archived_task", "replay_task", "failed_at"}

// sweepLive checks every record whose asynq task is watched.
func (s *Store) sweepLive(ctx context.Context, sw *Swept) error {
	var cursor uint64
	for {
		page, next, err := s.rdb.ZScan(ctx, liveKey(), cursor, "", pageSize).Result()
		if err != nil {
			return fmt.Errorf("dlq: sweep records: %w", err)
		}
		// Judge only records that have not changed for Grace: a worker
		// records a death just before asynq archives the task, and a replay
		// is recorded just before its task is enqueued.
		settled := s.cfg.Now().Add(-s.cfg.Grace).UnixMilli()
		ids := make([]string, 0, len(page)/2)
		for i := 0; i+1 < len(page); i += 2 {
			if score, err := strconv.ParseFloat(page[i+1], 64); err == nil && int64(score) <= settled {
				ids = append(ids, page[i])
			}
		}
		if err := s.checkLive(ctx, ids, sw); err != nil {
			return err
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
}

type liveRecord struct {
	id, status, queue, archived, replayTask string
	failedAt                                time.Time
	inArchive                               bool
}

func (s *Store) checkLive(ctx context.Context, ids []string, sw *Swept) error {
	if len(ids) == 0 {
		return nil
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, recordKey(id), liveFields...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dlq: sweep records: %w", err)
	}
	recs := make([]*liveRecord, 0, len(ids))
	for _, c := range cmds {
		v := c.Val()
		str := func(i int) string { s, _ := v[i].(string); return s }
		if str(0) == "" {
			continue
		}
		recs = append(recs, &liveRecord{id: str(0), status: str(1), queue: str(2), archived: str(3), replayTask: str(4),
			failedAt: msTime(str(5))})
	}
	// One round trip tells which dead records still have their task in
	// asynq's archive: the common case, which needs nothing more.
	var dead []*liveRecord
	var refs []queue.TaskRef
	for _, r := range recs {
		if r.status == string(StatusDead) && r.archived != "" {
			dead = append(dead, r)
			refs = append(refs, queue.TaskRef{Queue: r.queue, ID: r.archived})
		}
	}
	in, err := s.insp.InArchive(ctx, refs)
	if err != nil {
		return fmt.Errorf("dlq: sweep records: %w", err)
	}
	for i, r := range dead {
		r.inArchive = in[i]
	}
	full := map[string]bool{}
	for _, r := range recs {
		switch Status(r.status) {
		case StatusDead:
			if r.archived == "" || r.inArchive {
				continue
			}
			state, err := s.taskState(ctx, r.queue, r.archived)
			if err != nil {
				return err
			}
			if state == gone {
				trimmed, err := s.archiveTrims(ctx, full, r.queue)
				if err != nil {
					return err
				}
				if trimmed || s.cfg.Now().Sub(r.failedAt) > queue.ArchiveMaxAge {
					s.unwatch(ctx, r.id, r.archived)
					continue
				}
			}
			switch state {
			case gone:
				if s.mark(ctx, r.id, StatusDead, "archived_task", r.archived, StatusDeleted,
					"archived task "+r.archived+" left asynq without running again here: deleted (asynqmon), or run and finished unseen") {
					sw.Deleted++
				}
			case queue.TaskArchived:
			case queue.TaskCompleted:
				if s.mark(ctx, r.id, StatusDead, "archived_task", r.archived, StatusResolved,
					"archived task "+r.archived+" was run again (asynqmon) and completed") {
					sw.Resolved++
				}
			default:
				if s.mark(ctx, r.id, StatusDead, "archived_task", r.archived, StatusRerun,
					"archived task "+r.archived+" was run again (asynqmon); now "+state.String()) {
					sw.Rerun++
				}
			}
		case StatusRerun:
			state, err := s.taskState(ctx, r.queue, r.archived)
			if err != nil {
				return err
			}
			if (state == gone || state == queue.TaskCompleted) && s.mark(ctx, r.id, StatusRerun, "archived_task", r.archived, StatusResolved,
				"task "+r.archived+" run again from asynqmon left asynq without failing") {
				sw.Resolved++
			}
		case StatusReplayed:
			state, err := s.taskState(ctx, r.queue, r.replayTask)
			if err != nil {
				return err
			}
			switch {
			case state == gone && s.mark(ctx, r.id, StatusReplayed, "replay_task", r.replayTask, StatusDeleted,
				"replay task "+r.replayTask+" left asynq without an outcome (deleted?); replay again if needed"):
				sw.Deleted++
			case state == queue.TaskCompleted && s.mark(ctx, r.id, StatusReplayed, "replay_task", r.replayTask, StatusResolved,
				"replay task "+r.replayTask+" completed"):
				sw.Resolved++
			}
		}
	}
	return nil
}

// archiveTrims reports whether asynq trims the archive of q now (it is
// full), caching the answer per sweep in full.
func (s *Store) archiveTrims(ctx context.Context, full map[string]bool, q string) (bool, error) {
	if v, ok := full[q]; ok {
		return v, nil
	}
	trims, err := s.insp.ArchiveTrims(ctx, q)
	if err != nil {
		return false, fmt.Errorf("dlq: sweep: %w", err)
	}
	full[q] = trims
	return trims, nil
}

// unwatch notes that asynq trimmed a dead record's archived task: the record
// stays dead and replayable, and the reconciler stops looking for the task.
func (s *Store) unwatch(ctx context.Context, id, archived string) {
	note := "asynq no longer holds archived task " + archived + ": its archive is full (asynq keeps 9,999 tasks per queue and trims the oldest without a word), or the task was deleted from asynqmon; this record keeps everything needed to replay it"
	ok, err := unwatchScript.Run(ctx, s.rdb, []string{recordKey(id), liveKey()}, id, archived, note, ms(s.cfg.Now())).Int()
	if err != nil {
		s.log.Error().Str("dlq_id", id).Err(err).Msg("reconciler could not update a record")
		return
	}
	if ok == 1 {
		s.log.Info().Str("dlq_id", id).Str("task_id", archived).Msg("asynq trimmed an archived task; the dead letter keeps it")
	}
}

// gone is the state of a task asynq does not hold.
const gone = queue.TaskGone

// taskState returns the task's state in asynq, or gone.
func (s *Store) taskState(ctx context.Context, q, id string) (queue.TaskState, error) {
	state, err := s.insp.State(ctx, q, id)
	if err != nil {
		return gone, fmt.Errorf("dlq: sweep: %w", err)
	}
	return state, nil
}

// mark changes a record's status if it is still what the sweep saw, and
// logs the change.
func (s *Store) mark(ctx context.Context, id string, from Status, field, value string, to Status, note string) bool {
	ok, err := markScript.Run(ctx, s.rdb, []string{recordKey(id), liveKey()},
		id, string(from), field, value, string(to), note, ms(s.cfg.Now())).Int()
	if err != nil {
		s.log.Error().Str("dlq_id", id).Err(err).Msg("reconciler could not update a record")
		return false
	}
	if ok == 1 {
		s.log.Info().Str("dlq_id", id).Str("from", string(from)).Str("to", string(to)).Msg(note)
	}
	return ok == 1
}

// RunReconciler sweeps and applies retention every ReconcileInterval until
// ctx ends. Of several workers, one sweeps per interval (a lock in Redis);
// a failed sweep is logged and tried again next interval.
func (s *Store) RunReconciler(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		s.reconcileOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) reconcileOnce(ctx context.Context) {
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	got, err := s.rdb.SetNX(ctx, lockKey(), hex.EncodeToString(token), s.cfg.ReconcileInterval-s.cfg.ReconcileInterval/10).Result()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("reconciler: Redis unavailable; will try again")
		}
		return
	}
	if !got {
		return // another worker sweeps this interval
	}
	sw, err := s.Sweep(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error().Err(err).Msg("reconciler sweep failed; will try again")
	}
	if sw.Trimmed, err = s.Trim(ctx); err != nil && ctx.Err() == nil {
		s.log.Error().Err(err).Msg("dead-letter retention failed; will try again")
	}
	if sw.Recorded+sw.Rerun+sw.Deleted+sw.Resolved > 0 {
		s.log.Info().Int("recorded", sw.Recorded).Int("rerun", sw.Rerun).Int("deleted", sw.Deleted).
			Int("resolved", sw.Resolved).Msg("reconciler sweep")
	}
}
