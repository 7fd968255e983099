package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// The completion fold: a record that must be durable no later than asynq
// marks a step done (the idempotency ledger's success entry, a
// jobs.CompletionWrite) rides on asynq's own completion round trip instead
// of costing one of its own before it.
//
// asynq v0.26.0 completes a successful task with one EVALSHA of one of four
// scripts (rdb.Done: doneCmd or doneUniqueCmd; rdb.MarkAsComplete, for a
// task with a retention: markAsCompleteCmd or markAsCompleteUniqueCmd),
// through go-redis's Script.Run (EVALSHA, then EVAL on NOSCRIPT). The
// Worker installs a go-redis hook on its client that recognises those
// commands by the SHA1 of asynq's exact script text (or, for EVAL, the text
// itself) and, when writes are pending for that task (queue and task id),
// runs instead one script of ours: the writes first (HSET key field value,
// PEXPIRE ttl), then asynq's script body verbatim, on asynq's KEYS and ARGV.
// asynq receives exactly the reply its own script would have given.
//
// Durability:
//   - The writes and asynq's completion are one script: Redis runs them
//     atomically, so the record exists no later than the task is done.
//   - When asynq's part replies an error (NOT FOUND: the task was no longer
//     active, e.g. recovered meanwhile), the writes stay: the step's side
//     effect happened, and the record says so.
//   - A pending entry is consumed only when the script reached Redis (a
//     reply, error or not). On a network error it stays pending: asynq's
//     syncer retries the completion and the hook carries it then. (asynq
//     v0.26.0's syncer retries with the first try's context, which is
//     cancelled by then, so in practice the safety net below writes it.)
//   - An entry not consumed within completionGrace of being registered
//     (asynq never completed the task: its lease was lost, a shutdown cut
//     the attempt off, the completion kept failing) is written directly, in
//     one pipeline, with a warning "completion fold missed; wrote it
//     directly", 2 to 3s (completionGrace plus up to one completionSweep)
//     after the attempt. That is the one window left: if the process dies
//     inside it the record is lost, and the task, which asynq never marked
//     done, runs again once its lease expires (lease sweeper or asynq's
//     recoverer). Entries still pending at Worker.Shutdown are written
//     directly when the loops have stopped.
//   - The fold is on only where it is exact: asynq is the version its
//     scripts were copied from (asynqVerifiedVersion, as for the lease
//     sweeper), the client is a single Redis (*redis.Client, plain or
//     Sentinel failover: on Cluster or a Ring the record's key and asynq's
//     keys live in different slots), and WorkerConfig.CompletionFold is not
//     "off". Otherwise the hook is nil, Result.AtCompletion reports false
//     and the caller writes synchronously before the task completes.

// Completion fold settings.
const (
	// CompletionFoldAuto folds completion writes into asynq's completion
	// where that is exact (the default).
	CompletionFoldAuto = "auto"
	// CompletionFoldOff writes them synchronously before asynq's
	// completion, one round trip more per task.
	CompletionFoldOff = "off"

	// completionGrace is how long a pending entry may wait for asynq's
	// completion before it is written directly.
	completionGrace = 2 * time.Second
	// completionSweep is how often overdue entries are looked for.
	completionSweep = time.Second
	// maxPendingCompletions bounds the tasks with pending writes; past it
	// the hook reports false and the caller writes synchronously.
	maxPendingCompletions = 10000
	// maxWritesPerTask bounds the writes pending for one task.
	maxWritesPerTask = 16
)

// asynqCompletion is one of asynq v0.26.0's completion scripts and our fold
// of it.
type asynqCompletion struct {
	name       string
	src        string        // asynq's script text, verbatim: what EVAL carries
	script     *redis.Script // src: its Hash is what EVALSHA carries
	keys, args int           // how many KEYS and ARGV asynq passes
	foldSrc    string        // our writes, then src
	fold       *redis.Script // foldSrc
}

