// Package dlq owns agentq's dead-letter queue: a durable store of every task
// that ended without success, with its full error history; the capture
// middleware that records deaths as the worker sees them; the reconciler
// that finds the deaths the middleware never saw in asynq's archive (lease
// expiry after a worker crash, tasks archived by hand) and reflects asynqmon
// actions in each record's status; replay as a fresh enqueue with lineage;
// purge; retention that never drops silently; and the dead-letter alert.
//
// asynq's own archive is not enough: it trims past 9,999 tasks per queue and
// 90 days without a word, and running an archived task again gives it one
// attempt. The store keeps records until a human or a configured retention
// removes them, and a replay gets the task's whole attempt budget.
//
// Every key lives in the {agentq-dlq} Cluster slot and every multi-key
// change is one Lua script.
package dlq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/promreg"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// Config defaults.
const (
	// AttemptsTTLDefault is how long a live task's failed attempts are kept
	// after the last one, waiting for the task to die or succeed.
	AttemptsTTLDefault = 30 * 24 * time.Hour
	// TombstoneTTLDefault is how long a purged or trimmed record's tasks
	// stay known, so that the reconciler does not record them again from
	// asynq's archive (which keeps tasks for 90 days).
	TombstoneTTLDefault = 91 * 24 * time.Hour
	// ReconcileIntervalDefault is how often the reconciler sweeps.
	ReconcileIntervalDefault = 30 * time.Second
	// GraceDefault is how long the reconciler leaves a record alone after
	// it changed, before it judges the record's asynq task.
	GraceDefault = time.Minute
	// CommandDefault is the command line that starts replay hints.
	CommandDefault = "agentq"
	// MaxErrorBytes bounds a stored error message.
	MaxErrorBytes = 2048
	// pageSize is how many records one list, stats or sweep step reads.
	pageSize = 500
)

// Redactor masks secrets in free text. *redact.Redactor implements it.
type Redactor interface {
	Text(s string) string
}

// Alerter takes a dead-letter alert without blocking. *alert.Webhook
// implements it.
type Alerter interface {
	Send(v any) bool
}

// Config configures a Store. Retention is off by default: nothing is ever
// dropped unless RetentionAge or RetentionCount is set, and then every drop
// is logged and counted.
type Config struct {
	// RetentionAge drops records whose last failure is older. Default 0: none.
	RetentionAge time.Duration
	// RetentionCount keeps at most this many records, dropping the oldest
	// by last failure. Default 0: no cap.
	RetentionCount int
	// AttemptsTTL is how long a live task's failed attempts wait for it to
	// die or succeed. Default AttemptsTTLDefault (30 days).
	AttemptsTTL time.Duration
	// TombstoneTTL is how long a purged record's tasks stay known.
	// Default TombstoneTTLDefault (91 days).
	TombstoneTTL time.Duration
	// ReconcileInterval is the period of RunReconciler.
	// Default ReconcileIntervalDefault (30s).
	ReconcileInterval time.Duration
	// Grace is how long the reconciler leaves a record alone after it
	// changed before judging its asynq task: a worker records a death just
	// before asynq archives the task, and a replay is recorded just before
	// its task is enqueued. Default GraceDefault (1m).
	Grace time.Duration
	// Client enqueues replays; Replay fails without it. Default none.
	Client *queue.Client
	// Check validates a replay's kind, payload and options before anything
	// changes (queue.Check with the enqueue config). Default none: the
	// client's enqueue validates, and a refused replay is undone.
	Check func(kind string, payload []byte, o queue.EnqueueOptions) error
	// Redactor masks secrets in stored error messages.
	// Default redact.New(nil, nil).
	Redactor Redactor
	// Alerter receives one alert per dead letter. Default none.
	Alerter Alerter
	// Command is the start of the replay hint: the command line, up to the
	// subcommand, that runs dlq commands against this store, i.e. the
	// program's name and the global flags that reach this Redis, ready to
	// paste into a shell (e.g. `myagent --redis-url redis://10.0.0.5:6379/0`).
	// It must hold no secret. Default CommandDefault ("agentq").
	Command string
	// NoReplayHint leaves the replay command out of the dead-letter
	// warning and alert (the record's id is still given): for a process
	// whose Redis is gone when it ends, such as `agentq dev --exit` with
	// its embedded Redis, where the command would point at nothing.
	NoReplayHint bool
	// Logger receives the dead-letter warning, retention drops and
	// reconciler findings. Default: no logging.
	Logger *zerolog.Logger
	// Registerer receives the store's metrics. Default nil: none.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.AttemptsTTL = cmp.Or(c.AttemptsTTL, AttemptsTTLDefault)
	c.TombstoneTTL = cmp.Or(c.TombstoneTTL, TombstoneTTLDefault)
	c.ReconcileInterval = cmp.Or(c.ReconcileInterval, ReconcileIntervalDefault)
	c.Grace = cmp.Or(c.Grace, GraceDefault)
	c.Command = cmp.Or(c.Command, CommandDefault)
	if c.Redactor == nil {
		c.Redactor = redact.New(nil, nil)
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.RetentionAge < 0:
		return fmt.Errorf("retention_age must not be negative, got %v", c.RetentionAge)
	case c.RetentionAge > 0 && c.RetentionAge < time.Minute:
		return fmt.Errorf("retention_age must be at least 1m when set, got %v", c.RetentionAge)
	case c.RetentionCount < 0:
		return fmt.Errorf("retention_count must not be negative, got %d", c.RetentionCount)
	case c.AttemptsTTL < time.Minute:
		return fmt.Errorf("attempts_ttl must be at least 1m, got %v", c.AttemptsTTL)
	case c.TombstoneTTL < time.Minute:
		return fmt.Errorf("tombstone_ttl must be at least 1m, got %v", c.TombstoneTTL)
	case c.ReconcileInterval < time.Second:
		return fmt.Errorf("reconcile_interval must be at least 1s, got %v", c.ReconcileInterval)
	case c.Grace < 0:
		return fmt.Errorf("grace must not be negative, got %v", c.Grace)
	}
	return nil
}

