package queue

import (
	"context"
	"crypto/sha1" //nolint:gosec // a digest Redis's Lua (redis.sha1hex) can compute, not a security check
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentq/agentq/jobs"
)

// A worker killed with tasks in flight leaves them in asynq's active list
// with a lease (asynq:{q}:lease, score = lease expiry in Unix seconds,
// written by the worker's clock, extended every 5s by its heartbeat for
// 30s). asynq's recoverer brings such a task back only once its lease
// expired 30s ago, and runs once a minute: 60 to 120s after the kill. The
// lease sweeper does the same thing, with the same effect on Redis, every
// RecoverConfig.Interval, for leases that expired RecoverConfig.Grace ago:
// 35 to 45s after the kill with the defaults. The 30s lease itself is
// asynq's (rdb.LeaseDuration) and cannot be shortened.
//
// Safety:
//   - Only a task whose lease expired Grace ago by Redis's clock (TIME) is
//     touched. A task is taken from a worker that still believes it holds
//     the lease only when that worker's clock lags Redis's by more than the
//     time left on the lease plus Grace. While the worker's heartbeat runs
//     (it extends each lease to now+30s every 5s) that takes a lag of more
//     than 25s+Grace; a worker that stops renewing while alive (a long GC
//     pause, a paused VM, SIGSTOP, cut off from Redis) and then resumes has
//     only Grace. asynq's own recoverer compares with its server's clock,
//     with 30s of margin.
//   - So every sweep compares this worker's clock with Redis's (the TIME the
//     list script reads): past Grace/2 apart it warns, once; Grace or more
//     apart it moves nothing and says so, once, until the clocks agree again
//     (asynq's recoverer still recovers, later). It sees its own host's clock
//     only: keep every worker's clock synchronised (NTP).
//   - Each move is one Lua script that checks, atomically, that the lease
//     is still expired past the cutoff and the task message is the one read,
//     then does what asynq's rdb.Retry or rdb.Archive script does: out of
//     active and lease, into retry (retried+1, error "asynq: task lease
//     expired", retry_at from the worker's RetryDelayFunc) or, when retried
//     >= retry, into the archive. A task asynq's recoverer, a worker or
//     another sweeper moved in between is left alone; nothing is lost.
//   - The worker whose lease expired stops writing for the task (asynq
//     ignores the outcome of an attempt whose lease is no longer valid), as
//     with asynq's recoverer: the sweeper only comes sooner.
//   - Attempts stay bounded: retried is incremented in the stored message
//     exactly as asynq does, so a task that kills its worker every time is
//     archived after its attempts.
//   - The scripts are checked against asynq v0.26.0's key layout and task
//     message (see recover_test.go); on any other asynq version the sweeper
//     stays off and asynq's own recoverer does the work.

// Lease sweeper defaults.
const (
	// RecoverIntervalDefault is how often a worker sweeps its queues for
	// tasks whose lease expired.
	RecoverIntervalDefault = 5 * time.Second
	// RecoverGraceDefault is how long past its lease expiry a task is left
	// alone before the sweeper recovers it.
	RecoverGraceDefault = 10 * time.Second
	// RecoverGraceMin is the least grace accepted: room for clock skew
	// between the worker that wrote the lease and Redis.
	RecoverGraceMin = 5 * time.Second
	// asynqVerifiedVersion is the asynq whose scripts the sweeper mirrors.
	asynqVerifiedVersion = "v0.26.0"
	// sweepBatch bounds the tasks one script lists.
	sweepBatch = 100
	// sweepPages bounds the pages one sweep lists per queue; the next sweep
	// goes on from where it stopped.
	sweepPages = 10
	// maxWarned bounds the task ids a sweeper remembers having warned about
	// (each is named once, not every sweep).
	maxWarned = 1000
)

// RecoverConfig configures a worker's lease sweeper.
type RecoverConfig struct {
	// Interval is how often the worker looks for tasks whose lease
	// expired; negative turns the sweeper off (asynq's recoverer alone:
	// 60 to 120s). Default RecoverIntervalDefault (5s). (agentq's
	// worker.recover_interval says 0 for off; config.Worker.Recover maps it.)
	Interval time.Duration
	// Grace is how long past its lease expiry, by Redis's clock, a task is
	// left alone; at least RecoverGraceMin. Default RecoverGraceDefault (10s).
	Grace time.Duration
}

