package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Every Redis key this package writes is built here. Each carries a {hash
// tag} so that a multi-key script touching one key family stays in one
// Cluster slot.

// keyHash returns the hex digest that names an idempotency key in Redis and
// in task ids; the key itself may hold secrets or be long.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// dedupeKey holds the task id that took an idempotency key in queue q
// within the dedupe window. Its hash tag is the queue's, as on asynq's keys
// of q, so that one script claims the key and writes the task on Redis
// Cluster too; an idempotency key is therefore unique per queue.
func dedupeKey(q, hash string) string { return agentqQueuePrefix(q) + "dedupe:" + hash }

// agentqQueuePrefix starts the keys agentq writes for queue q.
func agentqQueuePrefix(q string) string { return "agentq:{" + q + "}:" }

// taskIDForKey is the deterministic task id of the first enqueue of an
// idempotency key in queue q, so that a re-enqueue after the window still
// collides with a task that is still in asynq. The queue is part of it, as
// of the key's scope: one key in two queues is two tasks with two ids. It
// has no "-": asynqmon shows a task id only up to its first dash (it
// expects UUIDs).
func taskIDForKey(q, key string) string { return "k_" + keyHash(q+"\x00"+key) }

// asynq's own keys, as asynq v0.26 builds them (internal/base), for the
// enqueue script (enqueue.go), the lease sweeper (recover.go), the queue
// gauges (depth.go) and the server records (servers.go). All of one queue
// share the {qname} tag; a server record's key is tagged by its server.

// asynqAllQueues is asynq's set of queue names (base.AllQueues); it has no
// hash tag, so no script that touches a queue's keys may touch it on Cluster.
const asynqAllQueues = "asynq:queues"

// asynqAllServers is asynq's sorted set of server record keys, scored by
// their expiry in Unix seconds (base.AllServers), read by Servers. It has
// no hash tag.
const asynqAllServers = "asynq:servers"

// asynqServerKeyPrefix starts a server record's key (base.ServerInfoKey:
// asynq:servers:{host:pid:server_id}).
const asynqServerKeyPrefix = "asynq:servers:{"

func asynqQueuePrefix(q string) string       { return "asynq:{" + q + "}:" }
func asynqTaskPrefix(q string) string        { return asynqQueuePrefix(q) + "t:" }
func asynqTaskKey(q, id string) string       { return asynqTaskPrefix(q) + id }
func asynqPendingKey(q string) string        { return asynqQueuePrefix(q) + "pending" }
func asynqScheduledKey(q string) string      { return asynqQueuePrefix(q) + "scheduled" }
func asynqActiveKey(q string) string         { return asynqQueuePrefix(q) + "active" }
func asynqLeaseKey(q string) string          { return asynqQueuePrefix(q) + "lease" }
func asynqRetryKey(q string) string          { return asynqQueuePrefix(q) + "retry" }
func asynqProcessedTotalKey(q string) string { return asynqQueuePrefix(q) + "processed" }
func asynqFailedTotalKey(q string) string    { return asynqQueuePrefix(q) + "failed" }

// asynqArchivedKey is asynq's sorted set of the archived task ids of queue
// q (asynq v0.26, internal/base.ArchivedKey), read by the Inspector.
func asynqArchivedKey(q string) string { return asynqQueuePrefix(q) + "archived" }

// asynqPausedKey is asynq's marker of a paused queue (asynq v0.26,
// internal/base.PausedKey), set and read by the Inspector.
func asynqPausedKey(q string) string { return asynqQueuePrefix(q) + "paused" }

func asynqProcessedKey(q string, t time.Time) string {
	return asynqQueuePrefix(q) + "processed:" + t.UTC().Format("2006-01-02")
}
func asynqFailedKey(q string, t time.Time) string {
	return asynqQueuePrefix(q) + "failed:" + t.UTC().Format("2006-01-02")
}

// QueueKeyPrefixes returns the prefixes of every key of queue q, asynq's
// and agentq's (dedupe claims), for a caller that removes a queue it alone
// uses (agentq dev on a shared Redis). asynq's set of queue names is
// shared: remove q from it (Inspector.ForgetQueue), never the key.
func QueueKeyPrefixes(q string) []string { return []string{asynqQueuePrefix(q), agentqQueuePrefix(q)} }
