// Package faults is agentq's fault suite: end-to-end tests that run the
// real agentq binary against real redis-server processes and a loopback
// tool server that records every request with its Idempotency-Key, and
// inject the faults production brings: a worker killed with SIGKILL or
// frozen past its lease, Redis killed (AOF everysec) and restarted or
// frozen past the client timeouts, a tool answering 429, 503, garbage or
// nothing, and 100 clients enqueueing one key at once.
//
// Each scenario counts, per idempotency key, the side effects at the tool
// and the dead-letter store, and asserts: no task lost; a task that ran
// more than once was in flight at the fault; every exhausted task is in the
// dead-letter store. Each prints a line
//
//	fault: <scenario>: enqueued=N done=N lost=0 dup=N (in flight at fault: M) dead=N ...
//
// Run it with `go test -count=1 -v ./internal/faults/` (a few minutes:
// the scenarios run in parallel and the slowest waits for asynq's lease
// recovery). It is skipped in -short mode and needs redis-server on PATH.
package faults
