package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// Error codes: the "code" of the error a command given --json prints on
// Stderr as {"error": "...", "code": "...", "exit_code": N}. They are
// stable: scripts may branch on them. The exit code is the same as
// without --json.
const (
	// CodeUsage is bad input: flags, arguments, a payload (exit 2).
	CodeUsage = "usage"
	// CodeNotFound is an id or name that names nothing: a dead letter, a
	// run, a workflow (exit 2).
	CodeNotFound = "not_found"
	// CodeConfig is a configuration agentq refuses: the file, AGENTQ_*
	// variables, flags that set keys (exit 2).
	CodeConfig = "config"
	// CodeRedis is Redis unreachable or failing (exit 1; exit 2 when the
	// Redis URL, credentials or TLS setup is wrong).
	CodeRedis = "redis"
	// CodePartial is a batch or bulk replay that did some items and not
	// others (exit 3).
	CodePartial = "partial"
	// CodeRuntime is any other failure while running (exit 1).
	CodeRuntime = "runtime"
)

// notFoundError marks an error that names something that does not exist.
type notFoundError struct{ err error }

func (e notFoundError) Error() string { return e.err.Error() }
func (e notFoundError) Unwrap() error { return e.err }

// configError marks an error of the configuration.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// exitCode is the process exit code for err (not nil).
func exitCode(err error) int {
	var ue usageError
	var pe partialError
	var fe *config.FieldError
	switch {
	case errors.As(err, &pe):
		return ExitPartial
	case errors.As(err, &ue), errors.As(err, &fe), isCobraUsage(err):
		return ExitUsage
	}
	return ExitError
}

// errorCode is the Code* constant for err (not nil).
func errorCode(err error) string {
	var (
		pe   partialError
		nf   notFoundError
		ce   configError
		fe   *config.FieldError
		ace  *agentq.ConfigError
		conn *queue.ConnectError
		rerr redis.Error
		nerr net.Error
	)
	switch {
	case errors.As(err, &pe):
		return CodePartial
	case errors.As(err, &nf), errors.Is(err, dlq.ErrNotFound), errors.Is(err, runs.ErrNotFound):
		return CodeNotFound
	case errors.As(err, &conn), errors.As(err, &rerr) && !errors.Is(err, redis.Nil), errors.As(err, new(redisError)),
		// context.DeadlineExceeded is a net.Error too: a deadline is not Redis's.
		errors.As(err, &nerr) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		return CodeRedis
	case errors.As(err, &ce), errors.As(err, &fe), errors.As(err, &ace):
		return CodeConfig
	case exitCode(err) == ExitUsage:
		return CodeUsage
	}
	return CodeRuntime
}

// jsonError is an error as a command given --json prints it.
type jsonError struct {
	Error    string `json:"error"`
	Code     string `json:"code"`
	ExitCode int    `json:"exit_code"`
}

// writeJSONError writes err as one line of JSON.
func writeJSONError(w io.Writer, err error, exit int) {
	b, _ := json.Marshal(jsonError{Error: err.Error(), Code: errorCode(err), ExitCode: exit})
	_, _ = w.Write(append(b, '\n'))
}

// redisError marks a failure that is Redis's though no Redis error is
// wrapped, such as health's failed redis check (CodeRedis).
type redisError struct{ err error }

func (e redisError) Error() string { return e.err.Error() }
func (e redisError) Unwrap() error { return e.err }

// wantsJSON reports whether cmd, the command that ran (or failed to
// parse), was given --json. When its flags did not parse (an unknown
// command or flag, a bad argument count), args are read for a --json
// anywhere before a "--", so that cobra's own errors are JSON too; a
// "--json" that is the value of a flag taking one (enqueue --payload
// --json) is that flag's value, not a request for JSON.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		if f := cmd.Flags().Lookup("json"); f != nil && f.Value.Type() == "bool" && f.Changed {
			return f.Value.String() == "true"
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "--":
			return false
		case "--json", "--json=true", "--json=1", "--json=t", "--json=TRUE", "--json=True", "--json=T":
			return true
		}
		if takesValue(cmd, a) {
			i++ // its value, whatever it looks like
		}
	}
	return false
}

// takesValue reports whether arg is a flag of cmd, written without "=",
// whose value is the next argument.
func takesValue(cmd *cobra.Command, arg string) bool {
	if cmd == nil || !strings.HasPrefix(arg, "-") || strings.Contains(arg, "=") {
		return false
	}
	var f *pflag.Flag
	if name, ok := strings.CutPrefix(arg, "--"); ok {
		f = cmd.Flags().Lookup(name)
	} else if len(arg) == 2 {
		f = cmd.Flags().ShorthandLookup(arg[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}
