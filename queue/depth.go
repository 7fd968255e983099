package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Depth is how many tasks one queue holds in each state, and how long its
// oldest pending task has waited: what a metrics scrape or an autoscaler
// reads.
type Depth struct {
	Queue string
	// Pending wait for a worker; Active run now; Scheduled and Retry wait
	// for their time; Archived are asynq's dead tasks (see ArchiveMaxSize).
	Pending, Active, Scheduled, Retry, Archived int64
	// Paused reports the queue paused (no task of it is taken).
	Paused bool
	// OldestPending is how long the oldest pending task has waited since it
	// became pending (enqueued, or moved from scheduled or retry), by the
	// reader's clock; 0 when none is pending. asynq records that time
	// (pending_since) on those moves only: a task a stopping worker put back
	// (asynq's requeue, to the head of the list) or one moved to pending by
	// asynq's Inspector (run now) has none. Then it is the age of the
	// nearest task behind it that has one, among the first
	// oldestPendingScan: a lower bound, as every task behind became pending
	// after it; 0 when none of them has one.
	OldestPending time.Duration
	// Err is why this queue could not be read (its counts are then zero);
	// nil when it was. One queue's failure (a Cluster master down) does not
	// keep the others from being read.
	Err error
}

// oldestPendingScan bounds how many pending tasks, from the head, Depths
// looks at for the oldest pending_since (more than a worker's concurrency,
// which is how many a stopping worker puts back at the head at once).
const oldestPendingScan = 100

// DepthsMaxQueuesDefault is the default bound of Depths' queues.
const DepthsMaxQueuesDefault = 200

// depthScript reads one queue's counts and its oldest pending task's
// pending_since in one step (all its keys share the queue's {tag}, so it
// runs on Redis Cluster too). The pending list takes new tasks on the left
// and gives them to workers from the right (asynq v0.26): the oldest is at
// index -1. A task put back by asynq's requeue (RPUSH, at the head) or run
// by its Inspector has no pending_since: the script then takes the first
// that has one, from the head, among ARGV[2] tasks. pending_since is in
// Unix nanoseconds.
//
// KEYS: pending, active, scheduled, retry, archived, paused. ARGV[1]: the
// queue's task key prefix; ARGV[2]: how many tasks to look at.
var depthScript = redis.NewScript(`
local p = redis.call("LLEN", KEYS[1])
local since = ""
if p > 0 then
  local id = redis.call("LINDEX", KEYS[1], -1)
  if id then
    since = redis.call("HGET", ARGV[1] .. id, "pending_since") or ""
  end
  if since == "" and p > 1 then
    local ids = redis.call("LRANGE", KEYS[1], -tonumber(ARGV[2]), -2)
    for i = #ids, 1, -1 do
      since = redis.call("HGET", ARGV[1] .. ids[i], "pending_since") or ""
      if since ~= "" then break end
    end
  end
end
return {p, redis.call("LLEN", KEYS[2]), redis.call("ZCARD", KEYS[3]), redis.call("ZCARD", KEYS[4]),
  redis.call("ZCARD", KEYS[5]), redis.call("EXISTS", KEYS[6]), since}`)

// Depths returns the depth of every queue asynq knows, sorted by name, at
// most maxQueues of them (the first by name; 0 means
// DepthsMaxQueuesDefault), and whether queues were left out. It costs two
// round trips whatever the queues hold: the queue set, then one read-only
// script per queue in one pipeline. A queue that could not be read is in
// the result with its Err set; the error returned is for the queue set
// only.
func (in *Inspector) Depths(ctx context.Context, maxQueues int) (_ []Depth, truncated bool, _ error) {
	if maxQueues <= 0 {
		maxQueues = DepthsMaxQueuesDefault
	}
	qs, err := in.KnownQueues(ctx)
	if err != nil {
		return nil, false, err
	}
	if len(qs) > maxQueues {
		qs, truncated = qs[:maxQueues], true
	}
	if len(qs) == 0 {
		return nil, truncated, nil
	}
	keys := func(q string) []string {
		return []string{asynqPendingKey(q), asynqActiveKey(q), asynqScheduledKey(q), asynqRetryKey(q),
			asynqArchivedKey(q), asynqPausedKey(q)}
	}
	run := func(eval func(pipe redis.Pipeliner, q string) *redis.Cmd, only []int) []*redis.Cmd {
		pipe := in.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(qs))
		for _, i := range only {
			cmds[i] = eval(pipe, qs[i])
		}
		_, _ = pipe.Exec(ctx) // errors are read per command
		return cmds
	}
	all := make([]int, len(qs))
	for i := range all {
		all[i] = i
	}
	cmds := run(func(pipe redis.Pipeliner, q string) *redis.Cmd {
		return depthScript.EvalSha(ctx, pipe, keys(q), asynqTaskPrefix(q), oldestPendingScan)
	}, all)
	var redo []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			redo = append(redo, i)
		}
	}
	if len(redo) > 0 {
		// The script cache was flushed (a restart, SCRIPT FLUSH): send the
		// script's text for those.
		again := run(func(pipe redis.Pipeliner, q string) *redis.Cmd {
			return depthScript.Eval(ctx, pipe, keys(q), asynqTaskPrefix(q), oldestPendingScan)
		}, redo)
		for _, i := range redo {
			cmds[i] = again[i]
		}
	}
	now := time.Now()
	out := make([]Depth, 0, len(qs))
	for i, q := range qs {
		vals, err := cmds[i].Slice()
		if err != nil {
			out = append(out, Depth{Queue: q, Err: fmt.Errorf("queue: read depth of %q: %w", q, err)})
			continue
		}
		d, err := depthOf(q, vals, now)
		if err != nil {
			d = Depth{Queue: q, Err: err}
		}
		out = append(out, d)
	}
	return out, truncated, nil
}

// depthOf reads depthScript's reply.
func depthOf(q string, vals []any, now time.Time) (Depth, error) {
	if len(vals) != 7 {
		return Depth{}, fmt.Errorf("queue: depth of %q: unexpected reply of %d values", q, len(vals))
	}
	var n [6]int64
	for i := range n {
		v, ok := vals[i].(int64)
		if !ok {
			return Depth{}, fmt.Errorf("queue: depth of %q: value %d is %T, not an integer", q, i, vals[i])
		}
		n[i] = v
	}
	d := Depth{Queue: q, Pending: n[0], Active: n[1], Scheduled: n[2], Retry: n[3], Archived: n[4], Paused: n[5] == 1}
	if s, _ := vals[6].(string); s != "" {
		ns, err := strconv.ParseInt(s, 10, 64)
		if err == nil && ns > 0 {
			d.OldestPending = max(now.Sub(time.Unix(0, ns)), 0)
		}
	}
	return d, nil
}
