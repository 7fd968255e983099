//go:build unix

package faults_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// TestMain runs every scenario at once unless -parallel says otherwise:
// the slow ones wait on asynq's lease recovery, not on CPU, so the suite
// takes about as long as its slowest scenario.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("faults: skipped in -short mode (it runs the agentq binary against real redis-server processes for a few minutes)")
		os.Exit(0)
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "16")
	}
	redistest.Main(m, printSummary, binarytest.Cleanup)
}

var (
	summaryMu sync.Mutex
	summary   []string
)

// printSummary prints every scenario's numbers once more at the end, in
// name order, so the CI log has them in one place.
func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	sort.Strings(summary)
	var b strings.Builder
	b.WriteString("fault suite summary:\n")
	for _, l := range summary {
		b.WriteString("  " + l + "\n")
	}
	fmt.Print(b.String())
	// go test ./... shows a passing package's output only with -v; .ci/run
	// names a file here to print the numbers after the run.
	if path := os.Getenv("AGENTQ_TEST_FAULT_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "faults: write %s: %v\n", path, err)
		}
	}
}

// scenario is one fault scenario: its own redis-server, tool server and
// agentq processes, and the keys it enqueued.
type scenario struct {
	t        *testing.T
	name     string
	bin      string
	redisURL string
	tool     *tool
	rdb      *redis.Client
	insp     *asynq.Inspector
	start    time.Time

	keys    []string        // every key enqueued, in order
	mustDie map[string]bool // keys whose tasks must exhaust their attempts
}

func newScenario(t *testing.T, name, redisAddr string) *scenario {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return &scenario{
		t: t, name: name, bin: binarytest.Build(t), redisURL: "redis://" + redisAddr + "/0",
		tool: newTool(t), rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb),
		start: time.Now(), mustDie: map[string]bool{},
	}
}

// env is the environment of every agentq process of the scenario: no
// AGENTQ_* from outside; fast retries, so exhausted tasks die in seconds;
// breakers that never open, so that every failure is an attempt (an open
// breaker snoozes calls instead); a short shutdown so cleanup is quick;
// the dead-letter reconciler sweeping every second.
func (s *scenario) env(extra ...string) []string {
	out := binarytest.Environ(
		"AGENTQ_REDIS_URL="+s.redisURL,
		"AGENTQ_LOG_FORMAT=json",
		"AGENTQ_RETRY_BASE=100ms",
		"AGENTQ_RETRY_MAX=1s",
		"AGENTQ_RETRY_MAX_ATTEMPTS=5",
		"AGENTQ_WORKER_DELAYED_CHECK_INTERVAL=100ms",
		"AGENTQ_WORKER_SHUTDOWN_TIMEOUT=2s",
		"AGENTQ_BREAKERS_FAILURES=1000000",
		"AGENTQ_BREAKERS_MIN_CALLS=1000000",
		"AGENTQ_DLQ_RECONCILE_INTERVAL=1s",
		"AGENTQ_DLQ_GRACE=1s",
	)
	return append(out, extra...)
}

// agentq runs the binary to completion.
func (s *scenario) agentq(args ...string) binarytest.Result {
	s.t.Helper()
	return binarytest.Run(s.t, s.bin, args, binarytest.Options{Env: s.env(), Timeout: 2 * time.Minute})
}

// worker starts `agentq worker` with extra environment.
func (s *scenario) worker(name string, extra ...string) *binarytest.Proc {
	s.t.Helper()
	// Fault scenarios kill and freeze workers and Redis: cleanup stops a
	// worker however it can, without holding it to a clean exit.
	return binarytest.Start(s.t, s.bin, []string{"worker"}, binarytest.Options{
		Name: s.name + "/" + name, Env: s.env(extra...), AllowUncleanExit: true, StopWithin: 10 * time.Second,
	})
}

