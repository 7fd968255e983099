package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// loadEnv runs Load on env alone and returns its warnings and error.
func loadEnv(t *testing.T, env ...string) (Config, []string, error) {
	t.Helper()
	opts, _ := setup(t, testBundle{env: env})
	var warnings []string
	opts.Warn = func(msg string) { warnings = append(warnings, msg) }
	cfg, err := Load(opts)
	return cfg, warnings, err
}

// TestUnknownEnv is issue 7 defect 7: unknown AGENTQ_* variables were
// ignored silently. A near miss of a setting is refused like an unknown file
// key; any other is a warning; the repo's own tooling variables pass quietly.
func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-env-value"
	tests := []struct {
		name    string
		env     []string
		wantErr []string // substrings of the error; nil means Load succeeds
		warn    []string // substrings, one warning each, in order
	}{
		{name: "transposed letters", env: []string{"AGENTQ_REDIS_ULR=redis://x:6379/0"},
			wantErr: []string{"config: unknown environment variable AGENTQ_REDIS_ULR (did you mean AGENTQ_REDIS_URL?)"}},
		{name: "missing letter", env: []string{"AGENTQ_RETRY_BAS=2s"},
			wantErr: []string{"AGENTQ_RETRY_BAS (did you mean AGENTQ_RETRY_BASE?)"}},
		{name: "lower case", env: []string{"AGENTQ_worker_concurrency=3"},
			wantErr: []string{"AGENTQ_worker_concurrency (did you mean AGENTQ_WORKER_CONCURRENCY?)"}},
		{name: "near miss of a secret keeps the value out", env: []string{"AGENTQ_REDIS_PASWORD=" + secret},
			wantErr: []string{"AGENTQ_REDIS_PASWORD (did you mean AGENTQ_REDIS_PASSWORD?)"}},
		{name: "reported with the other problems", env: []string{"AGENTQ_RETRY_BASE=abc", "AGENTQ_LOG_LEVLE=debug"},
			wantErr: []string{`retry.base: "abc" is not a duration`, "AGENTQ_LOG_LEVLE (did you mean AGENTQ_LOG_LEVEL?)"}},
		{name: "unrelated name warns", env: []string{"AGENTQ_NOT_A_KEY=1"},
			warn: []string{"environment variable AGENTQ_NOT_A_KEY is not an agentq setting and is ignored"}},
		{name: "section name warns", env: []string{"AGENTQ_REDIS=redis://x"},
			warn: []string{"AGENTQ_REDIS is not an agentq setting"}},
		{name: "docker-compose password", env: []string{"AGENTQ_DASHBOARD_PASSWORD=" + secret},
			warn: []string{"AGENTQ_DASHBOARD_PASSWORD is not an agentq setting and is ignored: docker-compose.yml reads it to set AGENTQ_DASHBOARD_BASIC_AUTH_PASSWORD"}},
		{name: "docker-compose user", env: []string{"AGENTQ_DASHBOARD_USER=admin"},
			warn: []string{"AGENTQ_DASHBOARD_USER is not an agentq setting and is ignored: docker-compose.yml reads it to set AGENTQ_DASHBOARD_BASIC_AUTH_USER"}},
		{name: "file-only keys", env: []string{"AGENTQ_WORKFLOWS=x", "AGENTQ_WORKFLOWS_NIGHTLY_QUEUE=q", "AGENTQ_BREAKERS_OVERRIDES_API_COOLDOWN=1s"},
			warn: []string{
				"AGENTQ_BREAKERS_OVERRIDES_API_COOLDOWN is ignored: breakers.overrides is read from the config file only",
				"AGENTQ_WORKFLOWS is ignored: workflows is read from the config file only",
				"AGENTQ_WORKFLOWS_NIGHTLY_QUEUE is ignored: workflows is read from the config file only",
			}},
		{name: "odd characters are quoted", env: []string{"AGENTQ_X Y\n=1"},
			warn: []string{`environment variable "AGENTQ_X Y\n" is not`}},
		{name: "tooling variables pass", env: []string{"AGENTQ_BENCH_FULL=1", "AGENTQ_E2E_DEAD=20000", "AGENTQ_TEST_FAULT_SCENARIO=kill"}},
		{name: "empty values are not read", env: []string{"AGENTQ_REDIS_ULR=", "AGENTQ_NOT_A_KEY="}},
		{name: "other prefixes", env: []string{"HOME=/root", "agentq_redis_ulr=x", "AGENTQREDIS_URL=x"}},
		{name: "settings pass", env: []string{"AGENTQ_REDIS_URL=redis://x:6379/0", "AGENTQ_RETRY_BASE=2s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, warnings, err := loadEnv(t, tt.env...)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Load: %v", err)
			}
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Load error = %v, want it to contain %q", err, want)
				}
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the value: %v", err)
			}
			if len(warnings) != len(tt.warn) {
				t.Fatalf("warnings = %q, want %d", warnings, len(tt.warn))
			}
			for i, want := range tt.warn {
				if !strings.Contains(warnings[i], want) || !strings.HasPrefix(warnings[i], "config: ") {
					t.Errorf("warning %d = %q, want it to start with \"config: \" and contain %q", i, warnings[i], want)
				}
				if strings.Contains(warnings[i], secret) {
					t.Errorf("warning shows the value: %q", warnings[i])
				}
			}
		})
	}
}

// TestRepoEnvNotRefused: every AGENTQ_* variable the repository's own files
// set or document is a setting or a documented exception, so that following
// the README or docker-compose.yml never makes Load refuse to start.
func TestRepoEnvNotRefused(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`AGENTQ_[A-Za-z0-9_]+`)
	seen := map[string]bool{}
	for _, path := range []string{"../README.md", "../docker-compose.yml", "../Dockerfile", "../.ci/run"} {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range re.FindAllString(string(data), -1) {
			seen[name] = true
		}
	}
	if !seen["AGENTQ_REDIS_URL"] || !seen["AGENTQ_DASHBOARD_PASSWORD"] {
		t.Fatalf("found %v; the scan missed variables the repository is known to use", seen)
	}
	// The README quotes these as examples of near misses that are refused:
	// they must stay refused, so that the example stays true.
	examples := map[string]bool{"AGENTQ_REDIS_ULR": true, "AGENTQ_retry_base": true}
	for name := range seen {
		_, _, err := loadEnv(t, name+"=1")
		refused := err != nil && strings.Contains(err.Error(), "environment variable")
		switch {
		case examples[name] && !refused:
			t.Errorf("%s, quoted in the README as refused, is accepted", name)
		case !examples[name] && refused:
			t.Errorf("%s, used in the repository, is refused: %v", name, err)
		}
	}
}
