package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

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
// fold installs one go-redis hook per client, for the client's life (go-redis
// cannot remove one; a dispatcher, shared by every Worker on that client,
// which register with it between Start and Shutdown), that recognises those
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
//   - When Redis refuses one of the writes (e.g. WRONGTYPE: the record's
//     key holds another type), the script stops before asynq's part; the
//     hook logs "completion write refused by Redis: ...; record not
//     written" and sends asynq's own command, so the task completes as it
//     would have. Retrying the write would meet the same refusal.
//   - A pending entry is consumed only when the script reached Redis (a
//     reply, error or not). On a network error it stays pending: asynq's
//     syncer retries the completion and the hook carries it then. (asynq
//     v0.26.0's syncer retries with the first try's context, which is
//     cancelled by then, so in practice the safety net below writes it.)
//   - An entry not consumed within completionGrace of its attempt
//     returning to asynq (asynq never completed the task: its lease was lost, a shutdown cut
//     the attempt off, the completion kept failing) is written directly, in
//     one pipeline, with a warning "completion fold missed; wrote it
//     directly", 2 to 3s (completionGrace plus up to one completionSweep)
//     after the attempt. That is the one window left: if the process dies
//     inside it the record is lost, and the task, which asynq never marked
//     done, runs again once its lease expires (lease sweeper or asynq's
//     recoverer). An attempt that never reports its return is given
//     completionHold from the write's registration instead. Entries still
//     pending at Worker.Shutdown are written directly when the loops have
//     stopped (stopTries tries within stopBudget, then an error log naming
//     the tasks: "record lost").
//   - Writes are taken only between the Worker's Start and Shutdown, when
//     the safety net runs: before and after (Worker.ProcessTask driven
//     without Start), the hook is nil and the caller writes synchronously.
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
	// completionHold is how long an entry whose attempt never reported its
	// return (release) waits before it is written directly.
	completionHold = time.Minute
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
// alone) per write, so asynq's body runs unchanged after the writes. The
// writes run under redis.pcall: when Redis refuses one, the script replies
// an error starting with foldRefused before asynq's part runs.
func newAsynqCompletion(name string, keys, args int, src string) *asynqCompletion {
	prefix := fmt.Sprintf(`-- agentq: completion writes, then asynq v0.26.0's %s script
for i = %d, #KEYS do
  local a = %d + (i - %d) * 3
  local r = redis.pcall("HSET", KEYS[i], ARGV[a + 1], ARGV[a + 2])
  if type(r) == "table" and r.err then
    return redis.error_reply("%s " .. r.err)
  end
  if tonumber(ARGV[a + 3]) > 0 then
    r = redis.pcall("PEXPIRE", KEYS[i], ARGV[a + 3])
    if type(r) == "table" and r.err then
      return redis.error_reply("%s " .. r.err)
    end
  end
end`, name, keys+1, args, keys+1, foldRefused, foldRefused)
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
	writes   []jobs.CompletionWrite
	at       time.Time // when the first was registered
	released time.Time // when the attempt returned to asynq (release); zero until then
}

// due reports whether the safety net writes e at now: grace after its
// attempt returned to asynq, or completionHold after it was registered if
// the attempt never said so.
func (e *pendingEntry) due(now time.Time, grace time.Duration) bool {
	if !e.released.IsZero() {
		return now.Sub(e.released) >= grace
	}
	return now.Sub(e.at) >= completionHold
}

// foldClients holds the dispatcher of each client the fold hooked. go-redis
// cannot remove a hook, so a client gets one, for its life, however many
// workers come and go on it; the key is weak, so the map keeps no client
// alive.
var foldClients sync.Map // weak.Pointer[redis.Client] -> *dispatcher

// dispatcher is the one go-redis hook the fold installs on a client: it
// hands asynq's completion of a task to the running completions that hold
// writes for it.
type dispatcher struct {
	log zerolog.Logger

	// verified is set once asynq's version is known to be the pinned one:
	// at once from the build's module list, or, in a build without one (a
	// test binary), when the hook sees asynq's pinned dequeue script on
	// this client, which precedes every completion.
	verified atomic.Bool
	pending  atomic.Int64 // entries pending over the registered completions
	hooked   atomic.Int32 // AddHook calls on the client: 1

	mu   sync.Mutex                     // serialises register and unregister
	regs atomic.Pointer[[]*completions] // the running completions; copied on write
}

