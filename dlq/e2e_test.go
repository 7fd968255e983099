package dlq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// End-to-end tests of the real agentq binary against a real Redis: a worker
// killed with SIGKILL mid-run, dead letters listed and replayed through the
// CLI.

// agentqBinary is the real binary, built once per test process.
func agentqBinary(t *testing.T) string { return binarytest.Build(t) }

// agentq runs the binary to completion with env and no AGENTQ_* settings
// from outside.
func agentq(t *testing.T, env []string, args ...string) binarytest.Result {
	t.Helper()
	// Generous: AGENTQ_E2E_DEAD may ask for tens of thousands of records.
	return binarytest.Run(t, agentqBinary(t), args, binarytest.Options{Env: binarytest.Environ(env...), Timeout: 10 * time.Minute})
}

// worker is an `agentq worker` process.
type worker struct{ *binarytest.Proc }

// startWorker runs `agentq worker` with JSON logs and env until the test
// ends. The tests kill workers and check what matters themselves, so the
// cleanup does not hold a worker to a clean exit.
func startWorker(t *testing.T, name string, env ...string) *worker {
	t.Helper()
	return &worker{binarytest.Start(t, agentqBinary(t), []string{"worker"}, binarytest.Options{
		Name:             name,
		Env:              binarytest.Environ(append([]string{"AGENTQ_LOG_FORMAT=json"}, env...)...),
		AllowUncleanExit: true,
	})}
}

// lines returns the worker's JSON log lines with message msg.
func (w *worker) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range w.Lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && strings.Contains(fmt.Sprint(m["message"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

func (w *worker) succeeded(taskID string) bool {
	for _, l := range w.lines("attempt") {
		if l["task_id"] == taskID && l["outcome"] == "success" {
			return true
		}
	}
	return false
}

// tool is a tool server that applies one side effect per Idempotency-Key,
// as real APIs do: a repeated key gets the stored answer. A call whose id is
// in block is held after its effect is applied, until the caller goes away.
type tool struct {
	*httptest.Server
	mu      sync.Mutex
	calls   map[string]int // Idempotency-Key -> calls
	effects map[string]int // Idempotency-Key -> side effects applied
	block   map[string]chan struct{}
	broken  atomic.Bool // /effect answers 400 before applying anything
}

func newTool(t *testing.T) *tool {
	tl := &tool{calls: map[string]int{}, effects: map[string]int{}, block: map[string]chan struct{}{}}
	tl.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice a caller that goes away.
		_, _ = io.Copy(io.Discard, r.Body)
		key := r.Header.Get("Idempotency-Key")
		tl.mu.Lock()
		tl.calls[key]++
		if tl.broken.Load() {
			tl.mu.Unlock()
			http.Error(w, `{"error":"invalid article"}`, http.StatusBadRequest)
			return
		}
		if tl.effects[key] == 0 {
			tl.effects[key]++
		}
		started, hold := tl.block[r.URL.Query().Get("id")]
		if hold {
			delete(tl.block, r.URL.Query().Get("id"))
		}
		tl.mu.Unlock()
		if hold {
			close(started)
			<-r.Context().Done() // held until the worker dies
			return
		}
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(tl.Close)
	return tl
}

func (tl *tool) hold(id string) <-chan struct{} {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	c := make(chan struct{})
	tl.block[id] = c
	return c
}

func (tl *tool) counts(key string) (calls, effects int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.calls[key], tl.effects[key]
}

// freezeProxy forwards TCP to Redis until a client sends marker; it forwards
// that write and then freezes every connection both ways, so that the write
// lands and nothing after it does: the worker behind it is stuck right after
// recording a success in the ledger, before acknowledging the task.
type freezeProxy struct {
	ln     net.Listener
	target string
	marker []byte
	armed  atomic.Bool // the marker freezes only while armed
	frozen atomic.Bool
	froze  chan struct{}
	once   sync.Once
}

func newFreezeProxy(t *testing.T, target string, marker string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target, marker: []byte(marker), froze: make(chan struct{})}
	p.armed.Store(true)
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); p.handle(c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

func (p *freezeProxy) addr() string { return p.ln.Addr().String() }

func (p *freezeProxy) handle(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			if !p.frozen.Load() {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}()
	buf := make([]byte, 64<<10)
	var prev []byte
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if p.frozen.Load() {
			continue
		}
		chunk := buf[:n]
		if p.armed.Load() && bytes.Contains(append(prev, chunk...), p.marker) {
			p.frozen.Store(true)
			_, _ = s.Write(chunk)
			p.once.Do(func() { close(p.froze) })
			continue
		}
		if _, err := s.Write(chunk); err != nil {
			return
		}
		prev = append(prev[:0], chunk[max(0, len(chunk)-len(p.marker)):]...)
	}
}

// TestE2EKillNineMidRunLosesNothingAndRepeatsNoSideEffect kills a worker
// with SIGKILL while it holds two tasks: A mid-call at the tool, B right
// after its handler succeeded, its connection to Redis frozen just after it
// sent the ledger's record of B's success. A new worker gets A back once
// its lease expires: A calls the tool again (the tool dedupes the key). No
// side effect happens twice, and how B ends depends on the completion fold:
//
//   - off: the record went alone, before asynq's completion; B is still
//     active, comes back and is answered from the ledger without calling
//     the tool;
//   - auto: the record went inside asynq's completion script, so Redis ran
//     both at once: B is done, recorded, and never runs again.
func TestE2EKillNineMidRunLosesNothingAndRepeatsNoSideEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about a minute for asynq's lease expiry")
	}
	t.Parallel()
	for _, fold := range []string{"off", "auto"} {
		t.Run("completion fold "+fold, func(t *testing.T) {
			t.Parallel()
			killNineMidRun(t, fold)
		})
	}
}

