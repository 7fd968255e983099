// Package survivetest holds the survival tests of issue 7: through a real
// worker binary built like a Go user's own (internal/testbin/agentq-poison),
// a real redis-server and a loopback tool server, a worker survives a
// panicking handler, a handler that never returns, poisonous tool answers
// and payloads that pass enqueue but poison the worker, and keeps serving
// every other task. It has no code outside its tests.
package survivetest