// The four scripts below are copied verbatim from hibiken/asynq v0.26.0,
// internal/rdb/rdb.go (MIT License, Copyright (c) 2019 Kentaro Hibino):
// doneCmd, doneUniqueCmd, markAsCompleteCmd, markAsCompleteUniqueCmd.
// Their SHA1 must equal what asynq sends (complete_test.go pins it); one
// changed character turns the fold off for that script, never wrong.
var asynqCompletions = []*asynqCompletion{
	newAsynqCompletion("done", 5, 3, `
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("DEL", KEYS[3]) == 0 then
  return redis.error_reply("NOT FOUND")
end
local n = redis.call("INCR", KEYS[4])
if tonumber(n) == 1 then
	redis.call("EXPIREAT", KEYS[4], ARGV[2])
end
local total = redis.call("GET", KEYS[5])
if tonumber(total) == tonumber(ARGV[3]) then
	redis.call("SET", KEYS[5], 1)
else
	redis.call("INCR", KEYS[5])
end
return redis.status_reply("OK")
`),
	newAsynqCompletion("done_unique", 6, 3, `
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("DEL", KEYS[3]) == 0 then
  return redis.error_reply("NOT FOUND")
end
local n = redis.call("INCR", KEYS[4])
if tonumber(n) == 1 then
	redis.call("EXPIREAT", KEYS[4], ARGV[2])
end
local total = redis.call("GET", KEYS[5])
if tonumber(total) == tonumber(ARGV[3]) then
	redis.call("SET", KEYS[5], 1)
else
	redis.call("INCR", KEYS[5])
end
if redis.call("GET", KEYS[6]) == ARGV[1] then
  redis.call("DEL", KEYS[6])
end
return redis.status_reply("OK")
`),
	newAsynqCompletion("mark_as_complete", 6, 5, `
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1]) ~= 1 then
  return redis.error_reply("INTERNAL")
end
redis.call("HSET", KEYS[4], "msg", ARGV[4], "state", "completed")
local n = redis.call("INCR", KEYS[5])
if tonumber(n) == 1 then
	redis.call("EXPIREAT", KEYS[5], ARGV[2])
end
local total = redis.call("GET", KEYS[6])
if tonumber(total) == tonumber(ARGV[5]) then
	redis.call("SET", KEYS[6], 1)
else
	redis.call("INCR", KEYS[6])
end
return redis.status_reply("OK")
`),
	newAsynqCompletion("mark_as_complete_unique", 7, 5, `
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply("NOT FOUND")
end
if redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1]) ~= 1 then
  return redis.error_reply("INTERNAL")
end
redis.call("HSET", KEYS[4], "msg", ARGV[4], "state", "completed")
local n = redis.call("INCR", KEYS[5])
if tonumber(n) == 1 then
	redis.call("EXPIREAT", KEYS[5], ARGV[2])
end
local total = redis.call("GET", KEYS[6])
if tonumber(total) == tonumber(ARGV[5]) then
	redis.call("SET", KEYS[6], 1)
else
	redis.call("INCR", KEYS[6])
end
if redis.call("GET", KEYS[7]) == ARGV[1] then
  redis.call("DEL", KEYS[7])
end
return redis.status_reply("OK")
`),
}

// newAsynqCompletion builds the fold of asynq's script src, which takes
// keys KEYS and args ARGV. The fold's KEYS and ARGV are asynq's followed by
// one key and three args (field, value, ttl in ms; 0 leaves the expiry
// alone) per write, so asynq's body runs unchanged after the writes.
func newAsynqCompletion(name string, keys, args int, src string) *asynqCompletion {
	prefix := fmt.Sprintf(`-- agentq: completion writes, then asynq v0.26.0's %s script
for i = %d, #KEYS do
  local a = %d + (i - %d) * 3
  redis.call("HSET", KEYS[i], ARGV[a + 1], ARGV[a + 2])
  if tonumber(ARGV[a + 3]) > 0 then
    redis.call("PEXPIRE", KEYS[i], ARGV[a + 3])
  end
end`, name, keys+1, args, keys+1)
	return &asynqCompletion{
		name: name, src: src, script: redis.NewScript(src), keys: keys, args: args,
		foldSrc: prefix + src, fold: redis.NewScript(prefix + src),
	}
}

