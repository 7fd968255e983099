package agentq_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/redistest"
)

// TestHealthGoAPI: Runtime.Health as a Go program calls it: a worker of
// this runtime makes --worker pass while it runs, not before or after;
// a dashboard URL that is no http URL is an error, not a report.
func TestHealthGoAPI(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Redis.URL = redistest.Start(t).URL
	cfg.Log.Level = "error"
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard, Name: "mytool"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ctx := context.Background()
	check := func() agentq.HealthReport {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		rep, err := rt.Health(ctx, agentq.HealthOptions{Worker: true})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := check(); rep.Healthy || len(rep.Checks) != 2 || !rep.Checks[0].OK || rep.Failed()[0] != agentq.HealthWorker {
		t.Fatalf("before the worker: %+v", rep)
	}
	// The hint names the program as the user runs it, not "agentq", with
	// this runtime's Redis (Runtime.CommandLine).
	if rep := check(); !strings.Contains(rep.Checks[1].Message, "is `mytool --redis-url ") || !strings.Contains(rep.Checks[1].Message, " worker` running there?") {
		t.Fatalf("before the worker, the hint = %q, want it to name mytool", rep.Checks[1].Message)
	}
	w, err := rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rep := check(); !rep.Healthy; rep = check() {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never showed: %+v", rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.Close()
	if rep := check(); rep.Healthy {
		t.Fatalf("after the worker closed: %+v", rep)
	}
	for _, bad := range []string{"ftp://x", "127.0.0.1:8080", "http://", "://"} {
		if _, err := rt.Health(ctx, agentq.HealthOptions{Dashboard: bad}); err == nil {
			t.Errorf("dashboard %q: no error", bad)
		}
	}
}
