package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// withoutExample lists the commands that may lack an Example: cobra's own
// completion and its shells. The test is generic: a new command fails it
// until it has examples or is listed here.
var withoutExample = []string{"agentq completion"}

// walk calls fn for cmd and every command below it.
func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		walk(c, fn)
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	t.Parallel()
	root := (&Main{Name: "agentq"}).rootCommand()
	n := 0
	walk(root, func(c *cobra.Command) {
		path := c.CommandPath()
		if c.Hidden || c.Name() == "help" ||
			slices.ContainsFunc(withoutExample, func(p string) bool { return path == p || strings.HasPrefix(path, p+" ") }) {
			return
		}
		n++
		t.Run(path, func(t *testing.T) {
			if strings.TrimSpace(c.Example) == "" {
				t.Fatalf("%s has no Example", path)
			}
			for _, line := range strings.Split(c.Example, "\n") {
				if line == "" || strings.HasPrefix(line, "  # ") {
					continue // a blank line or a comment between examples
				}
				if !strings.HasPrefix(line, "  ") || !strings.Contains(line, "agentq ") {
					t.Fatalf("%s: example line %q is not an indented agentq command", path, line)
				}
				if strings.HasSuffix(line, " ") {
					t.Fatalf("%s: example line %q ends in a space", path, line)
				}
			}
		})
	})
	if n < 20 {
		t.Fatalf("checked %d commands; the tree walk is broken", n)
	}
}

// TestExamplesNameTheProgram: a binary named otherwise shows its own name.
func TestExamplesNameTheProgram(t *testing.T) {
	t.Parallel()
	root := (&Main{Name: "mybot"}).rootCommand()
	c, _, err := root.Find([]string{"dlq", "list"})
	if err != nil || !strings.HasPrefix(c.Example, "  mybot dlq list") || strings.Contains(c.Example, "agentq ") {
		t.Fatalf("example = %q, %v", c.Example, err)
	}
}

// TestFlagHelp checks every flag's help for the errors issue 10 found: a
// default that contradicts the text (pflag's "(default -1)" after a
// "(default: ...)"), and one command's help copied into another's.
func TestFlagHelp(t *testing.T) {
	t.Parallel()
	root := (&Main{Name: "agentq"}).rootCommand()
	walk(root, func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			t.Run(c.CommandPath()+" --"+f.Name, func(t *testing.T) {
				usage := f.Usage
				shown := f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" && f.DefValue != "[]"
				if shown && strings.Contains(usage, "(default") {
					t.Fatalf("help %q says its default and pflag adds (default %s)", usage, f.DefValue)
				}
				if strings.HasPrefix(f.DefValue, "-") {
					t.Fatalf("default %s is a negative sentinel shown in help", f.DefValue)
				}
				for _, verb := range []string{"replay", "purge"} {
					if c.Name() != verb && c.Parent() != nil && c.Parent().Name() == "dlq" && regexp.MustCompile(`\b`+verb+`\b`).MatchString(usage) {
						t.Fatalf("%s's --%s help speaks of %s: %q", c.Name(), f.Name, verb, usage)
					}
				}
			})
		})
	})
}