// completionBySHA and completionBySrc find asynq's completion scripts by
// what EVALSHA and EVAL carry.
var completionBySHA, completionBySrc = func() (map[string]*asynqCompletion, map[string]*asynqCompletion) {
	bySHA, bySrc := map[string]*asynqCompletion{}, map[string]*asynqCompletion{}
	for _, c := range asynqCompletions {
		bySHA[c.script.Hash()] = c
		bySrc[c.src] = c
	}
	return bySHA, bySrc
}()

// pendingKey names the task whose completion carries writes.
type pendingKey struct{ queue, id string }

// pendingEntry is the writes waiting for one task's completion.
type pendingEntry struct {
	writes []jobs.CompletionWrite
	at     time.Time // when the first was registered
}

// completions holds the writes waiting for asynq's completion of their
// task, the go-redis hook that folds them in, and the safety net that
// writes what was not folded.
type completions struct {
	rdb     redis.UniversalClient
	log     zerolog.Logger
	enabled bool
	now     func() time.Time
	grace   time.Duration // completionGrace; fields for tests
	max     int

	// verified is set once asynq's version is known to be the pinned one:
	// at once from the build's module list, or, in a build without one (a
	// test binary), when the hook sees asynq's pinned dequeue script on
	// this client, which precedes every completion.
	verified atomic.Bool

	mu      sync.Mutex
	pending map[pendingKey]*pendingEntry
	n       atomic.Int64 // len(pending), read without the lock on every command

	quitOnce sync.Once
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when the loop ends; nil until started
}

// newCompletions returns the completion fold for rdb, on when enabled and
// the gate (foldGate) allows; it then installs its hook on rdb. The hook
// stays installed for the client's life (go-redis cannot remove one); with
// nothing pending it passes every command through after one atomic load.
func newCompletions(rdb redis.UniversalClient, log zerolog.Logger, enabled bool) *completions {
	c := &completions{
		rdb: rdb, log: log.With().Str("component", "completion_fold").Logger(),
		now: time.Now, grace: completionGrace, max: maxPendingCompletions,
		pending: map[pendingKey]*pendingEntry{}, quit: make(chan struct{}),
	}
	on, why := foldGate(rdb, enabled, asynqVersion)
	if v, _ := asynqVersion(); !on && v == asynqVersionUnknown && enabled && !isMultiNode(rdb) {
		// No module list to read the version from: the hook checks the
		// dequeue script asynq sends instead.
		c.enabled = true
		rdb.AddHook(c)
		return c
	}
	if !on {
		c.log.Info().Str("reason", why).Msg("completion fold off: completion writes go to Redis before asynq's completion, one round trip more per task")
		return c
	}
	c.enabled = true
	c.verified.Store(true)
	rdb.AddHook(c)
	return c
}

// isMultiNode reports whether rdb may spread keys over several nodes.
func isMultiNode(rdb redis.UniversalClient) bool {
	_, single := rdb.(*redis.Client)
	return !single
}

// asynqDequeueSHA is the SHA1 of asynq v0.26.0's dequeue script
// (internal/rdb/rdb.go dequeueCmd), pinned by
// TestCompletionScriptsPinnedToAsynq: seeing it proves the version in a
// build that carries no module list.
const asynqDequeueSHA = "a8153319360adc71cdc370107f8ab9786f204765"

// verify marks the version verified when cmd is asynq's pinned dequeue.
func (c *completions) verify(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && args[0] == "evalsha" && args[1] == asynqDequeueSHA {
		c.verified.Store(true)
		c.log.Debug().Msg("completion fold on: asynq's dequeue script is the pinned version's")
	}
}