// Store is the dead-letter store. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	insp *queue.Inspector
	cfg  Config
	log  zerolog.Logger

	recorded *prometheus.CounterVec
	trimmed  *prometheus.CounterVec
}

// New returns a Store on rdb. The caller keeps ownership of rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	s := &Store{
		rdb: rdb, insp: queue.NewInspector(rdb), cfg: cfg,
		log: cfg.Logger.With().Str("component", "dlq").Logger(),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentq_dlq_recorded_total",
			Help: "Dead letters recorded, by who saw the death (worker or reconciler).",
		}, []string{"source"}),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentq_dlq_trimmed_total",
			Help: "Dead-letter records dropped by the configured retention, by reason (age or count).",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		var err error
		if s.recorded, err = promreg.Register(cfg.Registerer, s.recorded); err != nil {
			return nil, err
		}
		if s.trimmed, err = promreg.Register(cfg.Registerer, s.trimmed); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ReplayCommand is the command that replays record id: Config.Command,
// then "dlq replay" and the id.
func (s *Store) ReplayCommand(id string) string { return s.cfg.Command + " dlq replay " + id }

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// writeCtx detaches a write from the attempt's context (which may have timed
// out: that is often why the step died) and bounds it.
func writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

func (s *Store) redact(msg string) string {
	msg = s.cfg.Redactor.Text(msg)
	if len(msg) > MaxErrorBytes {
		msg = strings.ToValidUTF8(msg[:MaxErrorBytes], "") + "…"
	}
	return msg
}

// AddAttempt appends a failed attempt to a live task's pending history; the
// capture middleware calls it when a step will be retried.
func (s *Store) AddAttempt(ctx context.Context, queueName, taskID string, a Attempt) error {
	k := pendingKey(queueName, taskID)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, k, a.encode())
		p.PExpire(ctx, k, s.cfg.AttemptsTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dlq: record attempt: %w", err)
	}
	return nil
}

// Death is a task that ended without success.
type Death struct {
	Queue, TaskID, Kind, Workflow, RunID, Key, ReplayOf string
	// Step is the run step the task was; empty when none.
	Step        string
	Payload     []byte
	Headers     map[string]string
	MaxAttempts int
	// Final is the last attempt; its Class and Error become the record's.
	Final Attempt
	// Source is SourceWorker or SourceReconciler.
	Source string
	// Note explains a death the worker did not see.
	Note string
}

// Result modes of Dead.
const (
	modeCreated   = "created"
	modeAppended  = "appended"
	modeSeen      = "seen"
	modeTombstone = "tombstone"
)

