package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentq/agentq/internal/bench"
	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// TestBenchRefusesBadOptions: bad bench options are a usage error, found
// before Redis is reached (nothing listens on the URL).
func TestBenchRefusesBadOptions(t *testing.T) {
	t.Parallel()
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"more loops than concurrency", []string{"--loops", "20", "--concurrency", "10"}, "loops must be between 1 and concurrency (10), got 20"},
		{"no reps", []string{"--reps", "-1"}, "bench: --reps must be at least 1, got -1"},
		{"zero reps", []string{"--reps", "0"}, "bench: --reps must be at least 1, got 0"},
		{"zero tasks", []string{"--tasks", "0"}, "bench: --tasks must be at least 1, got 0"},
		{"negative tasks", []string{"--tasks", "-5"}, "bench: --tasks must be at least 1, got -5"},
		{"missing binary", []string{"--binary", "/nonexistent/agentq"}, "--binary /nonexistent/agentq is not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, env, "", append([]string{"bench"}, tt.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.err, tt.want) {
				t.Fatalf("exit %d stderr %q, want exit 2 and %q", r.code, r.err, tt.want)
			}
		})
	}
}

// TestBenchLoopsFromConfig: without --loops, K is the configuration's
// worker.loops, as a worker of that configuration runs.
func TestBenchLoopsFromConfig(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_WORKER_LOOPS=3"}, "", "bench", "--tasks", "50", "--reps", "1",
		"--latency-for", "50ms", "--rate", "100", "--runs=false", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
		t.Fatalf("bench --json printed no report: %v\n%s", err, r.out)
	}
	if rep.Environment.Loops != 3 {
		t.Fatalf("K = %d, want worker.loops (3)", rep.Environment.Loops)
	}
}

// TestBenchJSON runs agentq bench small, with the binary row, through the
// command line: the full chain in-process and a worker process built from
// this module.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	bin := binarytest.Build(t)
	srv := redistest.StartExclusive(t)
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL}, "", "bench", "--tasks", "100", "--reps", "1", "--loops", "2",
		"--latency-for", "50ms", "--rate", "100", "--binary", bin, "--runs=false", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
		t.Fatalf("bench --json printed no report: %v\n%s", err, r.out)
	}
	if len(rep.Rows) != 7 || rep.Rows[6].Name != "process, agentq binary" || rep.Environment.Loops != 2 {
		t.Fatalf("report rows %d, environment %+v, want 7 rows ending with the binary one", len(rep.Rows), rep.Environment)
	}
	// The ledger's write (HSET, PEXPIRE per keyed success, pipelined or
	// inside a script) is what the full chain adds in Redis commands.
	for _, row := range rep.Rows[3:5] {
		if extra := row.AgentqCommandsPerTask - row.RawCommandsPerTask; extra < 1.5 {
			t.Errorf("%s: agentq costs %.2f commands per task more than raw asynq, want at least the ledger's 2: is the full chain in?", row.Name, extra)
		}
		if row.ExtraRoundTripsPerTask == nil {
			t.Errorf("%s: round trips not counted", row.Name)
		}
	}
}

// TestBenchNonEmptyHintKeepsTheServer: the hint for a non-empty database
// points at another database of the same server, never at a default one.
func TestBenchNonEmptyHintKeepsTheServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if err := srv.Client(t).Set(t.Context(), "somebody", "else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL}, "", "bench", "--tasks", "10")
	want := "--redis-url redis://" + srv.Addr + "/15"
	if r.code != ExitUsage || !strings.Contains(r.err, want) {
		t.Fatalf("exit %d stderr %q, want exit 2 and a hint with %q", r.code, r.err, want)
	}
}

// TestBenchRunsRow: agentq bench has the runs row by default, before the
// binary row; with the run engine's temporary stub it fails naming the row.
func TestBenchRunsRow(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL}, "", "bench", "--tasks", "30", "--reps", "1", "--loops", "2",
		"--latency-for", "50ms", "--rate", "100", "--json")
	if r.code != ExitOK && strings.Contains(r.err, "not built yet") {
		if !strings.Contains(r.err, "runs, 3 steps") {
			t.Fatalf("the stub's failure does not name the row: %s", r.err)
		}
		t.Skipf("the run engine is the stub: %s", r.err)
	}
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
		t.Fatalf("bench --json printed no report: %v\n%s", err, r.out)
	}
	if len(rep.Rows) != 7 || rep.Rows[6].Name != "runs, 3 steps" {
		t.Fatalf("rows = %+v, want 7 ending with the runs row", rep.Rows)
	}
	row := rep.Rows[6]
	if row.Runs[0].Agentq.Tasks != 30 || row.Ratio.Median <= 0 || row.AgentqRoundTripsPerTask == nil {
		t.Fatalf("runs row = %+v", row)
	}
}
