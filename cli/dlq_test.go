package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

type dlqBundle struct {
	env   []string
	conf  string // agentq.yaml with workflow research
	store *dlq.Store
	insp  *asynq.Inspector
	ids   map[string]string // task id -> record id
}

// setupDLQ gives a test a Redis with three dead letters made the way the
// worker makes them: two http.call in the default queue (one with a secret
// in its payload), one noop in "critical" from workflow "research".
func setupDLQ(t *testing.T) *dlqBundle {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	store, err := dlq.New(rdb, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := &dlqBundle{env: []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_LOG_FORMAT=json"}, store: store,
		insp: asynq.NewInspectorFromRedisClient(rdb), ids: map[string]string{}, conf: filepath.Join(t.TempDir(), "agentq.yaml")}
	if err := os.WriteFile(b.conf, []byte("workflows:\n  research:\n    queue: critical\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, d := range []dlq.Death{
		{Queue: "default", TaskID: "t-a", Kind: "http.call", RunID: "run-1", Key: "ka",
			Payload: []byte(`{"url":"http://127.0.0.1:1/x","headers":{"Authorization":"Bearer s3cr3t"}}`),
			Final:   dlq.Attempt{At: now.Add(-3 * time.Hour), Attempt: 3, Class: jobs.ClassRetryable, Error: "http 503 Service Unavailable"}},
		{Queue: "default", TaskID: "t-b", Kind: "http.call", RunID: "run-1", Step: "fetch", Key: "kb",
			Payload: []byte(`{"url":"http://127.0.0.1:1/y"}`),
			Final:   dlq.Attempt{At: now.Add(-time.Hour), Attempt: 1, Class: jobs.ClassPermanent, Error: "http 400 Bad Request"}},
		{Queue: "critical", TaskID: "t-c", Kind: "noop", Workflow: "research", Payload: []byte(`{}`),
			Final: dlq.Attempt{At: now.Add(-time.Minute), Attempt: 1, Class: jobs.ClassPanic, Error: "panic: boom"}},
	} {
		d.MaxAttempts, d.Source, d.Final.TaskID = 3, dlq.SourceWorker, d.TaskID
		id, _, err := store.Dead(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		b.ids[d.TaskID] = id
	}
	return b
}

// run runs agentq with the bundle's Redis and config file.
func (b *dlqBundle) run(t *testing.T, args ...string) runResult {
	t.Helper()
	return run(t, b.env, "", append(args, "--config", b.conf)...)
}

func (b *dlqBundle) list(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	r := b.run(t, append([]string{"dlq", "list", "--json"}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("dlq list %v: exit %d: %s", args, r.code, r.err)
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("dlq list --json: %v: %q", err, r.out)
	}
	return out
}

func TestDLQListSelectorsAndJSON(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	all := b.list(t)
	if len(all) != 3 {
		t.Fatalf("list = %v", all)
	}
	for _, f := range []string{"id", "queue", "kind", "workflow", "run_id", "step", "key", "payload", "error", "attempts", "failed_at", "status"} {
		if _, ok := all[0][f]; !ok {
			t.Errorf("list --json lacks %q: %v", f, all[0])
		}
	}
	if all[1]["step"] != "fetch" || all[0]["step"] != "" {
		t.Errorf("list --json steps = %v, %v; want fetch, empty", all[1]["step"], all[0]["step"])
	}
	// Newest failure first; secrets in payloads are masked in output.
	if all[0]["id"] != b.ids["t-c"] || all[2]["id"] != b.ids["t-a"] {
		t.Fatalf("order = %v", all)
	}
	if p, _ := json.Marshal(all[2]["payload"]); strings.Contains(string(p), "s3cr3t") {
		t.Fatalf("secret in list output: %s", p)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--queue", "critical"}, []string{"t-c"}},
		{[]string{"--workflow", "research"}, []string{"t-c"}},
		{[]string{"--kind", "http.call"}, []string{"t-b", "t-a"}},
		{[]string{"--error", "bad REQUEST"}, []string{"t-b"}},
		{[]string{"--class", "retryable"}, []string{"t-a"}},
		{[]string{"--since", "2h"}, []string{"t-c", "t-b"}},
		{[]string{"--status", "dead"}, []string{"t-c", "t-b", "t-a"}},
		{[]string{"--status", "resolved,replayed"}, nil},
		{[]string{"--limit", "1"}, []string{"t-c"}},
	}
	for _, tt := range tests {
		got := b.list(t, tt.args...)
		var ids []string
		for _, r := range got {
			ids = append(ids, r["task_id"].(string))
		}
		if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
			t.Errorf("list %v = %v, want %v", tt.args, ids, tt.want)
		}
	}
	r := b.run(t, "dlq", "list")
	if r.code != ExitOK || !strings.Contains(r.out, "ID") || !strings.Contains(r.out, "http 503") {
		t.Fatalf("table: exit %d out %q", r.code, r.out)
	}
	lines := strings.Split(r.out, "\n")
	if head := strings.Fields(lines[0]); len(head) < 7 || head[5] != "RUN" || head[6] != "STEP" {
		t.Fatalf("table header %q, want RUN then STEP", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > 6 && f[0] == b.ids["t-b"] && (f[5] != "run-1" || f[6] != "fetch") {
			t.Fatalf("row of t-b = %q, want run run-1 step fetch", l)
		}
	}
}

func TestDLQShowAndStats(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	r := b.run(t, "dlq", "show", b.ids["t-a"], "--json")
	var rec dlq.Record
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &rec) != nil || len(rec.History) != 1 || rec.History[0].Attempt != 3 {
		t.Fatalf("show: exit %d out %q err %q", r.code, r.out, r.err)
	}
	if strings.Contains(r.out, "s3cr3t") {
		t.Fatal("secret in show output")
	}
	r = b.run(t, "dlq", "show", b.ids["t-a"])
	if r.code != ExitOK || !strings.Contains(r.out, " dlq replay "+b.ids["t-a"]) || !strings.Contains(r.out, "attempts:") {
		t.Fatalf("show text: %q", r.out)
	}
	r = b.run(t, "dlq", "show", b.ids["t-b"])
	if r.code != ExitOK || !strings.Contains(r.out, "step:") || !strings.Contains(r.out, "fetch") {
		t.Fatalf("show text of a run step lacks its step: %q", r.out)
	}
	if r = b.run(t, "dlq", "show", b.ids["t-a"]); strings.Contains(r.out, "step:") {
		t.Fatalf("show text of a task in no run shows a step: %q", r.out)
	}
	r = b.run(t, "dlq", "stats", "--json")
	var st dlq.Stats
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &st) != nil {
		t.Fatalf("stats: exit %d out %q", r.code, r.out)
	}
	if st.Total != 3 || st.ByKind["http.call"] != 2 || st.ByWorkflow["research"] != 1 || st.ByClass["panic"] != 1 ||
		st.Oldest == nil || st.Oldest.ID != b.ids["t-a"] {
		t.Fatalf("stats = %+v", st)
	}
	r = b.run(t, "dlq", "stats")
	if r.code != ExitOK || !strings.Contains(r.out, "total: 3") || !strings.Contains(r.out, "oldest waiting: "+b.ids["t-a"]) {
		t.Fatalf("stats text: %q", r.out)
	}
}

func TestDLQReplayAndPurge(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	// Dry run changes nothing.
	r := b.run(t, "dlq", "replay", "--all", "--dry-run", "--json")
	var sum replaySummary
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &sum) != nil || sum.Selected != 3 || len(sum.Replayed) != 3 || !sum.DryRun {
		t.Fatalf("dry run: exit %d out %q err %q", r.code, r.out, r.err)
	}
	if got := b.list(t, "--status", "dead"); len(got) != 3 {
		t.Fatalf("dry run changed statuses: %v", got)
	}
	// An edited payload is validated like any enqueue and refused as a whole.
	r = b.run(t, "dlq", "replay", b.ids["t-b"], "--payload", `{"url":"not a url"}`)
	if r.code != ExitUsage || !strings.Contains(r.err, "replay refused") {
		t.Fatalf("bad payload: exit %d err %q", r.code, r.err)
	}
	// A valid edited payload from a file.
	file := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(file, []byte(`{"url":"http://127.0.0.1:1/fixed"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = b.run(t, "dlq", "replay", b.ids["t-b"], "--payload", "@"+file)
	if r.code != ExitOK || !strings.Contains(r.out, "replayed "+b.ids["t-b"]+" as task t-b-r1") {
		t.Fatalf("replay: exit %d out %q err %q", r.code, r.out, r.err)
	}
	info, err := b.insp.GetTaskInfo("default", "t-b-r1")
	if err != nil || !strings.Contains(string(info.Payload), "/fixed") || info.Headers[jobs.HeaderReplayOf] != b.ids["t-b"] {
		t.Fatalf("replay task = %+v, %v", info, err)
	}
	// Replaying it again is refused before anything changes.
	r = b.run(t, "dlq", "replay", b.ids["t-b"])
	if r.code != ExitUsage || !strings.Contains(r.err, "already replayed as task t-b-r1") {
		t.Fatalf("second replay: exit %d err %q", r.code, r.err)
	}
	// Selectors take replayable records only.
	r = b.run(t, "dlq", "replay", "--kind", "http.call", "--rate", "100", "--json")
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &sum) != nil || len(sum.Replayed) != 1 || sum.Replayed[0].TaskID != "t-a-r1" {
		t.Fatalf("replay --kind: exit %d out %q err %q", r.code, r.out, r.err)
	}
	// Purge asks for --yes on more than one.
	r = b.run(t, "dlq", "purge", "--all")
	if r.code != ExitUsage || !strings.Contains(r.err, "--yes") {
		t.Fatalf("purge without --yes: exit %d err %q", r.code, r.err)
	}
	if got := b.list(t); len(got) != 3 {
		t.Fatal("purge without --yes removed records")
	}
	r = b.run(t, "dlq", "purge", b.ids["t-c"])
	if r.code != ExitOK || !strings.Contains(r.out, "purged 1 of 1") {
		t.Fatalf("purge one: exit %d out %q err %q", r.code, r.out, r.err)
	}
	r = b.run(t, "dlq", "purge", "--all", "--yes")
	if r.code != ExitOK || !strings.Contains(r.out, "purged 2 of 2") || len(b.list(t)) != 0 {
		t.Fatalf("purge all: exit %d out %q err %q", r.code, r.out, r.err)
	}
}

func TestDLQBadInput(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	a := b.ids["t-a"]
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "replay"}, "say which dead letters"},
		{[]string{"dlq", "replay", a, "--all"}, "not both"},
		{[]string{"dlq", "replay", a, "--queue", "default"}, "not both"},
		{[]string{"dlq", "replay", "--all", "--kind", "noop"}, "drop --all or the selectors"},
		{[]string{"dlq", "replay", a, b.ids["t-b"], "--payload", "{}"}, "exactly one ID"},
		{[]string{"dlq", "replay", "--all", "--payload", "{}"}, "exactly one ID"},
		{[]string{"dlq", "replay", "999"}, `no dead letter with id "999"`},
		{[]string{"dlq", "replay", a, "999"}, `no dead letter with id "999"`},
		{[]string{"dlq", "replay", "--all", "--rate", "-1"}, "--rate must be a finite, non-negative number of replays per second, got -1"},
		{[]string{"dlq", "replay", a, "--payload", `{"url":"http://x/","headers":{"Authorization":"****"}}`}, "masked"},
		{[]string{"dlq", "replay", a, "--limit", "2"}, "--limit applies to selectors"},
		{[]string{"dlq", "show", "999"}, `no dead letter with id "999"`},
		{[]string{"dlq", "show"}, "dlq show needs a dead-letter id"},
		{[]string{"dlq", "list", "--class", "nope"}, "unknown class"},
		{[]string{"dlq", "list", "--status", "dead,nope"}, "unknown status"},
		{[]string{"dlq", "list", "--since", "-1h"}, "--since must not be negative"},
		{[]string{"dlq", "list", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"dlq", "list", "extra"}, "unknown command"},
		{[]string{"dlq", "purge"}, "say which dead letters"},
		{[]string{"dlq", "purge", "999"}, `no dead letter with id "999"`},
		{[]string{"dlq", "purge", "--queue", "default"}, "--yes"},
	}
	for _, tt := range tests {
		r := b.run(t, tt.args...)
		if r.code != ExitUsage || !strings.Contains(r.err, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and %q", tt.args, r.code, r.err, tt.want)
		}
	}
	// None of it changed anything.
	if got := b.list(t, "--status", "dead"); len(got) != 3 {
		t.Fatalf("bad input changed records: %v", got)
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"plain", "http 500: upstream down", "http 500: upstream down"},
		{"unicode kept", "échec — 失败", "échec — 失败"},
		{"terminal escapes", "\x1b]0;pwned\x07\x1b[2J", `\x1b]0;pwned\a\x1b[2J`},
		{"nul and line breaks", "a\x00b\nc\td", `a\x00b\nc\td`},
		{"C1 control", "a\u0085b", `a\u0085b`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := printable(tc.in); got != tc.want {
				t.Fatalf("printable(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