// Dead records a death atomically: a replay task's death (and a task run
// again from asynqmon that dies) is appended to its record, which becomes
// dead again; any other death creates a record. The task's pending attempts
// move into the record's history. It returns the record id and what it did.
func (s *Store) Dead(ctx context.Context, d Death) (id, mode string, err error) {
	headers, _ := json.Marshal(d.Headers)
	if d.Headers == nil {
		headers = []byte("{}")
	}
	keys := []string{seqKey(), indexKey(), liveKey(), pendingKey(d.Queue, d.TaskID), taskKey(d.Queue, d.TaskID)}
	args := []any{
		keyPrefix, ms(s.cfg.Now()), cmp.Or(d.Source, SourceWorker), d.Queue, d.TaskID, d.Kind, d.Workflow, d.RunID,
		d.Key, d.ReplayOf, string(d.Payload), string(headers), d.MaxAttempts, string(d.Final.Class), d.Final.Error,
		ms(d.Final.At), d.Final.encode(), d.Note, d.Step,
	}
	res, err := deadScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return "", "", fmt.Errorf("dlq: record dead letter: %w", err)
	}
	if len(res) != 2 {
		return "", "", fmt.Errorf("dlq: record dead letter: unexpected reply %v", res)
	}
	if res[1] == modeCreated || res[1] == modeAppended {
		s.recorded.WithLabelValues(cmp.Or(d.Source, SourceWorker)).Inc()
	}
	return res[0], res[1], nil
}

// Succeeded settles what a success may settle: it drops the task's pending
// attempts and resolves the record whose replay, or whose archived task run
// again, just succeeded. It returns the resolved record id, if any.
func (s *Store) Succeeded(ctx context.Context, queueName, taskID, replayOf string) (string, error) {
	keys := []string{pendingKey(queueName, taskID), taskKey(queueName, taskID), liveKey()}
	id, err := successScript.Run(ctx, s.rdb, keys, keyPrefix, taskID, replayOf, ms(s.cfg.Now())).Text()
	if err != nil {
		return "", fmt.Errorf("dlq: record success: %w", err)
	}
	return id, nil
}

// RecordOf returns the id of the record holding the death of queue's
// task taskID; "" when the task has none (it never died, or its record was
// purged or trimmed).
func (s *Store) RecordOf(ctx context.Context, queueName, taskID string) (string, error) {
	id, err := s.rdb.Get(ctx, taskKey(queueName, taskID)).Result()
	switch {
	case errors.Is(err, redis.Nil), id == tombstone:
		return "", nil
	case err != nil:
		return "", err
	}
	return id, nil
}

// Get returns a record with its whole history.
func (s *Store) Get(ctx context.Context, id string) (Record, error) {
	var vals *redis.SliceCmd
	var hist *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		vals = p.HMGet(ctx, recordKey(id), recordFields...)
		hist = p.LRange(ctx, historyKey(id), 0, -1)
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("dlq: get %s: %w", id, err)
	}
	r, ok := recordFromValues(vals.Val())
	if !ok {
		return Record{}, &NotFoundError{ID: id}
	}
	for _, a := range hist.Val() {
		r.History = append(r.History, decodeAttempt(a))
	}
	return r, nil
}

// Exists reports which of ids have a record, in order.
func (s *Store) Exists(ctx context.Context, ids []string) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, recordKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: exists: %w", err)
	}
	out := make([]bool, len(ids))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// scanIndex calls fn with pages of record ids from the index, newest last
// failure first, restricted to failures at or after since (zero: all). It
// pages by score, so it reads every record present for the whole scan once,
// however many share a millisecond. fn returns false to stop.
func (s *Store) scanIndex(ctx context.Context, since time.Time, fn func(ids []string) (bool, error)) error {
	maxScore, offset := "+inf", int64(0)
	minScore := "-inf"
	if !since.IsZero() {
		minScore = ms(since)
	}
	for {
		page, err := s.rdb.ZRevRangeByScoreWithScores(ctx, indexKey(), &redis.ZRangeBy{
			Max: maxScore, Min: minScore, Offset: offset, Count: pageSize,
		}).Result()
		if err != nil {
			return fmt.Errorf("dlq: scan index: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		ids := make([]string, len(page))
		for i, z := range page {
			ids[i] = z.Member.(string)
		}
		more, err := fn(ids)
		if err != nil || !more || len(page) < pageSize {
			return err
		}
		last := page[len(page)-1].Score
		same := int64(0)
		for _, z := range page {
			if z.Score == last {
				same++
			}
		}
		next := strconv.FormatFloat(last, 'f', -1, 64)
		if next == maxScore {
			offset += same
		} else {
			offset = same
		}
		maxScore = next
	}
}

// readRecords reads records by id in one round trip, skipping ids whose
// record is gone.
func (s *Store) readRecords(ctx context.Context, ids []string) ([]Record, error) {
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, recordKey(id), recordFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: read records: %w", err)
	}
	out := make([]Record, 0, len(ids))
	for _, c := range cmds {
		if r, ok := recordFromValues(c.Val()); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Each calls fn for every record f selects, newest last failure first,
// reading the index in pages. fn returns false to stop.
func (s *Store) Each(ctx context.Context, f Filter, fn func(Record) bool) error {
	n := 0
	seen := map[string]bool{}
	return s.scanIndex(ctx, f.Since, func(ids []string) (bool, error) {
		recs, err := s.readRecords(ctx, ids)
		if err != nil {
			return false, err
		}
		for _, r := range recs {
			// A record that died again during the scan moves up the index
			// and may be read twice.
			if seen[r.ID] || !f.Match(r) {
				continue
			}
			seen[r.ID] = true
			n++
			if !fn(r) || (f.Limit > 0 && n >= f.Limit) {
				return false, nil
			}
		}
		return true, nil
	})
}

// List returns the records f selects, newest last failure first.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	var out []Record
	err := s.Each(ctx, f, func(r Record) bool { out = append(out, r); return true })
	return out, err
}

// Count returns the number of records.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, indexKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("dlq: count: %w", err)
	}
	return n, nil
}