func killNineMidRun(t *testing.T, fold string) {
	srv := redistest.Start(t)
	tl := newTool(t)
	direct := "AGENTQ_REDIS_URL=" + srv.URL
	proxy := newFreezeProxy(t, srv.Addr, "}:ledger")
	proxy.armed.Store(false)
	w1 := startWorker(t, "worker1", fmt.Sprintf("AGENTQ_REDIS_URL=redis://%s/%d", proxy.addr(), srv.DB),
		"AGENTQ_WORKER_COMPLETION_FOLD="+fold)

	enqueue := func(id, key string) string {
		payload := fmt.Sprintf(`{"method":"POST","url":"%s/effect?id=%s","body":{"article":%q}}`, tl.URL, id, id)
		r := agentq(t, []string{direct}, "enqueue", "http.call", "--key", key, "--run", "run-kill", "--payload", payload)
		if r.Code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", id, r.Code, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	// A first keyed step through the proxy: the worker's scripts are
	// loaded, so the frozen write below is the one that carries B's record
	// (not an EVALSHA answered NOSCRIPT).
	taskW := enqueue("W", "publish-W")
	for deadline := time.Now().Add(30 * time.Second); !w1.succeeded(taskW); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("worker 1 never finished the warm-up step")
		}
	}
	proxy.armed.Store(true)
	aStarted := tl.hold("A")
	taskA := enqueue("A", "publish-A")
	select {
	case <-aStarted:
	case <-time.After(30 * time.Second):
		t.Fatal("worker 1 never called the tool for A")
	}
	taskB := enqueue("B", "publish-B")
	select {
	case <-proxy.froze:
	case <-time.After(30 * time.Second):
		t.Fatal("worker 1 never recorded B's success in the ledger")
	}
	w1.Kill(t)

	rdb := srv.Client(t)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	active := []string{taskA, taskB}
	if fold == "auto" {
		active = active[:1]
		if info, err := insp.GetTaskInfo("default", taskB); !errors.Is(err, asynq.ErrTaskNotFound) {
			t.Fatalf("task B after the kill: %+v, %v; want it done: its record and its completion were one script", info, err)
		}
	}
	for _, id := range active {
		info, err := insp.GetTaskInfo("default", id)
		if err != nil || info.State != asynq.TaskStateActive {
			t.Fatalf("task %s after the kill: %+v, %v; want it active with its worker dead", id, info, err)
		}
	}
	if keys, err := rdb.Keys(context.Background(), "agentq:{*}:ledger").Result(); err != nil || len(keys) != 2 {
		t.Fatalf("ledger keys after the kill: %v, %v; want W's and B's records", keys, err)
	}
	w2 := startWorker(t, "worker2", direct)
	bDone := func() bool { return fold == "auto" || w2.succeeded(taskB) }
	deadline := time.Now().Add(3 * time.Minute)
	for !(w2.succeeded(taskA) && bDone()) {
		if time.Now().After(deadline) {
			t.Fatalf("tasks did not end in success within 3 minutes (A %v, B %v)", w2.succeeded(taskA), w2.succeeded(taskB))
		}
		time.Sleep(250 * time.Millisecond)
	}
	callsA, effectsA := tl.counts("publish-A")
	callsB, effectsB := tl.counts("publish-B")
	if effectsA != 1 || effectsB != 1 {
		t.Fatalf("side effects: A %d, B %d; want exactly one each", effectsA, effectsB)
	}
	if callsA != 2 {
		t.Fatalf("A was called %d times; want 2 (the killed call and the redelivery)", callsA)
	}
	if callsB != 1 {
		t.Fatalf("B was called %d times; the ledger should have answered its redelivery", callsB)
	}
	skipped, ranB := false, false
	for _, l := range w2.lines("handler not called") {
		skipped = skipped || l["task_id"] == taskB
	}
	for _, l := range w2.lines("attempt") {
		ranB = ranB || l["task_id"] == taskB
	}
	switch {
	case fold == "off" && !skipped:
		t.Fatal("worker 2 did not log answering B from the ledger")
	case fold == "auto" && ranB:
		t.Fatal("worker 2 ran B again, though its completion reached Redis with its record")
	}
	for _, l := range w2.lines("attempt") {
		if (l["task_id"] == taskA || l["task_id"] == taskB) && l["outcome"] == "success" && l["attempt"].(float64) < 2 {
			t.Fatalf("redelivery ran as attempt %v; the ledger relies on Attempt > 1", l["attempt"])
		}
	}
	r := agentq(t, []string{direct}, "dlq", "list", "--json")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "[]" {
		t.Fatalf("dlq list after success: exit %d out %q", r.Code, r.Stdout)
	}
}