// dispatcherFor returns rdb's dispatcher, installing its hook on rdb the
// first time.
func dispatcherFor(rdb *redis.Client, log zerolog.Logger) *dispatcher {
	k := weak.Make(rdb)
	if d, ok := foldClients.Load(k); ok {
		return d.(*dispatcher)
	}
	v, loaded := foldClients.LoadOrStore(k, &dispatcher{log: log})
	d := v.(*dispatcher)
	if !loaded {
		rdb.AddHook(d)
		d.hooked.Add(1)
		runtime.AddCleanup(rdb, func(k weak.Pointer[redis.Client]) { foldClients.Delete(k) }, k)
	}
	return d
}

// register adds c to the completions d hands completions to.
func (d *dispatcher) register(c *completions) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var regs []*completions
	if old := d.regs.Load(); old != nil {
		regs = append(regs, *old...)
	}
	regs = append(regs, c)
	d.regs.Store(&regs)
}

// unregister removes c.
func (d *dispatcher) unregister(c *completions) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var regs []*completions
	if old := d.regs.Load(); old != nil {
		for _, r := range *old {
			if r != c {
				regs = append(regs, r)
			}
		}
	}
	d.regs.Store(&regs)
}

// registered is how many completions are registered.
func (d *dispatcher) registered() int {
	if regs := d.regs.Load(); regs != nil {
		return len(*regs)
	}
	return 0
}

// completions holds the writes waiting for asynq's completion of their
// task, registered with the client's dispatcher while it runs (start to
// stop), and the safety net that writes what was not folded.
type completions struct {
	log     zerolog.Logger
	rdb     redis.UniversalClient
	d       *dispatcher // nil when the fold is off
	enabled bool
	now     func() time.Time
	grace   time.Duration // completionGrace; fields for tests
	sweep   time.Duration // completionSweep
	backoff time.Duration // first pause between the final flush's tries
	max     int

	mu       sync.Mutex
	pending  map[pendingKey]*pendingEntry
	n        atomic.Int64   // len(pending), read without the lock
	live     atomic.Bool    // between start and stop; written under mu
	stopped  bool           // stop was called
	inflight sync.WaitGroup // folds that took an entry and have not returned

	quitOnce sync.Once
	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when the loop ends; nil until started
}

// newCompletions returns the completion fold for rdb, on when enabled and
// the gate (foldGate) allows; it then finds or installs rdb's dispatcher.
// It takes writes only between start and stop: before and after, hook is
// nil and the caller writes synchronously.
func newCompletions(rdb redis.UniversalClient, log zerolog.Logger, enabled bool) *completions {
	c := &completions{
		rdb: rdb, log: log.With().Str("component", "completion_fold").Logger(),
		now: time.Now, grace: completionGrace, sweep: completionSweep, backoff: 200 * time.Millisecond,
		max: maxPendingCompletions, pending: map[pendingKey]*pendingEntry{}, quit: make(chan struct{}),
	}
	on, why := foldGate(rdb, enabled, asynqVersion)
	v, _ := asynqVersion()
	// No module list to read the version from: the hook checks the dequeue
	// script asynq sends instead.
	atRunTime := !on && v == asynqVersionUnknown && enabled && !isMultiNode(rdb)
	if !on && !atRunTime {
		c.log.Info().Str("reason", why).Msg("completion fold off: completion writes go to Redis before asynq's completion, one round trip more per task")
		return c
	}
	c.enabled = true
	c.d = dispatcherFor(rdb.(*redis.Client), c.log)
	if on {
		c.d.verified.Store(true)
	}
	return c
}

