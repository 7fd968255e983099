// Package cli is the agentq command line as a Go API: Main runs the same
// commands as the agentq binary, so a Go user can build their own binary
// with extra task kinds (Register) and middleware (Middleware). It holds
// commands only: each parses its flags, loads the configuration and calls
// package agentq, which builds the client, the worker and every part.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// Exit codes.
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitError is a runtime failure: Redis unreachable, a server error.
	ExitError = 1
	// ExitUsage is bad input: flags, arguments, config, payload.
	ExitUsage = 2
	// ExitPartial means a batch enqueued some lines and rejected others.
	ExitPartial = 3
)

// Main runs agentq commands.
type Main struct {
	// Stdin, Stdout and Stderr default to the process's.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Environ is the environment read for AGENTQ_* settings; nil means
	// os.Environ().
	Environ []string
	// Register adds custom task kinds next to the built-ins; optional.
	Register func(reg *queue.Registry) error
	// Middleware wraps every step after the built-ins; optional.
	Middleware []jobs.Middleware
	// Name is the program named in usage, error messages and the commands
	// agentq prints for a user to paste, such as the dead-letter replay
	// hint (agentq.Options.Name). Default: the base name of os.Args[0], so
	// a Go user's own binary names itself; under `go run`, the hints say
	// `go run ./path/to/main`.
	Name string
}

// name is Name or the running program's base name.
func (m *Main) name() string {
	if m.Name != "" {
		return m.Name
	}
	if len(os.Args) > 0 {
		if b := filepath.Base(os.Args[0]); b != "." && b != string(filepath.Separator) {
			return b
		}
	}
	return "agentq"
}

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// usageError marks errors that are the caller's input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// notFoundf is usagef for an id or name that names nothing (CodeNotFound).
func notFoundf(format string, args ...any) error {
	return usageError{notFoundError{fmt.Errorf(format, args...)}}
}

// partialError marks a batch that rejected some lines.
type partialError struct{ msg string }

func (e partialError) Error() string { return e.msg }

