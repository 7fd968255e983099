package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/queue"
)

// QueueConfig says where the queue gauges come from. Like the budget and
// breaker gauges they are read from Redis when Prometheus scrapes, so every
// process serving them (each worker, the dashboard) reports the same
// numbers: aggregate them with max, not sum, across processes.
type QueueConfig struct {
	// Depths returns every queue's depth (queue.Inspector.Depths) and
	// whether queues were left out. A queue with Depth.Err set is left out
	// of the gauges and counted in agentq_queue_depth_errors; an error
	// returned (the queue list not read) leaves every queue gauge out.
	// Required.
	Depths func(ctx context.Context) ([]queue.Depth, bool, error)
	// DeadLetters returns how many records agentq's dead-letter store holds
	// (dlq.Store.Count); nil leaves agentq_dlq_records out.
	DeadLetters func(ctx context.Context) (int64, error)
	// Timeout bounds the reads of one scrape. Default 2s.
	Timeout time.Duration
	// Logger receives read errors. Default: no logging.
	Logger *zerolog.Logger
}

// The queue states agentq_queue_depth reports.
const (
	StatePending   = "pending"
	StateActive    = "active"
	StateScheduled = "scheduled"
	StateRetry     = "retry"
	StateArchived  = "archived"
)

var (
	queueDepthDesc = prometheus.NewDesc("agentq_queue_depth",
		"Tasks in the queue by state: pending (waiting for a worker), active (running), scheduled and retry (waiting for their time), archived (asynq's dead tasks). "+
			"Read from Redis at scrape time; every process serving it reports the same value (aggregate with max).",
		[]string{"queue", "state"}, nil)
	queueOldestDesc = prometheus.NewDesc("agentq_queue_oldest_pending_seconds",
		"How long the queue's oldest pending task has waited since it became pending; 0 when none is pending. "+
			"A task a stopping worker put back (or run by hand from retry or archived) has no such time: then the age of the nearest task behind it that has one (a lower bound), 0 if none of the first 100 has one.",
		[]string{"queue"}, nil)
	queuePausedDesc = prometheus.NewDesc("agentq_queue_paused",
		"1 when the queue is paused (by hand or by a spent error budget): its pending tasks are not taken.",
		[]string{"queue"}, nil)
	queueErrorsDesc = prometheus.NewDesc("agentq_queue_depth_errors",
		"Queues whose depth this scrape could not read (their queue gauges are left out; the log names them and why).",
		nil, nil)
	queueTruncatedDesc = prometheus.NewDesc("agentq_queue_depth_truncated",
		"1 when Redis holds more queues than the queue gauges report (the first by name are reported).",
		nil, nil)
	dlqRecordsDesc = prometheus.NewDesc("agentq_dlq_records",
		"Records in agentq's dead-letter store, whatever their status (dead, replayed, deleted), until retention drops them.",
		nil, nil)
)

type queueCollector struct {
	cfg QueueConfig
	log zerolog.Logger
}

// RegisterQueues registers, with reg, the gauges
// agentq_queue_depth{queue,state}, agentq_queue_oldest_pending_seconds{queue},
// agentq_queue_paused{queue}, agentq_queue_depth_errors,
// agentq_queue_depth_truncated and (with
// cfg.DeadLetters) agentq_dlq_records. A scrape costs a bounded number of
// Redis round trips (queue.Inspector.Depths: two; the dead letters: one),
// whatever the queues hold.
func RegisterQueues(reg prometheus.Registerer, cfg QueueConfig) error {
	if cfg.Depths == nil {
		return fmt.Errorf("metrics: QueueConfig.Depths is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	if err := reg.Register(&queueCollector{cfg: cfg, log: log}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepthDesc
	ch <- queueOldestDesc
	ch <- queuePausedDesc
	ch <- queueErrorsDesc
	ch <- queueTruncatedDesc
	if c.cfg.DeadLetters != nil {
		ch <- dlqRecordsDesc
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	ds, truncated, err := c.cfg.Depths(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("metrics: queue depths not read")
		ch <- prometheus.NewInvalidMetric(queueDepthDesc, err)
	} else {
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		failed := 0
		for _, d := range ds {
			if d.Err != nil {
				failed++
				c.log.Warn().Err(d.Err).Str("queue", d.Queue).Msg("metrics: queue depth not read")
				continue
			}
			gauge(queueDepthDesc, float64(d.Pending), d.Queue, StatePending)
			gauge(queueDepthDesc, float64(d.Active), d.Queue, StateActive)
			gauge(queueDepthDesc, float64(d.Scheduled), d.Queue, StateScheduled)
			gauge(queueDepthDesc, float64(d.Retry), d.Queue, StateRetry)
			gauge(queueDepthDesc, float64(d.Archived), d.Queue, StateArchived)
			gauge(queueOldestDesc, d.OldestPending.Seconds(), d.Queue)
			paused := 0.0
			if d.Paused {
				paused = 1
			}
			gauge(queuePausedDesc, paused, d.Queue)
		}
		gauge(queueErrorsDesc, float64(failed))
		t := 0.0
		if truncated {
			t = 1
		}
		gauge(queueTruncatedDesc, t)
	}
	if c.cfg.DeadLetters != nil {
		n, err := c.cfg.DeadLetters(ctx)
		if err != nil {
			c.log.Warn().Err(err).Msg("metrics: dead-letter records not counted")
			ch <- prometheus.NewInvalidMetric(dlqRecordsDesc, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(dlqRecordsDesc, prometheus.GaugeValue, float64(n))
	}
}
