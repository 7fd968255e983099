package bench

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// roundTrips is a go-redis hook that counts round trips to Redis: a command
// sent alone is one, a pipeline (MULTI/EXEC included) is one however many
// commands it carries. It counts only while on, so that the bench's own
// bookkeeping (FLUSHDB, CONFIG RESETSTAT, INFO, the binary row's polls)
// stays out of the count. Installed on the client that both systems under
// test use, it sees every call they make, their background loops included.
type roundTrips struct {
	on atomic.Bool
	n  atomic.Int64
	// record, when set, is called with each counted round trip's commands
	// after they ran (the round-trip test reads their arguments and
	// replies).
	record atomic.Pointer[func(cmds []redis.Cmder)]
}

var _ redis.Hook = (*roundTrips)(nil)

// start zeroes the count and starts counting.
func (r *roundTrips) start() {
	r.n.Store(0)
	r.on.Store(true)
}

// stop stops counting and returns the round trips since start.
func (r *roundTrips) stop() int64 {
	r.on.Store(false)
	return r.n.Load()
}

// count counts one round trip of cmds, or of the single command one when
// cmds is nil (so that the common case allocates nothing).
func (r *roundTrips) count(one redis.Cmder, cmds []redis.Cmder) {
	if !r.on.Load() {
		return
	}
	r.n.Add(1)
	if rec := r.record.Load(); rec != nil {
		if cmds == nil {
			cmds = []redis.Cmder{one}
		}
		(*rec)(cmds)
	}
}

// DialHook does not count: a dial carries no command.
func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook counts a command sent alone.
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.count(cmd, nil)
		return err
	}
}

// ProcessPipelineHook counts a pipeline as one round trip.
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		r.count(nil, cmds)
		return err
	}
}