// foldGate says whether the fold is exact for rdb and asynq's version, and
// if not, why.
func foldGate(rdb redis.UniversalClient, enabled bool, version func() (string, bool)) (bool, string) {
	if !enabled {
		return false, "off by configuration"
	}
	if v, ok := version(); !ok {
		return false, "asynq " + v + " is not the version whose completion scripts were copied (" + asynqVerifiedVersion + ")"
	}
	if _, ok := rdb.(*redis.Client); !ok {
		return false, fmt.Sprintf("client %T may spread keys over several Redis nodes", rdb)
	}
	return true, ""
}

// hook returns the function that registers a write for asynq's completion
// of task id in queue, for jobs.Result.SetAtCompletion; nil when the fold
// is off. It reports false, and registers nothing, when too many writes are
// pending: the caller then writes synchronously.
func (c *completions) hook(queue, taskID string) func(jobs.CompletionWrite) bool {
	if c == nil || !c.enabled || !c.verified.Load() {
		return nil
	}
	return func(w jobs.CompletionWrite) bool { return c.add(pendingKey{queue, taskID}, w) }
}

// atCompletion is the completion hook of step s's attempt.
func (w *Worker) atCompletion(s *jobs.Step) func(jobs.CompletionWrite) bool {
	return w.complete.hook(s.Queue, s.TaskID)
}

func (c *completions) add(k pendingKey, w jobs.CompletionWrite) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.pending[k]
	switch {
	case e == nil && len(c.pending) >= c.max:
		return false
	case e == nil:
		e = &pendingEntry{at: c.now()}
		c.pending[k] = e
		c.n.Store(int64(len(c.pending)))
	case len(e.writes) >= maxWritesPerTask:
		return false
	}
	e.writes = append(e.writes, w)
	return true
}

// take removes and returns k's pending entry, nil if none.
func (c *completions) take(k pendingKey) *pendingEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.pending[k]
	if e != nil {
		delete(c.pending, k)
		c.n.Store(int64(len(c.pending)))
	}
	return e
}

// putBack returns e to the pending set after a completion that did not
// reach Redis, ahead of writes registered meanwhile.
func (c *completions) putBack(k pendingKey, e *pendingEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pending[k]; cur != nil {
		e.writes = append(e.writes, cur.writes...)
	}
	c.pending[k] = e
	c.n.Store(int64(len(c.pending)))
}

// pendingLen is how many tasks have writes pending.
func (c *completions) pendingLen() int { return int(c.n.Load()) }

// DialHook implements redis.Hook.
func (c *completions) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook: asynq never completes a task
// in a pipeline.
func (c *completions) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: it folds pending writes into asynq's
// completion of their task.
func (c *completions) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !c.verified.Load() {
			c.verify(cmd)
		}
		if c.n.Load() == 0 {
			return next(ctx, cmd)
		}
		orig, ok := cmd.(*redis.Cmd)
		if !ok {
			return next(ctx, cmd)
		}
		ac, k, ok := matchCompletion(orig.Args())
		if !ok {
			return next(ctx, cmd)
		}
		e := c.take(k)
		if e == nil {
			return next(ctx, cmd)
		}
		err := runFold(ctx, next, ac, orig, e.writes)
		if !reachedRedis(err) {
			c.putBack(k, e)
		}
		return err
	}
}

// matchCompletion recognises asynq's completion of a task in an EVALSHA or
// EVAL command's args and names the task.
func matchCompletion(args []any) (*asynqCompletion, pendingKey, bool) {
	if len(args) < 4 {
		return nil, pendingKey{}, false
	}
	name, _ := args[0].(string)
	payload, _ := args[1].(string)
	var ac *asynqCompletion
	switch name {
	case "evalsha":
		ac = completionBySHA[payload]
	case "eval":
		ac = completionBySrc[payload]
	}
	if n, _ := args[2].(int); ac == nil || n != ac.keys || len(args) != 3+ac.keys+ac.args {
		return nil, pendingKey{}, false
	}
	// KEYS[1] is asynq:{<queue>}:active, ARGV[1] the task id.
	active, _ := args[3].(string)
	id, _ := args[3+ac.keys].(string)
	q, ok := strings.CutPrefix(active, "asynq:{")
	if q, ok = strings.CutSuffix(q, "}:active"); !ok || id == "" || asynqActiveKey(q) != active {
		return nil, pendingKey{}, false
	}
	return ac, pendingKey{q, id}, true
}

