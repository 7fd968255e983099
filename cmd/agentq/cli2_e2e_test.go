package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/jobs"
)

// lastLine is the last line of out: the summary of enqueue --batch --json.
func lastLine(out string) string {
	out = strings.TrimSuffix(out, "\n")
	return out[strings.LastIndex(out, "\n")+1:]
}

// until polls cond every 20ms until it holds, failing the test after within.
func until(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(within)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", within, what)
		case <-tick.C:
		}
	}
}

// TestCLI2BatchJSONPerLine: enqueue --batch --json prints one object per
// line (enqueued, duplicate or rejected, with its line number), then the
// summary; the exit code still says lines were rejected; and with stderr
// not a terminal no progress bar is drawn, for a file (whose lines are
// counted first) as for stdin.
func TestCLI2BatchJSONPerLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var in strings.Builder
	in.WriteString(`{"kind":"noop","payload":{},"key":"a"}` + "\n")
	in.WriteString("\n") // blank: skipped, still numbered
	in.WriteString(`{"kind":"noop","payload":{},"key":"a"}` + "\n")
	in.WriteString(`{"kind":"nope","payload":{}}` + "\n")
	for range 600 { // more than two chunks, so the bar would move
		in.WriteString(`{"kind":"noop","payload":{}}` + "\n")
	}
	file := filepath.Join(e.dir, "tasks.jsonl")
	if err := os.WriteFile(file, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"-", file} {
		t.Run("batch "+src, func(t *testing.T) {
			if src == file {
				e.rdb.FlushDB(context.Background()) // key "a" is new again
			}
			out, errOut, code := e.run(in.String(), "enqueue", "--batch", src, "--json")
			if code != 3 {
				t.Fatalf("exit %d, want 3 (a line rejected); stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 604 {
				t.Fatalf("%d lines of output, want 603 results and a summary", len(lines))
			}
			type line struct {
				Line           int
				Status, ID     string
				Queue, Error   string
				Summary        bool
				Lines, Enqueue int
			}
			var got []line
			for _, l := range lines {
				var v line
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				got = append(got, v)
			}
			if g := got[0]; g.Line != 1 || g.Status != "enqueued" || g.ID == "" || g.Queue != "default" {
				t.Errorf("line 1: %+v", g)
			}
			if g := got[1]; g.Line != 3 || g.Status != "duplicate" || g.ID != got[0].ID {
				t.Errorf("line 3 (a duplicate of line 1): %+v", g)
			}
			if g := got[2]; g.Line != 4 || g.Status != "rejected" || !strings.Contains(g.Error, `unknown task kind "nope"`) {
				t.Errorf("line 4: %+v", g)
			}
			if g := got[602]; g.Line != 604 || g.Status != "enqueued" {
				t.Errorf("last task line: %+v", g)
			}
			var sum struct {
				Summary                     bool
				Lines, Enqueued, Duplicates int
				Rejected                    []struct{ Line int }
			}
			if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
				t.Fatal(err)
			}
			if !sum.Summary || sum.Lines != 603 || sum.Enqueued != 601 || sum.Duplicates != 1 || len(sum.Rejected) != 1 || sum.Rejected[0].Line != 4 {
				t.Errorf("summary: lines %d enqueued %d duplicates %d rejected %d", sum.Lines, sum.Enqueued, sum.Duplicates, len(sum.Rejected))
			}
			// stderr is a pipe here: no bar, only the warning that no
			// worker serves queue default and the rejection.
			if strings.Contains(errOut, "\r") || strings.Contains(errOut, "tasks/") || strings.Contains(errOut, "enqueue ") {
				t.Errorf("progress output on a pipe: %q", errOut)
			}
		})
	}
	// Without --json, no bar either.
	_, errOut, _ := e.run(in.String(), "enqueue", "--batch", file)
	if strings.Contains(errOut, "\r") || strings.Contains(errOut, "tasks/") {
		t.Errorf("progress output on a pipe: %q", errOut)
	}
}

