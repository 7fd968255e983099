// Package scaletest runs agentq's real runtime against a local Redis
// Cluster (3 masters, 1 replica each) and a Sentinel setup (master,
// replica, 3 sentinels) of redis-server processes (internal/redistest):
// every feature on Cluster (enqueue, keyed enqueue, batch, worker, dead
// letters and replay, budgets, breakers, ledger, runs), and a worker and a
// client that keep going while the master under them is killed and its
// replica takes over. The failover tests count what was lost, duplicated
// and how long service stopped, print it (t.Logf) and append it to the file
// named by AGENTQ_TEST_FAULT_REPORT, which .ci/run prints.
//
// It holds tests only. Run it with `go test -count=1 -v ./internal/scaletest/`
// (about a minute); it is skipped in -short mode.
package scaletest
