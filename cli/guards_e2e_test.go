package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// These tests run the real agentq binary against a real Redis.

func agentqBinary(t *testing.T) string { return binarytest.Build(t) }

type e2e struct {
	t    *testing.T
	bin  string
	dir  string
	rdb  *redis.Client
	insp *asynq.Inspector
	env  []string
}

func newE2E(t *testing.T, config string) *e2e {
	t.Helper()
	srv := redistest.Start(t)
	e := &e2e{t: t, bin: agentqBinary(t), dir: t.TempDir(), rdb: srv.Client(t)}
	e.insp = asynq.NewInspectorFromRedisClient(e.rdb)
	if err := os.WriteFile(filepath.Join(e.dir, "agentq.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = append(os.Environ(), "AGENTQ_REDIS_URL="+srv.URL, "AGENTQ_LOG_FORMAT=json")
	return e
}

// run runs agentq to completion in the test's directory (which holds its
// agentq.yaml).
func (e *e2e) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	r := binarytest.Run(e.t, e.bin, args, binarytest.Options{Dir: e.dir, Env: e.env, Timeout: 30 * time.Second})
	return r.Stdout, r.Stderr, r.Code
}

// worker starts `agentq worker --metrics-addr 127.0.0.1:0`, stopped with
// SIGINT when the test ends. It returns the metrics URL and a function that
// reads the worker's log so far.
func (e *e2e) worker() (metricsURL string, logs func() string) {
	e.t.Helper()
	urlc := make(chan string, 1)
	p := binarytest.Start(e.t, e.bin, []string{"worker", "--metrics-addr", "127.0.0.1:0"}, binarytest.Options{
		Dir: e.dir, Env: e.env,
		OnLine: func(line string) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "metrics listening" {
				urlc <- m["url"].(string)
			}
		},
	})
	select {
	case metricsURL = <-urlc:
	case <-time.After(15 * time.Second):
		e.t.Fatalf("worker did not serve metrics:\n%s", p.Logs())
	}
	return metricsURL, p.Logs
}

