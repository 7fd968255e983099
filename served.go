package agentq

import (
	"context"

	"github.com/agentq/agentq/queue"
)

// ServedQueues returns the queues live workers serve, by name, from
// asynq's server records: one read of the server index and one pipelined
// read of the live records, bounded by ctx. Any asynq server on this Redis
// counts, agentq's or not.
func (r *Runtime) ServedQueues(ctx context.Context) (map[string]bool, error) {
	return queue.NewInspector(r.rdb).ServedQueues(ctx)
}

// KnownQueues returns the queues asynq knows (those that ever held a
// task), sorted, in one read bounded by ctx.
func (r *Runtime) KnownQueues(ctx context.Context) ([]string, error) {
	return queue.NewInspector(r.rdb).KnownQueues(ctx)
}
