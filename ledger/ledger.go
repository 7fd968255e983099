// Package ledger owns agentq's consumer-side idempotency ledger: for every
// step with an idempotency key that succeeded, it records key -> outcome
// digest in Redis for a retention period, and its middleware answers a
// repeated delivery of that step (a crashed worker's task run again, a lost
// acknowledgement, a replay) with the recorded success instead of calling the
// handler a second time.
//
// Delivery in asynq is at least once; the ledger turns that into at most one
// completed side effect per key within the retention. It reads Redis only
// when a delivery may be a repeat (Attempt > 1 or a replay): asynq's
// recoverer counts a crashed worker's attempt, so every redelivery has
// Attempt > 1. Successes are recorded by the ledger's observer, before the
// worker tells asynq: with asynq's own completion of the task, in its round
// trip, when the queue can (jobs.Result.AtCompletion); otherwise with group
// commit: concurrent writers share one pipeline, and each returns only after
// its own write is acknowledged. Either way the task is acknowledged to
// asynq no earlier than the ledger holds its success.
package ledger

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/promreg"
	"github.com/agentq/agentq/jobs"
)

// Config defaults.
const (
	// RetentionDefault is how long a recorded success answers repeats.
	RetentionDefault = 7 * 24 * time.Hour
	// CommitBatchDefault is the most writes sent in one pipeline.
	CommitBatchDefault = 64
)

// Config configures a Ledger.
type Config struct {
	// Retention is how long a recorded success is kept and answers repeated
	// deliveries. Default RetentionDefault (7 days).
	Retention time.Duration
	// CommitWindow is how long the first write of a group waits for more
	// before the group is sent. With 0 a group is sent at once with whatever
	// queued while the previous one was in flight: no added latency when
	// idle, batches under load. Default 0.
	CommitWindow time.Duration
	// CommitBatch caps the writes of one group. Default CommitBatchDefault (64).
	CommitBatch int
	// Logger receives a line per skipped repeat and per failed write.
	// Default: no logging.
	Logger *zerolog.Logger
	// Registerer receives the ledger's metrics. Default nil: none.
	Registerer prometheus.Registerer
	// Now is the clock that stamps recorded successes. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Retention = cmp.Or(c.Retention, RetentionDefault)
	c.CommitBatch = cmp.Or(c.CommitBatch, CommitBatchDefault)
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
	case c.Retention < time.Second:
		return fmt.Errorf("retention must be at least 1s, got %v", c.Retention)
	case c.CommitBatch < 1:
		return fmt.Errorf("commit_batch must be at least 1, got %d", c.CommitBatch)
	case c.CommitWindow > time.Second:
		return fmt.Errorf("commit_window must be at most 1s, got %v", c.CommitWindow)
	}
	return nil
}

// Entry is one recorded success.
type Entry struct {
	// Key is the step's idempotency key.
	Key string
	// Digest is Digest(kind, payload) of the step that succeeded.
	Digest string
	// At is when the success was recorded.
	At time.Time
	// TaskID is the task that succeeded.
	TaskID string
}

// Digest returns the outcome digest of a step: the hex SHA-256 of its kind
// and payload. A repeat is answered from the ledger only when its digest
// matches, so a replay with an edited payload runs the handler.
func Digest(kind string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("ledger is closed")

// Ledger records successes by idempotency key. It is safe for concurrent
// use; Close it after the worker that uses it has stopped.
type Ledger struct {
	rdb redis.UniversalClient
	cfg Config
	log zerolog.Logger

	reqs    chan *write
	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	done    chan struct{}
	skips   prometheus.Counter
	batches prometheus.Histogram
}

type write struct {
	key, field, val string
	ack             chan error
}

// New returns a Ledger on rdb and starts its committer. The caller keeps
// ownership of rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Ledger, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &Ledger{
		rdb: rdb, cfg: cfg, log: cfg.Logger.With().Str("component", "ledger").Logger(),
		reqs: make(chan *write, 4*cfg.CommitBatch), done: make(chan struct{}),
		skips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentq_ledger_skipped_total",
			Help: "Repeated deliveries answered from the idempotency ledger without calling the handler.",
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agentq_ledger_commit_batch_size",
			Help:    "Successes written per ledger round trip (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
	}
	if cfg.Registerer != nil {
		var err error
		if l.skips, err = promreg.Register(cfg.Registerer, l.skips); err != nil {
			return nil, err
		}
		if l.batches, err = promreg.Register(cfg.Registerer, l.batches); err != nil {
			return nil, err
		}
	}
	go l.commit()
	return l, nil
}

// Close stops the committer after the writes already queued are sent.
func (l *Ledger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
}

// encode stores an entry as "digest unix_ms task_id".
func encode(e Entry) string {
	return e.Digest + " " + strconv.FormatInt(e.At.UnixMilli(), 10) + " " + e.TaskID
}

func decode(key, v string) (Entry, error) {
	parts := strings.SplitN(v, " ", 3)
	if len(parts) != 3 {
		return Entry{}, fmt.Errorf("ledger entry is malformed")
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger entry time is malformed")
	}
	return Entry{Key: key, Digest: parts[0], At: time.UnixMilli(ms), TaskID: parts[2]}, nil
}

