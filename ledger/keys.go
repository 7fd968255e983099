package ledger

import (
	"crypto/sha256"
	"encoding/hex"
)

// Every Redis key this package writes is built here. An entry's key is
// tagged with its own key hash, so entries spread over a Cluster and each
// write touches one slot.

// KeyHash returns the hex digest that names an idempotency key in Redis and
// in logs; the key itself may hold secrets or be long. It is the same
// digest queue uses for its dedupe keys.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// entryKey holds the recorded success of an idempotency key.
func entryKey(key string) string { return "agentq:{" + KeyHash(key) + "}:ledger" }

// EntryKey returns the key of the recorded success of idempotency key key,
// for a caller that removes the entries of keys it alone used.
func EntryKey(key string) string { return entryKey(key) }