// state is the fold's state for a log line: "on", "off", or "pending
// verification" until asynq's pinned dequeue script is seen (a build
// without a module list).
func (c *completions) state() string {
	switch {
	case !c.enabled:
		return "off"
	case c.d != nil && !c.d.verified.Load():
		return "on once asynq's version is verified"
	}
	return "on"
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
func (d *dispatcher) verify(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && args[0] == "evalsha" && args[1] == asynqDequeueSHA {
		if !d.verified.Swap(true) {
			d.log.Debug().Msg("completion fold on: asynq's dequeue script is the pinned version's")
		}
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
// is off or not running (before start, after stop: no safety net would
// write what no completion carries). The function reports false, and
// registers nothing, when too many writes are pending or the fold has
// stopped meanwhile: the caller then writes synchronously.
func (c *completions) hook(queue, taskID string) func(jobs.CompletionWrite) bool {
	if !c.accepting() {
		return nil
	}
	return func(w jobs.CompletionWrite) bool { return c.add(pendingKey{queue, taskID}, w) }
}

// accepting reports whether the fold takes writes now.
func (c *completions) accepting() bool {
	return c != nil && c.enabled && c.d.verified.Load() && c.live.Load()
}

// atCompletion is the completion hook of attempt a, nil when the fold
// takes no writes; a write it takes marks a.folded.
func (w *Worker) atCompletion(a *attempt) func(jobs.CompletionWrite) bool {
	if !w.complete.accepting() {
		return nil
	}
	k := pendingKey{a.step.Queue, a.step.TaskID}
	return func(cw jobs.CompletionWrite) bool {
		ok := w.complete.add(k, cw)
		a.folded = a.folded || ok
		return ok
	}
}

func (c *completions) add(k pendingKey, w jobs.CompletionWrite) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live.Load() {
		return false
	}
	e := c.pending[k]
	switch {
	case e == nil && len(c.pending) >= c.max:
		return false
	case e == nil:
		e = &pendingEntry{at: c.now()}
		c.pending[k] = e
		c.setLen()
	case len(e.writes) >= maxWritesPerTask:
		return false
	}
	e.writes = append(e.writes, w)
	return true
}

// release marks the attempt of task id in queue returned to asynq: the
// grace before the safety net writes its entry starts now, not when the
// write was registered (observers after the ledger's may take a while).
func (c *completions) release(queue, taskID string) {
	if c == nil || c.n.Load() == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.pending[pendingKey{queue, taskID}]; e != nil && e.released.IsZero() {
		e.released = c.now()
	}
}

// setLen publishes len(pending) to c.n and the dispatcher's total; c.mu
// is held.
func (c *completions) setLen() {
	n := int64(len(c.pending))
	if old := c.n.Swap(n); old != n && c.d != nil {
		c.d.pending.Add(n - old)
	}
}

// take removes and returns k's pending entry, nil if none or the fold has
// stopped (its final flush writes it). A taken entry counts as in flight
// until the fold that took it calls inflight.Done.
func (c *completions) take(k pendingKey) *pendingEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.pending[k]
	if e == nil || !c.live.Load() {
		return nil
	}
	delete(c.pending, k)
	c.setLen()
	c.inflight.Add(1)
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
	c.setLen()
}

// pendingLen is how many tasks have writes pending.
func (c *completions) pendingLen() int { return int(c.n.Load()) }

// DialHook implements redis.Hook.
func (d *dispatcher) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook: asynq never completes a task
// in a pipeline.
func (d *dispatcher) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: it folds pending writes into asynq's
// completion of their task. With nothing pending it passes every command
// through after one atomic load.
func (d *dispatcher) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !d.verified.Load() {
			d.verify(cmd)
		}
		if d.pending.Load() == 0 {
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
		if regs := d.regs.Load(); regs != nil {
			for _, c := range *regs {
				if e := c.take(k); e != nil {
					defer c.inflight.Done()
					return c.fold(ctx, next, ac, k, orig, e)
				}
			}
		}
		return next(ctx, cmd)
	}
}

// fold runs asynq's completion orig of task k with e's writes folded in.
func (c *completions) fold(ctx context.Context, next redis.ProcessHook, ac *asynqCompletion, k pendingKey, orig *redis.Cmd, e *pendingEntry) error {
	err := runFold(ctx, next, ac, orig, e.writes)
	switch {
	case redis.HasErrorPrefix(err, foldRefused):
		// Redis refused one of our writes (the script stopped before
		// asynq's part): retrying would meet the same refusal, so the
		// entry is used up, and asynq gets exactly its own command's reply.
		reason := strings.TrimPrefix(err.Error(), foldRefused+" ")
		c.log.Warn().Str("task_id", k.id).Str("queue", k.queue).
			Msg("completion write refused by Redis: " + reason + "; record not written")
		orig.SetVal(nil)
		orig.SetErr(nil)
		return next(ctx, orig)
	case !reachedRedis(err):
		c.putBack(k, e)
	}
	return err
}

