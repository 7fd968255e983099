package dev

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// Created records the keys a Redis client creates, so that `agentq dev` on
// a configured (maybe shared) Redis removes, of the keys it owns by name
// (Owned), only those its demo created; a shared key it created is left
// (Remove). As a go-redis hook (Hook) it sees every command the client
// sends; before the first write of a key it asks Redis whether the key
// exists, and a key that did not is the demo's. Writes are the commands
// that may create a key (SET, HSET, ZADD, SADD, LPUSH, XADD, INCR, ...) and
// scripts, whose declared keys count as written. A key first written
// while it already existed is never removed. Add the hook after any hook
// that rewrites commands (the worker's completion fold), so that it sees
// the commands as sent: the hook added first is the outermost.
type Created struct {
	mu      sync.Mutex
	seen    map[string]bool
	created []string
}

// NewCreated returns an empty record; add its Hook to the client.
func NewCreated() *Created { return &Created{seen: map[string]bool{}} }

// Hook returns the go-redis hook that records created keys.
func (c *Created) Hook() redis.Hook { return createdHook{c} }

// Keys returns the keys recorded as created, in the order first written.
func (c *Created) Keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.created)
}

// Removed says what Remove removed and what it left.
type Removed struct {
	// Keys is how many keys it deleted.
	Keys int
	// Members is how many of dev's members it removed from shared sets
	// (its runs from the runs index, its breakers from the breaker names,
	// its queue from asynq's queue names).
	Members int
	// Shared are the keys dev created but does not own, still there:
	// shared keys that other processes may have written to meanwhile, left
	// in place.
	Shared []string
}

// Remove deletes the keys recorded as created that own owns (those still
// there), and removes own's members from the shared sets; it never deletes
// a key own does not own, even one the demo created: another process may
// have written to it since (the dead-letter counter and index, the runs
// index). Each key is its own UNLINK, so that it works on Redis Cluster too.
func (c *Created) Remove(ctx context.Context, rdb redis.UniversalClient, own *Owned) (Removed, error) {
	var rm Removed
	var keys []string
	for _, k := range c.Keys() {
		if own.Owns(k) {
			keys = append(keys, k)
		} else {
			rm.Shared = append(rm.Shared, k)
		}
	}
	var members []*redis.IntCmd
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Unlink(ctx, k)
		}
		if ids := own.Runs(); len(ids) > 0 {
			members = append(members, p.ZRem(ctx, runs.IndexKey(), toAny(ids)...))
		}
		if names := own.Breakers(); len(names) > 0 {
			members = append(members, p.SRem(ctx, breaker.NamesKey(), toAny(names)...))
		}
		return nil
	})
	for _, cmd := range cmds {
		rm.Keys += int(cmd.Val())
	}
	for _, cmd := range members {
		rm.Members += int(cmd.Val())
	}
	if err != nil {
		return rm, fmt.Errorf("remove the demo's keys: %w", err)
	}
	if q := own.Queue(); q != "" {
		forgot, err := queue.NewInspector(rdb).ForgetQueue(ctx, q)
		if forgot {
			rm.Members++
		}
		if err != nil {
			return rm, fmt.Errorf("remove the demo's queue: %w", err)
		}
	}
	// Report the shared keys still there (asynq removes its servers' own).
	exists := make([]*redis.IntCmd, len(rm.Shared))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range rm.Shared {
			exists[i] = p.Exists(ctx, k)
		}
		return nil
	})
	if err != nil {
		return rm, fmt.Errorf("read the shared keys the demo created: %w", err)
	}
	var shared []string
	for i, k := range rm.Shared {
		if exists[i].Val() > 0 {
			shared = append(shared, k)
		}
	}
	rm.Shared = shared
	return rm, nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// unseen returns the keys of keys no probe has answered for yet. Two