// Lookup returns the recorded success of key for the step whose digest
// (Digest of kind and payload) is given, if any. Each digest has its own
// entry, so a later success with another payload under the same key (an
// edited replay) does not hide the first.
func (l *Ledger) Lookup(ctx context.Context, key, digest string) (Entry, bool, error) {
	v, err := l.rdb.HGet(ctx, entryKey(key), digest).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Entry{}, false, nil
	case err != nil:
		return Entry{}, false, fmt.Errorf("ledger lookup: %w", err)
	}
	e, err := decode(key, v)
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// Record writes e through the group committer and returns once Redis has
// acknowledged it (or ctx ends, or the write failed).
func (l *Ledger) Record(ctx context.Context, e Entry) error {
	return l.record(ctx, completionWrite(e, l.cfg.Retention))
}

// completionWrite is the write that records e: one hash field under the
// key's entry, the entry's expiry renewed to the retention.
func completionWrite(e Entry, retention time.Duration) jobs.CompletionWrite {
	return jobs.CompletionWrite{Key: entryKey(e.Key), Field: e.Digest, Value: encode(e), TTL: retention}
}

func (l *Ledger) record(ctx context.Context, cw jobs.CompletionWrite) error {
	w := &write{key: cw.Key, field: cw.Field, val: cw.Value, ack: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- w:
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("ledger record: %w", ctx.Err())
	}
	l.mu.RUnlock()
	select {
	case err := <-w.ack:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ledger record: %w", ctx.Err())
	}
}

// commit is the group committer: it takes the first waiting write, gathers
// more for up to CommitWindow or CommitBatch writes, sends them in one
// pipeline and acknowledges each.
func (l *Ledger) commit() {
	defer close(l.done)
	batch := make([]*write, 0, l.cfg.CommitBatch)
	var timer *time.Timer
	for first := range l.reqs {
		batch = append(batch[:0], first)
		if l.cfg.CommitWindow > 0 {
			if timer == nil {
				timer = time.NewTimer(l.cfg.CommitWindow)
			} else {
				timer.Reset(l.cfg.CommitWindow)
			}
		gather:
			for len(batch) < l.cfg.CommitBatch {
				select {
				case w, ok := <-l.reqs:
					if !ok {
						break gather
					}
					batch = append(batch, w)
				case <-timer.C:
					break gather
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		} else {
		drain:
			for len(batch) < l.cfg.CommitBatch {
				select {
				case w, ok := <-l.reqs:
					if !ok {
						break drain
					}
					batch = append(batch, w)
				default:
					break drain
				}
			}
		}
		l.flush(batch)
	}
}

func (l *Ledger) flush(batch []*write) {
	// The writes are acknowledged whatever the callers' contexts say: a
	// success that reached the handler is worth recording.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range batch {
			p.HSet(ctx, w.key, w.field, w.val)
			p.PExpire(ctx, w.key, l.cfg.Retention)
		}
		return nil
	})
	l.batches.Observe(float64(len(batch)))
	for i, w := range batch {
		werr := err
		if 2*i+1 < len(cmds) {
			werr = cmds[2*i].Err()
			if werr == nil {
				werr = cmds[2*i+1].Err()
			}
		}
		if werr != nil {
			werr = fmt.Errorf("ledger record: %w", werr)
		}
		w.ack <- werr
	}
}

// Middleware returns the ledger's middleware. For a step with a key that
// may be a repeated delivery (Attempt > 1 or a replay), it looks the key up
// and, when a success with the same digest is recorded, returns nil without
// calling the handler and marks the step Answered. A failed lookup runs the
// handler (at least once beats never). Successes are recorded by Observer.
func (l *Ledger) Middleware() jobs.Middleware {
	return func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
			if s.Key == "" || (s.Attempt <= 1 && s.ReplayOf == "") {
				return next.ProcessStep(ctx, s)
			}
			e, ok, err := l.Lookup(ctx, s.Key, Digest(s.Kind, s.Payload))
			switch {
			case err != nil:
				l.log.Warn().Str("task_id", s.TaskID).Str("run_id", s.RunID).Str("key_hash", KeyHash(s.Key)).
					Err(err).Msg("ledger unavailable; running the step")
			case ok:
				l.skips.Inc()
				l.log.Info().Str("task_id", s.TaskID).Str("run_id", s.RunID).Str("workflow", s.Workflow).
					Str("kind", s.Kind).Int("attempt", s.Attempt).Str("key_hash", KeyHash(s.Key)).
					Str("recorded_task_id", e.TaskID).Time("recorded_at", e.At).
					Msg("step already succeeded for this idempotency key; handler not called")
				s.Answered = true
				return nil
			}
			return next.ProcessStep(ctx, s)
		})
	}
}

// Observer returns the ledger's observer (queue.WorkerConfig.Observers): it
// records the success of a step with a key that the handler ran (not one
// the middleware Answered), before the queue marks the step done. It asks
// the queue to commit the entry with its own completion of the task
// (jobs.Result.AtCompletion, one round trip); when the queue cannot, it
// writes the entry through the group committer and returns once Redis
// holds it. A failed write is logged and the step still succeeds, since
// its side effect is done.
func (l *Ledger) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(ctx context.Context, s *jobs.Step, r *jobs.Result) {
		if r.Outcome != jobs.OutcomeSuccess || s.Key == "" || s.Answered {
			return
		}
		cw := completionWrite(Entry{Key: s.Key, Digest: Digest(s.Kind, s.Payload), At: l.cfg.Now(), TaskID: s.TaskID}, l.cfg.Retention)
		if r.AtCompletion(cw) {
			return
		}
		if err := l.record(context.WithoutCancel(ctx), cw); err != nil {
			l.log.Error().Str("task_id", s.TaskID).Str("run_id", s.RunID).Str("key_hash", KeyHash(s.Key)).
				Err(err).Msg("step succeeded but its success was not recorded in the ledger")
		}
	})
}