func (c RecoverConfig) withDefaults() RecoverConfig {
	if c.Interval == 0 {
		c.Interval = RecoverIntervalDefault
	}
	if c.Grace == 0 {
		c.Grace = RecoverGraceDefault
	}
	return c
}

// Validate reports a setting of c that NewWorker refuses, after filling its
// defaults (zero fields are valid): a Grace under RecoverGraceMin while the
// sweeper runs. The message starts with "recover_grace"; package config
// applies it to worker.recover_grace.
func (c RecoverConfig) Validate() error { return c.withDefaults().validate() }

func (c RecoverConfig) validate() error {
	if c.Interval > 0 && c.Grace < RecoverGraceMin {
		return fmt.Errorf("recover_grace must be at least %v (room for clock skew between workers and Redis), got %v", RecoverGraceMin, c.Grace)
	}
	return nil
}

// asynqVersion returns the asynq module version built in and whether the
// sweeper's scripts were checked against it. A variable for tests: test
// binaries carry no module versions.
var asynqVersion = builtAsynqVersion

func builtAsynqVersion() (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return asynqVersionUnknown, false
	}
	for _, m := range bi.Deps {
		if m.Path != "github.com/hibiken/asynq" {
			continue
		}
		if m.Replace != nil {
			return m.Version + " => " + m.Replace.Path + " " + m.Replace.Version, false
		}
		return m.Version, m.Version == asynqVerifiedVersion
	}
	return asynqVersionUnknown, false
}

// asynqVersionUnknown is what builtAsynqVersion reports for a build whose
// module list does not name asynq (a test binary).
const asynqVersionUnknown = "unknown"

// sweeper brings back tasks whose worker stopped renewing their lease.
type sweeper struct {
	rdb       redis.UniversalClient
	queues    []string
	cfg       RecoverConfig
	delay     asynq.RetryDelayFunc
	isFailure func(error) bool
	now       func() time.Time
	// observe, when set, hands the attempt of a task the sweeper moved to
	// the worker's observers (Worker.sweptResult).
	observe func(ctx context.Context, s *jobs.Step, spent bool, delay time.Duration)
	log     zerolog.Logger

	pages int // sweepPages; a field for tests

	// Sweep state, used by one sweep at a time.
	resume     map[string]int64           // queue -> where its next sweep starts in the expired range
	warned     map[string]map[string]bool // queue -> id warned about -> still seen in this pass
	nWarned    int                        // ids in warned
	warnedFull bool                       // said that maxWarned was reached
	clock      clockState

	mu   sync.Mutex
	stop chan struct{} // closed by shutdown
	done chan struct{} // closed when the loop ends; nil until started
}

// clockState is how this worker's clock compares with Redis's, as last
// logged.
type clockState int

const (
	clockAgrees clockState = iota
	clockSkewed            // apart by more than Grace/2: warned
	clockTooFar            // apart by Grace or more: nothing moved
)

func newSweeper(rdb redis.UniversalClient, cfg WorkerConfig, delay asynq.RetryDelayFunc) *sweeper {
	qs := make([]string, 0, len(cfg.Queues))
	for q := range cfg.Queues {
		qs = append(qs, q)
	}
	return &sweeper{
		rdb: rdb, queues: qs, cfg: cfg.Recover, delay: delay, isFailure: isFailure, now: cfg.Now,
		log:   cfg.Logger.With().Str("component", "lease_sweeper").Logger(),
		pages: sweepPages, resume: map[string]int64{}, warned: map[string]map[string]bool{},
		stop: make(chan struct{}),
	}
}

// start runs the sweeper in the background, if it is on and asynq's
// version is the verified one; stop ends it.
func (s *sweeper) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	s.done = make(chan struct{})
	version, verified := asynqVersion()
	switch {
	case s.cfg.Interval < 0:
		s.log.Info().Msg("lease sweeper off by configuration: asynq's recoverer alone brings back a crashed worker's tasks (60-120s)")
		close(s.done)
		return
	case !verified:
		s.log.Warn().Str("asynq_version", version).Str("verified_version", asynqVerifiedVersion).
			Msg("lease sweeper off: asynq is not the version its scripts were checked against; asynq's recoverer alone brings back a crashed worker's tasks (60-120s)")
		close(s.done)
		return
	}
	s.log.Debug().Dur("interval", s.cfg.Interval).Dur("grace", s.cfg.Grace).Msg("lease sweeper on")
	go func() {
		defer close(s.done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if _, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("lease sweep failed; trying again next interval")
			}
			t.Reset(s.cfg.Interval)
		}
	}()
}