// Run runs the command in args (without the program name) and returns the
// process exit code. Errors are printed once, to Stderr.
func (m *Main) Run(ctx context.Context, args []string) int {
	if m.Stdin == nil {
		m.Stdin = os.Stdin
	}
	if m.Stdout == nil {
		m.Stdout = os.Stdout
	}
	if m.Stderr == nil {
		m.Stderr = os.Stderr
	}
	// go-redis prints dial failures itself; agentq reports them once, with
	// the password masked, so its own logger is silenced.
	redis.SetLogger(quietRedisLogger{})
	root := m.rootCommand()
	root.SetArgs(args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	if wantsJSON(cmd, args) {
		writeJSONError(m.Stderr, err, code)
	} else {
		fmt.Fprintln(m.Stderr, m.name()+": "+err.Error())
	}
	return code
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs an argument", "required flag"} {
		if len(msg) >= len(p) && contains(msg, p) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// rootFlags are the settings every command shares.
type rootFlags struct {
	configFile string
}

// flagKeys maps flag names to config keys; a flag overrides its key only
// when given.
var flagKeys = map[string]string{
	"redis-url":    "redis.url",
	"log-level":    "log.level",
	"log-format":   "log.format",
	"concurrency":  "worker.concurrency",
	"loops":        "worker.loops",
	"queues":       "worker.queues",
	"metrics-addr": "worker.metrics_addr",
	"addr":         "dashboard.addr",
	"read-only":    "dashboard.read_only",
}

func (m *Main) rootCommand() *cobra.Command {
	rf := &rootFlags{}
	root := &cobra.Command{
		Use:   m.name(),
		Short: "agentq runs AI-agent steps as Redis-backed tasks that survive production",
		Long: `agentq runs every agent step as a Redis-backed task (asynq) with exponential
retry and jitter, idempotent enqueue, typed outcomes and a dashboard.

Configuration: agentq.yaml (or --config FILE) < AGENTQ_* environment < flags.`,
		Example: `  agentq dev
  agentq worker --concurrency 32
  agentq enqueue http.call --payload '{"method":"GET","url":"https://example.com"}' --key step-1
  agentq dlq list --since 1d
  agentq run show run-42 --json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       agentq.Version().String(),
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&rf.configFile, "config", "", "config file (default ./agentq.yaml if present)")
	pf.String("redis-url", "", "Redis URL, e.g. redis://127.0.0.1:6379/0 (redis.url, AGENTQ_REDIS_URL)")
	pf.String("log-level", "", "debug, info, warn or error (log.level)")
	pf.String("log-format", "", "auto, json or console (log.format)")
	root.AddCommand(
		m.configCommand(rf),
		m.enqueueCommand(rf),
		m.workerCommand(rf),
		m.dashboardCommand(rf),
		m.devCommand(rf),
		m.benchCommand(rf),
		m.dlqCommand(rf),
		m.budgetCommand(rf),
		m.breakerCommand(rf),
		m.runCommand(rf),
		m.versionCommand(),
		m.healthCommand(rf),
	)
	// Added here rather than when the command runs, so that it is a group
	// like the others below.
	root.InitDefaultCompletionCmd()
	m.registerCompletions(root, rf)
	refuseUnknownSubcommands(root)
	jsonEverywhere(root)
	acceptDays(root)
	nameExamples(root, m.name())
	return root
}

// acceptDays makes every duration flag of cmd and the commands below it
// read days as the configuration does (--since 3d, --timeout 1d12h):
// config.AcceptDays, once for all commands, so that none is missed.
func acceptDays(cmd *cobra.Command) {
	config.AcceptDays(cmd.Flags())
	config.AcceptDays(cmd.PersistentFlags())
	for _, c := range cmd.Commands() {
		acceptDays(c)
	}
}

// nameExamples writes the program's name into the Examples of cmd and the
// commands below it, which are written for a binary named agentq.
func nameExamples(cmd *cobra.Command, name string) {
	if name != "agentq" {
		cmd.Example = strings.ReplaceAll(cmd.Example, "agentq ", name+" ")
	}
	for _, c := range cmd.Commands() {
		nameExamples(c, name)
	}
}

// refuseUnknownSubcommands makes every command below root that groups
// others and has no Run of its own (dlq, completion) print its help when
// given nothing and refuse any argument, as breaker does: cobra then says
// `unknown command "x" for "agentq dlq"` and Run exits 2. Without it cobra
// prints such a group's help for `agentq dlq bogus` and exits 0. The root
// itself already refuses an unknown command.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if !cmd.HasParent() || !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// oneArg is the Args of a command that takes exactly one argument, what
// (such as "a dead-letter id"): a missing or extra argument is named, with
// where to find one (see, a command without the program name; optional),
// instead of cobra's "accepts 1 arg(s), received 0".
func oneArg(what, see string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		hint := ""
		if see != "" {
			hint = " (see " + cmd.Root().Name() + " " + see + ")"
		}
		switch {
		case len(args) == 0:
			return usagef("%s needs %s%s", commandName(cmd), what, hint)
		case len(args) > 1:
			return usagef("%s takes one argument, %s; got %d: %s", commandName(cmd), what, len(args), shortQuote(strings.Join(args, " ")))
		}
		return nil
	}
}

// commandName is cmd's path without the program name: "dlq show".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// jsonEverywhere gives every command below cmd that has no --json of its
// own a hidden one, so that --json anywhere in argv parses: a group (dlq,
// run) then reports an unknown subcommand, not an unknown flag --json,
// and a command whose output is logs or a script says so, as JSON.
func jsonEverywhere(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		jsonEverywhere(c)
	}
	if cmd.Flags().Lookup("json") != nil {
		return
	}
	asJSON := cmd.Flags().Bool("json", false, "")
	_ = cmd.Flags().MarkHidden("json")
	if cmd.HasSubCommands() || !cmd.HasParent() {
		return // a group prints its help or refuses an unknown subcommand
	}
	what := "logs (use --log-format json)"
	if cmd.HasParent() && cmd.Parent().Name() == "completion" {
		what = "a shell script"
	}
	pre := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if *asJSON {
			return usagef("%s prints %s; it takes no --json", commandName(c), what)
		}
		if pre != nil {
			return pre(c, args)
		}
		return nil
	}
}

// load reads the effective configuration for cmd.
func (m *Main) load(cmd *cobra.Command, rf *rootFlags) (config.Config, error) {
	keys := map[string]string{}
	for name, key := range flagKeys {
		if cmd.Flags().Lookup(name) != nil {
			keys[name] = key
		}
	}
	var warnings []string
	cfg, err := config.Load(config.Options{File: rf.configFile, Flags: cmd.Flags(), FlagKeys: keys, Environ: m.Environ,
		Warn: func(msg string) { warnings = append(warnings, msg) }})
	if len(warnings) > 0 {
		// Once per command, through a logger set up as the config says
		// (the defaults when it did not load).
		level, format := cfg.Log.Level, cfg.Log.Format
		if err != nil {
			level, format = config.Default().Log.Level, config.Default().Log.Format
		}
		if log, lerr := logging.New(m.Stderr, level, format); lerr == nil {
			for _, w := range warnings {
				log.Warn().Msg(w)
			}
		}
	}
	if err != nil {
		return cfg, usageError{configError{err}}
	}
	return cfg, nil
}

func (m *Main) configCommand(rf *rootFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration, secrets masked",
		Long: `Print the configuration every command runs with, secrets masked: the config
file (agentq.yaml or --config) over the defaults, AGENTQ_* variables over the
file, flags over both. Values decided at run time are shown resolved:
redis.url is the Redis commands connect to (redis://127.0.0.1:6379/0 when
none is set), worker.loops the dequeue loops a worker runs on this machine.
The output loads back as a config file.`,
		Example: `  agentq config
  agentq config --json | jq .worker
  AGENTQ_WORKER_CONCURRENCY=32 agentq --config prod.yaml config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := m.load(cmd, rf)
			if err != nil {
				return err
			}
			cfg = cfg.Effective()
			if asJSON {
				return cfg.WriteJSON(m.Stdout)
			}
			return cfg.WriteYAML(m.Stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of YAML")
	return cmd
}