// Stats summarises the records a filter selects.
type Stats struct {
	// Total counts the records.
	Total int `json:"total"`
	// ByStatus, ByQueue, ByWorkflow, ByKind and ByClass count them by each
	// field; an empty workflow counts under "".
	ByStatus   map[string]int `json:"by_status"`
	ByQueue    map[string]int `json:"by_queue"`
	ByWorkflow map[string]int `json:"by_workflow"`
	ByKind     map[string]int `json:"by_kind"`
	ByClass    map[string]int `json:"by_class"`
	// Oldest is the record waiting longest for a human (status dead or
	// deleted), by first failure; nil when none waits.
	Oldest *Oldest `json:"oldest"`
}

// Oldest names the oldest open record.
type Oldest struct {
	ID            string    `json:"id"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	Age           string    `json:"age"`
}

var statsFields = []string{"id", "status", "queue", "workflow", "kind", "class", "first_failed_at", "error", "run_id"}

// Stats counts the records f selects by status, queue, workflow, kind and
// class, and finds the oldest open one.
func (s *Store) Stats(ctx context.Context, f Filter) (Stats, error) {
	st := Stats{ByStatus: map[string]int{}, ByQueue: map[string]int{}, ByWorkflow: map[string]int{},
		ByKind: map[string]int{}, ByClass: map[string]int{}}
	var oldest Record
	seen := map[string]bool{}
	err := s.scanIndex(ctx, f.Since, func(ids []string) (bool, error) {
		cmds := make([]*redis.SliceCmd, len(ids))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HMGet(ctx, recordKey(id), statsFields...)
			}
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("dlq: stats: %w", err)
		}
		for _, c := range cmds {
			v := c.Val()
			str := func(i int) string { s, _ := v[i].(string); return s }
			if str(0) == "" || seen[str(0)] {
				continue
			}
			r := Record{ID: str(0), Status: Status(str(1)), Queue: str(2), Workflow: str(3), Kind: str(4),
				Class: jobs.Class(str(5)), FirstFailedAt: msTime(str(6)), Error: str(7), RunID: str(8)}
			if !f.Match(r) {
				continue
			}
			seen[r.ID] = true
			st.Total++
			st.ByStatus[string(r.Status)]++
			st.ByQueue[r.Queue]++
			st.ByWorkflow[r.Workflow]++
			st.ByKind[r.Kind]++
			st.ByClass[string(r.Class)]++
			if r.Status.Replayable() && (oldest.ID == "" || r.FirstFailedAt.Before(oldest.FirstFailedAt)) {
				oldest = r
			}
		}
		return true, nil
	})
	if err != nil {
		return Stats{}, err
	}
	if oldest.ID != "" {
		st.Oldest = &Oldest{ID: oldest.ID, FirstFailedAt: oldest.FirstFailedAt,
			Age: s.cfg.Now().Sub(oldest.FirstFailedAt).Round(time.Second).String()}
	}
	return st, nil
}

// Purged is a record that Purge or retention removed.
type Purged struct {
	ID     string
	Status Status
	Queue  string
	// ArchivedTask is the asynq task of its last death.
	ArchivedTask string
	// ArchiveDeleted is true when Purge also deleted that task from asynq's
	// archive.
	ArchiveDeleted bool
}

// purge removes records and tombstones their tasks; it returns the ones
// that existed.
func (s *Store) purge(ctx context.Context, ids []string) ([]Purged, error) {
	cmds := make([]*redis.Cmd, len(ids))
	// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = purgeScript.Eval(ctx, p, []string{recordKey(id), historyKey(id), indexKey(), liveKey()},
				keyPrefix, id, s.cfg.TombstoneTTL.Milliseconds())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dlq: purge: %w", err)
	}
	var out []Purged
	for i, c := range cmds {
		v, err := c.StringSlice()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("dlq: purge %s: %w", ids[i], err)
		}
		if len(v) == 3 {
			out = append(out, Purged{ID: ids[i], Status: Status(v[0]), Queue: v[1], ArchivedTask: v[2]})
		}
	}
	return out, nil
}

// Purge removes records for good, and deletes the archived asynq task of
// those still dead, so that asynqmon agrees. Unknown ids are skipped; the
// result lists what was removed.
func (s *Store) Purge(ctx context.Context, ids ...string) ([]Purged, error) {
	out, err := s.purge(ctx, ids)
	for i, p := range out {
		if p.Status != StatusDead || p.ArchivedTask == "" {
			continue
		}
		out[i].ArchiveDeleted, _ = s.insp.DeleteTask(ctx, p.Queue, p.ArchivedTask)
	}
	return out, err
}

// Trimmed says what a retention pass dropped.
type Trimmed struct {
	ByAge, ByCount int
}

// Trim applies the configured retention: records whose last failure is older
// than RetentionAge, then the oldest beyond RetentionCount. Each pass that
// drops anything logs one line per reason with the count, the ids (the first
// 20) and the statuses dropped, and adds to agentq_dlq_trimmed_total. With no
// retention configured it does nothing.
func (s *Store) Trim(ctx context.Context) (Trimmed, error) {
	var t Trimmed
	if s.cfg.RetentionAge > 0 {
		cutoff := s.cfg.Now().Add(-s.cfg.RetentionAge)
		for {
			ids, err := s.rdb.ZRangeByScore(ctx, indexKey(), &redis.ZRangeBy{
				Min: "-inf", Max: "(" + ms(cutoff), Count: pageSize,
			}).Result()
			if err != nil {
				return t, fmt.Errorf("dlq: trim: %w", err)
			}
			if len(ids) == 0 {
				break
			}
			n, err := s.drop(ctx, "age", ids, fmt.Sprintf("last failure before %s (retention_age %v)", cutoff.UTC().Format(time.RFC3339), s.cfg.RetentionAge))
			t.ByAge += n
			if err != nil {
				return t, err
			}
		}
	}
	if s.cfg.RetentionCount > 0 {
		for {
			total, err := s.Count(ctx)
			if err != nil {
				return t, err
			}
			excess := total - int64(s.cfg.RetentionCount)
			if excess <= 0 {
				break
			}
			ids, err := s.rdb.ZRange(ctx, indexKey(), 0, min(excess, pageSize)-1).Result()
			if err != nil {
				return t, fmt.Errorf("dlq: trim: %w", err)
			}
			n, err := s.drop(ctx, "count", ids, fmt.Sprintf("over retention_count %d", s.cfg.RetentionCount))
			t.ByCount += n
			if err != nil {
				return t, err
			}
		}
	}
	return t, nil
}

func (s *Store) drop(ctx context.Context, reason string, ids []string, why string) (int, error) {
	purged, err := s.purge(ctx, ids)
	if len(purged) > 0 {
		statuses := map[string]int{}
		dropped := make([]string, 0, min(len(purged), 20))
		for _, p := range purged {
			statuses[string(p.Status)]++
			if len(dropped) < 20 {
				dropped = append(dropped, p.ID)
			}
		}
		s.trimmed.WithLabelValues(reason).Add(float64(len(purged)))
		s.log.Warn().Str("reason", reason).Int("dropped", len(purged)).Strs("ids", dropped).
			Interface("statuses", statuses).Str("why", why).
			Msg("dead-letter retention dropped records")
	}
	if err == nil {
		// Drop every id from the index, also those whose record was already
		// gone, so that the trim loop always advances.
		members := make([]any, len(ids))
		for i, id := range ids {
			members[i] = id
		}
		if zerr := s.rdb.ZRem(ctx, indexKey(), members...).Err(); zerr != nil {
			return len(purged), fmt.Errorf("dlq: trim: %w", zerr)
		}
	}
	return len(purged), err
}

// SortedCounts returns the keys of a Stats count map, largest count first,
// then by name.
func SortedCounts(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
