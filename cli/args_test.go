package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestArgErrorsNameWhatIsMissing: no command answers a missing or extra
// argument with cobra's bare "accepts 1 arg(s), received 0".
func TestArgErrorsNameWhatIsMissing(t *testing.T) {
	t.Parallel()
	walk((&Main{Name: "agentq"}).rootCommand(), func(c *cobra.Command) {
		if c.Args == nil {
			return
		}
		t.Run(c.CommandPath(), func(t *testing.T) {
			for _, args := range [][]string{nil, {"a", "b", "c"}} {
				err := c.Args(c, args)
				if err == nil {
					continue
				}
				if msg := err.Error(); strings.Contains(msg, "arg(s)") || strings.Contains(msg, "received") {
					t.Errorf("%s with %d arguments: %q, cobra's bare message", c.CommandPath(), len(args), msg)
				}
			}
		})
	})
	c, _, err := (&Main{Name: "agentq"}).rootCommand().Find([]string{"dlq", "show"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Args(c, nil); err == nil || err.Error() != "dlq show needs a dead-letter id (see agentq dlq list)" {
		t.Fatalf("dlq show without an id: %v", err)
	}
}

// TestEveryCommandTakesJSON: --json parses on every command, so that
// cobra's errors come out as JSON and a group reports its unknown
// subcommand; a runnable one either prints JSON (its --json is shown in
// help) or refuses --json saying what it prints.
func TestEveryCommandTakesJSON(t *testing.T) {
	t.Parallel()
	walk((&Main{Name: "agentq"}).rootCommand(), func(c *cobra.Command) {
		f := c.Flags().Lookup("json")
		if f == nil {
			t.Errorf("%s has no --json", c.CommandPath())
			return
		}
		if f.Hidden && c.HasParent() && !c.HasSubCommands() && c.PreRunE == nil {
			t.Errorf("%s has a hidden --json and nothing refusing it", c.CommandPath())
		}
	})
}
