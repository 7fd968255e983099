// Package jobs owns agentq's domain model: the Step a handler receives, the
// typed outcome errors a handler returns (Permanent, RetryAfter, Snooze), the
// error classes they map to, the retry policy with full-jitter backoff, and
// the Handler and Middleware shapes. It imports nothing else of agentq, so
// every other package can depend on it (the role rivertype plays in River).
package jobs
