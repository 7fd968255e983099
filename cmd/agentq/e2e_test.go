package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m, binarytest.Cleanup) }

// agentqBinary is the real binary, built once per test process.
func agentqBinary(t *testing.T) string { return binarytest.Build(t) }

type env struct {
	t     *testing.T
	bin   string
	dir   string
	redis *redistest.Server
	rdb   *redis.Client
	vars  []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	return &env{t: t, bin: agentqBinary(t), dir: t.TempDir(), redis: srv, rdb: srv.Client(t), vars: baseEnv(srv.URL)}
}

// baseEnv is the environment of the binary: JSON logs, fast retries and a
// fast delayed-task check, and the Redis at redisURL.
func baseEnv(redisURL string) []string {
	return append(os.Environ(),
		"AGENTQ_REDIS_URL="+redisURL,
		"AGENTQ_LOG_FORMAT=json",
		"AGENTQ_RETRY_BASE=50ms",
		"AGENTQ_RETRY_MAX=200ms",
		"AGENTQ_WORKER_DELAYED_CHECK_INTERVAL=100ms",
	)
}

// run runs agentq to completion and returns stdout, stderr and exit code.
func (e *env) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	r := binarytest.Run(e.t, e.bin, args, binarytest.Options{Dir: e.dir, Env: e.vars, Stdin: stdin, Timeout: 60 * time.Second})
	return r.Stdout, r.Stderr, r.Code
}

// startWorker runs `agentq worker` until the test ends and returns a
// function that reads its log so far.
func (e *env) startWorker(args ...string) func() string {
	e.t.Helper()
	return binarytest.Start(e.t, e.bin, append([]string{"worker"}, args...), binarytest.Options{Dir: e.dir, Env: e.vars}).Logs
}

// flakyTool fails the first `fail` calls per Idempotency-Key with 503.
type flakyTool struct {
	mu    sync.Mutex
	calls map[string]int
	keys  map[string]string // path -> last Idempotency-Key
}

func newFlakyTool(t *testing.T) (*flakyTool, *httptest.Server) {
	ft := &flakyTool{calls: map[string]int{}, keys: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ft.mu.Lock()
		ft.calls[r.URL.Path]++
		n := ft.calls[r.URL.Path]
		ft.keys[r.URL.Path] = r.Header.Get("Idempotency-Key")
		ft.mu.Unlock()
		var fail int
		fmt.Sscanf(r.URL.Query().Get("fail"), "%d", &fail)
		switch {
		case strings.HasPrefix(r.URL.Path, "/gone"):
			http.Error(w, "no such article", http.StatusNotFound)
		case n <= fail:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(srv.Close)
	return ft, srv
}

func (ft *flakyTool) count(path string) int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.calls[path]
}

func (ft *flakyTool) key(path string) string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.keys[path]
}