// shutdown stops the sweeper and waits for a sweep in progress.
func (s *sweeper) shutdown() {
	s.mu.Lock()
	done := s.done
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// swept counts what one sweep did.
type swept struct{ retried, archived int }

// sweep recovers the lease-expired tasks of every queue once. It lists each
// queue's expired leases a page at a time, past the ones it leaves in place
// (a task it cannot read or move stays where it is and is named in the log
// once), up to s.pages pages; a queue with more goes on at the next sweep.
func (s *sweeper) sweep(ctx context.Context) (swept, error) {
	var total swept
	for _, q := range s.queues {
		sw, stop, err := s.sweepQueue(ctx, q)
		total.retried += sw.retried
		total.archived += sw.archived
		if err != nil {
			return total, fmt.Errorf("queue %q: %w", q, err)
		}
		if stop {
			break
		}
	}
	return total, nil
}

// sweepQueue sweeps queue q; stop is true when the clocks disagree too much
// to sweep at all.
func (s *sweeper) sweepQueue(ctx context.Context, q string) (sw swept, stop bool, err error) {
	offset := s.resume[q]
	if offset == 0 {
		// A new pass over the expired range: an id warned about that this
		// pass does not meet again has left it.
		for id := range s.warned[q] {
			s.warned[q][id] = false
		}
	}
	for range s.pages {
		page, err := s.list(ctx, q, offset)
		if err != nil {
			return sw, false, err
		}
		if !s.clockOK(page.skew) {
			return sw, true, nil
		}
		for _, e := range page.entries {
			r, err := s.recoverEntry(ctx, q, e, page.cutoff)
			if err != nil {
				return sw, false, err
			}
			switch r {
			case movedToRetry:
				sw.retried++
			case movedToArchive:
				sw.archived++
			default:
				// Left in place, so the next page starts past it. A task
				// someone else moved meanwhile is gone, and the next page
				// skips one it has not seen: the next pass meets that one.
				offset++
			}
		}
		if len(page.entries) < sweepBatch {
			s.resume[q] = 0
			s.forgetLeft(q)
			return sw, false, nil
		}
	}
	s.resume[q] = offset
	return sw, false, nil
}

// listExpiredScript lists up to ARGV[4] tasks of one queue whose lease
// expired ARGV[1] seconds ago or more by Redis's clock, skipping the first
// ARGV[3], as asynq's listLeaseExpiredCmd does for a cutoff. It only reads,
// so TIME is safe on every Redis version.
//
// KEYS[1] asynq:{q}:lease; ARGV[1] grace seconds, ARGV[2] task key prefix,
// ARGV[3] offset, ARGV[4] limit. Returns {cutoff, time seconds, time
// microseconds, id1, msg1, id2, msg2, ...}, msg false (nil) when the task
// has no hash.
var listExpiredScript = redis.NewScript(`
local now = redis.call("TIME")
local cutoff = tonumber(now[1]) - tonumber(ARGV[1])
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", cutoff, "LIMIT", tonumber(ARGV[3]), tonumber(ARGV[4]))
local res = {cutoff, tonumber(now[1]), tonumber(now[2])}
for _, id in ipairs(ids) do
	table.insert(res, id)
	table.insert(res, redis.call("HGET", ARGV[2] .. id, "msg"))
end
return res`)

// expiredEntry is one lease-expired task listed; hasMsg is false when its
// task hash is gone.
type expiredEntry struct {
	id     string
	msg    []byte
	hasMsg bool
}

// expiredPage is what one listExpiredScript call read.
type expiredPage struct {
	cutoff  int64
	skew    time.Duration // this worker's clock minus Redis's
	entries []expiredEntry
}

// list reads one page of queue q's lease-expired tasks from offset on.
func (s *sweeper) list(ctx context.Context, q string, offset int64) (expiredPage, error) {
	before := s.now()
	res, err := listExpiredScript.Run(ctx, s.rdb, []string{asynqLeaseKey(q)},
		int64(s.cfg.Grace/time.Second), asynqTaskPrefix(q), offset, sweepBatch).Slice()
	after := s.now()
	if err != nil {
		return expiredPage{}, fmt.Errorf("list lease-expired tasks: %w", err)
	}
	if len(res) < 3 {
		return expiredPage{}, fmt.Errorf("list lease-expired tasks: reply of %d values, want at least 3", len(res))
	}
	cutoff, ok1 := res[0].(int64)
	sec, ok2 := res[1].(int64)
	usec, ok3 := res[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return expiredPage{}, fmt.Errorf("list lease-expired tasks: header %v is not three integers", res[:3])
	}
	local := before.Add(after.Sub(before) / 2)
	page := expiredPage{cutoff: cutoff, skew: local.Sub(time.Unix(sec, usec*1000))}
	for i := 3; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		raw, ok := res[i+1].(string)
		page.entries = append(page.entries, expiredEntry{id: id, msg: []byte(raw), hasMsg: ok})
	}
	return page, nil
}