// TestCLI2UnservedQueueWarning: enqueueing to a queue no worker serves
// warns on stderr (and in the JSON, never as text on stdout); once a worker
// serves the queue, nothing is said. A batch warns once per queue.
func TestCLI2UnservedQueueWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const warning = `no worker serves queue "served"`
	out, errOut, code := e.run("", "enqueue", "noop", "--payload", "{}", "--queue", "served")
	if code != 0 || !strings.Contains(errOut, "warning: "+warning) || strings.Contains(out, "warning") {
		t.Fatalf("no worker: exit %d stdout %q stderr %q; want the warning on stderr", code, out, errOut)
	}
	out, errOut, code = e.run("", "enqueue", "noop", "--payload", "{}", "--queue", "served", "--json")
	var res struct{ ID, Warning string }
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !strings.Contains(res.Warning, warning) || !strings.Contains(errOut, warning) {
		t.Fatalf("no worker, --json: exit %d stdout %q stderr %q", code, out, errOut)
	}
	batch := `{"kind":"noop","payload":{},"queue":"served"}` + "\n" + `{"kind":"noop","payload":{},"queue":"served"}` + "\n" +
		`{"kind":"noop","payload":{},"queue":"other"}` + "\n"
	out, errOut, code = e.run(batch, "enqueue", "--batch", "-", "--json")
	var sum struct{ Warnings []string }
	if code != 0 || json.Unmarshal([]byte(lastLine(out)), &sum) != nil || len(sum.Warnings) != 2 ||
		strings.Count(errOut, warning) != 1 || strings.Count(errOut, `no worker serves queue "other"`) != 1 {
		t.Fatalf("batch: exit %d warnings %q stderr %q", code, sum.Warnings, errOut)
	}

	// The warning suggests a worker that serves the queue and still the
	// ones a worker of this configuration serves (default), not only it.
	m := regexp.MustCompile(`start one with: \S+ --redis-url \S+ worker --queues (\S+) `).FindStringSubmatch(res.Warning)
	if m == nil || m[1] != "default=1,served=1" {
		t.Fatalf("warning %q: want it to suggest worker --queues default=1,served=1", res.Warning)
	}

	// The worker it suggests (its server record is up): no warning, for
	// the queue nor for default.
	e.startWorker("--queues", m[1])
	until(t, 20*time.Second, "the worker's server record", func() bool {
		return e.rdb.ZCard(context.Background(), "asynq:servers").Val() > 0
	})
	for _, q := range []string{"served", "default"} {
		out, errOut, code = e.run("", "enqueue", "noop", "--payload", "{}", "--queue", q, "--json")
		res = struct{ ID, Warning string }{}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.ID == "" || res.Warning != "" || strings.Contains(errOut, "warning") {
			t.Fatalf("worker serving %s: exit %d stdout %q stderr %q; want no warning", q, code, out, errOut)
		}
	}
	// The other queue is still unserved.
	_, errOut, _ = e.run("", "enqueue", "noop", "--payload", "{}", "--queue", "other")
	if !strings.Contains(errOut, `no worker serves queue "other"`) {
		t.Fatalf("queue other: stderr %q", errOut)
	}
}

// complete runs the binary's hidden __complete command and returns the
// values offered (without descriptions) and its exit code.
func (e *env) complete(args ...string) ([]string, int) {
	e.t.Helper()
	out, _, code := e.run("", append([]string{"__complete"}, args...)...)
	var values []string
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		values = append(values, v)
	}
	return values, code
}

