package agentq

import (
	"maps"
	"os"
	"slices"
)

// warnMissingAPIKeys warns, once per llm provider, about an api_key_env
// whose variable is unset or empty where the worker runs: every llm.chat
// step of that provider would fail (permanently) at its first attempt. It
// names the provider and the variable, never a value. lookup is
// os.LookupEnv but in tests.
func (r *Runtime) warnMissingAPIKeys(lookup func(string) (string, bool)) {
	providers := r.cfg.LLM.Providers
	for _, name := range slices.Sorted(maps.Keys(providers)) {
		env := providers[name].APIKeyEnv
		if env == "" {
			continue
		}
		if v, ok := lookup(env); ok && v != "" {
			continue
		}
		r.log.Warn().Str("provider", name).Str("api_key_env", env).
			Msg("llm provider " + name + ": environment variable " + env + " (api_key_env) is not set or empty; its llm.chat steps will fail until it is set where the worker runs")
	}
}

// lookupEnv is os.LookupEnv, the environment llm.chat reads its keys from.
var lookupEnv = os.LookupEnv