// clockOK logs a change in how this worker's clock compares with Redis's
// and says whether tasks may be moved.
func (s *sweeper) clockOK(skew time.Duration) bool {
	abs := skew.Abs()
	st := clockAgrees
	switch {
	case abs >= s.cfg.Grace:
		st = clockTooFar
	case abs > s.cfg.Grace/2:
		st = clockSkewed
	}
	if st != s.clock {
		ev := s.log.Warn()
		msg := "lease sweeper: this worker's clock and Redis's differ by more than half the recover grace; a worker whose clock lags Redis's by the grace can lose a task it still runs (keep clocks synchronised)"
		switch st {
		case clockAgrees:
			ev, msg = s.log.Info(), "lease sweeper: this worker's clock and Redis's agree again"
		case clockTooFar:
			ev, msg = s.log.Error(), "lease sweeper paused: this worker's clock and Redis's differ by the recover grace or more; lease-expired tasks are left to asynq's recoverer (30s margin) until they agree (keep clocks synchronised)"
		}
		ev.Dur("clock_skew", skew).Dur("grace", s.cfg.Grace).Msg(msg)
		s.clock = st
	}
	return st != clockTooFar
}

// recovered is what recoverEntry did with one lease-expired task.
type recovered int

const (
	movedToRetry   recovered = iota
	movedToArchive           // retries used up
	leftChanged              // lease renewed, message changed or task gone since listed: someone else has it
	leftNoTask               // in the lease set without a task hash
	leftUnreadable           // a message this code does not read
	leftNotActive            // leased but not in the active list
)

// recoverEntry recovers one listed task and names, once, one it leaves in
// place for good.
func (s *sweeper) recoverEntry(ctx context.Context, q string, e expiredEntry, cutoff int64) (recovered, error) {
	if !e.hasMsg {
		s.warnOnce(q, e.id, nil, "lease sweeper: a lease names a task that has no task hash; left alone (asynq's recoverer cannot recover it either)")
		return leftNoTask, nil
	}
	r, err := s.recoverTask(ctx, q, e.id, e.msg, cutoff)
	switch {
	case err != nil:
		return r, err
	case r == leftUnreadable:
		_, perr := parseTaskMsg(e.msg)
		s.warnOnce(q, e.id, perr, "lease sweeper: cannot read task message; left to asynq's recoverer")
	case r == leftNotActive:
		s.warnOnce(q, e.id, nil, "lease sweeper: a task with an expired lease is not in the active list; left alone (asynq's recoverer cannot recover it either)")
	}
	return r, nil
}

// warnOnce logs msg about task id of queue q unless it did already in an
// earlier pass that still met the task, and marks it met in this pass.
func (s *sweeper) warnOnce(q, id string, err error, msg string) {
	ws := s.warned[q]
	if ws == nil {
		ws = map[string]bool{}
		s.warned[q] = ws
	}
	if _, ok := ws[id]; ok {
		ws[id] = true
		return
	}
	if s.nWarned >= maxWarned {
		if !s.warnedFull {
			s.warnedFull = true
			s.log.Warn().Int("max_warned", maxWarned).Msg("lease sweeper: too many tasks left in place to name each; further ones are not logged")
		}
		return
	}
	ws[id] = true
	s.nWarned++
	ev := s.log.Warn().Str("task_id", id).Str("queue", q)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg(msg)
}

