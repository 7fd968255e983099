package config

import (
	"strings"
	"testing"
	"time"
)

// TestDurationsAcceptDays: days (d) are read in every duration value, from
// the file, the environment, a flag and a workflow's step, and a bad
// value's error names the key, the value and where it came from.
func TestDurationsAcceptDays(t *testing.T) {
	t.Parallel()
	file := `dlq:
  retention_age: 30d
workflows:
  w:
    steps:
      - name: a
        kind: noop
        timeout: 1d12h
`
	cfg := mustLoad(t, testBundle{env: []string{"AGENTQ_LEDGER_RETENTION=7d"}, args: []string{"--retry-base", "1d"}, file: file + "retry:\n  max: 2d\n"})
	for _, tc := range []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"file", cfg.DLQ.RetentionAge, 30 * 24 * time.Hour},
		{"env", cfg.Ledger.Retention, 7 * 24 * time.Hour},
		{"flag", cfg.Retry.Base, 24 * time.Hour},
		{"step", cfg.Workflows["w"].Steps[0].Timeout, 36 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	opts, _ := setup(t, testBundle{env: []string{"AGENTQ_LEDGER_RETENTION=7w"}})
	_, err := Load(opts)
	want := `config: ledger.retention: "7w" is not a duration: unknown unit "w" (use ns, us, ms, s, m, h or d) (from AGENTQ_LEDGER_RETENTION)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load = %v, want %s", err, want)
	}
}
