// Command agentq runs AI-agent steps as Redis-backed tasks. It only wires
// signals to the cli package, where the commands live.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentq/agentq/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli.Main{}).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