// forgetLeft drops, at the end of a pass over queue q, the ids warned about
// that the pass did not meet: they left the lease set, and are named again
// should they come back.
func (s *sweeper) forgetLeft(q string) {
	for id, seen := range s.warned[q] {
		if !seen {
			delete(s.warned[q], id)
			s.nWarned--
		}
	}
	if s.nWarned < maxWarned {
		s.warnedFull = false
	}
}

// The move scripts share their keys and their first arguments:
//
// KEYS[1] asynq:{q}:t:<id>, KEYS[2] asynq:{q}:active, KEYS[3]
// asynq:{q}:lease, KEYS[4] the destination (asynq:{q}:retry or
// asynq:{q}:archived), KEYS[5] asynq:{q}:processed:<date>, KEYS[6]
// asynq:{q}:failed:<date>, KEYS[7] asynq:{q}:processed, KEYS[8]
// asynq:{q}:failed, KEYS[9] asynq:{q}:t: (used by archiveScript only);
// see moveKeys.
//
// ARGV[1] id, ARGV[2] new message, ARGV[3] score in the destination
// (retry_at or died_at, Unix), ARGV[4] stats expiry (Unix), ARGV[5] max
// int64, ARGV[6] lease cutoff, ARGV[7] sha1 of the message read; then each
// script's own (see each).

// guard is the check both move scripts start with: the task's lease is
// still expired past the cutoff (ARGV[6]) and its message is the one read
// (sha1 in ARGV[7]), else 0 is returned and nothing done; and the task is
// in the active list, else -1 is returned and nothing done (asynq's own
// Retry and Archive fail with NOT FOUND there). Then the task leaves active
// and the lease set.
const guard = `
local score = redis.call("ZSCORE", KEYS[3], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[6]) then
	return 0
end
local cur = redis.call("HGET", KEYS[1], "msg")
if not cur or redis.sha1hex(cur) ~= ARGV[7] then
	return 0
end
if redis.call("LREM", KEYS[2], 0, ARGV[1]) == 0 then
	return -1
end
redis.call("ZREM", KEYS[3], ARGV[1])
`

// countFailure is the tail both of asynq's scripts end with when the
// attempt counts as a failure: the day's processed and failed counters
// (expiring at ARGV[4]) and the totals, both reset to 1 when processed
// reached max int64 (ARGV[5]).
const countFailure = `
local n = redis.call("INCR", KEYS[5])
if tonumber(n) == 1 then
	redis.call("EXPIREAT", KEYS[5], ARGV[4])
end
local m = redis.call("INCR", KEYS[6])
if tonumber(m) == 1 then
	redis.call("EXPIREAT", KEYS[6], ARGV[4])
end
local total = redis.call("GET", KEYS[7])
if tonumber(total) == tonumber(ARGV[5]) then
	redis.call("SET", KEYS[7], 1)
	redis.call("SET", KEYS[8], 1)
else
	redis.call("INCR", KEYS[7])
	redis.call("INCR", KEYS[8])
end
`

// The two move scripts below mirror asynq v0.26.0's retryCmd and archiveCmd
// (github.com/hibiken/asynq, internal/rdb/rdb.go; Copyright (c) 2019 Kentaro
// Hibino, MIT License), so that a task the sweeper moves is in exactly the
// state asynq's own recoverer would leave it in (recover_test.go compares).

// retryScript is asynq v0.26's retryCmd (internal/rdb) behind guard: into
// the retry set at ARGV[3]. ARGV[8] is_failure (1/0): only a failure
// counts in the stats.
var retryScript = redis.NewScript(guard + `
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[1], "msg", ARGV[2], "state", "retry")
if tonumber(ARGV[8]) == 1 then` + countFailure + `end
return 1`)

// archiveScript is asynq v0.26's archiveCmd (internal/rdb) behind guard:
// into the archive at ARGV[3], dropping archived tasks older than ARGV[8]
// (Unix, 90 days ago) and beyond the size cap ARGV[9], with their task
// hashes (prefix KEYS[9]).
var archiveScript = redis.NewScript(guard + `
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
local old = redis.call("ZRANGE", KEYS[4], "-inf", ARGV[8], "BYSCORE")
if #old > 0 then
	for _, id in ipairs(old) do
		redis.call("DEL", KEYS[9] .. id)
	end
	redis.call("ZREM", KEYS[4], unpack(old))
end
local extra = redis.call("ZRANGE", KEYS[4], 0, -ARGV[9])
if #extra > 0 then
	for _, id in ipairs(extra) do
		redis.call("DEL", KEYS[9] .. id)
	end
	redis.call("ZREM", KEYS[4], unpack(extra))
end
redis.call("HSET", KEYS[1], "msg", ARGV[2], "state", "archived")` + countFailure + `return 1`)

