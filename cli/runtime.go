package cli

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// options are the runtime options of Main's commands: the program named
// in hints (go run detected), the --config given, Main's kinds and
// middleware, logs to Stderr.
func (m *Main) options(configFile string) agentq.Options {
	words := m.program(os.Args, debug.ReadBuildInfo)
	for i, w := range words {
		words[i] = agentq.ShellQuote(w)
	}
	return agentq.Options{
		Name:       strings.Join(words, " "),
		ConfigFile: configFile,
		LogTo:      m.Stderr,
		Register:   m.Register,
		Middleware: m.Middleware,
	}
}

// newRuntime builds the runtime of one command from cfg.
func (m *Main) newRuntime(cfg config.Config, configFile string, quiet bool) (*agentq.Runtime, error) {
	return m.newRuntimeWith(cfg, configFile, quiet, nil)
}

// newRuntimeWith is newRuntime with workflows defined in code beside the
// configured ones; adjust, if given, changes the options last.
func (m *Main) newRuntimeWith(cfg config.Config, configFile string, quiet bool, wfs map[string]runs.Workflow, adjust ...func(*agentq.Options)) (*agentq.Runtime, error) {
	opts := m.options(configFile)
	opts.Workflows = wfs
	for _, f := range adjust {
		f(&opts)
	}
	if quiet {
		// Commands that print their results log warnings and errors only.
		log, err := logging.New(m.Stderr, cfg.Log.Level, cfg.Log.Format)
		if err != nil {
			return nil, usageError{err}
		}
		log = log.Level(max(log.GetLevel(), zerolog.WarnLevel))
		opts.Logger = &log
	}
	rt, err := agentq.New(cfg, opts)
	var ce *agentq.ConfigError
	if errors.As(err, &ce) {
		return nil, usageError{err}
	}
	return rt, err
}

// open loads the configuration for cmd and builds its runtime; quiet
// keeps the logs to warnings and errors.
func (m *Main) open(cmd *cobra.Command, rf *rootFlags, quiet bool) (*agentq.Runtime, error) {
	cfg, err := m.load(cmd, rf)
	if err != nil {
		return nil, err
	}
	return m.newRuntime(cfg, rf.configFile, quiet)
}

// openRedis is open, then a check that Redis answers; the caller closes
// the runtime.
func (m *Main) openRedis(cmd *cobra.Command, rf *rootFlags, quiet bool) (*agentq.Runtime, error) {
	return m.openRedisWith(cmd, rf, quiet, nil)
}

// openRedisWith is openRedis with workflows defined in code and, when
// edit is set, the loaded configuration changed by it first.
func (m *Main) openRedisWith(cmd *cobra.Command, rf *rootFlags, quiet bool, wfs map[string]runs.Workflow, edit ...func(*config.Config)) (*agentq.Runtime, error) {
	cfg, err := m.load(cmd, rf)
	if err != nil {
		return nil, err
	}
	for _, e := range edit {
		e(&cfg)
	}
	rt, err := m.newRuntimeWith(cfg, rf.configFile, quiet, wfs)
	if err != nil {
		return nil, err
	}
	if err := rt.Ping(cmd.Context()); err != nil {
		_ = rt.Close()
		return nil, err
	}
	return rt, nil
}

// waitRedis is for the long-running commands (worker, dashboard): while
// Redis does not answer it waits and tries again with capped backoff,
// logging each try, so that a supervisor restarting Redis and agentq
// together sees no restart storm. A config that no retry fixes (a bad URL,
// wrong credentials, an unknown database) fails at once as a usage error.
// When ctx ends first, ok is false and err nil: the caller just stops.
func waitRedis(ctx context.Context, rt *agentq.Runtime) (ok bool, err error) {
	err = rt.WaitForRedis(ctx)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		log := rt.Logger()
		log.Info().Msg("stopped before Redis answered")
		return false, nil
	}
	return false, connectError(err)
}

// connectError marks a permanent connection error as the user's input.
func connectError(err error) error {
	var ce *queue.ConnectError
	if errors.As(err, &ce) && ce.Permanent {
		return usageError{err}
	}
	return err
}

// usage marks a part's refusal of the configuration as the user's input.
func usage(err error) error {
	var ce *agentq.ConfigError
	if errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}
