package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentq/agentq/dlq"
)

// selectorCommand is a command with the dead-letter selector flags, parsed
// from args, as replay and purge register them.
func selectorCommand(t testing.TB, args ...string) (*cobra.Command, *selectors, error) {
	t.Helper()
	var sel selectors
	cmd := &cobra.Command{Use: "x"}
	sel.register(cmd, "every record", 0)
	return cmd, &sel, cmd.ParseFlags(args)
}

func TestCheckID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"one", "1", true},
		{"large", "9223372036854775807", true},
		{"zero", "0", false},
		{"leading zero", "042", false},
		{"sign", "+42", false},
		{"negative", "-1", false},
		{"space", " 42", false},
		{"word", "no-such-id", false},
		{"glob", "*", false},
		{"empty", "", false},
		{"overflow", "9223372036854775808", false},
		{"key path", "1:../x", false},
		{"replay task id", "3f2a-r1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("checkID(%q) = %v, want ok %v", tt.id, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "no dead letter with id "+shortQuote(tt.id)) {
				t.Errorf("error %q does not name the id", err)
			}
		})
	}
	// A huge argument gives a short error.
	if err := checkID(strings.Repeat("x", 1<<20)); err == nil || len(err.Error()) > 200 {
		t.Errorf("huge id: error of %d bytes", len(err.Error()))
	}
}

// TestReplayRate: dlq replay refuses a --rate dlq.CheckReplayRate
// refuses, with a usage error (exit 2) naming --rate, before Redis is
// dialed; a rate it accepts, however small, gets as far as Redis (here
// unreachable).
func TestReplayRate(t *testing.T) {
	t.Parallel()
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}
	tests := []struct {
		name     string
		rate     string
		wantExit int
		wantErr  string
	}{
		{"negative", "-1", ExitUsage, "--rate must be a finite, non-negative number of replays per second, got -1"},
		{"nan", "NaN", ExitUsage, "--rate must be a finite, non-negative number of replays per second, got NaN"},
		{"inf", "Inf", ExitUsage, "--rate must be a finite, non-negative number of replays per second, got +Inf"},
		{"not a number", "fast", ExitUsage, `invalid argument "fast" for "--rate"`},
		{"no limit", "0", ExitError, "redis"},
		{"tiny", "1e-300", ExitError, "redis"},
		{"ten per second", "10", ExitError, "redis"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, env, "", "dlq", "replay", "--all", "--rate", tc.rate)
			if r.code != tc.wantExit || !strings.Contains(strings.ToLower(r.err), strings.ToLower(tc.wantErr)) {
				t.Fatalf("--rate %s: exit %d stderr %q; want exit %d and %q", tc.rate, r.code, r.err, tc.wantExit, tc.wantErr)
			}
		})
	}
}

func TestSelectorsFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(dlq.Filter) bool
	}{
		{"class any case", []string{"--class", " Rate_Limited "}, "", func(f dlq.Filter) bool { return f.Class == "rate_limited" }},
		{"statuses", []string{"--status", "dead,Deleted"}, "", func(f dlq.Filter) bool {
			return len(f.Statuses) == 2 && f.Statuses[1] == dlq.StatusDeleted
		}},
		{"since", []string{"--since", "24h"}, "", func(f dlq.Filter) bool { return f.Since.Equal(now.Add(-24 * time.Hour)) }},
		{"huge since", []string{"--since", "2562047h"}, "", func(f dlq.Filter) bool { return f.Since.Before(now) }},
		{"since in days", []string{"--since", "1d12h"}, "", func(f dlq.Filter) bool { return f.Since.Equal(now.Add(-36 * time.Hour)) }},
		{"since a time", []string{"--since", "2026-01-02T03:04:05Z"}, "", func(f dlq.Filter) bool {
			return f.Since.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		}},
		{"run", []string{"--run", "run-7"}, "", func(f dlq.Filter) bool { return f.RunID == "run-7" }},
		{"bad since", []string{"--since", "3w"}, `--since "3w" is neither a duration (24h, 3d, 1d12h) nor an RFC 3339 time`, nil},
		{"unknown class", []string{"--class", "oops"}, `--class: unknown class "oops"`, nil},
		{"empty status part", []string{"--status", "dead,"}, `--status: unknown status ""`, nil},
		{"negative since", []string{"--since", "-1h"}, `--since must not be negative, got "-1h"`, nil},
		{"negative limit", []string{"--limit", "-1"}, "--limit must not be negative, got -1", nil},
		{"huge class is cut", []string{"--class", strings.Repeat("c", 5000)}, `--class: unknown class "cccc`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, sel, err := selectorCommand(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			flt, err := sel.filter(now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || len(err.Error()) > 300 {
					t.Fatalf("filter error = %v, want %q in a short message", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(flt) {
				t.Fatalf("filter = %+v, %v", flt, err)
			}
		})
	}
}

func TestCheckSelectionChecksIDs(t *testing.T) {
	t.Parallel()
	cmd, sel, err := selectorCommand(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSelection(cmd, sel, []string{"12", "7"}); err != nil {
		t.Fatalf("valid ids: %v", err)
	}
	err = checkSelection(cmd, sel, []string{"12", "x7"})
	if err == nil || !strings.Contains(err.Error(), `no dead letter with id "x7"`) {
		t.Fatalf("bad id: %v", err)
	}
}
