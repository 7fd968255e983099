package breaker

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Every Redis key this package writes is built here. A breaker's keys share
// the {hash tag} of its name, so that its scripts stay in one Cluster slot.

// tag returns the hash tag of a breaker: its name, or a digest of it when
// the name holds a brace (which would end the tag early).
func tag(name string) string {
	if name != "" && !strings.ContainsAny(name, "{}") {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:8])
}

// stateKey is the hash of one breaker: stateField, consecField, openedField,
// nextProbeField, and per rate bucket "c:<start>" (calls) and "f:<start>"
// (failures), start in unix seconds.
func stateKey(name string) string { return "agentq:breaker:{" + tag(name) + "}" }

// probeKey is held, with a random token, by the one call probing an open
// breaker.
func probeKey(name string) string { return "agentq:breaker:{" + tag(name) + "}:probe" }

// namesKey is the set of breaker names that have recorded a failure, for
// listing. Names whose state has expired are removed by List.
func namesKey() string { return "agentq:{breakers}:names" }

// Fields of stateKey.
const (
	stateField     = "state"
	consecField    = "consec"
	openedField    = "opened_at"
	nextProbeField = "next_probe"
)

// BreakerKeys returns the keys of breaker name (its state and its probe
// lock), for a caller that removes breakers it alone used.
func BreakerKeys(name string) []string { return []string{stateKey(name), probeKey(name)} }

// NamesKey returns the key of the set of breaker names shared by every
// process: remove members from it, never the key.
func NamesKey() string { return namesKey() }