// moveKeys is KEYS of both move scripts for task id of queue q moved to
// dest at now.
func moveKeys(q, id, dest string, now time.Time) []string {
	return []string{
		asynqTaskPrefix(q) + id, asynqActiveKey(q), asynqLeaseKey(q), dest,
		asynqProcessedKey(q, now), asynqFailedKey(q, now), asynqProcessedTotalKey(q), asynqFailedTotalKey(q),
		asynqTaskPrefix(q),
	}
}

// asynq v0.26's constants (internal/rdb) that its Retry and Archive use.
const (
	asynqStatsTTL       = 90 * 24 * time.Hour
	asynqMaxArchiveSize = 10000
	asynqArchivedDays   = 90
)

// leaseExpiredErrorText is the last error asynq's recoverer stores.
var leaseExpiredErrorText = asynq.ErrLeaseExpired.Error()

// recoverTask moves one lease-expired task to retry or the archive, as
// asynq's recoverer would, and says what it did. A task that changed since
// it was listed (someone else dealt with it) is left alone.
func (s *sweeper) recoverTask(ctx context.Context, q, id string, raw []byte, cutoff int64) (recovered, error) {
	m, err := parseTaskMsg(raw)
	if err != nil {
		return leftUnreadable, nil
	}
	now := s.now()
	sum := sha1.Sum(raw) //nolint:gosec // see import
	digest := hex.EncodeToString(sum[:])
	archived := m.retried >= m.retry
	failure := s.isFailure(asynq.ErrLeaseExpired)
	var (
		script  = retryScript
		dest    = asynqRetryKey(q)
		retried = m.retried
		score   int64 // retry_at or died_at
		own     []any // the script's own arguments, ARGV[8] on
		delay   time.Duration
	)
	if archived {
		script, dest, score = archiveScript, asynqArchivedKey(q), now.Unix()
		own = []any{now.AddDate(0, 0, -asynqArchivedDays).Unix(), asynqMaxArchiveSize}
	} else {
		delay = s.delay(m.retried, asynq.ErrLeaseExpired, asynq.NewTaskWithHeaders(m.typ, m.payload, m.headers))
		score, own = now.Add(delay).Unix(), []any{0}
		if failure {
			retried, own = retried+1, []any{1}
		}
	}
	msg := withFailure(raw, retried, leaseExpiredErrorText, now.Unix())
	args := append([]any{id, msg, score, now.Add(asynqStatsTTL).Unix(), int64(math.MaxInt64), cutoff, digest}, own...)
	res, err := script.Run(ctx, s.rdb, moveKeys(q, id, dest, now), args...).Int64()
	switch {
	case err != nil:
		return leftChanged, fmt.Errorf("recover task %s: %w", id, err)
	case res == -1:
		return leftNotActive, nil
	case res != 1:
		return leftChanged, nil
	}
	outcome, ev := jobs.OutcomeRetry, s.log.Warn()
	if archived {
		outcome, ev = jobs.OutcomeDead, s.log.Error()
	}
	ev.Str("task_id", id).Str("kind", m.typ).Str("queue", q).Int("attempt", m.retried+1).
		Int("max_attempts", max(m.retry, 1)).Str("outcome", string(outcome)).Str("class", string(jobs.ClassLeaseExpired)).
		Str("error", leaseExpiredErrorText).Msg("attempt")
	if s.observe != nil {
		s.observe(ctx, &jobs.Step{
			TaskID: id, Kind: m.typ, Queue: q, Workflow: m.headers[jobs.HeaderWorkflow], RunID: m.headers[jobs.HeaderRunID],
			Name: m.headers[jobs.HeaderStep], Key: m.headers[jobs.HeaderKey], ReplayOf: m.headers[jobs.HeaderReplayOf],
			Attempt: m.retried + 1, MaxAttempts: max(m.retry, 1), Payload: m.payload, Headers: m.headers,
		}, archived, delay)
	}
	if archived {
		return movedToArchive, nil
	}
	return movedToRetry, nil
}

