package queue

import (
	"context"
	"fmt"
	"slices"
)

// ServedQueues returns the queues that live asynq servers (agentq workers,
// or any asynq server on this Redis) serve, by name: a server whose record
// has not expired (Servers) and that is still taking tasks (not "stopped").
// It is two reads and writes nothing.
func (in *Inspector) ServedQueues(ctx context.Context) (map[string]bool, error) {
	servers, err := in.Servers(ctx, ServerFilter{})
	if err != nil {
		return nil, err
	}
	served := map[string]bool{}
	for _, s := range servers {
		if s.Status == "stopped" || s.Status == "closed" {
			continue
		}
		for q := range s.Queues {
			served[q] = true
		}
	}
	return served, nil
}

// KnownQueues returns the names of the queues asynq knows (those that ever
// held a task), sorted: Queues, bounded by ctx (asynq's own reader takes
// no context), for shell completion and Depths.
func (in *Inspector) KnownQueues(ctx context.Context) ([]string, error) {
	qs, err := in.rdb.SMembers(ctx, asynqAllQueues).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list queues: %w", err)
	}
	slices.Sort(qs)
	return qs, nil
}
