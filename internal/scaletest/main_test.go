//go:build unix

package scaletest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("scaletest: skipped in -short mode (it starts a Redis Cluster and a Sentinel setup of redis-server processes)")
		os.Exit(0)
	}
	// go-redis logs every refused dial while a master is down: the tests
	// count those failures themselves.
	redis.SetLogger(quietLogger{})
	redistest.Main(m, binarytest.Cleanup)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var reportMu sync.Mutex

// report logs line and appends it to AGENTQ_TEST_FAULT_REPORT when set
// (go test ./... shows a passing package's output only with -v).
func report(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	path := os.Getenv("AGENTQ_TEST_FAULT_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, "  "+line); err != nil {
		t.Errorf("report: %v", err)
	}
}
