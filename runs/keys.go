package runs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
)

// Every Redis key of package runs is built here. Hash tags:
//
//   - {run:<id>}: every key of one run (its state hash and its history
//     list). Every script touches the keys of one run only, so it stays in
//     one slot on Redis Cluster.
//   - {runs}: the index of all runs by creation time (one sorted set),
//     written and read by single commands only.

// stateKey is the hash of a run's state: its version ("v"), the state
// document ("doc"), the list line ("sum") and each step's output
// ("o:<step>").
func stateKey(id string) string { return "agentq:{run:" + id + "}:state" }

// historyKey is the bounded list of a run's events, oldest first.
func historyKey(id string) string { return "agentq:{run:" + id + "}:history" }

// indexKey is the sorted set of run ids scored by creation time (Unix ms).
func indexKey() string { return "agentq:{runs}:index" }

// Hash fields of stateKey.
const (
	fieldVersion = "v"
	fieldDoc     = "doc"
	fieldSummary = "sum"
	outputPrefix = "o:"
)

// outputField is the field of a step's output in stateKey.
func outputField(step string) string { return outputPrefix + step }

// runIDForKey derives the id of the run a start of workflow with
// idempotency key key makes, so that a second start finds the first run.
func runIDForKey(workflow, key string) string {
	sum := sha256.Sum256([]byte(workflow + "\x00" + key))
	return "r_" + hex.EncodeToString(sum[:16])
}

// newRunID returns a random run id. It has no "-": asynqmon shows an id
// only up to its first dash.
func newRunID() string { return "r_" + strings.ReplaceAll(uuid.NewString(), "-", "") }

// newWriteToken names one change of a run's state.
func newWriteToken() string { return strings.ReplaceAll(uuid.NewString(), "-", "")[:16] }

// stepKey is the idempotency key of a run step's task: its task id and its
// side effect's Idempotency-Key derive from run and step.
func stepKey(runID, step string) string { return runID + "/" + step }

// RunKeys returns the keys of run id (its state and its history), for a
// caller that removes runs it alone started (agentq dev on a shared Redis).
func RunKeys(id string) []string { return []string{stateKey(id), historyKey(id)} }

// IndexKey returns the key of the index of all runs, a sorted set of run
// ids shared by every process: remove members from it, never the key.
func IndexKey() string { return indexKey() }

// StepKey returns the idempotency key of step of run runID's task.
func StepKey(runID, step string) string { return stepKey(runID, step) }
