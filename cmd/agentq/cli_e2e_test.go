package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
)

// The CLI conventions of issue 10, driven through the real binary:
// version, days in durations, consistent filters, JSON errors, examples
// in help, and what issue 9 left (run list --limit 0, durations and
// by_model attempts in run show --json, the api_key_env warning, the
// effective values agentq config shows).

// jsonErr is an error as a command given --json prints it on stderr.
type jsonErr struct {
	Error    string `json:"error"`
	Code     string `json:"code"`
	ExitCode int    `json:"exit_code"`
}

// runJSONError runs args, which end in a failure, and returns the JSON
// error; it fails the test unless stderr is exactly that JSON and the
// exit code is exit.
func (e *env) runJSONError(exit int, args ...string) jsonErr {
	e.t.Helper()
	out, errOut, code := e.run("", args...)
	var je jsonErr
	if err := json.Unmarshal([]byte(errOut), &je); err != nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		e.t.Fatalf("agentq %s: stderr is not one JSON line: %q", strings.Join(args, " "), errOut)
	}
	if code != exit || je.ExitCode != exit || je.Error == "" || out != "" {
		e.t.Fatalf("agentq %s: exit %d, stdout %q, error %+v; want exit %d", strings.Join(args, " "), code, out, je, exit)
	}
	return je
}

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	e := &env{t: t, bin: agentqBinary(t), dir: t.TempDir(), vars: binarytest.Environ()}
	out, errOut, code := e.run("", "version")
	if code != 0 || !strings.HasPrefix(out, "agentq ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d out %q err %q", code, out, errOut)
	}
	flag, _, code := e.run("", "--version")
	if code != 0 || flag != out {
		t.Fatalf("--version printed %q (exit %d), version %q", flag, code, out)
	}
	js, _, code := e.run("", "version", "--json")
	var raw map[string]any
	if code != 0 || json.Unmarshal([]byte(js), &raw) != nil || raw["version"] == "" || !strings.HasPrefix(fmt.Sprint(raw["go_version"]), "go1.") {
		t.Fatalf("version --json: exit %d %q", code, js)
	}

	// A release build sets version, commit and time with -ldflags -X: only
	// the link step runs again.
	rel := filepath.Join(t.TempDir(), "agentq")
	ld := "-X github.com/agentq/agentq.version=v9.8.7 -X github.com/agentq/agentq.commit=0123456789abcdef0123456789abcdef01234567 -X github.com/agentq/agentq.commitTime=2026-12-01T09:00:00Z"
	if b, err := exec.Command(binarytest.GoTool(), "build", "-ldflags", ld, "-o", rel, "github.com/agentq/agentq/cmd/agentq").CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags: %v\n%s", err, b)
	}
	e.bin = rel
	out, _, code = e.run("", "--version")
	if want := "agentq v9.8.7 (commit 0123456789ab, 2026-12-01T09:00:00Z"; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("release --version = %q, want %q...", out, want)
	}
	js, _, _ = e.run("", "version", "--json")
	if err := json.Unmarshal([]byte(js), &raw); err != nil || raw["version"] != "v9.8.7" || raw["commit"] != "0123456789abcdef0123456789abcdef01234567" || raw["commit_time"] != "2026-12-01T09:00:00Z" {
		t.Fatalf("release version --json = %s", js)
	}
}