// TestEveryDurationFlagTakesDays walks the tree: every flag of type
// duration reads 1d12h, and a bad value names the flag and the value.
func TestEveryDurationFlagTakesDays(t *testing.T) {
	t.Parallel()
	root := (&Main{Name: "agentq"}).rootCommand()
	n := 0
	walk(root, func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() != "duration" {
				return
			}
			n++
			t.Run(c.CommandPath()+" --"+f.Name, func(t *testing.T) {
				if err := f.Value.Set("1d12h"); err != nil {
					t.Fatalf("Set(1d12h): %v", err)
				}
				if got := f.Value.String(); got != (36 * time.Hour).String() {
					t.Fatalf("value = %s, want 36h", got)
				}
				err := c.Flags().Parse([]string{"--" + f.Name, "2w"})
				if err == nil || !strings.Contains(err.Error(), "--"+f.Name) || !strings.Contains(err.Error(), `"2w"`) {
					t.Fatalf("bad value: %v", err)
				}
			})
		})
	})
	if n < 5 {
		t.Fatalf("found %d duration flags; want enqueue's four and bench's", n)
	}
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		code string
		exit int
	}{
		{"usage", usagef("--limit must not be negative"), CodeUsage, ExitUsage},
		{"cobra usage", errors.New(`unknown flag: --bogus`), CodeUsage, ExitUsage},
		{"dead letter", usageError{&dlq.NotFoundError{ID: "7"}}, CodeNotFound, ExitUsage},
		{"run", fmt.Errorf("get: %w", runs.ErrNotFound), CodeNotFound, ExitError},
		{"marked not found", notFoundf("no run with id %q", "x"), CodeNotFound, ExitUsage},
		{"config file", usageError{configError{errors.New("config: bad")}}, CodeConfig, ExitUsage},
		{"config field", &config.FieldError{Key: "retry.base"}, CodeConfig, ExitUsage},
		{"part refuses config", usageError{&agentq.ConfigError{Err: errors.New("x")}}, CodeConfig, ExitUsage},
		{"redis down", &queue.ConnectError{Where: "redis://127.0.0.1:1/0"}, CodeRedis, ExitError},
		{"redis url wrong", usageError{&queue.ConnectError{Permanent: true}}, CodeRedis, ExitUsage},
		{"partial", partialError{"2 of 3 replays failed"}, CodePartial, ExitPartial},
		{"network", fmt.Errorf("read: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), CodeRedis, ExitError},
		{"deadline", fmt.Errorf("replay: %w", context.DeadlineExceeded), CodeRuntime, ExitError},
		{"other", errors.New("all 3 replays failed"), CodeRuntime, ExitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := errorCode(tc.err); got != tc.code {
				t.Errorf("errorCode = %q, want %q", got, tc.code)
			}
			if got := exitCode(tc.err); got != tc.exit {
				t.Errorf("exitCode = %d, want %d", got, tc.exit)
			}
		})
	}
}

// TestJSONErrors: with --json, a failure is one JSON object on stderr with
// the same exit code as without; without --json it is the usual line.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}
	tests := []struct {
		name string
		args []string
		code string
		exit int
	}{
		{"bad flag value", []string{"dlq", "list", "--since", "3w", "--json"}, CodeUsage, ExitUsage},
		{"unknown flag after --json", []string{"run", "list", "--json", "--bogus"}, CodeUsage, ExitUsage},
		{"bad id", []string{"dlq", "show", "x", "--json"}, CodeNotFound, ExitUsage},
		{"config", []string{"config", "--json"}, CodeConfig, ExitUsage},
		{"redis", []string{"breaker", "list", "--json"}, CodeRedis, ExitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := env
			if tc.code == CodeConfig {
				e = append(e, "AGENTQ_RETRY_BASE=soon")
			}
			r := run(t, e, "", tc.args...)
			var je jsonError
			if err := json.Unmarshal([]byte(r.err), &je); err != nil {
				t.Fatalf("stderr is not one JSON object: %q", r.err)
			}
			if r.code != tc.exit || je.Code != tc.code || je.ExitCode != tc.exit || je.Error == "" || r.out != "" {
				t.Fatalf("exit %d, stderr %+v, stdout %q; want exit %d code %s", r.code, je, r.out, tc.exit, tc.code)
			}
			// The same without --json: the text line, the same exit code.
			plain := slices.DeleteFunc(slices.Clone(tc.args), func(a string) bool { return a == "--json" })
			r2 := run(t, e, "", plain...)
			if r2.code != tc.exit || strings.HasPrefix(r2.err, "{") || !strings.Contains(r2.err, ": "+je.Error) {
				t.Fatalf("without --json: exit %d stderr %q", r2.code, r2.err)
			}
		})
	}
}
