package dlq

// Every Redis key this package writes is built here. All of them carry the
// {agentq-dlq} hash tag, so that every script of the store touches a single
// Cluster slot. Scripts build record keys from keyPrefix themselves (the
// record id is only known inside the script); with the shared hash tag they
// stay in the declared slot.

// hashTag is the Cluster hash tag of every dead-letter key.
const hashTag = "{agentq-dlq}"

// keyPrefix starts every dead-letter key.
const keyPrefix = "agentq:" + hashTag + ":"

// seqKey is the counter that numbers records.
func seqKey() string { return keyPrefix + "seq" }

// indexKey is the sorted set of all record ids, scored by last failure
// (unix ms): listing, stats and retention page through it.
func indexKey() string { return keyPrefix + "idx" }

// liveKey is the sorted set of records whose asynq task the reconciler
// watches (status dead, rerun or replayed), scored by last change.
func liveKey() string { return keyPrefix + "live" }

// recordKey is the hash of one record.
func recordKey(id string) string { return keyPrefix + "r:" + id }

// historyKey is the list of a record's failed attempts, oldest first.
func historyKey(id string) string { return keyPrefix + "a:" + id }

// pendingKey is the list of a live task's failed attempts, before the task
// is dead; it expires AttemptsTTL after the last write.
func pendingKey(queue, taskID string) string { return QueueKeyPrefixes(queue)[0] + taskID }

// taskKey maps an asynq task to the record that holds its death, or to
// tombstone after the record was purged or trimmed.
func taskKey(queue, taskID string) string { return QueueKeyPrefixes(queue)[1] + taskID }

// lockKey is held by the reconciler that is sweeping.
func lockKey() string { return keyPrefix + "lock" }

// tombstone is the value of a taskKey whose record is gone on purpose: the
// reconciler must not record the archived task again.
const tombstone = "-"

// QueueKeyPrefixes returns the prefixes of the dead-letter keys that belong
// to the tasks of queue q alone (failed attempts and task-to-record maps),
// for a caller that removes a queue it alone uses (agentq dev on a shared
// Redis). Records, the index, the live set and the counter are shared:
// remove records with Purge, and never those keys.
func QueueKeyPrefixes(q string) []string {
	return []string{keyPrefix + "p:" + q + ":", keyPrefix + "t:" + q + ":"}
}