func (e *e2e) enqueue(payload string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(append([]string{"enqueue", "http.call", "--payload", payload}, args...)...)
	if code != 0 {
		e.t.Fatalf("enqueue: exit %d %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

func (e *e2e) paused(queue string) bool {
	info, err := e.insp.GetQueueInfo(queue)
	return err == nil && info.Paused
}

// tool is an HTTP tool that fails with 503 while failing is set.
type tool struct {
	srv     *httptest.Server
	failing atomic.Bool
	hits    atomic.Int64
}

func newTool(t *testing.T) *tool {
	tl := &tool{}
	tl.failing.Store(true)
	tl.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tl.hits.Add(1)
		if tl.failing.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(tl.srv.Close)
	return tl
}

func (tl *tool) payload(path string) string { return fmt.Sprintf(`{"url":%q}`, tl.srv.URL+path) }

func (tl *tool) host() string {
	u, _ := url.Parse(tl.srv.URL)
	return u.Host
}

func scrapeMetrics(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// noBreakers keeps breakers from opening in budget tests.
const noBreakers = `
breakers: {failures: 1000, min_calls: 1000}
`

func TestE2EBudgetPausesQueueAndRecovers(t *testing.T) {
	t.Parallel()
	e := newE2E(t, `
retry: {max_attempts: 1, base: 50ms, max: 100ms}
worker: {delayed_check_interval: 100ms}
workflows:
  publish:
    queue: publish
    budget: {slo: 0.9, window: 20s, min_events: 5, on_exhausted: pause}
`+noBreakers)
	tl := newTool(t)
	metricsURL, logs := e.worker()

	// Five failed attempts spend the budget: the queue is paused in asynq.
	for range 5 {
		e.enqueue(tl.payload("/publish"), "--workflow", "publish")
	}
	binarytest.WaitFor(t, 15*time.Second, "queue publish paused by its budget", func() bool { return e.paused("publish") })
	pausedAt := time.Now()
	out, errOut, code := e.run("budget", "publish", "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("budget --json: exit %d %q %q", code, out, errOut)
	}
	if st["state"] != "paused" || st["paused_by_budget"] != true || st["failures"] != 5.0 || st["events"] != 5.0 || st["until"] == nil {
		t.Fatalf("budget while paused = %v", st)
	}
	if !strings.Contains(logs(), `paused queue \"publish\" of workflow \"publish\"`) {
		t.Errorf("worker did not log the pause:\n%s", logs())
	}

	// The tool recovers; new steps wait in the paused queue ...
	tl.failing.Store(false)
	e.enqueue(tl.payload("/publish"), "--workflow", "publish")
	e.enqueue(tl.payload("/publish"), "--workflow", "publish")
	if info, _ := e.insp.GetQueueInfo("publish"); info.Pending != 2 || tl.hits.Load() != 5 {
		t.Fatalf("paused queue: pending %d, tool hits %d", info.Pending, tl.hits.Load())
	}
	// ... until the failures leave the 20s window: the budget recovers, the
	// queue is resumed, and the steps run.
	binarytest.WaitFor(t, 35*time.Second, "queue publish resumed", func() bool { return !e.paused("publish") })
	if waited := time.Since(pausedAt); waited < 10*time.Second {
		t.Errorf("queue resumed %v after the pause; the failures were still in the window", waited)
	}
	binarytest.WaitFor(t, 10*time.Second, "the waiting steps to succeed", func() bool { return tl.hits.Load() == 7 })
	out, _, _ = e.run("budget", "publish", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st["state"] != "ok" || st["paused"] != false {
		t.Fatalf("budget after recovery = %q", out)
	}

	m := scrapeMetrics(t, metricsURL)
	binarytest.WaitFor(t, 5*time.Second, "metrics to count both successes", func() bool {
		m = scrapeMetrics(t, metricsURL)
		return metricLine(m, `agentq_successes_total{kind="http.call",workflow="publish"} 2`) != ""
	})
	for _, want := range []string{
		`agentq_attempts_total{kind="http.call",workflow="publish"} 7`,
		`agentq_failures_total{class="retryable",kind="http.call",workflow="publish"} 5`,
		`agentq_dead_letters_total{kind="http.call",workflow="publish"} 5`,
		`agentq_step_duration_seconds_count{kind="http.call",workflow="publish"} 7`,
		`agentq_budget_burn_rate{window="long",workflow="publish"}`,
		`agentq_budget_remaining{workflow="publish"}`,
	} {
		if metricLine(m, want) == "" {
			t.Errorf("worker /metrics lacks %q", want)
		}
	}
}

func TestE2EBudgetRejectsEnqueues(t *testing.T) {
	t.Parallel()
	e := newE2E(t, `
retry: {max_attempts: 1}
workflows:
  ingest:
    queue: ingest
    budget: {slo: 0.9, window: 1m, min_events: 5, on_exhausted: reject}
`+noBreakers)
	tl := newTool(t)
	e.worker()
	for range 5 {
		e.enqueue(tl.payload("/ingest"), "--workflow", "ingest")
	}
	binarytest.WaitFor(t, 15*time.Second, "the five failures counted", func() bool {
		out, _, _ := e.run("budget", "ingest", "--json")
		var st map[string]any
		return json.Unmarshal([]byte(out), &st) == nil && st["failures"] == 5.0 && st["state"] == "exhausted"
	})
	_, errOut, code := e.run("enqueue", "http.call", "--payload", tl.payload("/ingest"), "--workflow", "ingest")
	if code != ExitError {
		t.Fatalf("enqueue to an exhausted reject workflow: exit %d, want %d", code, ExitError)
	}
	for _, want := range []string{`workflow "ingest" refuses new tasks`, "error budget is exhausted (5 failures of 5 attempts over the last 1m",
		"slo 0.9 allows 0.5", "refused until about", "agentq --redis-url ", " budget reset ingest`"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal %q lacks %q", errOut, want)
		}
	}
	if info, _ := e.insp.GetQueueInfo("ingest"); info.Size != 5 {
		t.Errorf("queue holds %d tasks, want the 5 dead ones: a refused enqueue reached it", info.Size)
	}
	out, _, code := e.run("budget", "reset", "ingest")
	if code != 0 || !strings.Contains(out, "cleared 5 attempts and 5 failures") {
		t.Fatalf("reset: %d %q", code, out)
	}
	if _, errOut, code := e.run("enqueue", "http.call", "--payload", tl.payload("/ingest"), "--workflow", "ingest"); code != 0 {
		t.Fatalf("enqueue after reset: %d %s", code, errOut)
	}
}

func TestE2EBreakerOpensSnoozesProbesAndCloses(t *testing.T) {
	t.Parallel()
	tl := newTool(t)
	e := newE2E(t, fmt.Sprintf(`
retry: {max_attempts: 10, base: 50ms, max: 100ms}
worker: {delayed_check_interval: 100ms}
breakers:
  overrides:
    %q: {failures: 3, cooldown: 4s}
`, tl.host()))
	metricsURL, logs := e.worker()

	// Three consecutive failures open the breaker of the tool's host.
	for range 3 {
		e.enqueue(tl.payload("/x"))
	}
	var list []map[string]any
	binarytest.WaitFor(t, 10*time.Second, "breaker open", func() bool {
		out, _, _ := e.run("breaker", "list", "--json")
		return json.Unmarshal([]byte(out), &list) == nil && len(list) == 1 && list[0]["state"] == "open"
	})
	if list[0]["name"] != tl.host() || list[0]["consecutive_failures"].(float64) < 3 || list[0]["next_probe"] == nil {
		t.Fatalf("breaker = %v", list[0])
	}
	openHits := tl.hits.Load()

	// A new step is snoozed: no call, no attempt spent.
	id := e.enqueue(tl.payload("/x"))
	var info *asynq.TaskInfo
	binarytest.WaitFor(t, 5*time.Second, "the step snoozed", func() bool {
		i, err := e.insp.GetTaskInfo("default", id)
		info = i
		return err == nil && i.State == asynq.TaskStateRetry
	})
	if info.Retried != 0 || !strings.Contains(info.LastErr, "breaker") || !strings.Contains(info.LastErr, "is open") {
		t.Fatalf("snoozed step: retried %d, last error %q", info.Retried, info.LastErr)
	}
	m := scrapeMetrics(t, metricsURL)
	if metricLine(m, fmt.Sprintf(`agentq_breaker_state{name=%q} 2`, tl.host())) == "" || metricLine(m, `agentq_snoozes_total{kind="http.call",workflow=""}`) == "" {
		t.Errorf("metrics while open lack the breaker state or snoozes:\n%s", m)
	}
	if got := tl.hits.Load(); got != openHits {
		t.Fatalf("tool called %d times while the breaker was open", got-openHits)
	}

	// The tool recovers; after the cool-down one probe closes the breaker
	// and every step succeeds, the snoozed one on its first attempt.
	tl.failing.Store(false)
	binarytest.WaitFor(t, 15*time.Second, "all four steps done", func() bool {
		q, err := e.insp.GetQueueInfo("default")
		return err == nil && q.Size == 0
	})
	if got := tl.hits.Load(); got != openHits+4 {
		t.Errorf("tool hits after recovery = %d, want %d (one probe, then the other three steps)", got, openHits+4)
	}
	out, _, _ := e.run("breaker", "list", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || list[0]["state"] != "closed" {
		t.Fatalf("breaker after the probe: %s", out)
	}
	// The worker's info lines reach its log within 100 ms (they are
	// batched): wait for them.
	var firstTry, closed bool
	deadline := time.Now().Add(5 * time.Second)
	for !(firstTry && closed) && time.Now().Before(deadline) {
		for _, line := range strings.Split(logs(), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			if l["task_id"] == id && l["outcome"] == "success" && l["attempt"] == 1.0 {
				firstTry = true
			}
			if l["message"] == "breaker closed: the probe succeeded" {
				closed = true
			}
		}
		if !(firstTry && closed) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !firstTry || !closed {
		t.Errorf("log lacks the snoozed step's success on attempt 1 (%v) or the close (%v):\n%s", firstTry, closed, logs())
	}
}
