package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestWantsJSON: --json asks for JSON errors, also when the command's flags
// did not parse, but not when it is another flag's value.
func TestWantsJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		parse bool // parse the flags first, as a command that ran
		want  bool
	}{
		{"parsed --json", []string{"k", "--json"}, true, true},
		{"parsed, no --json", []string{"k"}, true, false},
		{"payload value --json", []string{"k", "--payload", "--json"}, true, false},
		{"short payload value --json", []string{"k", "-p", "--json"}, true, false},
		{"unparsed --json", []string{"k", "--bogus", "--json"}, false, true},
		{"unparsed, --json as a value", []string{"k", "--payload", "--json", "--bogus"}, false, false},
		{"unparsed, --payload=x then --json", []string{"k", "--payload=x", "--json"}, false, true},
		{"after --", []string{"k", "--", "--json"}, false, false},
		{"bool flag before --json", []string{"k", "--dry-run", "--json"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := &cobra.Command{Use: "enqueue"}
			cmd.Flags().StringP("payload", "p", "", "")
			cmd.Flags().Bool("dry-run", false, "")
			cmd.Flags().Bool("json", false, "")
			if tc.parse {
				if err := cmd.ParseFlags(tc.args); err != nil {
					t.Fatal(err)
				}
			}
			if got := wantsJSON(cmd, tc.args); got != tc.want {
				t.Fatalf("wantsJSON(%q) = %v, want %v", tc.args, got, tc.want)
			}
		})
	}
}

// TestParseSince: durations with days and RFC 3339 times; 0 is no limit,
// as leaving --since out; what is refused says why.
func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     time.Time
		err      string
	}{
		{"days", "3d", now.Add(-72 * time.Hour), ""},
		{"zero is no limit", "0", time.Time{}, ""},
		{"zero with a unit", "0s", time.Time{}, ""},
		{"time", "2026-11-30T00:00:00Z", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), ""},
		{"negative", "-1h", time.Time{}, "must not be negative"},
		{"future", "2027-01-01T00:00:00Z", time.Time{}, "in the future"},
		{"out of range", "200000d", time.Time{}, "out of range"},
		{"neither", "3w", time.Time{}, "neither a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseSince(tc.in, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseSince(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}