// TestCLIConventionsWithoutRedis: JSON errors with their codes and exit
// codes, duration flags and configuration that take days, the effective
// configuration, and examples in help, none of which needs Redis.
func TestCLIConventionsWithoutRedis(t *testing.T) {
	t.Parallel()
	e := &env{t: t, bin: agentqBinary(t), dir: t.TempDir(), vars: binarytest.Environ("AGENTQ_REDIS_URL=redis://127.0.0.1:1/0")}

	t.Run("json errors", func(t *testing.T) {
		e := *e
		e.t = t
		for _, tc := range []struct {
			args []string
			code string
			exit int
			has  string
		}{
			{[]string{"dlq", "list", "--since", "7w", "--json"}, "usage", 2, `--since "7w"`},
			{[]string{"run", "list", "--json", "--bogus"}, "usage", 2, "unknown flag: --bogus"},
			{[]string{"dlq", "show", "x1", "--json"}, "not_found", 2, `no dead letter with id "x1"`},
			{[]string{"enqueue", "noop", "--payload", "{}", "--in", "1w", "--json"}, "usage", 2, `invalid argument "1w" for "--in" flag`},
			{[]string{"breaker", "list", "--json"}, "redis", 1, "cannot reach Redis at redis://127.0.0.1:1/0"},
			// An unknown workflow is not_found in enqueue as in run start.
			{[]string{"enqueue", "noop", "--payload", "{}", "--workflow", "nope", "--json"}, "not_found", 2, `unknown workflow "nope"`},
			{[]string{"run", "start", "nope", "--json"}, "not_found", 2, `no workflow "nope"`},
			{[]string{"enqueue", "nokind", "--payload", "{}", "--workflow", "nope", "--json"}, "usage", 2, `nokind`},
			// cobra's own errors are JSON when --json is anywhere in argv.
			{[]string{"bogus", "--json"}, "usage", 2, `unknown command "bogus" for "agentq"`},
			{[]string{"--json", "bogus"}, "usage", 2, `unknown command "bogus" for "agentq"`},
			{[]string{"dlq", "list", "--json", "--jsn"}, "usage", 2, "unknown flag: --jsn"},
			{[]string{"dlq", "bogus", "--json"}, "usage", 2, `unknown command "bogus" for "agentq dlq"`},
			{[]string{"run", "bogus", "--json"}, "usage", 2, `unknown command "bogus" for "agentq run"`},
			// A missing argument is named.
			{[]string{"dlq", "show", "--json"}, "usage", 2, "dlq show needs a dead-letter id (see agentq dlq list)"},
			{[]string{"run", "show", "--json"}, "usage", 2, "run show needs a run id (see agentq run list)"},
			{[]string{"run", "cancel", "--json"}, "usage", 2, "run cancel needs a run id (see agentq run list)"},
			{[]string{"budget", "resume", "--json"}, "usage", 2, "budget resume needs a workflow name (see agentq budget)"},
			{[]string{"dlq", "show", "1", "2", "--json"}, "usage", 2, `dlq show takes one argument, a dead-letter id; got 2: "1 2"`},
			// Every command takes --json: these reach Redis.
			{[]string{"run", "cancel", "run-x", "--json"}, "redis", 1, "cannot reach Redis"},
			// The URL typed is echoed.
			{[]string{"health", "--dashboard", "127.0.0.1:18090", "--json"}, "usage", 2, `dashboard URL "127.0.0.1:18090" has no scheme: want http://host:port`},
		} {
			je := e.runJSONError(tc.exit, tc.args...)
			if je.Code != tc.code || !strings.Contains(je.Error, tc.has) {
				t.Errorf("agentq %s: %+v, want code %s and %q", strings.Join(tc.args, " "), je, tc.code, tc.has)
			}
			// Without --json: the same exit code, the usual line.
			plain := []string{}
			for _, a := range tc.args {
				if a != "--json" {
					plain = append(plain, a)
				}
			}
			_, errOut, code := e.run("", plain...)
			if code != tc.exit || !strings.HasPrefix(errOut, "agentq: ") {
				t.Errorf("agentq %s: exit %d stderr %q", strings.Join(plain, " "), code, errOut)
			}
		}
		// A command whose output is logs says so (without --json, worker
		// would wait for Redis).
		if je := e.runJSONError(2, "worker", "--json"); je.Code != "usage" || je.Error != "worker prints logs (use --log-format json); it takes no --json" {
			t.Errorf("worker --json: %+v", je)
		}
		// health with Redis down: the report on stdout, the error's code is
		// redis, as enqueue's and dlq list's.
		out, errOut, code := e.run("", "health", "--json")
		var je jsonErr
		if code != 1 || json.Unmarshal([]byte(errOut), &je) != nil || je.Code != "redis" || !strings.Contains(out, `"healthy":false`) {
			t.Errorf("health --json with Redis down: exit %d out %q err %q", code, out, errOut)
		}
		bad := e
		bad.vars = append(bad.vars, "AGENTQ_LEDGER_RETENTION=7w")
		if je := bad.runJSONError(2, "config", "--json"); je.Code != "config" || !strings.Contains(je.Error, `ledger.retention: "7w" is not a duration`) {
			t.Errorf("bad config: %+v", je)
		}
	})

	t.Run("days and effective values in config", func(t *testing.T) {
		e := *e
		e.t = t
		e.vars = append(e.vars, "AGENTQ_LEDGER_RETENTION=7d", "AGENTQ_DLQ_RETENTION_AGE=1d12h", "AGENTQ_REDIS_URL=")
		out, errOut, code := e.run("", "config", "--json")
		var cfg struct {
			Redis  struct{ URL string }       `json:"redis"`
			Worker struct{ Loops int }        `json:"worker"`
			Ledger struct{ Retention string } `json:"ledger"`
			DLQ    struct {
				RetentionAge string `json:"retention_age"`
			} `json:"dlq"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &cfg) != nil {
			t.Fatalf("config --json: exit %d %s %s", code, out, errOut)
		}
		if cfg.Ledger.Retention != "168h" || cfg.DLQ.RetentionAge != "36h" || cfg.Redis.URL != "redis://127.0.0.1:6379/0" || cfg.Worker.Loops < 1 {
			t.Fatalf("config = %+v; want ledger 168h, dlq 36h, the default Redis URL and the loops a worker runs", cfg)
		}
	})

	t.Run("examples in help", func(t *testing.T) {
		e := *e
		e.t = t
		for _, cmd := range [][]string{{"config"}, {"worker"}, {"dlq"}, {"dlq", "list"}, {"dlq", "purge"}, {"run", "list"}, {"budget", "reset"}, {"breaker", "list"}, {"version"}, {"bench"}} {
			out, _, code := e.run("", append(cmd, "--help")...)
			if code != 0 || !strings.Contains(out, "\nExamples:\n  agentq "+cmd[0]) {
				t.Errorf("agentq %s --help has no Examples section:\n%s", strings.Join(cmd, " "), out)
			}
		}
		out, _, _ := e.run("", "dlq", "purge", "--help")
		if strings.Contains(out, "replay every") {
			t.Errorf("purge --all's help speaks of replay:\n%s", out)
		}
		out, _, _ = e.run("", "enqueue", "--help")
		if strings.Contains(out, "(default -1)") {
			t.Errorf("enqueue --max-retry shows a default of -1:\n%s", out)
		}
	})
}

// TestCLIDeadLetterFilters: dead letters of two runs; --run, --workflow and
// --since (in days) select the same records in list, stats, replay and
// purge; an unknown id is not_found in JSON.
func TestCLIDeadLetterFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, srv := newFlakyTool(t)
	e.startWorker("--concurrency", "4")
	for i, run := range []string{"r-a", "r-a", "r-b"} {
		payload := fmt.Sprintf(`{"method":"POST","url":"%s/gone?n=%d"}`, srv.URL, i)
		if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", payload, "--run", run, "--key", fmt.Sprint("k", i)); code != 0 {
			t.Fatalf("enqueue: exit %d %s", code, errOut)
		}
	}
	// A task delayed by a day: --in takes days as well.
	if _, errOut, code := e.run("", "enqueue", "noop", "--payload", "{}", "--in", "1d"); code != 0 {
		t.Fatalf("enqueue --in 1d: exit %d %s", code, errOut)
	}
	type rec struct {
		ID    string `json:"id"`
		RunID string `json:"run_id"`
	}
	list := func(args ...string) []rec {
		t.Helper()
		out, errOut, code := e.run("", append([]string{"dlq", "list", "--json"}, args...)...)
		var recs []rec
		if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
			t.Fatalf("dlq list %v: exit %d %q %s", args, code, out, errOut)
		}
		return recs
	}
	binarytest.WaitFor(t, 30*time.Second, "three dead letters", func() bool { return len(list()) == 3 })

	if recs := list("--run", "r-a"); len(recs) != 2 || recs[0].RunID != "r-a" || recs[1].RunID != "r-a" {
		t.Errorf("dlq list --run r-a = %+v", recs)
	}
	if recs := list("--since", "3d", "--run", "r-b"); len(recs) != 1 || recs[0].RunID != "r-b" {
		t.Errorf("dlq list --since 3d --run r-b = %+v", recs)
	}
	if recs := list("--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)); len(recs) != 3 {
		t.Errorf("dlq list --since <an hour ago> = %+v", recs)
	}
	if recs := list("--workflow", "nope"); len(recs) != 0 {
		t.Errorf("dlq list --workflow nope = %+v", recs)
	}
	out, _, code := e.run("", "dlq", "stats", "--run", "r-a", "--json")
	var st struct {
		Total int `json:"total"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Total != 2 {
		t.Errorf("dlq stats --run r-a: exit %d %s", code, out)
	}
	out, _, code = e.run("", "dlq", "replay", "--run", "r-a", "--since", "1d", "--dry-run", "--json")
	var rp struct {
		Selected int `json:"selected"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rp) != nil || rp.Selected != 2 {
		t.Errorf("dlq replay --run r-a --dry-run: exit %d %s", code, out)
	}
	out, _, code = e.run("", "dlq", "purge", "--run", "r-b", "--json")
	var pg struct {
		Purged int `json:"purged"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &pg) != nil || pg.Purged != 1 {
		t.Errorf("dlq purge --run r-b: exit %d %s", code, out)
	}
	if recs := list(); len(recs) != 2 {
		t.Errorf("after the purge: %+v", recs)
	}
	if je := e.runJSONError(2, "dlq", "show", "999999", "--json"); je.Code != "not_found" {
		t.Errorf("dlq show 999999 --json: %+v", je)
	}
	if je := e.runJSONError(2, "dlq", "purge", "999999", "--json"); je.Code != "not_found" {
		t.Errorf("dlq purge 999999 --json: %+v", je)
	}
	if je := e.runJSONError(2, "dlq", "replay", "999999", "--json"); je.Code != "not_found" {
		t.Errorf("dlq replay 999999 --json: %+v", je)
	}

	// A selection that matches nothing is no error: exit 0, saying so, and
	// zero counts with --json; the same once the store is empty (the
	// nightly purge of --help's example).
	out, errOut, code := e.run("", "dlq", "purge", "--run", "r-none")
	if code != 0 || !strings.Contains(out, "no dead letters match the selection; nothing purged") {
		t.Errorf("dlq purge of an empty selection: exit %d out %q err %q", code, out, errOut)
	}
	if _, errOut, code := e.run("", "dlq", "purge", "--all", "--yes"); code != 0 {
		t.Fatalf("dlq purge --all --yes: exit %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"dlq", "purge", "--status", "resolved", "--since", "30d", "--yes"},
		{"dlq", "replay", "--workflow", "research", "--since", "1d", "--dry-run"},
	} {
		out, errOut, code := e.run("", args...)
		if code != 0 || !strings.Contains(out, "no dead letters match the selection; nothing") || errOut != "" {
			t.Errorf("agentq %s on an empty store: exit %d out %q err %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	out, errOut, code = e.run("", "dlq", "purge", "--all", "--yes", "--json")
	var pg0 map[string]int
	if code != 0 || json.Unmarshal([]byte(out), &pg0) != nil || pg0["selected"] != 0 || pg0["purged"] != 0 || len(pg0) != 3 {
		t.Errorf("dlq purge --all --yes --json on an empty store: exit %d out %q err %q", code, out, errOut)
	}
	out, errOut, code = e.run("", "dlq", "replay", "--all", "--json")
	var rp0 struct {
		Selected *int  `json:"selected"`
		Replayed []any `json:"replayed"`
		Failed   []any `json:"failed"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rp0) != nil || rp0.Selected == nil || *rp0.Selected != 0 || rp0.Replayed == nil || rp0.Failed == nil {
		t.Errorf("dlq replay --all --json on an empty store: exit %d out %q err %q", code, out, errOut)
	}
}

// TestCLIRunsConventions: a worker warns about an llm provider whose
// api_key_env is unset (naming it, never a key); run show --json gives
// durations as strings and each model's attempts; run list --limit 0
// lists every run and --since takes days; an unknown run is not_found.
func TestCLIRunsConventions(t *testing.T) {
	t.Parallel()
	_, chat := newChatServer(t)
	e := newEnv(t)
	cfg := fmt.Sprintf(`llm:
  providers:
    fake: {base_url: "%s/v1", api_key_env: FAKE_LLM_KEY}
    spare: {base_url: "%s/v1", api_key_env: AGENTQ_E2E_UNSET_KEY}
  models:
    small: {provider: fake, model: small-1, input_per_mtok: 1.0, output_per_mtok: 2.0}
    limited: {provider: fake, model: once-429, input_per_mtok: 1.0, output_per_mtok: 2.0}
workflows:
  two:
    caps: {max_duration: 1d12h}
    steps:
      - name: draft
        kind: llm.chat
        payload: {model: limited, messages: [{role: user, content: "draft {{ .input.topic }}"}]}
      - name: polish
        kind: llm.chat
        payload: {model: small, messages: [{role: user, content: "polish {{ .steps.draft.output.content }}"}]}
      - name: check
        kind: llm.chat
        payload: {model: small, messages: [{role: user, content: "check {{ .steps.polish.output.content }}"}]}
`, chat.URL, chat.URL)
	if err := os.WriteFile(filepath.Join(e.dir, "agentq.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = append(e.vars, "FAKE_LLM_KEY=test-key")
	logs := e.startWorker("--concurrency", "4")
	binarytest.WaitFor(t, 30*time.Second, "the api_key_env warning", func() bool { return strings.Contains(logs(), "AGENTQ_E2E_UNSET_KEY") })
	var warned []string
	for _, line := range strings.Split(logs(), "\n") {
		if strings.Contains(line, "api_key_env") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `"provider":"spare"`) || !strings.Contains(warned[0], `"level":"warn"`) || strings.Contains(logs(), "test-key") {
		t.Fatalf("want one warning, for provider spare, and no key in the logs; got %q", warned)
	}

	first := e.startRun("two", "--input", `{"topic":"queues"}`)
	second := e.startRun("two", "--input", `{"topic":"days"}`)
	e.waitRun(first, "succeeded", 60*time.Second)
	e.waitRun(second, "succeeded", 60*time.Second)

	out, _, _ := e.run("", "run", "show", first, "--json")
	var run struct {
		Attempts int `json:"attempts"`
		Caps     struct {
			MaxDuration any `json:"max_duration"`
		} `json:"caps"`
		ByModel map[string]struct {
			Attempts int   `json:"attempts"`
			TokensIn int64 `json:"tokens_in"`
		} `json:"by_model"`
		Steps []struct {
			Name     string `json:"name"`
			Attempts int    `json:"attempts"`
			Duration any    `json:"duration"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("run show --json: %v\n%s", err, out)
	}
	if run.Caps.MaxDuration != "36h" {
		t.Errorf("caps.max_duration = %#v, want \"36h\"", run.Caps.MaxDuration)
	}
	for _, st := range run.Steps {
		d, ok := st.Duration.(string)
		if _, err := time.ParseDuration(d); !ok || err != nil || d == "" {
			t.Errorf("step %s: duration %#v is not a duration string", st.Name, st.Duration)
		}
	}
	// draft ran twice (a 429 without usage, then a reply): the model's
	// attempts count the one that reported usage. polish and check ran
	// once each on small.
	if run.Attempts != 4 || run.ByModel["small"].Attempts != 2 || run.ByModel["limited"].Attempts != 1 || run.ByModel["small"].TokensIn != 200 {
		t.Errorf("attempts %d, by_model %+v; want 4 attempts, small 2 (200 tokens in), limited 1", run.Attempts, run.ByModel)
	}

	text, _, _ := e.run("", "run", "show", first)
	words := strings.Join(strings.Fields(text), " ")
	if !strings.Contains(words, "model small: 2 attempts, 300 tokens (in 200, out 100)") || !strings.Contains(words, "model limited: 1 attempt,") || !strings.Contains(words, "max duration: 36h") {
		t.Errorf("run show has no by-model lines or max duration:\n%s", text)
	}

	listed := func(args ...string) int {
		t.Helper()
		out, errOut, code := e.run("", append([]string{"run", "list", "--json"}, args...)...)
		var l struct {
			Runs []struct {
				ID string `json:"run_id"`
			} `json:"runs"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("run list %v: exit %d %s %s", args, code, out, errOut)
		}
		return len(l.Runs)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{{[]string{"--limit", "0"}, 2}, {[]string{"--limit", "1"}, 1}, {[]string{"--since", "1d", "--workflow", "two"}, 2}, {[]string{"--workflow", "other"}, 0}} {
		if got := listed(tc.args...); got != tc.want {
			t.Errorf("run list %v: %d runs, want %d", tc.args, got, tc.want)
		}
	}
	if je := e.runJSONError(2, "run", "list", "--limit", "-1", "--json"); je.Code != "usage" {
		t.Errorf("run list --limit -1: %+v", je)
	}
	if je := e.runJSONError(2, "run", "show", "r_nope", "--json"); je.Code != "not_found" {
		t.Errorf("run show r_nope --json: %+v", je)
	}
	if je := e.runJSONError(2, "run", "start", "nope", "--json"); je.Code != "not_found" || !strings.Contains(je.Error, "workflows: two") {
		t.Errorf("run start nope --json: %+v", je)
	}
}
