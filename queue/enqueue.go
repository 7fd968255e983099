package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// enqueueScript is an enqueue in one round trip: it takes the idempotency
// key for the window unless it is taken (SET NX: one command for a new
// key), then writes the task as asynq v0.26's own enqueue and
// schedule scripts do (internal/rdb: enqueueCmd, scheduleCmd): the task
// hash with "msg", "state" and, when pending, "pending_since", and the id
// pushed on the pending list or added to the scheduled set.
//
// KEYS[1] asynq:{q}:t:<id>
// KEYS[2] asynq:{q}:pending, or asynq:{q}:scheduled when delayed
// KEYS[3] agentq:{q}:dedupe:<hash>, only when keyed
// KEYS[#KEYS] asynq:queues, only when ARGV[6] names a queue to publish
// ARGV[1] the encoded task message
// ARGV[2] the task id
// ARGV[3] pending: now in Unix ns (pending_since); scheduled: process-at in Unix s
// ARGV[4] "pending" or "scheduled"
// ARGV[5] the dedupe window in ms, "0" when not keyed
// ARGV[6] the queue to add to asynq:queues, "" for none
//
// It returns the task id holding the key (a duplicate, nothing written), 1
// for a new task, or 0 when the task id exists already (asynq's
// ErrTaskIDConflict; the keyed task of an earlier window is still in Redis):
// a duplicate too, and the key is taken for a new window either way.
var enqueueScript = redis.NewScript(enqueueSrc)

const enqueueSrc = `
if ARGV[6] ~= '' then
  redis.call('SADD', KEYS[#KEYS], ARGV[6])
end
if ARGV[5] ~= '0' and not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[5]) then
  return redis.call('GET', KEYS[3])
end
local n = 1
if redis.call('EXISTS', KEYS[1]) == 1 then
  n = 0
elseif ARGV[4] == 'scheduled' then
  redis.call('HSET', KEYS[1], 'msg', ARGV[1], 'state', 'scheduled')
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'msg', ARGV[1], 'state', 'pending', 'pending_since', ARGV[3])
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
return n`

// prepared is a validated enqueue, ready to go to Redis.
type prepared struct {
	kind  string
	queue string
	id    string
	key   string // the idempotency key given, if any
	// dedupe is the Redis key that holds the idempotency key for the
	// window; empty when the enqueue does not take one (no key, or a forced
	// task id).
	dedupe string
	msg    []byte
	// processAt is when a delayed task is due, in Unix seconds; 0 when the
	// task is pending at once.
	processAt int64
}

// scriptArgs returns the enqueue script's keys and arguments for p, sent
// at now; publish adds the queue to asynq:queues in the same script.
func (c *Client) scriptArgs(p *prepared, now time.Time, publish bool) ([]string, []any) {
	keys := make([]string, 2, 4)
	keys[0] = asynqTaskKey(p.queue, p.id)
	state, at := "pending", now.UnixNano()
	if p.processAt != 0 {
		state, at = "scheduled", p.processAt
		keys[1] = asynqScheduledKey(p.queue)
	} else {
		keys[1] = asynqPendingKey(p.queue)
	}
	window := "0"
	if p.dedupe != "" {
		keys = append(keys, p.dedupe)
		window = c.windowMS
	}
	q := ""
	if publish {
		keys = append(keys, asynqAllQueues)
		q = p.queue
	}
	return keys, []any{p.msg, p.id, at, state, window, q}
}

// result turns the script's reply into the enqueue's Result.
func (p *prepared) result(v any) (Result, error) {
	res := Result{ID: p.id, Kind: p.kind, Queue: p.queue, Key: p.key}
	switch v := v.(type) {
	case int64:
		res.Duplicate = v == 0
	case string:
		res.ID, res.Duplicate = v, true
	default:
		return Result{}, fmt.Errorf("enqueue %s: unexpected reply %v from the enqueue script", p.kind, v)
	}
	return res, nil
}

// publishing reports whether an enqueue to q should add q to asynq:queues,
// which asynq's Inspector and asynqmon list queues from. Like asynq's
// client, a Client publishes each queue once; on one server the script
// does it, on Cluster (where asynq:queues is in another slot) publish does.
func (c *Client) publishing(q string) bool {
	_, done := c.published.Load(q)
	return !done
}

// publish adds q to asynq:queues on its own, for Cluster.
func (c *Client) publish(ctx context.Context, q string) error {
	if !c.publishing(q) {
		return nil
	}
	if err := c.rdb.SAdd(ctx, asynqAllQueues, q).Err(); err != nil {
		return err
	}
	c.published.Store(q, true)
	return nil
}

// send runs one prepared enqueue: one round trip (plus one SADD the first
// time a queue is used on Cluster).
func (c *Client) send(ctx context.Context, p *prepared) (Result, error) {
	inScript := false
	if c.cluster {
		if err := c.publish(ctx, p.queue); err != nil {
			return Result{}, fmt.Errorf("enqueue %s: %w", p.kind, err)
		}
	} else {
		inScript = c.publishing(p.queue)
	}
	keys, args := c.scriptArgs(p, time.Now(), inScript)
	v, err := enqueueScript.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return Result{}, fmt.Errorf("enqueue %s: %w", p.kind, err)
	}
	if inScript {
		c.published.Store(p.queue, true)
	}
	return p.result(v)
}

// sendAll runs the prepared enqueues ps in one pipeline, in order, and
// returns each one's result or error. A key repeated in ps is a duplicate of
// its first enqueue, as one by one.
func (c *Client) sendAll(ctx context.Context, ps []*prepared) ([]Result, []error) {
	pipe := c.rdb.Pipeline()
	var published []string
	if c.cluster {
		for _, p := range ps {
			if c.publishing(p.queue) && !slices.Contains(published, p.queue) {
				published = append(published, p.queue)
				pipe.SAdd(ctx, asynqAllQueues, p.queue)
			}
		}
	}
	now := time.Now()
	keys := make([][]string, len(ps))
	args := make([][]any, len(ps))
	cmds := make([]*redis.Cmd, len(ps))
	for i, p := range ps {
		publish := !c.cluster && c.publishing(p.queue) && !slices.Contains(published, p.queue)
		if publish {
			published = append(published, p.queue)
		}
		keys[i], args[i] = c.scriptArgs(p, now, publish)
		cmds[i] = enqueueScript.EvalSha(ctx, pipe, keys[i], args[i]...)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below
	var redo []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			redo = append(redo, i)
		}
	}
	if len(redo) > 0 {
		// The script cache was flushed (a restart, SCRIPT FLUSH): the
		// commands that failed did nothing, so run them again, in order,
		// with the script's text.
		pipe := c.rdb.Pipeline()
		for _, i := range redo {
			cmds[i] = enqueueScript.Eval(ctx, pipe, keys[i], args[i]...)
		}
		_, _ = pipe.Exec(ctx)
	}
	results := make([]Result, len(ps))
	errs := make([]error, len(ps))
	failed := false
	for i, p := range ps {
		v, err := cmds[i].Result()
		if err != nil {
			errs[i], failed = fmt.Errorf("enqueue %s: %w", p.kind, err), true
			continue
		}
		results[i], errs[i] = p.result(v)
	}
	if !failed {
		for _, q := range published {
			c.published.Store(q, true)
		}
	}
	return results, errs
}
