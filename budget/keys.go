package budget

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Every Redis key this package writes is built here. A workflow's keys share
// the {hash tag} of its name, so that the flush script and a reset, which
// touch several of them, stay in one Cluster slot.

// tag returns the hash tag of a workflow: its name, or a digest of it when
// the name holds a brace (which would end the tag early).
func tag(workflow string) string {
	if workflow != "" && !strings.ContainsAny(workflow, "{}") {
		return workflow
	}
	sum := sha256.Sum256([]byte(workflow))
	return hex.EncodeToString(sum[:8])
}

// countsKey is the hash of a workflow's outcome counters: "e:<bucket start>"
// and "f:<bucket start>" (unix seconds) count events and failures per
// bucket, and totalField counts every failure ever flushed.
func countsKey(workflow string) string { return WorkflowKeyPrefix(workflow) + "counts" }

// stateKey is the hash of what the checker did about a workflow: pausedField,
// holdField and alertedField.
func stateKey(workflow string) string { return WorkflowKeyPrefix(workflow) + "state" }

// flushKey marks a flush batch as applied, so that a batch sent again after
// an error whose outcome was unknown is not counted twice.
func flushKey(workflow, id string) string {
	return WorkflowKeyPrefix(workflow) + "flush:" + id
}

// lockKey is taken by the one checker that acts in an evaluation slot.
func lockKey(slot int64) string { return "agentq:{budget}:lock:" + strconv.FormatInt(slot, 10) }

// Fields of countsKey and stateKey.
const (
	eventsPrefix   = "e:"
	failuresPrefix = "f:"
	totalField     = "tf"
	pausedField    = "paused_at"
	holdField      = "hold_tf"
	alertedField   = "alerted_at"
)

func eventsField(start int64) string   { return eventsPrefix + strconv.FormatInt(start, 10) }
func failuresField(start int64) string { return failuresPrefix + strconv.FormatInt(start, 10) }

// WorkflowKeyPrefix returns the prefix of every key of workflow's budget
// (counters, state, flush marks), for a caller that removes the keys of a
// workflow it alone runs. The checker's lock is shared and not under it.
func WorkflowKeyPrefix(workflow string) string { return "agentq:budget:{" + tag(workflow) + "}:" }
