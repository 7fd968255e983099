package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// TestRunBinary runs the whole bench with the binary row on a tiny scale,
// driving a freshly built agentq worker, and checks the row and that the
// child process is gone when Run returns.
func TestRunBinary(t *testing.T) {
	t.Parallel()
	bin := binarytest.Build(t)
	srv := redistest.StartExclusive(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	r, err := Run(ctx, rdb, registry(t), Options{
		Tasks: 200, Reps: 1, Loops: 2, Rate: 100, LatencyFor: 100 * time.Millisecond,
		Binary: bin, BinaryEnv: binarytest.Environ("AGENTQ_REDIS_URL=" + srv.URL),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	last := r.Rows[len(r.Rows)-1]
	if last.Name != "process, agentq binary" || len(last.Runs) != 1 {
		t.Fatalf("last row = %q with %d runs, want the binary row with 1", last.Name, len(last.Runs))
	}
	run := last.Runs[0]
	if run.Agentq.Tasks != 200 || run.Agentq.TasksPerSec <= 0 || run.Agentq.CommandsPerTask <= 0 {
		t.Errorf("binary side is not a measurement: %+v", run.Agentq)
	}
	if run.Agentq.RoundTripsPerTask != nil || last.AgentqRoundTripsPerTask != nil || last.ExtraRoundTripsPerTask != nil {
		t.Errorf("round trips of another process reported as counted: %+v", last)
	}
	if run.Raw.RoundTripsPerTask == nil || run.Raw.TasksPerSec <= 0 {
		t.Errorf("raw side of the binary row not measured in-process: %+v", run.Raw)
	}
	if len(last.Targets) != 1 || last.Targets[0].Want != "ratio >= 1.00" {
		t.Errorf("binary row targets = %+v", last.Targets)
	}
	// Run stopped and reaped the child: no process runs the binary.
	if pids := running(t, bin); len(pids) > 0 {
		t.Errorf("processes %v still run %s after Run returned", pids, bin)
	}
}

// TestBinaryPhaseFails: a binary that does not start or exits at once
// fails the row with what happened, and Run does not wait for tasks that
// nobody processes.
func TestBinaryPhaseFails(t *testing.T) {
	t.Parallel()
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) on PATH")
	}
	rdb := exclusive(t)
	tests := []struct {
		name, bin, want string
	}{
		{"missing", "/nonexistent/agentq", "start worker process /nonexistent/agentq"},
		{"exits at once", falseBin, "worker process exited early (exit status 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newBench(rdb, registry(t), Options{Tasks: 10, Binary: tt.bin, BinaryEnv: []string{}}.withDefaults())
			if err != nil {
				t.Fatal(err)
			}
			err = b.inPhase(context.Background(), "binary", func(ctx context.Context) error {
				_, err := b.binaryPhase(ctx)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("binary phase error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// running returns the ids of the processes whose executable is bin, from
// /proc; it skips the test where there is no /proc.
func running(t *testing.T, bin string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc to look for a leaked worker process")
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}