// task is one line of an `agentq enqueue --batch` file.
type task struct {
	Kind     string         `json:"kind"`
	Key      string         `json:"key"`
	Payload  map[string]any `json:"payload"`
	MaxRetry *int           `json:"max_retry,omitempty"`
}

// call returns an http.call task with key to the tool at pathQuery.
func (s *scenario) call(key, pathQuery string) task {
	return task{Kind: "http.call", Key: key, Payload: map[string]any{"method": "POST", "url": s.tool.url(pathQuery)}}
}

// enqueue enqueues tasks through `agentq enqueue --batch` and fails the
// test unless every line was enqueued.
func (s *scenario) enqueue(tasks ...task) {
	s.t.Helper()
	var b bytes.Buffer
	for _, tk := range tasks {
		line, err := json.Marshal(tk)
		if err != nil {
			s.t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
		s.keys = append(s.keys, tk.Key)
	}
	f := filepath.Join(s.t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
		s.t.Fatal(err)
	}
	r := s.agentq("enqueue", "--batch", f, "--json")
	var sum struct {
		Enqueued int `json:"enqueued"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout[strings.LastIndex(strings.TrimSuffix(r.Stdout, "\n"), "\n")+1:]), &sum) != nil || sum.Enqueued != len(tasks) {
		s.t.Fatalf("enqueue --batch of %d: exit %d, out %q, err %q", len(tasks), r.Code, r.Stdout, r.Stderr)
	}
}

// deadRecord is what `agentq dlq list --json` prints for one dead letter.
type deadRecord struct {
	ID       string `json:"id"`
	Key      string `json:"key"`
	Status   string `json:"status"`
	Class    string `json:"class"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
}

// deadLetters lists the dead-letter store through the binary, by key.
func (s *scenario) deadLetters() map[string]deadRecord {
	s.t.Helper()
	r := s.agentq("dlq", "list", "--json", "--limit", "0")
	var recs []deadRecord
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &recs) != nil {
		s.t.Fatalf("dlq list: exit %d, out %q, err %q", r.Code, r.Stdout, r.Stderr)
	}
	m := map[string]deadRecord{}
	for _, rec := range recs {
		if rec.Status == "dead" {
			m[rec.Key] = rec
		}
	}
	return m
}

// activeKeys returns the keys of the tasks asynq holds as active: what the
// workers had taken and not acknowledged.
func (s *scenario) activeKeys() map[string]bool {
	s.t.Helper()
	m := map[string]bool{}
	infos, err := s.insp.ListActiveTasks("default", asynq.PageSize(10000))
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		s.t.Fatalf("list active tasks: %v", err)
	}
	for _, in := range infos {
		m[in.Headers[jobs.HeaderKey]] = true
	}
	return m
}

// idle reports whether asynq holds no task that may still run.
func (s *scenario) idle() bool {
	info, err := s.insp.GetQueueInfo("default")
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return true
	}
	if err != nil {
		return false // Redis may be restarting
	}
	return info.Pending+info.Active+info.Scheduled+info.Retry+info.Aggregating == 0
}

// tally is a scenario's numbers.
type tally struct {
	enqueued int
	done     int      // keys with at least one side effect
	dead     int      // keys in the dead-letter store
	lost     []string // keys with neither
	dup      []string // keys with more than one side effect
	deadDone []string // keys both done and dead
	requests int      // requests the tool received for the keys
	seconds  float64  // scenario wall time
	settled  time.Time
}

