package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// envPrefix starts every environment variable Load reads.
const envPrefix = "AGENTQ_"

// envTestPrefix is reserved for the switches of agentq's own tests and
// tools: Load never reads or reports a variable that starts with it.
const envTestPrefix = "AGENTQ_TEST_"

// envTooling are AGENTQ_* variables that agentq's tests and benchmarks read
// (internal/bench, dlq's end-to-end test); they are not settings and are not
// reported. New ones should start with envTestPrefix.
var envTooling = map[string]bool{
	"AGENTQ_BENCH_FULL": true,
	"AGENTQ_E2E_DEAD":   true,
}

// envHints are AGENTQ_* variables that are not settings but that a user may
// well have set, each with what it is and the setting they may have meant.
// They are warned about, never refused: docker-compose.yml reads the first
// two from the shell that runs it.
var envHints = map[string]string{
	"AGENTQ_DASHBOARD_PASSWORD": "docker-compose.yml reads it to set AGENTQ_DASHBOARD_BASIC_AUTH_PASSWORD; " +
		"agentq itself reads only AGENTQ_DASHBOARD_BASIC_AUTH_PASSWORD",
	"AGENTQ_DASHBOARD_USER": "docker-compose.yml reads it to set AGENTQ_DASHBOARD_BASIC_AUTH_USER; " +
		"agentq itself reads only AGENTQ_DASHBOARD_BASIC_AUTH_USER",
}

// envNames maps each setting's environment variable to its key.
var envNames = func() map[string]string {
	m := make(map[string]string, len(fields))
	for _, f := range fields {
		m[envName(f.key)] = f.key
	}
	return m
}()

// envFileOnly are the environment names of the file-only keys.
var envFileOnly = map[string]string{
	envName(workflowsKey): workflowsKey,
	envName(overridesKey): overridesKey,
}

// checkEnv looks at every AGENTQ_* variable of env (name to value) that is
// set, non-empty and not a setting. A near miss of a setting (within two
// edits, or differing only in case) is an error naming the setting meant,
// like an unknown key in the file: the value the user meant to set would
// otherwise be lost. Any other is a warning, as the variable may be set
// for another program. Messages name the variable, never its value.
func checkEnv(env map[string]string) (warnings []string, errs []error) {
	known := slices.Collect(maps.Keys(envNames))
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if env[name] == "" || !strings.HasPrefix(name, envPrefix) || envNames[name] != "" ||
			envTooling[name] || strings.HasPrefix(name, envTestPrefix) {
			continue
		}
		if hint, ok := envHints[name]; ok {
			warnings = append(warnings, fmt.Sprintf("config: environment variable %s is not an agentq setting and is ignored: %s", name, hint))
			continue
		}
		if key := fileOnlyKey(name); key != "" {
			warnings = append(warnings, fmt.Sprintf("config: environment variable %s is ignored: %s is read from the config file only", quoteName(name), key))
			continue
		}
		if near := closest(strings.ToUpper(name), known); near != "" {
			errs = append(errs, fmt.Errorf("config: unknown environment variable %s (did you mean %s?)", quoteName(name), near))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("config: environment variable %s is not an agentq setting and is ignored "+
			"(settings are AGENTQ_ and the key upper-cased, e.g. AGENTQ_RETRY_BASE)", quoteName(name)))
	}
	return warnings, errs
}

// fileOnlyKey returns the file-only key that name tries to set
// (AGENTQ_WORKFLOWS, AGENTQ_WORKFLOWS_NIGHTLY_QUEUE ...), or "".
func fileOnlyKey(name string) string {
	for env, key := range envFileOnly {
		if name == env || strings.HasPrefix(name, env+"_") {
			return key
		}
	}
	return ""
}

// quoteName shows a variable name as it is when it is plain, quoted when it
// holds anything else, so that a message shows it unambiguously on one line.
func quoteName(name string) string {
	for _, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Sprintf("%q", name)
		}
	}
	return name
}

// closest returns the candidate nearest to s if it is within two edits, the
// smallest such candidate on a tie; "" if none is.
func closest(s string, candidates []string) string {
	const maxEdits = 2
	best, bestDist := "", maxEdits+1
	for _, c := range candidates {
		if abs(len(c)-len(s)) > maxEdits {
			continue // the distance is at least the difference in length
		}
		if d := editDistance(s, c); d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
