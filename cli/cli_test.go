package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m, binarytest.Cleanup) }

type runResult struct {
	code     int
	out, err string
}

func run(t *testing.T, environ []string, stdin string, args ...string) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Environ: environ}
	code := m.Run(context.Background(), args)
	return runResult{code: code, out: out.String(), err: errb.String()}
}

func TestEnqueueInProcess(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_LOG_FORMAT=json"}

	// Payload from stdin, JSON output.
	r := run(t, env, `{}`, "enqueue", "noop", "--payload", "-", "--key", "k1", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(r.out), &res); err != nil || res["duplicate"] != false || res["queue"] != "default" || res["id"] == "" {
		t.Fatalf("json = %q", r.out)
	}
	r = run(t, env, `{}`, "enqueue", "noop", "--payload", "-", "--key", "k1", "--json")
	if r.code != ExitOK || !strings.Contains(r.out, `"duplicate": true`) || !strings.Contains(r.out, res["id"].(string)) {
		t.Fatalf("duplicate: exit %d out %q", r.code, r.out)
	}
	if n := srv.Client(t).DBSize(context.Background()).Val(); n == 0 {
		t.Fatal("nothing was written to Redis")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// No Redis is reachable here: every case must fail before connecting.
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"enqueue", "noop", "--payload", "@/nonexistent/p.json"}, "--payload @/nonexistent/p.json"},
		{[]string{"enqueue", "noop", "--payload", "{}", "--max-retry", "-2"}, "--max-retry must not be negative"},
		{[]string{"enqueue", "--batch", "x.jsonl", "--key", "k"}, "--key does not apply to --batch"},
		{[]string{"enqueue", "a", "b", "--payload", "{}"}, "exactly one KIND"},
		{[]string{"enqueue", "noop", "--payload", "{}", "--frobnicate"}, "unknown flag"},
		{[]string{"nosuchcommand"}, "unknown command"},
		{[]string{"enqueue", "noop", "--payload", `{"x":1}`}, "schema violation"},
		{[]string{"config", "--config", "/nonexistent/agentq.yaml"}, "agentq.yaml"},
	}
	for _, tt := range tests {
		r := run(t, env, "", tt.args...)
		if r.code != ExitUsage || !strings.Contains(r.err, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and %q", tt.args, r.code, r.err, tt.want)
		}
	}
	r := run(t, env, "", "enqueue", "noop", "--payload", "{}")
	if r.code != ExitError || !strings.Contains(r.err, "cannot reach Redis") {
		t.Errorf("unreachable redis: exit %d stderr %q", r.code, r.err)
	}
}

func TestBenchRefusesNonEmptyDatabase(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if err := srv.Client(t).Set(context.Background(), "precious", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := run(t, []string{"AGENTQ_REDIS_URL=" + srv.URL}, "", "bench", "--tasks", "10")
	if r.code != ExitUsage || !strings.Contains(r.err, "holds 1 keys") {
		t.Fatalf("exit %d stderr %q", r.code, r.err)
	}
	if v := srv.Client(t).Get(context.Background(), "precious").Val(); v != "1" {
		t.Fatal("bench touched a non-empty database")
	}
}

// TestUnknownEnvReported: an AGENTQ_* variable that is not a setting is
// warned about once on stderr; a near miss of one is refused (issue 7).
func TestUnknownEnvReported(t *testing.T) {
	t.Parallel()
	r := run(t, []string{"AGENTQ_NOT_A_KEY=s3cret", "AGENTQ_LOG_FORMAT=json"}, "", "config")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.err), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"warn"`) ||
		!strings.Contains(lines[0], "AGENTQ_NOT_A_KEY is not an agentq setting") || strings.Contains(r.err, "s3cret") {
		t.Fatalf("stderr = %q, want one warning line naming AGENTQ_NOT_A_KEY without its value", r.err)
	}
	r = run(t, []string{"AGENTQ_REDIS_ULR=redis://127.0.0.1:1/0"}, "", "config")
	if r.code != ExitUsage || !strings.Contains(r.err, "unknown environment variable AGENTQ_REDIS_ULR (did you mean AGENTQ_REDIS_URL?)") {
		t.Fatalf("near miss: exit %d stderr %q, want exit 2 naming AGENTQ_REDIS_URL", r.code, r.err)
	}
}