// settle waits until every key is done or dead and asynq holds nothing
// that may still run, then counts. A key still unsettled at the deadline
// is counted lost.
func (s *scenario) settle(within time.Duration) tally {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var dead map[string]deadRecord
	var effects map[string]int
	for {
		effects = s.tool.effects()
		dead = s.deadLetters()
		pending := 0
		for _, k := range s.keys {
			if effects[k] == 0 && dead[k].Key == "" {
				pending++
			}
		}
		if (pending == 0 && s.idle()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	tl := tally{enqueued: len(s.keys), seconds: time.Since(s.start).Seconds(), settled: time.Now()}
	keys := map[string]bool{}
	for _, k := range s.keys {
		keys[k] = true
		switch {
		case effects[k] > 0 && dead[k].Key != "":
			tl.deadDone = append(tl.deadDone, k)
		case effects[k] > 0:
		case dead[k].Key != "":
		default:
			tl.lost = append(tl.lost, k)
		}
		if effects[k] > 0 {
			tl.done++
		}
		if dead[k].Key != "" {
			tl.dead++
		}
		if effects[k] > 1 {
			tl.dup = append(tl.dup, k)
		}
	}
	for _, r := range s.tool.requests() {
		if keys[r.key] {
			tl.requests++
		}
	}
	return tl
}

// check asserts the invariants every scenario shares: nothing lost; every
// task that ran more than once was at risk at the fault (in flight, or
// finished too recently for its acknowledgement to be durable); every key
// that must die is in the dead-letter store and no other; no key both
// succeeded and died. It prints the scenario's line and returns it.
func (s *scenario) check(tl tally, atRisk map[string]bool, extra string) {
	s.t.Helper()
	line := fmt.Sprintf("fault: %s: enqueued=%d done=%d lost=%d dup=%d (in flight at fault: %d) dead=%d requests=%d seconds=%.1f",
		s.name, tl.enqueued, tl.done, len(tl.lost), len(tl.dup), len(atRisk), tl.dead, tl.requests, tl.seconds)
	if extra != "" {
		line += " " + extra
	}
	fmt.Println(line)
	s.t.Log(line)
	summaryMu.Lock()
	summary = append(summary, line)
	summaryMu.Unlock()

	if len(tl.lost) > 0 {
		s.t.Errorf("%d tasks lost (neither done at the tool nor in the dead-letter store): %v", len(tl.lost), head(tl.lost))
	}
	var unexplained []string
	for _, k := range tl.dup {
		if !atRisk[k] {
			unexplained = append(unexplained, k)
		}
	}
	if len(unexplained) > 0 {
		s.t.Errorf("%d tasks ran more than once without being in flight at the fault: %v", len(unexplained), head(unexplained))
	}
	if len(tl.deadDone) > 0 {
		s.t.Errorf("%d tasks succeeded at the tool and were dead-lettered too: %v", len(tl.deadDone), head(tl.deadDone))
	}
	dead := s.deadLetters()
	var missing, extraDead []string
	for k := range s.mustDie {
		if dead[k].Key == "" {
			missing = append(missing, k)
		}
	}
	for k := range dead {
		if !s.mustDie[k] && slices.Contains(s.keys, k) {
			extraDead = append(extraDead, k)
		}
	}
	if len(missing) > 0 {
		s.t.Errorf("exhausted tasks missing from the dead-letter store: %v", head(missing))
	}
	if len(extraDead) > 0 {
		s.t.Errorf("tasks dead-lettered that should have succeeded: %v", head(extraDead))
	}
}

func head(keys []string) []string {
	sort.Strings(keys)
	if len(keys) > 10 {
		return append(keys[:10:10], fmt.Sprintf("... %d more", len(keys)-10))
	}
	return keys
}

// union returns the keys in any of the sets.
func union(sets ...map[string]bool) map[string]bool {
	m := map[string]bool{}
	for _, s := range sets {
		for k := range s {
			m[k] = true
		}
	}
	return m
}

// ledgerAnswered counts the redeliveries the workers answered from the
// idempotency ledger without calling the tool.
func ledgerAnswered(ps ...*binarytest.Proc) int {
	n := 0
	for _, p := range ps {
		for _, l := range p.Lines() {
			if strings.Contains(l, "handler not called") {
				n++
			}
		}
	}
	return n
}

// alive fails the test if p has exited.
func alive(t *testing.T, p *binarytest.Proc) {
	t.Helper()
	if exited, err := p.Exited(); exited {
		t.Errorf("%s exited during the scenario: %v", p.Name(), err)
	}
}
