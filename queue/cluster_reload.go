package queue

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/redis/go-redis/v9"
)

// go-redis's ClusterClient keeps sending a slot's commands to its old
// master after that master died and a replica took over: a refused or
// broken connection does not reload the slot map (only MOVED and READONLY
// replies do), so commands fail until the periodic reload, every 60s since
// go-redis v9.22 (redis/go-redis#3979). reloadOnNetError reloads the map
// as soon as a command fails on the network; go-redis runs one reload at a
// time, at most one per 200ms, so a burst of failures costs one CLUSTER
// SLOTS. WatchFailover installs it.

// reloadOnNetError is a go-redis hook that reloads a cluster client's slot
// map when a command or pipeline fails with a network error.
type reloadOnNetError struct{ cc *redis.ClusterClient }

// WatchFailover makes rdb, when it is a *redis.ClusterClient, reload its
// slot map as soon as a command fails on the network, so that it follows a
// failover at once. NewRedis does it for the clients it makes; call it on a
// cluster client you pass to agentq yourself (agentq.Options.Redis). Other
// clients are left as they are.
func WatchFailover(rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnNetError{cc})
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
	if isNetError(err) {
		h.cc.ReloadState(context.Background())
	}
}

// isNetError reports whether err is the network failing (refused, reset,
// closed, timed out), as opposed to a reply of Redis.
func isNetError(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
