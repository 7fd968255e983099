package cli

import (
	"testing"

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