func TestEndToEndEnqueueWorkerRetriesDuplicatesPermanent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tool, srv := newFlakyTool(t)
	logs := e.startWorker("--concurrency", "4")

	// A flaky tool call succeeds after two 503s.
	payload := fmt.Sprintf(`{"method":"POST","url":"%s/flaky?fail=2","body":{"q":"x"}}`, srv.URL)
	out, errOut, code := e.run("", "enqueue", "http.call", "--payload", payload, "--key", "step-1", "--run", "run-7", "--json")
	if code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, errOut)
	}
	var res struct {
		ID        string `json:"id"`
		Queue     string `json:"queue"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.ID == "" || res.Queue != "default" || res.Duplicate {
		t.Fatalf("enqueue --json = %q (%v)", out, err)
	}
	binarytest.WaitFor(t, 20*time.Second, "flaky call to succeed", func() bool {
		return strings.Contains(logs(), `"task_id":"`+res.ID+`"`) && strings.Contains(logs(), `"outcome":"success"`)
	})
	if got := tool.count("/flaky"); got != 3 {
		t.Fatalf("tool calls = %d, want 3 (two 503s, then success)", got)
	}
	if got := tool.key("/flaky"); got != "step-1" {
		t.Fatalf("Idempotency-Key = %q, want step-1", got)
	}
	var attempts []map[string]any
	for _, line := range strings.Split(logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "attempt" && m["task_id"] == res.ID {
			attempts = append(attempts, m)
		}
	}
	if len(attempts) != 3 || attempts[0]["outcome"] != "retry" || attempts[0]["run_id"] != "run-7" || attempts[2]["attempt"].(float64) != 3 {
		t.Fatalf("attempt log lines: %v", attempts)
	}

	// The same key again is a duplicate: exit 0, same id, nothing enqueued.
	out, errOut, code = e.run("", "enqueue", "http.call", "--payload", payload, "--key", "step-1")
	if code != 0 || strings.TrimSpace(out) != res.ID || !strings.Contains(errOut, "duplicate") {
		t.Fatalf("duplicate enqueue: exit %d out %q err %q", code, out, errOut)
	}

	// A permanent failure (404) is archived at once, without retries.
	out, errOut, code = e.run("", "enqueue", "http.call", "--payload", fmt.Sprintf(`{"url":"%s/gone"}`, srv.URL), "--max-retry", "5")
	if code != 0 {
		t.Fatalf("enqueue: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	binarytest.WaitFor(t, 10*time.Second, "archived", func() bool {
		info, err := insp.GetTaskInfo("default", id)
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if got := tool.count("/gone"); got != 1 {
		t.Fatalf("permanent failure called the tool %d times, want 1", got)
	}
	info, _ := insp.GetTaskInfo("default", id)
	if !strings.Contains(info.LastErr, "404") {
		t.Fatalf("archived error = %q", info.LastErr)
	}
}

func TestEndToEndBadInputIsRefusedBeforeRedis(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"url":"http://127.0.0.1/x","body":"` + strings.Repeat("a", 300<<10) + `"}`
	bigFile := filepath.Join(e.dir, "big.json")
	if err := os.WriteFile(bigFile, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown kind", []string{"enqueue", "nope", "--payload", "{}"}, `unknown task kind "nope"`},
		{"invalid json", []string{"enqueue", "http.call", "--payload", `{"url":`}, "not valid JSON"},
		{"schema", []string{"enqueue", "http.call", "--payload", `{"url":5}`}, "schema violation"},
		{"bad url", []string{"enqueue", "http.call", "--payload", `{"url":"ftp://x"}`}, "url: must be an absolute http or https URL"},
		{"too big", []string{"enqueue", "http.call", "--payload", "@" + bigFile}, "over the limit of 262144"},
		{"no payload", []string{"enqueue", "http.call"}, "--payload is required"},
		{"unknown workflow", []string{"enqueue", "noop", "--payload", "{}", "--workflow", "nope"}, `unknown workflow "nope"`},
		{"bad config value", []string{"enqueue", "noop", "--payload", "{}", "--log-level", "loud"}, "log.level"},
		{"batch and kind", []string{"enqueue", "noop", "--batch", "-"}, "--batch takes its kinds"},
	}
	for _, tt := range tests {
		_, errOut, code := e.run("", tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d stderr %q, want exit 2 and %q", tt.name, code, errOut, tt.want)
		}
	}
	if n, err := e.rdb.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("redis has %d keys after refused input (%v), want 0", n, err)
	}
}

func TestEndToEndBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var in strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&in, `{"kind":"noop","payload":{},"key":"b-%d"}`+"\n", i%40)
	}
	in.WriteString(`{"kind":"noop","payload":{"x":1}}` + "\n")
	out, errOut, code := e.run(in.String(), "enqueue", "--batch", "-", "--json")
	if code != 3 {
		t.Fatalf("exit %d (want 3: a line was rejected): %s %s", code, out, errOut)
	}
	var sum struct {
		Lines, Enqueued, Duplicates int
		Rejected                    []struct {
			Line  int
			Error string
		}
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if sum.Lines != 51 || sum.Enqueued != 40 || sum.Duplicates != 10 || len(sum.Rejected) != 1 || sum.Rejected[0].Line != 51 {
		t.Fatalf("summary = %+v", sum)
	}
}

func TestEndToEndConfigMasksSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.vars = append(e.vars, "AGENTQ_REDIS_URL=redis://app:hunter2@127.0.0.1:1/0", "AGENTQ_DASHBOARD_BEARER_TOKEN=tok-secret")
	out, errOut, code := e.run("", "config")
	if code != 0 {
		t.Fatalf("config exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "tok-secret") || !strings.Contains(out, "redis://app:****@127.0.0.1:1/0") {
		t.Fatalf("config output leaks or lacks masking:\n%s", out)
	}
	// An unreachable Redis fails at start with a clear, masked message.
	_, errOut, code = e.run("", "enqueue", "noop", "--payload", "{}")
	if code != 1 || !strings.Contains(errOut, "cannot reach Redis at redis://app:****@127.0.0.1:1/0") || strings.Contains(errOut, "hunter2") {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	// A bad value names the key, the value and its source.
	e.vars = append(e.vars, "AGENTQ_RETRY_BASE=abc")
	_, errOut, code = e.run("", "config")
	if code != 2 || !strings.Contains(errOut, `retry.base`) || !strings.Contains(errOut, `"abc"`) || !strings.Contains(errOut, "AGENTQ_RETRY_BASE") {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
}

func TestEndToEndDevDemo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// No Redis configured: dev embeds one.
	vars := []string{}
	for _, v := range e.vars {
		if !strings.HasPrefix(v, "AGENTQ_REDIS_URL=") {
			vars = append(vars, v)
		}
	}
	e.vars = append(vars, "AGENTQ_DASHBOARD_ADDR=127.0.0.1:0")
	out, errOut, code := e.run("", "dev", "--exit")
	if code != 0 {
		t.Fatalf("dev exit %d\n%s\n%s", code, out, errOut)
	}
	tasks, run, ok := strings.Cut(out, "running the run demo")
	if !ok {
		t.Fatalf("dev output has no run demo:\n%s", out)
	}
	for _, want := range []string{"embedded", "lives in memory", "model server: http://127.0.0.1:", "succeeded", "dead-lettered", "not enqueued (duplicate)"} {
		if !strings.Contains(tasks, want) {
			t.Errorf("dev output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(tasks, "succeeded") != 3 {
		t.Errorf("want 3 succeeded steps:\n%s", out)
	}

	// The run demo prints the run as run show does: it succeeded, research
	// got the fake model's one 429 and took 2 attempts, the others 1, and
	// tokens and a cost were added up.
	fields := map[string][]string{}
	for _, line := range strings.Split(run, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			fields[f[0]] = f
		}
	}
	if f := fields["status:"]; len(f) != 2 || f[1] != "succeeded" {
		t.Errorf("run status line %q:\n%s", f, out)
	}
	for step, attempts := range map[string]string{"research": "2", "draft": "1", "publish": "1"} {
		// STEP KIND STATUS ATTEMPTS DURATION TOKENS COST ...
		f := fields[step]
		if len(f) < 7 || f[2] != "succeeded" || f[3] != attempts {
			t.Errorf("step %s: want succeeded in %s attempts, got %q:\n%s", step, attempts, f, out)
			continue
		}
		if step != "publish" && (f[5] == "0" || f[6] == "$0.0000") {
			t.Errorf("step %s shows no tokens or cost: %q", step, f)
		}
	}
	if f := fields["tokens:"]; len(f) < 2 || f[1] == "0" {
		t.Errorf("run tokens line %q:\n%s", f, out)
	}
	if f := fields["cost:"]; len(f) < 2 || f[1] == "$0.0000" {
		t.Errorf("run cost line %q:\n%s", f, out)
	}
	if !strings.Contains(run, "step_retry") || !strings.Contains(run, "rate_limited") {
		t.Errorf("run history lacks the 429 retry:\n%s", out)
	}
	// What publish POSTed is the draft step's reply.
	_, published, _ := strings.Cut(run, "\npublished: ")
	published, _, _ = strings.Cut(published, "\n")
	if !strings.HasPrefix(published, "reply to: Draft an article on ") {
		t.Errorf("published body %q is not the draft:\n%s", published, out)
	}
	// With --exit, dev points at no dashboard and no embedded Redis: both
	// are gone when it returns (TestCLI2Dev* has the rest).
	if strings.Contains(out, "http://127.0.0.1:") && strings.Contains(out, "dashboard: http") ||
		strings.Contains(out, " run show r_") || strings.Contains(out, "dlq list") || !strings.Contains(out, "embedded Redis have stopped") {
		t.Errorf("dev --exit points at what is gone:\n%s", out)
	}
	// Nor does any line on either stream give a command or the embedded
	// Redis's address for later, save the line that says it is embedded;
	// the dead-letter warning still names the record.
	addr := regexp.MustCompile(`redis: embedded at (\S+) `).FindStringSubmatch(out)
	if addr == nil {
		t.Fatalf("dev --exit names no embedded Redis:\n%s", out)
	}
	for _, line := range strings.Split(out+errOut, "\n") {
		if strings.Contains(line, "--redis-url") || strings.Contains(line, "replay with") || strings.Contains(line, `"replay"`) ||
			strings.Contains(line, addr[1]) && !strings.HasPrefix(line, "redis: embedded at ") {
			t.Errorf("dev --exit prints a line pointing at what is gone: %s", line)
		}
	}
	if !strings.Contains(errOut, `"dlq_id":"1"`) || !strings.Contains(errOut, "dead letter recorded") {
		t.Errorf("dev --exit logs no dead-letter warning:\n%s", errOut)
	}
}

func TestEndToEndDashboard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A non-loopback address without auth is refused.
	_, errOut, code := e.run("", "dashboard", "--addr", "0.0.0.0:0")
	if code != 2 || !strings.Contains(errOut, "not a loopback address") {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	// Stopped with SIGINT when the test ends; its exit is not what this
	// test checks.
	p := binarytest.Start(t, e.bin, []string{"dashboard", "--addr", "127.0.0.1:0"}, binarytest.Options{Env: e.vars, AllowUncleanExit: true})
	var url string
	binarytest.WaitFor(t, 30*time.Second, "the dashboard to print its URL or exit", func() bool {
		logs := p.Logs()
		if i := strings.Index(logs, "dashboard: http://"); i >= 0 {
			url = strings.Fields(logs[i+len("dashboard: "):])[0]
			return true
		}
		exited, _ := p.Exited()
		return exited
	})
	if url == "" {
		t.Fatal("dashboard printed no URL")
	}
	for path, want := range map[string]string{"healthz": `"ok"`, "": "Asynq", "api/queues": "queues"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("GET /%s: %d %.200s", path, resp.StatusCode, body)
		}
	}
}
