package agentq

import (
	"context"

	"github.com/agentq/agentq/internal/metrics"
	"github.com/agentq/agentq/queue"
)

// registerQueueGauges registers the queue depth, oldest pending age and
// dead-letter gauges (read from Redis at scrape time) with the runtime's
// registry, so that MetricsHandler serves them from a worker's
// worker.metrics_addr and the dashboard's /metrics: what an autoscaler
// scales workers by.
func (r *Runtime) registerQueueGauges() error {
	in := queue.NewInspector(r.rdb)
	log := r.log
	return metrics.RegisterQueues(r.prom, metrics.QueueConfig{
		Depths: func(ctx context.Context) ([]queue.Depth, bool, error) {
			return in.Depths(ctx, queue.DepthsMaxQueuesDefault)
		},
		DeadLetters: r.dead.Count,
		Logger:      &log,
	})
}
