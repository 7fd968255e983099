package queue

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis's ClusterClient keeps sending a slot's commands to its old
// master after that master died and a replica took over: a refused or
// broken connection does not reload the slot map (only MOVED and READONLY
// replies do), so commands fail until the periodic reload, every 60s since
// go-redis v9.22 (redis/go-redis#3979). reloadOnNetError reloads the map
// as soon as a command fails on the network; go-redis runs one reload at a
// time, and the hook asks for one at most once per reloadEvery, so a burst
// of failures, or a Redis that stays down, costs one CLUSTER SLOTS per
// second at most. A caller's own deadline or cancel is not the network
// failing and reloads nothing. WatchFailover installs it.

// reloadOnNetError is a go-redis hook that reloads a cluster client's slot
// map when a command or pipeline fails with a network error.
type reloadOnNetError struct {
	cc   *redis.ClusterClient
	last *atomic.Int64 // UnixNano of the last reload asked for
	now  func() time.Time
}

// reloadEvery bounds how often the hook asks for a reload.
const reloadEvery = time.Second

// WatchFailover makes rdb, when it is a *redis.ClusterClient, reload its
// slot map as soon as a command fails on the network, so that it follows a
// failover at once. NewRedis does it for the clients it makes; call it on a
// cluster client you pass to agentq yourself (agentq.Options.Redis). Other
// clients are left as they are.
func WatchFailover(rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnNetError{cc: cc, last: new(atomic.Int64), now: time.Now})
	}
}

func (h reloadOnNetError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNetError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h reloadOnNetError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		for _, c := range cmds {
			h.check(c.Err())
		}
		return err
	}
}

func (h reloadOnNetError) check(err error) {
	if isNetError(err) && h.due() {
		h.cc.ReloadState(context.Background())
	}
}

// due reports whether a reload may be asked for now, and records it.
func (h reloadOnNetError) due() bool {
	now := h.now().UnixNano()
	last := h.last.Load()
	return now-last >= int64(reloadEvery) && h.last.CompareAndSwap(last, now)
}

// isNetError reports whether err is the network failing (refused, reset,
// closed, timed out), as opposed to a reply of Redis or the caller's own
// deadline or cancel (context.DeadlineExceeded is a net.Error too).
func isNetError(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