// runFold runs ac's fold with writes on asynq's keys and args (taken from
// orig) through next, EVALSHA then EVAL on NOSCRIPT, and gives orig the
// reply asynq's script would have given.
func runFold(ctx context.Context, next redis.ProcessHook, ac *asynqCompletion, orig *redis.Cmd, writes []jobs.CompletionWrite) error {
	in := orig.Args()
	keys := in[3 : 3+ac.keys]
	argv := in[3+ac.keys:]
	args := make([]any, 0, 3+len(keys)+len(argv)+4*len(writes))
	args = append(args, "evalsha", ac.fold.Hash(), ac.keys+len(writes))
	args = append(args, keys...)
	for _, w := range writes {
		args = append(args, w.Key)
	}
	args = append(args, argv...)
	for _, w := range writes {
		args = append(args, w.Field, w.Value, max(w.TTL.Milliseconds(), 0))
	}
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	err := next(ctx, cmd)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		args = append([]any{"eval", ac.foldSrc}, args[2:]...) // a new slice: cmd keeps its args
		cmd = redis.NewCmd(ctx, args...)
		cmd.SetFirstKeyPos(3)
		err = next(ctx, cmd)
	}
	orig.SetVal(cmd.Val())
	orig.SetErr(cmd.Err())
	return err
}

// reachedRedis reports whether a command that returned err was run by
// Redis: nil, or an error reply.
func reachedRedis(err error) bool {
	var re redis.Error
	return err == nil || errors.As(err, &re)
}

// start runs the safety net in the background; stop ends it and writes
// what is still pending.
func (c *completions) start() {
	if !c.enabled {
		return
	}
	c.mu.Lock()
	if c.done != nil {
		c.mu.Unlock()
		return
	}
	c.done = make(chan struct{})
	c.mu.Unlock()
	go func() {
		defer close(c.done)
		t := time.NewTicker(completionSweep)
		defer t.Stop()
		for {
			select {
			case <-c.quit:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), completionSweep*5)
				c.writeOverdue(ctx, c.now().Add(-c.grace), false)
				cancel()
			}
		}
	}()
}

// stop ends the safety net and writes every entry still pending: after the
// worker's servers shut down no completion will carry them.
func (c *completions) stop() {
	c.quitOnce.Do(func() { close(c.quit) })
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done != nil {
		<-done
	}
	if c.pendingLen() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.writeOverdue(ctx, time.Time{}, true)
}

// writeOverdue writes, in one pipeline, the entries registered at cutoff or
// before (all of them if all), and logs the miss once per call. Entries whose write fails are
// kept for the next call. It returns how many tasks' writes it wrote.
func (c *completions) writeOverdue(ctx context.Context, cutoff time.Time, all bool) int {
	c.mu.Lock()
	due := map[pendingKey]*pendingEntry{}
	for k, e := range c.pending {
		if all || !e.at.After(cutoff) {
			due[k] = e
			delete(c.pending, k)
		}
	}
	c.n.Store(int64(len(c.pending)))
	c.mu.Unlock()
	if len(due) == 0 {
		return 0
	}
	ids := make([]string, 0, min(len(due), 5))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, e := range due {
			if len(ids) < cap(ids) {
				ids = append(ids, k.id)
			}
			for _, w := range e.writes {
				p.HSet(ctx, w.Key, w.Field, w.Value)
				if w.TTL > 0 {
					p.PExpire(ctx, w.Key, w.TTL)
				}
			}
		}
		return nil
	})
	if err != nil {
		for k, e := range due {
			c.putBack(k, e)
		}
		c.log.Error().Err(err).Int("tasks", len(due)).Strs("task_ids", ids).
			Msg("completion fold missed and the direct write failed; trying again")
		return 0
	}
	c.log.Warn().Int("tasks", len(due)).Strs("task_ids", ids).
		Msg("completion fold missed; wrote it directly")
	return len(due)
}
