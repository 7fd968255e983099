package survivetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m, binarytest.Cleanup) }

// poisonPkg is the worker binary under test: agentq with misbehaving kinds.
const poisonPkg = "github.com/agentq/agentq/internal/testbin/agentq-poison"

// progName is what the binary calls itself (cli.Main's default Name).
const progName = "agentq-poison"

// bundle is one test's Redis, binary and worker.
type bundle struct {
	t       *testing.T
	bin     string
	dir     string
	redis   *redistest.Server
	env     []string
	worker  *binarytest.Proc
	metrics string // http://host:port/metrics of the worker
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{t: t, bin: binarytest.BuildPackage(t, poisonPkg), dir: t.TempDir(), redis: redistest.Start(t)}
	b.env = binarytest.Environ(
		"AGENTQ_REDIS_URL="+b.redis.URL,
		"AGENTQ_LOG_FORMAT=json",
		"AGENTQ_LOG_LEVEL=info",
		"AGENTQ_RETRY_BASE=50ms",
		"AGENTQ_RETRY_MAX=200ms",
		"AGENTQ_WORKER_DELAYED_CHECK_INTERVAL=100ms",
		"AGENTQ_WORKER_SHUTDOWN_TIMEOUT=2s",
		"AGENTQ_DLQ_RECONCILE_INTERVAL=1s",
		"AGENTQ_DLQ_GRACE=1s",
		// Every call to the poison tool fails: its breaker would open and
		// snooze the rest for its cooldown, which is not what these tests
		// are about.
		"AGENTQ_BREAKERS_FAILURES=100000",
		"AGENTQ_BREAKERS_MIN_CALLS=100000",
	)
	return b
}

// run runs the binary to completion: stdout, stderr, exit code.
func (b *bundle) run(stdin string, args ...string) (string, string, int) {
	b.t.Helper()
	r := binarytest.Run(b.t, b.bin, args, binarytest.Options{Dir: b.dir, Env: b.env, Stdin: stdin, Timeout: 60 * time.Second})
	return r.Stdout, r.Stderr, r.Code
}

// startWorker runs `agentq-poison worker` with Prometheus metrics on a free
// loopback port until the test ends.
func (b *bundle) startWorker(concurrency int) {
	b.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	b.metrics = "http://" + addr + "/metrics"
	b.worker = binarytest.Start(b.t, b.bin, []string{"worker", "--concurrency", strconv.Itoa(concurrency), "--metrics-addr", addr},
		binarytest.Options{Dir: b.dir, Env: b.env})
	b.waitFor(30*time.Second, "the worker to start", func() bool {
		return strings.Contains(b.worker.Logs(), `"worker starting"`)
	})
}

