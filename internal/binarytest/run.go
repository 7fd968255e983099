package binarytest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/redistest"
)

// RunTimeoutDefault bounds Run unless Options.Timeout says otherwise.
const RunTimeoutDefault = 2 * time.Minute

// Result is how a process run by Run ended.
type Result struct {
	Stdout, Stderr string
	// Code is the exit code; -1 if the process was killed (see
	// Options.Timeout).
	Code int
	// Took is how long the process ran.
	Took time.Duration
}

// Run runs bin with args to completion with o.Dir, o.Env and o.Stdin, and
// returns what it wrote and its exit code. It fails the test if bin cannot
// be run.
func Run(t testing.TB, bin string, args []string, o Options) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(o.Timeout, RunTimeoutDefault))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdin = o.Dir, o.Env, strings.NewReader(o.Stdin)
	redistest.KillWithParent(cmd)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return r
}

// Environ returns the test process's environment without its AGENTQ_*
// settings, followed by extra: what a test gives the binary so that
// nothing from outside changes its configuration.
func Environ(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTQ_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// WaitFor polls cond every 20ms until it holds, and fails the test if
// within passes first. It returns how long it waited. A binary's own
// clocks decide when it acts, so there is no clock to inject instead.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
