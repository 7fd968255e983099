package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pre is a Lua script of another package (a run's state change) that
// decides whether an enqueue happens, run with it in one round trip where
// Redis allows (EnqueueWith). Src is a script body over KEYS and ARGV that
// returns a table whose first element is 1 when the enqueue is to go on;
// anything else stops it. It must not touch asynq's keys.
type Pre struct {
	Src  string
	Keys []string
	Args []any
}

// preScripts caches the scripts built for each Pre source: the Pre alone
// and the Pre followed by the enqueue.
var preScripts sync.Map // src -> *preScript

type preScript struct{ alone, with *redis.Script }

func scriptsFor(src string) *preScript {
	if v, ok := preScripts.Load(src); ok {
		return v.(*preScript)
	}
	// Each part is a function whose parameters shadow the global KEYS and
	// ARGV, so that both bodies run unchanged on their own slices.
	with := `local function pre(KEYS, ARGV)
` + src + `
end
local function enq(KEYS, ARGV)
` + enqueueSrc + `
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local pk, pa, ek, ea = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nk then pk[#pk + 1] = KEYS[i] else ek[#ek + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i <= na + 2 then pa[#pa + 1] = ARGV[i] else ea[#ea + 1] = ARGV[i] end
end
local r = pre(pk, pa)
if type(r) ~= 'table' or r[1] ~= 1 then
  return {0, r}
end
return {1, r, enq(ek, ea)}`
	ps := &preScript{alone: redis.NewScript(src), with: redis.NewScript(with)}
	v, _ := preScripts.LoadOrStore(src, ps)
	return v.(*preScript)
}

// EnqueueWith runs pre and, when it says so (its reply's first element is
// 1), enqueues kind's payload as Enqueue does. On a single Redis both are
// one script, one round trip, atomic: the enqueue happens exactly when
// pre's change does. On Redis Cluster (pre's keys and the queue's live in
// different slots) pre runs first and the enqueue after it, two round
// trips; a crash between them leaves pre's change without the task, which
// the caller must be able to repair (e.g. by a task id derived from a key,
// enqueued again on redelivery). Admit is not asked: pre decides.
//
// It returns pre's reply, the enqueue's Result and whether the enqueue
// ran; a refused enqueue (validation) is an error before anything runs.
func (c *Client) EnqueueWith(ctx context.Context, pre Pre, kind string, payload []byte, o EnqueueOptions) (reply []any, res Result, enqueued bool, err error) {
	p, err := c.prepare(kind, payload, o)
	if err != nil {
		return nil, Result{}, false, err
	}
	sc := scriptsFor(pre.Src)
	if c.cluster {
		v, err := sc.alone.Run(ctx, c.rdb, pre.Keys, pre.Args...).Result()
		if err != nil {
			return nil, Result{}, false, err
		}
		reply, go_ := preReply(v)
		if !go_ {
			return reply, Result{}, false, nil
		}
		res, err := c.send(ctx, p)
		if err != nil {
			return reply, Result{}, false, err
		}
		return reply, res, true, nil
	}
	publish := c.publishing(p.queue)
	ekeys, eargs := c.scriptArgs(p, time.Now(), publish)
	keys := make([]string, 0, len(pre.Keys)+len(ekeys))
	keys = append(append(keys, pre.Keys...), ekeys...)
	args := make([]any, 0, 2+len(pre.Args)+len(eargs))
	args = append(args, strconv.Itoa(len(pre.Keys)), strconv.Itoa(len(pre.Args)))
	args = append(append(args, pre.Args...), eargs...)
	v, err := sc.with.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, Result{}, false, fmt.Errorf("enqueue %s: %w", kind, err)
	}
	out, ok := v.([]any)
	if !ok || len(out) < 2 {
		return nil, Result{}, false, fmt.Errorf("enqueue %s: unexpected reply %v", kind, v)
	}
	reply, _ = out[1].([]any)
	if n, _ := out[0].(int64); n != 1 {
		return reply, Result{}, false, nil
	}
	if len(out) < 3 {
		return reply, Result{}, false, errors.New("enqueue: the script gave no enqueue reply")
	}
	if publish {
		c.published.Store(p.queue, true)
	}
	res, err = p.result(out[2])
	return reply, res, err == nil, err
}

// preReply reads a Pre's reply: the table and whether it says go on.
func preReply(v any) ([]any, bool) {
	t, ok := v.([]any)
	if !ok || len(t) == 0 {
		return t, false
	}
	n, _ := t[0].(int64)
	return t, n == 1
}