// task is one line of an enqueue batch.
type task struct {
	Kind     string `json:"kind"`
	Payload  any    `json:"payload"`
	RunID    string `json:"run_id"`
	MaxRetry *int   `json:"max_retry,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
}

func retries(n int) *int { return &n }

// okTasks is n test.ok tasks of run runID.
func okTasks(runID string, n int) []task {
	ts := make([]task, n)
	for i := range ts {
		ts[i] = task{Kind: "test.ok", Payload: map[string]int{"n": i}, RunID: runID}
	}
	return ts
}

// enqueue enqueues tasks through the binary as one batch.
func (b *bundle) enqueue(tasks []task) {
	b.t.Helper()
	var in strings.Builder
	for _, tk := range tasks {
		line, err := json.Marshal(tk)
		if err != nil {
			b.t.Fatal(err)
		}
		in.Write(line)
		in.WriteByte('\n')
	}
	out, errOut, code := b.run(in.String(), "enqueue", "--batch", "-", "--json")
	var sum struct{ Lines, Enqueued int }
	if code != 0 || json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]), &sum) != nil || sum.Enqueued != len(tasks) {
		b.t.Fatalf("enqueue batch of %d: exit %d out %s err %s", len(tasks), code, out, errOut)
	}
}

// logLines are the worker's JSON log lines so far.
func (b *bundle) logLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.worker.Logs()))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// attempts are the worker's attempt lines of run runID, in order.
func (b *bundle) attempts(runID string) []map[string]any {
	var out []map[string]any
	for _, l := range b.logLines() {
		if l["message"] == "attempt" && l["run_id"] == runID {
			out = append(out, l)
		}
	}
	return out
}

// succeeded counts the distinct tasks of run runID that succeeded.
func (b *bundle) succeeded(runID string) int {
	ids := map[any]bool{}
	for _, a := range b.attempts(runID) {
		if a["outcome"] == "success" {
			ids[a["task_id"]] = true
		}
	}
	return len(ids)
}

// deadLetters are the worker's "dead letter recorded" lines by run id.
func (b *bundle) deadLetters() map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, l := range b.logLines() {
		if msg, _ := l["message"].(string); strings.HasPrefix(msg, "dead letter recorded") {
			out[fmt.Sprint(l["run_id"])] = l
		}
	}
	return out
}

// alive fails the test at once if the worker has exited.
func (b *bundle) alive() {
	b.t.Helper()
	if exited, err := b.worker.Exited(); exited {
		b.t.Fatalf("the worker (pid %d) exited: %v; its output from the first line that is no log line:\n%s",
			b.worker.PID(), err, crash(b.worker.Logs()))
	}
}

// afterPoison checks what must hold once the poison has settled: dlq list
// prints readable text, the worker serves okAfter tasks enqueued now, and
// it neither exited nor wrote anything but its JSON log lines.
func (b *bundle) afterPoison(okAfter int) {
	b.t.Helper()
	out, errOut, code := b.run("", "dlq", "list")
	if code != 0 {
		b.t.Fatalf("dlq list: exit %d err %s", code, errOut)
	}
	readable(b.t, "dlq list output", strings.ReplaceAll(out, "\n", " "))
	b.enqueue(okTasks("ok-after", okAfter))
	b.waitFor(30*time.Second, "the ok tasks enqueued after the poison", func() bool { return b.succeeded("ok-after") == okAfter })
	b.alive()
	b.cleanOutput()
}

// cleanOutput fails the test unless every line the worker wrote is one of
// its JSON log lines: a Go crash ("panic: ...", "fatal error: ...",
// goroutine dumps) writes plain text.
func (b *bundle) cleanOutput() {
	b.t.Helper()
	for i, line := range strings.Split(strings.TrimRight(b.worker.Logs(), "\n"), "\n") {
		if !json.Valid([]byte(line)) || strings.HasPrefix(line, "panic:") || strings.Contains(line, "fatal error:") {
			b.t.Fatalf("worker output line %d is not a log line: %.300q", i+1, line)
		}
	}
}

// waitFor polls cond until it holds, failing the test after within or as
// soon as the worker exits.
func (b *bundle) waitFor(within time.Duration, what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		b.alive()
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %v waiting for %s; worker output ends:\n%s", within, what, tail(b.worker.Logs(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// record is what `dlq list --json` prints per dead letter, in part.
type record struct {
	ID     string `json:"id"`
	TaskID string `json:"task_id"`
	RunID  string `json:"run_id"`
	Kind   string `json:"kind"`
	Class  string `json:"class"`
	Error  string `json:"error"`
	Status string `json:"status"`
}

// dlqList lists the dead letters through the binary, by run id.
func (b *bundle) dlqList() map[string]record {
	b.t.Helper()
	out, errOut, code := b.run("", "dlq", "list", "--json", "--limit", "1000")
	var recs []record
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
		b.t.Fatalf("dlq list --json: exit %d err %s out %.500s", code, errOut, out)
	}
	byRun := map[string]record{}
	for _, r := range recs {
		byRun[r.RunID] = r
	}
	return byRun
}

// metric reads one unlabelled sample from the worker's /metrics.
func (b *bundle) metric(name string) float64 {
	b.t.Helper()
	resp, err := http.Get(b.metrics)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.t.Fatal(err)
			}
			return f
		}
	}
	b.t.Fatalf("no %s in %s", name, b.metrics)
	return 0
}

// crash returns about 3000 bytes of out from its first line that is not
// a JSON log line: where a Go crash says what happened.
func crash(out string) string {
	off := 0
	for _, line := range strings.SplitAfter(out, "\n") {
		if strings.TrimSpace(line) != "" && !json.Valid([]byte(line)) {
			break
		}
		off += len(line)
	}
	s := out[off:]
	if len(s) > 3000 {
		s = s[:3000] + "..."
	}
	return s
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
