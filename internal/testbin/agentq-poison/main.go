// Command agentq-poison is agentq built the way a Go user builds their own
// binary (cli.Main with Register), with task kinds that misbehave on
// purpose. The survival tests (internal/survivetest) run it as a worker to
// show that one bad step never takes the process, or the other steps, down.
// It is a test fixture: nothing installs it.
//
// Kinds:
//   - test.ok succeeds at once;
//   - test.panic panics: with its message ("value"), with an error value
//     ("error"), with nil ("nil"), or by dereferencing a nil pointer
//     ("nil_deref");
//   - test.hang blocks: until its context ends ("ctx"), or forever,
//     ignoring its context ("ignore");
//   - test.fail returns an error whose text is its message, as a handler
//     that quotes a tool's answer does; permanent when asked.
//
// A panic in a goroutine that a handler starts is not among them: Go lets
// nobody recover it, and it ends any Go process, agentq's worker included.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentq/agentq/cli"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// OKArgs is the payload of test.ok.
type OKArgs struct {
	// N tells tasks apart; unused.
	N int `json:"n,omitempty"`
}

// Kind names the kind.
func (OKArgs) Kind() string { return "test.ok" }

// PanicArgs is the payload of test.panic.
type PanicArgs struct {
	// Mode is value, error, nil or nil_deref.
	Mode string `json:"mode"`
	// Message is the panic value of modes value and error.
	Message string `json:"message,omitempty"`
}

// Kind names the kind.
func (PanicArgs) Kind() string { return "test.panic" }

// HangArgs is the payload of test.hang.
type HangArgs struct {
	// Mode is ctx (return when the context ends) or ignore (never return).
	Mode string `json:"mode"`
}

// Kind names the kind.
func (HangArgs) Kind() string { return "test.hang" }

// FailArgs is the payload of test.fail.
type FailArgs struct {
	// Message is the error's text.
	Message string `json:"message"`
	// Permanent makes the failure permanent.
	Permanent bool `json:"permanent,omitempty"`
}

// Kind names the kind.
func (FailArgs) Kind() string { return "test.fail" }

type node struct{ next *node }

func register(reg *queue.Registry) error {
	return errors.Join(
		queue.Register(reg, "", func(context.Context, *jobs.Step, OKArgs) error { return nil }),
		queue.Register(reg, "", func(_ context.Context, _ *jobs.Step, a PanicArgs) error {
			switch a.Mode {
			case "value":
				panic(a.Message)
			case "error":
				panic(errors.New(a.Message))
			case "nil":
				panic(nil) // recovered as a *runtime.PanicNilError since Go 1.21
			case "nil_deref":
				var n *node
				_ = n.next.next // a runtime error, as a bug in a handler makes
			}
			return jobs.Permanent(fmt.Errorf("test.panic: unknown mode %q", a.Mode))
		}),
		queue.Register(reg, "", func(ctx context.Context, _ *jobs.Step, a HangArgs) error {
			if a.Mode == "ignore" {
				<-make(chan struct{}) // never returns, whatever ctx says
			}
			<-ctx.Done()
			return ctx.Err()
		}),
		queue.Register(reg, "", func(_ context.Context, _ *jobs.Step, a FailArgs) error {
			err := errors.New(a.Message)
			if a.Permanent {
				return jobs.Permanent(err)
			}
			return err
		}),
	)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli.Main{Register: register}).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
