package dlq_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

// environ is the process environment without AGENTQ_* settings, plus env.
func environ(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTQ_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

type cliResult struct {
	code     int
	out, err string
}

func agentq(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(agentqBinary(t), args...)
	cmd.Env = environ(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{code: code, out: out.String(), err: errb.String()}
}

// worker is an `agentq worker` process.
type worker struct {
	cmd  *exec.Cmd
	logf string
}

func startWorker(t *testing.T, name string, env ...string) *worker {
	t.Helper()
	logf := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentqBinary(t), "worker")
	cmd.Env = environ(append([]string{"AGENTQ_LOG_FORMAT=json"}, env...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, logf: logf}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("%s log (last 4 KiB):\n%s", name, tail(b, 4096))
		}
	})
	return w
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kill sends SIGKILL: no shutdown, no cleanup, no acknowledgement.
func (w *worker) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = w.cmd.Wait()
}

// lines returns the worker's JSON log lines with message msg.
func (w *worker) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	f, err := os.Open(w.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && strings.Contains(fmt.Sprint(m["message"]), msg) {
			out = append(out, m)
		}
	}
	return out
}

func (w *worker) succeeded(t *testing.T, taskID string) bool {
	for _, l := range w.lines(t, "attempt") {
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
		if bytes.Contains(append(prev, chunk...), p.marker) {
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
// after its success was recorded in the ledger but before asynq heard of
// it. A new worker gets both back once asynq's recoverer sees their leases
// expired (about a minute): A calls the tool again (the tool dedupes the
// key), B is answered from the ledger without calling the tool. Both end in
// success; no side effect happens twice.
func TestE2EKillNineMidRunLosesNothingAndRepeatsNoSideEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about a minute for asynq's lease expiry")
	}
	t.Parallel()
	srv := redistest.Start(t)
	tl := newTool(t)
	direct := "AGENTQ_REDIS_URL=" + srv.URL
	proxy := newFreezeProxy(t, srv.Addr, "}:ledger")
	w1 := startWorker(t, "worker1", fmt.Sprintf("AGENTQ_REDIS_URL=redis://%s/%d", proxy.addr(), srv.DB))

	enqueue := func(id, key string) string {
		payload := fmt.Sprintf(`{"method":"POST","url":"%s/effect?id=%s","body":{"article":%q}}`, tl.URL, id, id)
		r := agentq(t, []string{direct}, "enqueue", "http.call", "--key", key, "--run", "run-kill", "--payload", payload)
		if r.code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", id, r.code, r.err)
		}
		return strings.TrimSpace(r.out)
	}
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
	w1.kill(t)

	insp := asynq.NewInspectorFromRedisClient(srv.Client(t))
	for _, id := range []string{taskA, taskB} {
		info, err := insp.GetTaskInfo("default", id)
		if err != nil || info.State != asynq.TaskStateActive {
			t.Fatalf("task %s after the kill: %+v, %v; want it active with its worker dead", id, info, err)
		}
	}
	w2 := startWorker(t, "worker2", direct)
	deadline := time.Now().Add(3 * time.Minute)
	for !(w2.succeeded(t, taskA) && w2.succeeded(t, taskB)) {
		if time.Now().After(deadline) {
			t.Fatalf("tasks did not end in success within 3 minutes (A %v, B %v)", w2.succeeded(t, taskA), w2.succeeded(t, taskB))
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
	skipped := false
	for _, l := range w2.lines(t, "handler not called") {
		skipped = skipped || l["task_id"] == taskB
	}
	if !skipped {
		t.Fatal("worker 2 did not log answering B from the ledger")
	}
	for _, l := range w2.lines(t, "attempt") {
		if (l["task_id"] == taskA || l["task_id"] == taskB) && l["outcome"] == "success" && l["attempt"].(float64) < 2 {
			t.Fatalf("redelivery ran as attempt %v; the ledger relies on Attempt > 1", l["attempt"])
		}
	}
	r := agentq(t, []string{direct}, "dlq", "list", "--json")
	if r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("dlq list after success: exit %d out %q", r.code, r.out)
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
	if r := agentq(t, env, "enqueue", "--batch", batchFile); r.code != 0 {
		t.Fatalf("enqueue --batch: exit %d: %s", r.code, r.err)
	}
	total := func() int {
		r := agentq(t, env, "dlq", "stats", "--json")
		var st struct {
			Total    int            `json:"total"`
			ByStatus map[string]int `json:"by_status"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.out), &st) != nil {
			t.Fatalf("dlq stats: exit %d out %q err %q", r.code, r.out, r.err)
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
	if r.code != 0 || json.Unmarshal([]byte(r.out), &recs) != nil {
		t.Fatalf("dlq list: exit %d err %q", r.code, r.err)
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
		{[]string{"dlq", "replay", "--kind", "noop"}, "no dead letters match"},
		{[]string{"dlq", "replay", "1", "--payload", `{"url":"ftp://x"}`}, "replay refused"},
		{[]string{"dlq", "purge", "--all"}, "--yes"},
		{[]string{"dlq", "list", "--class", "bogus"}, "unknown class"},
	} {
		r := agentq(t, env, tt.args...)
		if r.code != 2 || !strings.Contains(r.err, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and %q", tt.args, r.code, r.err, tt.want)
		}
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
	if r.code != 0 || json.Unmarshal([]byte(r.out), &sum) != nil || sum.Selected != n || len(sum.Replayed) != n || len(sum.Failed) != 0 {
		t.Fatalf("replay --all: exit %d selected %d replayed %d failed %v err %q", r.code, sum.Selected, len(sum.Replayed), sum.Failed, r.err)
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
		_ = json.Unmarshal([]byte(r.out), &got)
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