// commands may probe one key at once; a key is marked seen only once its
// probe answered, so that no write of it goes ahead of every probe.
func (c *Created) unseen(keys []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, k := range keys {
		if !c.seen[k] && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// probed records what a probe of k found.
func (c *Created) probed(k string, existed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[k] {
		return // another probe answered first
	}
	c.seen[k] = true
	if !existed {
		c.created = append(c.created, k)
	}
}

type createdHook struct{ c *Created }

func (h createdHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (h createdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, k := range h.c.unseen(writtenKeys(cmd.Args())) {
			// next bypasses this hook: the probe is not a write.
			probe := redis.NewIntCmd(ctx, "exists", k)
			if next(ctx, probe) == nil {
				h.c.probed(k, probe.Val() > 0)
			}
		}
		return next(ctx, cmd)
	}
}

func (h createdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var keys []string
		for _, cmd := range cmds {
			keys = append(keys, writtenKeys(cmd.Args())...)
		}
		if keys = h.c.unseen(keys); len(keys) > 0 {
			probes := make([]*redis.IntCmd, len(keys))
			send := make([]redis.Cmder, 0, len(keys)+2)
			tx := len(cmds) > 0 && cmds[0].Name() == "multi"
			if tx {
				// A transaction's commands come wrapped in MULTI and EXEC,
				// and its connection reads the replies so: wrap the probes.
				send = append(send, redis.NewStatusCmd(ctx, "multi"))
			}
			for i, k := range keys {
				probes[i] = redis.NewIntCmd(ctx, "exists", k)
				send = append(send, probes[i])
			}
			if tx {
				send = append(send, redis.NewSliceCmd(ctx, "exec"))
			}
			_ = next(ctx, send)
			for i, p := range probes {
				if p.Err() == nil {
					h.c.probed(keys[i], p.Val() > 0)
				}
			}
		}
		return next(ctx, cmds)
	}
}

// writeFirstKey are the commands that may create the key they name first.
var writeFirstKey = map[string]bool{
	"set": true, "setnx": true, "setex": true, "psetex": true, "getset": true, "append": true,
	"setrange": true, "setbit": true, "incr": true, "incrby": true, "incrbyfloat": true,
	"decr": true, "decrby": true, "hset": true, "hsetnx": true, "hmset": true, "hincrby": true,
	"hincrbyfloat": true, "zadd": true, "zincrby": true, "sadd": true, "lpush": true, "rpush": true,
	"xadd": true, "pfadd": true, "geoadd": true, "zunionstore": true, "zinterstore": true,
	"zdiffstore": true, "zrangestore": true, "sunionstore": true, "sinterstore": true,
	"sdiffstore": true, "restore": true,
}

// writeSecondKey are the commands that may create the key they name second
// (their destination).
var writeSecondKey = map[string]bool{
	"rpoplpush": true, "brpoplpush": true, "lmove": true, "blmove": true, "smove": true,
	"rename": true, "renamenx": true, "copy": true,
}

// writtenKeys returns the keys a command with args may create.
func writtenKeys(args []any) []string {
	if len(args) < 2 {
		return nil
	}
	name, _ := args[0].(string)
	name = strings.ToLower(name)
	str := func(i int) string {
		if i >= len(args) {
			return ""
		}
		switch v := args[i].(type) {
		case string:
			return v
		case []byte:
			return string(v)
		}
		return fmt.Sprint(args[i])
	}
	switch {
	case writeFirstKey[name]:
		return []string{str(1)}
	case writeSecondKey[name]:
		return []string{str(2)}
	case name == "mset" || name == "msetnx":
		var keys []string
		for i := 1; i < len(args); i += 2 {
			keys = append(keys, str(i))
		}
		return keys
	case name == "eval" || name == "evalsha" || name == "fcall":
		n, err := strconv.Atoi(str(2))
		if err != nil || n <= 0 {
			return nil
		}
		keys := make([]string, 0, n)
		for i := 3; i < 3+n && i < len(args); i++ {
			keys = append(keys, str(i))
		}
		return keys
	}
	return nil
}