// TestCLI2Completion: shell completion offers kinds, queues, workflows,
// dead-letter ids and run ids, and with Redis down or a bad configuration
// it returns at once with what needs no Redis, or nothing.
func TestCLI2Completion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := filepath.Join(e.dir, "agentq.yaml")
	if err := os.WriteFile(cfg, []byte(`workflows:
  triage:
    queue: wf-queue
    steps:
      - name: one
        kind: noop
        payload: {}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A dead letter (a tool answering 400: permanent) and a run to offer.
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad request", http.StatusBadRequest)
	}))
	t.Cleanup(tool.Close)
	// The dead letter carries run id run-7 (enqueue --run), which no run
	// started: --run offers it as well as the started run's.
	if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", `{"url":"`+tool.URL+`"}`, "--queue", "q-known", "--run", "run-7"); code != 0 {
		t.Fatalf("enqueue: exit %d %s", code, errOut)
	}
	// No worker serves the workflow's queue: run start warns, on stderr
	// and in --json, and suggests a worker of this configuration.
	out, errOut, code := e.run("", "--config", cfg, "run", "start", "triage", "--json")
	if code != 0 {
		t.Fatalf("run start: exit %d %s %s", code, out, errOut)
	}
	var started struct {
		RunID   string `json:"run_id"`
		Warning string `json:"warning"`
	}
	if err := json.Unmarshal([]byte(out), &started); err != nil || started.RunID == "" {
		t.Fatalf("run start output %q: %v", out, err)
	}
	const unserved = `no worker serves queue "wf-queue"`
	hint := regexp.MustCompile(`start one with: \S+ --config \S+ --redis-url \S+ worker \(a worker of this configuration serves it\)$`)
	if !strings.Contains(started.Warning, unserved) || !hint.MatchString(started.Warning) || !strings.Contains(errOut, "warning: "+unserved) {
		t.Errorf("run start with no worker: warning %q stderr %q; want %q suggesting %s", started.Warning, errOut, unserved, hint)
	}
	e.startWorker("--config", cfg, "--queues", "q-known=1,wf-queue=1")
	until(t, 30*time.Second, "a dead letter", func() bool {
		return e.rdb.Exists(context.Background(), "agentq:{agentq-dlq}:r:1").Val() == 1
	})

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"kinds for enqueue", []string{"enqueue", ""}, []string{"http.call", "llm.chat", "noop"}},
		{"kinds by prefix", []string{"enqueue", "ht"}, []string{"http.call"}},
		{"no second kind", []string{"enqueue", "noop", ""}, nil},
		{"--kind", []string{"dlq", "list", "--kind", "n"}, []string{"noop"}},
		{"queues: configured and known", []string{"enqueue", "noop", "--queue", ""}, []string{"default", "wf-queue", "q-known"}},
		{"workflows", []string{"run", "start", ""}, []string{"triage"}},
		{"--workflow", []string{"enqueue", "noop", "--workflow", "t"}, []string{"triage"}},
		{"dead-letter ids", []string{"dlq", "show", ""}, []string{"1"}},
		{"dead-letter ids not repeated", []string{"dlq", "replay", "1", ""}, nil},
		{"run ids", []string{"run", "show", ""}, []string{started.RunID}},
		{"--run", []string{"enqueue", "noop", "--run", "r_"}, []string{started.RunID}},
		{"--run: runs', then dead letters'", []string{"dlq", "list", "--run", ""}, []string{started.RunID, "run-7"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, code := e.complete(append([]string{"--config", cfg}, tc.args...)...)
			if code != 0 || !slices.Equal(got, tc.want) {
				t.Fatalf("completion of %q: %q (exit %d), want %q", tc.args, got, code, tc.want)
			}
		})
	}

	t.Run("redis down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		for _, args := range [][]string{{"dlq", "show", ""}, {"run", "show", ""}, {"enqueue", "noop", "--queue", ""}} {
			got, code := e.complete(append([]string{"--config", cfg, "--redis-url", "redis://" + addr + "/0"}, args...)...)
			want := []string(nil)
			if args[0] == "enqueue" {
				want = []string{"default", "wf-queue"} // the configuration's
			}
			if code != 0 || !slices.Equal(got, want) {
				t.Errorf("%q with Redis down: %q (exit %d), want %q", args, got, code, want)
			}
		}
	})
	t.Run("run start with a worker serving", func(t *testing.T) {
		out, errOut, code := e.run("", "--config", cfg, "run", "start", "triage", "--key", "served", "--json")
		if code != 0 || strings.Contains(out, "warning") || strings.Contains(errOut, "warning") {
			t.Errorf("run start: exit %d stdout %q stderr %q; want no warning", code, out, errOut)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		got, code := e.complete("--redis-url", "notaurl", "enqueue", "")
		if code != 0 || len(got) != 0 {
			t.Errorf("bad config: %q (exit %d), want nothing", got, code)
		}
	})
}

// TestCLI2DevConfiguredRedis runs `agentq dev` on a configured Redis with
// the dashboard's port taken: it says it moved off the busy port, prints
// commands that work as shown (the binary as invoked, the Redis URL), and
// when interrupted removes the keys its demo created and owns (its queue's,
// run's, dead letter's, ledger entries, breaker) and none other: another
// client's dead letters, recorded while dev runs, survive, and so do the
// shared keys of the dead-letter store (its counter, and its lock until it
// expires), which dev leaves.
func TestCLI2DevConfiguredRedis(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if err := e.rdb.Set(ctx, "keep:me", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, "asynq:queues-not-ours", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	before := e.rdb.Keys(ctx, "*").Val()
	slices.Sort(before)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	serving := make(chan struct{})
	p := binarytest.Start(t, e.bin, []string{"dev", "--addr", busy.Addr().String()}, binarytest.Options{
		Dir: e.dir, Env: e.vars,
		OnLine: func(line string) {
			if strings.HasPrefix(line, "Serving the dashboard") {
				close(serving)
			}
		},
	})
	select {
	case <-serving:
	case <-time.After(90 * time.Second):
		t.Fatalf("dev did not get to serving the dashboard:\n%s", p.Logs())
	}
	out := p.Logs()
	if want := "dashboard: " + busy.Addr().String() + " is busy; using 127.0.0.1:"; !strings.Contains(out, want) {
		t.Errorf("dev output lacks %q:\n%s", want, out)
	}
	// The printed dead-letter command is this binary, with this Redis; it
	// works as shown and finds the demo's dead letter.
	_, cmdLine, ok := strings.Cut(out, "and in the dead-letter store: ")
	cmdLine, _, _ = strings.Cut(cmdLine, "\n")
	words := strings.Fields(cmdLine)
	if !ok || len(words) < 4 || words[0] != e.bin || !slices.Equal(words[1:3], []string{"--redis-url", e.redis.URL}) {
		t.Fatalf("dlq list hint %q: want %s --redis-url %s ...", cmdLine, e.bin, e.redis.URL)
	}
	r := binarytest.Run(t, words[0], words[1:], binarytest.Options{Dir: t.TempDir(), Env: binarytest.Environ()})
	if r.Code != 0 || !strings.Contains(r.Stdout, "http.call") || !strings.Contains(r.Stdout, "agentq-dev") {
		t.Fatalf("%s: exit %d\n%s\n%s", cmdLine, r.Code, r.Stdout, r.Stderr)
	}

	// A second dev on the same Redis while this one serves its queue is
	// refused before it touches anything: the two would share the queue and
	// the first to end would remove keys the other uses.
	{
		r := binarytest.Run(t, e.bin, []string{"dev", "--exit"}, binarytest.Options{Dir: e.dir, Env: e.vars})
		if r.Code == 0 || !strings.Contains(r.Stderr, "a worker already serves queue agentq-dev") {
			t.Errorf("second dev: exit %d, stderr %q; want refused, naming the queue", r.Code, r.Stderr)
		}
	}

	// Another client records dead letters in the store dev's first dead
	// letter created.
	store, err := dlq.New(e.rdb, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	devKeys := e.rdb.Keys(ctx, "*").Val()
	var theirs []string
	for i := range 2 {
		id, _, err := store.Dead(ctx, dlq.Death{Queue: "other", TaskID: fmt.Sprintf("other-%d", i), Kind: "http.call",
			Payload: []byte(`{}`), Final: dlq.Attempt{At: time.Now(), Attempt: 1, Class: jobs.ClassPermanent, Error: "theirs"}})
		if err != nil {
			t.Fatal(err)
		}
		theirs = append(theirs, id)
	}
	// Theirs: the keys of their records, and the store's shared counter
	// and index, which dev's first dead letter created and theirs wrote to
	// (and its live set, unless a reconciler has settled their records).
	theirKeys := slices.DeleteFunc(e.rdb.Keys(ctx, "*").Val(), func(k string) bool { return slices.Contains(devKeys, k) })
	theirKeys = append(theirKeys, "agentq:{agentq-dlq}:seq", "agentq:{agentq-dlq}:idx")

	p.Interrupt(t)
	if exited, err := p.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("dev after SIGINT: exited %v, %v\n%s", exited, err, p.Logs())
	}
	if !strings.Contains(p.Logs(), "removed the ") {
		t.Errorf("dev does not say it removed the demo's keys:\n%s", p.Logs())
	}
	recs, err := store.List(ctx, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, r := range recs {
		left = append(left, r.ID)
	}
	slices.Sort(left)
	slices.Sort(theirs)
	if !slices.Equal(left, theirs) {
		t.Errorf("dead letters after dev: %q, want the other client's %q (and not dev's)", left, theirs)
	}
	// Keys left: those before, the other client's, the store's live set
	// and its lock while it has not expired.
	want := append(slices.Clone(before), theirKeys...)
	after := e.rdb.Keys(ctx, "*").Val()
	if lock := "agentq:{agentq-dlq}:lock"; slices.Contains(after, lock) && !slices.Contains(want, lock) {
		if ttl := e.rdb.PTTL(ctx, lock).Val(); ttl <= 0 {
			t.Errorf("dev left the dead-letter store's lock with no expiry (%v)", ttl)
		}
		want = append(want, lock)
	}
	if live := "agentq:{agentq-dlq}:live"; slices.Contains(after, live) {
		want = append(want, live)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(after)
	if !slices.Equal(after, want) {
		t.Fatalf("keys after dev: %q, want %q", after, want)
	}
}

// TestCLI2BatchBarOnTerminal runs enqueue --batch with stderr on a pseudo
// terminal: the bar counts tasks with their rate, against the file's line
// count (with the time left) or, from a pipe, against no total; it never
// counts bytes.
func TestCLI2BatchBarOnTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 3000
	batch := strings.Repeat(`{"kind":"noop","payload":{}}`+"\n", n)
	file := filepath.Join(e.dir, "tasks.jsonl")
	if err := os.WriteFile(file, []byte(batch), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src string
		want      []string
	}{
		{"file: total known", file, []string{"enqueue", fmt.Sprintf("/%d,", n), " tasks/", "s:"}},
		{"stdin pipe: total unknown", "-", []string{"enqueue", "/-,", " tasks/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ptmx, tty, err := pty.Open()
			if err != nil {
				t.Skipf("no pseudo terminal: %v", err)
			}
			defer ptmx.Close()
			cmd := exec.Command(e.bin, "enqueue", "--batch", tc.src)
			cmd.Dir, cmd.Env = e.dir, e.vars
			var stdout strings.Builder
			cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, tty, strings.NewReader(batch)
			read := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(ptmx) // EIO once the terminal's last writer closed it
				read <- string(b)
			}()
			runErr := cmd.Run()
			tty.Close()
			bar := <-read
			if runErr != nil || !strings.Contains(stdout.String(), fmt.Sprintf("enqueued: %d", n)) {
				t.Fatalf("enqueue: %v, stdout %q, terminal %q", runErr, stdout.String(), bar)
			}
			for _, w := range tc.want {
				if !strings.Contains(bar, w) {
					t.Errorf("bar lacks %q: %q", w, bar)
				}
			}
			for _, bytesUnit := range []string{" B/s", "kB", "MB", " B "} {
				if strings.Contains(bar, bytesUnit) {
					t.Errorf("bar counts bytes (%q): %q", bytesUnit, bar)
				}
			}
		})
	}
}
