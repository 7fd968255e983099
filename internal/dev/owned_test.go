package dev

import (
	"testing"

	"github.com/agentq/agentq/ledger"
)

// TestOwnedOwns: dev owns the keys of its queue, runs, idempotency keys,
// breakers and workflow's budget, built as their packages build them, and
// no shared key and nothing of another queue, run, key, host or workflow.
func TestOwnedOwns(t *testing.T) {
	t.Parallel()
	own := NewOwned("agentq-dev")
	own.AddRun("r_dev", "research")
	own.AddKeys("demo-1/search")
	own.AddBreakers(BreakerName("http://127.0.0.1:4242/ok"))
	own.AddWorkflows(RunWorkflow)
	tests := []struct {
		name, key string
		owned     bool
	}{
		{"asynq key of dev's queue", "asynq:{agentq-dev}:pending", true},
		{"asynq task of dev's queue", "asynq:{agentq-dev}:t:k_1", true},
		{"dedupe claim of dev's queue", "agentq:{agentq-dev}:dedupe:abc", true},
		{"dead-letter attempts of dev's queue", "agentq:{agentq-dlq}:p:agentq-dev:k_1", true},
		{"dead-letter tombstone of dev's queue", "agentq:{agentq-dlq}:t:agentq-dev:k_1", true},
		{"dev's run state", "agentq:{run:r_dev}:state", true},
		{"dev's run history", "agentq:{run:r_dev}:history", true},
		{"ledger entry of dev's demo key", "agentq:{" + ledgerHash("demo-1/search") + "}:ledger", true},
		{"ledger entry of dev's run step", "agentq:{" + ledgerHash("r_dev/research") + "}:ledger", true},
		{"dev's tool server breaker", "agentq:breaker:{127.0.0.1:4242}", true},
		{"dev's tool server breaker probe", "agentq:breaker:{127.0.0.1:4242}:probe", true},
		{"dev's workflow budget", "agentq:budget:{" + RunWorkflow + "}:counts", true},

		{"dead-letter counter", "agentq:{agentq-dlq}:seq", false},
		{"dead-letter index", "agentq:{agentq-dlq}:idx", false},
		{"dead-letter live set", "agentq:{agentq-dlq}:live", false},
		{"dead-letter lock", "agentq:{agentq-dlq}:lock", false},
		{"a dead-letter record", "agentq:{agentq-dlq}:r:1", false},
		{"runs index", "agentq:{runs}:index", false},
		{"breaker names", "agentq:{breakers}:names", false},
		{"budget lock", "agentq:{budget}:lock:1", false},
		{"asynq queue names", "asynq:queues", false},
		{"asynq servers", "asynq:servers", false},
		{"asynq workers", "asynq:workers", false},
		{"a queue whose name starts with dev's", "asynq:{agentq-dev2}:pending", false},
		{"dead-letter attempts of a queue named agentq-dev:x", "agentq:{agentq-dlq}:p:agentq-dev:x:k_1", false},
		{"dedupe claim of another queue", "agentq:{default}:dedupe:abc", false},
		{"another run", "agentq:{run:r_other}:state", false},
		{"ledger entry of another key", "agentq:{" + ledgerHash("theirs") + "}:ledger", false},
		{"another host's breaker", "agentq:breaker:{api.example.com}", false},
		{"another workflow's budget", "agentq:budget:{theirs}:counts", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := own.Owns(tc.key); got != tc.owned {
				t.Errorf("Owns(%q) = %v, want %v", tc.key, got, tc.owned)
			}
		})
	}
	var none *Owned
	if none.Owns("asynq:{agentq-dev}:pending") {
		t.Error("a nil Owned owns a key")
	}
}

func ledgerHash(key string) string { return ledger.KeyHash(key) }
