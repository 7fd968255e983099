// Package queue owns agentq's use of asynq: the Client that validates and
// enqueues tasks (with idempotency keys), the Worker that runs them through
// the middleware chain, the Registry of task kinds, and the one place that
// maps jobs' typed outcomes onto asynq's retry, snooze and archive.
package queue
