package agentq_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/agentq/agentq/internal/redistest"
)

// TestMain gives the examples, which read AGENTQ_* like the agentq
// command, a Redis of their own and quiet logs.
func TestMain(m *testing.M) {
	srv, err := redistest.Reserve()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("AGENTQ_REDIS_URL", srv.URL)
	os.Setenv("AGENTQ_LOG_LEVEL", "error")
	redistest.Main(m)
}