// foldRefused prefixes the error the fold's script replies when Redis
// refuses one of the writes; asynq's part has not run then.
const foldRefused = "AGENTQFOLD"

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
	q := strings.TrimSuffix(strings.TrimPrefix(active, "asynq:{"), "}:active")
	if id == "" || asynqActiveKey(q) != active {
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

// start registers c with its client's dispatcher, so that completions
// carry its writes, and runs the safety net in the background; stop ends
// both and writes what is still pending. start after stop does nothing.
func (c *completions) start() {
	if !c.enabled {
		return
	}
	c.mu.Lock()
	if c.done != nil || c.stopped {
		c.mu.Unlock()
		return
	}
	c.done = make(chan struct{})
	c.d.register(c)
	c.live.Store(true)
	c.mu.Unlock()
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.sweep)
		defer t.Stop()
		for {
			select {
			case <-c.quit:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), completionSweep*5)
				c.writeOverdue(ctx, c.now(), false)
				cancel()
			}
		}
	}()
}

// stop ends the safety net, unregisters c, and writes every entry still
// pending: after the worker's servers shut down no completion will carry
// them. It tries stopTries times within stopBudget, then logs the records
// lost.
func (c *completions) stop() {
	c.quitOnce.Do(func() { close(c.quit) })
	c.mu.Lock()
	done := c.done
	c.stopped = true
	c.live.Store(false) // from here add and take refuse
	c.mu.Unlock()
	if done == nil {
		return // never started: nothing was taken
	}
	<-done
	c.d.unregister(c)
	c.inflight.Wait() // folds that took an entry put it back or used it
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
	defer cancel()
	pause := c.backoff
	for try := 1; c.pendingLen() > 0; try++ {
		_, err := c.writeOverdue(ctx, time.Time{}, true)
		if err == nil {
			return
		}
		if try == stopTries || !sleepCtx(ctx, pause) {
			c.dropAll(err, try)
			return
		}
		pause *= 2
	}
}

// Final flush settings.
const (
	stopTries  = 3
	stopBudget = 2 * time.Second
)

// sleepCtx pauses d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dropAll gives up on every pending entry after the final flush failed
// tries times with err, and names the tasks whose records are lost.
func (c *completions) dropAll(err error, tries int) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.pending))
	for k := range c.pending {
		ids = append(ids, k.id)
	}
	clear(c.pending)
	c.setLen()
	c.mu.Unlock()
	c.log.Error().Err(err).Int("tries", tries).Int("tasks", len(ids)).Strs("task_ids", ids).
		Msg("completion fold missed and the direct write failed at shutdown; record lost")
}

// writeOverdue writes, in one pipeline, the entries due at now (all of
// them if all), and logs the miss once per call. When the pipeline does
// not reach Redis the entries are kept for the next call, and err says
// why; a write Redis refuses is not retried (it would be refused again).
// It returns how many tasks' writes it sent.
func (c *completions) writeOverdue(ctx context.Context, now time.Time, all bool) (int, error) {
	c.mu.Lock()
	due := map[pendingKey]*pendingEntry{}
	for k, e := range c.pending {
		if all || e.due(now, c.grace) {
			due[k] = e
			delete(c.pending, k)
		}
	}
	c.setLen()
	c.mu.Unlock()
	if len(due) == 0 {
		return 0, nil
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
	switch {
	case err != nil && !reachedRedis(err):
		for k, e := range due {
			c.putBack(k, e)
		}
		if !all {
			c.log.Error().Err(err).Int("tasks", len(due)).Strs("task_ids", ids).
				Msg("completion fold missed and the direct write failed; trying again at the next sweep")
		}
		return 0, err
	case err != nil:
		c.log.Error().Err(err).Int("tasks", len(due)).Strs("task_ids", ids).
			Msg("completion fold missed and Redis refused a direct write; record not written")
		return len(due), nil
	}
	c.log.Warn().Int("tasks", len(due)).Strs("task_ids", ids).
		Msg("completion fold missed; wrote it directly")
	return len(due), nil
}