// TestE2EDeadLettersListedAndReplayed sends tasks that die (a permanent 400
// and a retryable 503 past its budget) through a real worker, lists them,
// refuses bad input, then replays them all once the tool is fixed: every
// record ends resolved and every side effect happened once. Set
// AGENTQ_E2E_DEAD=20000 to run it with 20,000 dead letters (asynq's own
// archive keeps 9,999 of them).
func TestE2EDeadLettersListedAndReplayed(t *testing.T) {
	t.Parallel()
	n := 300
	if v := os.Getenv("AGENTQ_E2E_DEAD"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatal(err)
		}
	}
	srv := redistest.Start(t)
	tl := newTool(t)
	tl.broken.Store(true)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_LOG_FORMAT=json"}
	startWorker(t, "worker", "AGENTQ_REDIS_URL="+srv.URL, "AGENTQ_WORKER_CONCURRENCY=50", "AGENTQ_LOG_LEVEL=warn",
		"AGENTQ_RETRY_MAX_ATTEMPTS=2", "AGENTQ_RETRY_BASE=10ms", "AGENTQ_RETRY_MAX=50ms")

	var batch bytes.Buffer
	for i := range n {
		fmt.Fprintf(&batch, `{"kind":"http.call","key":"art-%d","run_id":"run-e2e","payload":{"method":"POST","url":"%s/effect?id=%d"}}`+"\n", i, tl.URL, i)
	}
	batchFile := filepath.Join(t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(batchFile, batch.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := agentq(t, env, "enqueue", "--batch", batchFile); r.Code != 0 {
		t.Fatalf("enqueue --batch: exit %d: %s", r.Code, r.Stderr)
	}
	total := func() int {
		r := agentq(t, env, "dlq", "stats", "--json")
		var st struct {
			Total    int            `json:"total"`
			ByStatus map[string]int `json:"by_status"`
		}
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
			t.Fatalf("dlq stats: exit %d out %q err %q", r.Code, r.Stdout, r.Stderr)
		}
		return st.ByStatus["dead"]
	}
	deadline := time.Now().Add(5 * time.Minute)
	for total() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d dead letters recorded", total(), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d tasks died and were recorded in %v", n, time.Since(start))

	start = time.Now()
	r := agentq(t, env, "dlq", "list", "--json", "--limit", "0")
	var recs []map[string]any
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &recs) != nil {
		t.Fatalf("dlq list: exit %d err %q", r.Code, r.Stderr)
	}
	t.Logf("listed %d dead letters through the binary in %v", len(recs), time.Since(start))
	if len(recs) != n {
		t.Fatalf("listed %d, want %d", len(recs), n)
	}
	ids := map[string]bool{}
	for _, rec := range recs {
		ids[rec["id"].(string)] = true
		for _, f := range []string{"id", "queue", "kind", "workflow", "run_id", "key", "payload", "error", "attempts", "failed_at", "status"} {
			if _, ok := rec[f]; !ok {
				t.Fatalf("record lacks %q: %v", f, rec)
			}
		}
		if rec["kind"] != "http.call" || rec["run_id"] != "run-e2e" || !strings.Contains(rec["error"].(string), "400") || rec["status"] != "dead" {
			t.Fatalf("record = %v", rec)
		}
	}
	if len(ids) != n {
		t.Fatalf("%d distinct ids, want %d", len(ids), n)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "replay", "no-such-id"}, `no dead letter with id "no-such-id"`},
		{[]string{"dlq", "replay"}, "say which dead letters"},
		{[]string{"dlq", "replay", "1", "--all"}, "not both"},
		{[]string{"dlq", "replay", "1", "--payload", `{"url":"ftp://x"}`}, "replay refused"},
		{[]string{"dlq", "purge", "--all"}, "--yes"},
		{[]string{"dlq", "list", "--class", "bogus"}, "unknown class"},
	} {
		r := agentq(t, env, tt.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and %q", tt.args, r.Code, r.Stderr, tt.want)
		}
	}
	// A selection that matches nothing is not bad input: exit 0, said so.
	if r := agentq(t, env, "dlq", "replay", "--kind", "noop"); r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "no dead letters match") {
		t.Errorf("replay of an empty selection: exit %d stdout %q stderr %q, want exit 0 and \"no dead letters match\"", r.Code, r.Stdout, r.Stderr)
	}
	if total() != n {
		t.Fatal("bad input changed records")
	}

	// The tool is fixed: replay everything.
	tl.broken.Store(false)
	start = time.Now()
	r = agentq(t, env, "dlq", "replay", "--all", "--json")
	var sum struct {
		Selected int              `json:"selected"`
		Replayed []map[string]any `json:"replayed"`
		Failed   []map[string]any `json:"failed"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &sum) != nil || sum.Selected != n || len(sum.Replayed) != n || len(sum.Failed) != 0 {
		t.Fatalf("replay --all: exit %d selected %d replayed %d failed %v err %q", r.Code, sum.Selected, len(sum.Replayed), sum.Failed, r.Stderr)
	}
	took := time.Since(start)
	t.Logf("replayed %d dead letters through the binary in %v (%.0f/s)", n, took, float64(n)/took.Seconds())
	deadline = time.Now().Add(5 * time.Minute)
	resolved := 0
	for resolved < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d resolved", resolved, n)
		}
		time.Sleep(200 * time.Millisecond)
		r := agentq(t, env, "dlq", "list", "--json", "--limit", "0", "--status", "resolved")
		var got []json.RawMessage
		_ = json.Unmarshal([]byte(r.Stdout), &got)
		resolved = len(got)
	}
	for i := range n {
		if _, effects := tl.counts(fmt.Sprint("art-", i)); effects != 1 {
			t.Fatalf("art-%d: %d side effects, want 1", i, effects)
		}
	}
	info, err := asynq.NewInspectorFromRedisClient(srv.Client(t)).GetQueueInfo("default")
	if err != nil || info.Archived != 0 {
		t.Fatalf("asynq archive after replay: %+v, %v; replay deletes the archived originals", info, err)
	}
}
