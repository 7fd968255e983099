// Package queue owns agentq's use of asynq: the Client that validates and
// enqueues tasks (with idempotency keys), the Worker that runs them through
// the middleware chain, the Registry of task kinds, and the one place that
// maps jobs' typed outcomes onto asynq's retry, snooze and archive.
//
// Redis keys (keys.go): the idempotency key of a task in queue q is
// agentq:{q}:dedupe:<hash>, tagged with the queue like asynq's own
// asynq:{q}:... keys, so that the one enqueue script (enqueue.go) stays in
// one Cluster slot; idempotency keys are therefore unique per queue.
package queue