// taskMsg is what the sweeper reads of asynq's task message, a protobuf
// (asynq internal/proto TaskMessage: type=1, payload=2, retry=5,
// retried=6, error_msg=7, last_failed_at=11, headers=15).
type taskMsg struct {
	typ            string
	payload        []byte
	headers        map[string]string
	retry, retried int
}

const (
	fieldType         protowire.Number = 1
	fieldPayload      protowire.Number = 2
	fieldRetry        protowire.Number = 5
	fieldRetried      protowire.Number = 6
	fieldErrorMsg     protowire.Number = 7
	fieldLastFailedAt protowire.Number = 11
	fieldHeaders      protowire.Number = 15
)

var errBadMsg = errors.New("malformed task message")

// eachField calls fn for every top-level field of the protobuf b with its
// raw bytes (tag included) and value; it fails on malformed input.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, raw []byte, val []byte, v uint64) error) error {
	for len(b) > 0 {
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			return errBadMsg
		}
		n := protowire.ConsumeFieldValue(num, typ, b[tn:])
		if n < 0 {
			return errBadMsg
		}
		raw := b[:tn+n]
		var (
			val []byte
			v   uint64
		)
		switch typ {
		case protowire.BytesType:
			val, _ = protowire.ConsumeBytes(b[tn:])
		case protowire.VarintType:
			v, _ = protowire.ConsumeVarint(b[tn:])
		}
		if err := fn(num, typ, raw, val, v); err != nil {
			return err
		}
		b = b[tn+n:]
	}
	return nil
}

func parseTaskMsg(b []byte) (taskMsg, error) {
	m := taskMsg{headers: map[string]string{}}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, _ []byte, val []byte, v uint64) error {
		switch {
		case num == fieldType && typ == protowire.BytesType:
			m.typ = string(val)
		case num == fieldPayload && typ == protowire.BytesType:
			m.payload = val
		case num == fieldRetry && typ == protowire.VarintType:
			m.retry = int(int32(v)) //nolint:gosec // int32 on the wire
		case num == fieldRetried && typ == protowire.VarintType:
			m.retried = int(int32(v)) //nolint:gosec // int32 on the wire
		case num == fieldHeaders && typ == protowire.BytesType:
			var k, hv string
			if err := eachField(val, func(n protowire.Number, t protowire.Type, _ []byte, ev []byte, _ uint64) error {
				switch {
				case n == 1 && t == protowire.BytesType:
					k = string(ev)
				case n == 2 && t == protowire.BytesType:
					hv = string(ev)
				}
				return nil
			}); err != nil {
				return err
			}
			m.headers[k] = hv
		case num == fieldType, num == fieldPayload, num == fieldRetry, num == fieldRetried:
			return fmt.Errorf("%w: field %d has wire type %d", errBadMsg, num, typ)
		}
		return nil
	})
	if err != nil {
		return taskMsg{}, err
	}
	if m.typ == "" {
		return taskMsg{}, fmt.Errorf("%w: no task type", errBadMsg)
	}
	return m, nil
}

// withFailure returns the message raw (already parsed, so well formed) with
// retried, error_msg and last_failed_at set, as asynq's Retry and Archive
// write them; every other field is kept byte for byte.
func withFailure(raw []byte, retried int, errMsg string, failedAt int64) []byte {
	out := make([]byte, 0, len(raw)+len(errMsg)+24)
	_ = eachField(raw, func(num protowire.Number, _ protowire.Type, f []byte, _ []byte, _ uint64) error {
		switch num {
		case fieldRetried, fieldErrorMsg, fieldLastFailedAt:
		default:
			out = append(out, f...)
		}
		return nil
	})
	// proto3 leaves zero values out.
	if retried != 0 {
		out = protowire.AppendTag(out, fieldRetried, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(int64(retried))) //nolint:gosec // int32 semantics, as proto
	}
	if errMsg != "" {
		out = protowire.AppendTag(out, fieldErrorMsg, protowire.BytesType)
		out = protowire.AppendString(out, errMsg)
	}
	if failedAt != 0 {
		out = protowire.AppendTag(out, fieldLastFailedAt, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(failedAt)) //nolint:gosec // int64 on the wire
	}
	return out
}
