package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// completionVariant is one of the ways asynq completes a successful task,
// chosen by the options it was enqueued with.
type completionVariant struct {
	name   string // asynqCompletion.name asynq uses for it
	opts   []asynq.Option
	unique bool
	retain bool
}

var completionVariants = []completionVariant{
	{name: "done"},
	{name: "done_unique", opts: []asynq.Option{asynq.Unique(time.Hour)}, unique: true},
	{name: "mark_as_complete", opts: []asynq.Option{asynq.Retention(time.Hour)}, retain: true},
	{name: "mark_as_complete_unique", opts: []asynq.Option{asynq.Unique(time.Hour), asynq.Retention(time.Hour)}, unique: true, retain: true},
}

func completionByName(t *testing.T, name string) *asynqCompletion {
	t.Helper()
	for _, c := range asynqCompletions {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no asynq completion script %q", name)
	return nil
}

// wireLog records the commands a client sends to Redis (the hook added
// last is the innermost: it sees what the fold sends, not what asynq asked).
type wireLog struct {
	mu   sync.Mutex
	cmds [][]any // one per command; a pipeline's commands are flattened into one
	errs []error
}

func (l *wireLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *wireLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		l.mu.Lock()
		l.cmds = append(l.cmds, cmd.Args())
		l.errs = append(l.errs, err)
		l.mu.Unlock()
		return err
	}
}
func (l *wireLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		var all []any
		for _, c := range cmds {
			all = append(all, c.Args()...)
		}
		l.mu.Lock()
		l.cmds = append(l.cmds, all)
		l.errs = append(l.errs, err)
		l.mu.Unlock()
		return err
	}
}

// roundTrips returns the round trips that name id (an argument equal to
// it, a key ending in :id or tagged {id}), leaving out asynq's heartbeat,
// which names the tasks in flight every 5s whatever they do.
func (l *wireLog) roundTrips(id string) [][]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]any
	for _, args := range l.cmds {
		if heartbeat(args) {
			continue
		}
		for _, a := range args {
			if s, ok := a.(string); ok && (s == id || strings.HasSuffix(s, ":"+id) || strings.Contains(s, "{"+id+"}")) {
				out = append(out, args)
				break
			}
		}
	}
	return out
}

func heartbeat(args []any) bool {
	name, _ := args[0].(string)
	if name == "zadd" {
		return true // ExtendLease
	}
	for _, a := range args {
		if s, ok := a.(string); ok && (strings.HasPrefix(s, "asynq:servers:") || strings.HasPrefix(s, "asynq:workers:")) {
			return true
		}
	}
	return false
}

// runAsynq processes the tasks enqueued on rdb's queue "default" with a
// plain asynq server whose handler calls handle, until want tasks were
// processed (asynq's processed counter).
func runAsynq(t *testing.T, rdb *redis.Client, want int, handle func(ctx context.Context, q, id string) error) {
	t.Helper()
	l := zerolog.Nop()
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 2, TaskCheckInterval: 5 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Logger: asynqLogger{l: l}, LogLevel: asynq.ErrorLevel,
	})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		q, _ := asynq.GetQueueName(ctx)
		id, _ := asynq.GetTaskID(ctx)
		return handle(ctx, q, id)
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d tasks processed", want), func() bool {
		n, _ := rdb.Get(context.Background(), asynqProcessedTotalKey(QueueDefault)).Int()
		return n == want
	})
}

// loadScripts loads asynq's completion scripts and their folds, so that
// round trips are counted in the steady state, not the first NOSCRIPT.
func loadScripts(t *testing.T, rdb *redis.Client) {
	t.Helper()
	for _, c := range asynqCompletions {
		for _, s := range []*redis.Script{c.script, c.fold} {
			if err := s.Load(context.Background(), rdb).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func enqueueRaw(t *testing.T, rdb *redis.Client, id string, opts ...asynq.Option) {
	t.Helper()
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask("test.raw", []byte(id)), append([]asynq.Option{asynq.TaskID(id)}, opts...)...); err != nil {
		t.Fatal(err)
	}
}

func testWrite(id string) jobs.CompletionWrite {
	return jobs.CompletionWrite{Key: "agentq:test:{" + id + "}", Field: "done", Value: "v-" + id, TTL: time.Hour}
}

func checkWritten(t *testing.T, rdb *redis.Client, w jobs.CompletionWrite) {
	t.Helper()
	ctx := context.Background()
	got, err := rdb.HGet(ctx, w.Key, w.Field).Result()
	if err != nil || got != w.Value {
		t.Fatalf("HGET %s %s = %q, %v; want %q", w.Key, w.Field, got, err, w.Value)
	}
	if ttl := rdb.PTTL(ctx, w.Key).Val(); ttl <= 0 || ttl > w.TTL {
		t.Fatalf("PTTL %s = %v, want in (0, %v]", w.Key, ttl, w.TTL)
	}
}

// TestCompletionScriptsPinnedToAsynq runs plain asynq (no fold) on every
// completion path and checks that the scripts it sends are our copies: same
// SHA1, same number of keys and args.
func TestCompletionScriptsPinnedToAsynq(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	for _, v := range completionVariants {
		enqueueRaw(t, rdb, "pin_"+v.name, v.opts...)
	}
	wire := &wireLog{}
	rdb.AddHook(wire)
	runAsynq(t, rdb, len(completionVariants), func(context.Context, string, string) error { return nil })
	t.Run("dequeue", func(t *testing.T) {
		wire.mu.Lock()
		defer wire.mu.Unlock()
		for _, args := range wire.cmds {
			if len(args) > 3 && args[0] == "evalsha" && args[3] == asynqPendingKeyForPin(QueueDefault) {
				if args[1] != asynqDequeueSHA {
					t.Fatalf("asynq's dequeue script has SHA1 %v, pinned %s: the fold's run-time version check must be updated", args[1], asynqDequeueSHA)
				}
				return
			}
		}
		t.Fatal("no dequeue EVALSHA on the pending list seen")
	})
	for _, v := range completionVariants {
		t.Run(v.name, func(t *testing.T) {
			ac := completionByName(t, v.name)
			var sent [][]any
			for _, args := range wire.roundTrips("pin_" + v.name) {
				if args[0] == "evalsha" && args[3] == asynqActiveKey(QueueDefault) {
					sent = append(sent, args)
				}
			}
			if len(sent) != 1 {
				t.Fatalf("asynq sent %d EVALSHA on the active list naming the task, want 1 (its completion): %v", len(sent), sent)
			}
			args := sent[0]
			if args[1] != ac.script.Hash() {
				t.Fatalf("asynq's %s script has SHA1 %v, our copy %s: copy asynq's script text again (internal/rdb/rdb.go)", v.name, args[1], ac.script.Hash())
			}
			if args[2] != ac.keys || len(args) != 3+ac.keys+ac.args {
				t.Fatalf("asynq's %s passes %v keys and %d args, our copy expects %d and %d", v.name, args[2], len(args)-3-args[2].(int), ac.keys, ac.args)
			}
			if got, ok := completionBySHA[args[1].(string)]; !ok || got != ac {
				t.Fatalf("completionBySHA does not find %s", v.name)
			}
		})
	}
}

// TestCompletionFold processes a task on every completion path with a
// handler that registers a completion write: asynq completes the task as
// it would have, and the write is in Redis, in the same round trip.
func TestCompletionFold(t *testing.T) {
	t.Parallel()
	for _, v := range completionVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Client(t)
			var logs logbuf.Buffer
			c := startCompletions(t, rdb, zerolog.New(&logs))
			id := "fold_" + v.name
			enqueueRaw(t, rdb, id, v.opts...)
			loadScripts(t, rdb)
			wire := &wireLog{}
			rdb.AddHook(wire)
			accepted := make(chan bool, 1)
			runAsynq(t, rdb, 1, func(_ context.Context, q, id string) error {
				accepted <- c.hook(q, id)(testWrite(id))
				return nil
			})
			if !<-accepted {
				t.Fatal("the hook refused the write")
			}
			trips := wire.roundTrips(id)
			if len(trips) != 1 || trips[0][0] != "evalsha" || trips[0][1] != completionByName(t, v.name).fold.Hash() {
				t.Fatalf("round trips naming the task: %v; want one EVALSHA of the fold", trips)
			}
			checkWritten(t, rdb, testWrite(id))
			if n := c.pendingLen(); n != 0 {
				t.Fatalf("%d entries still pending after the completion", n)
			}
			info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(QueueDefault, id)
			switch {
			case v.retain && (err != nil || info.State != asynq.TaskStateCompleted):
				t.Fatalf("task info = %+v, %v; want completed", info, err)
			case !v.retain && !errors.Is(err, asynq.ErrTaskNotFound):
				t.Fatalf("task info = %+v, %v; want the task gone", info, err)
			}
			if v.unique {
				// The uniqueness lock is released: the same task is accepted again.
				if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("test.raw", []byte(id)), v.opts...); err != nil {
					t.Fatalf("re-enqueue after completion: %v (uniqueness lock kept)", err)
				}
			}
			if strings.Contains(logs.String(), "missed") {
				t.Fatalf("safety net wrote: %s", logs.String())
			}
		})
	}
}

// TestCompletionFoldAddsNoRoundTrip counts the round trips that name a task
// in three runs: no write, a folded write, a write made synchronously (the
// fallback). The fold adds none; the fallback one per task.
func TestCompletionFoldAddsNoRoundTrip(t *testing.T) {
	t.Parallel()
	const n = 10
	for _, tc := range []struct {
		name  string
		write bool
		fold  bool
		want  int // round trips per task
	}{
		{name: "no write", fold: true, want: 1},
		{name: "folded write", write: true, fold: true, want: 1},
		{name: "synchronous write", write: true, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Client(t)
			c := newCompletions(rdb, zerolog.Nop(), tc.fold)
			c.start()
			t.Cleanup(c.stop)
			for i := range n {
				enqueueRaw(t, rdb, fmt.Sprintf("rt_%d", i))
			}
			loadScripts(t, rdb)
			wire := &wireLog{}
			rdb.AddHook(wire)
			runAsynq(t, rdb, n, func(ctx context.Context, q, id string) error {
				if !tc.write {
					return nil
				}
				w := testWrite(id)
				if at := c.hook(q, id); at != nil && at(w) {
					return nil
				}
				_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.HSet(ctx, w.Key, w.Field, w.Value)
					p.PExpire(ctx, w.Key, w.TTL)
					return nil
				})
				return err
			})
			for i := range n {
				id := fmt.Sprintf("rt_%d", i)
				if got := len(wire.roundTrips(id)); got != tc.want {
					t.Fatalf("task %s: %d round trips name it, want %d: %v", id, got, tc.want, wire.roundTrips(id))
				}
			}
			for i := range n {
				id := fmt.Sprintf("rt_%d", i)
				if tc.write {
					checkWritten(t, rdb, testWrite(id))
				}
			}
		})
	}
}

// TestCompletionFoldNoScript flushes Redis's script cache: the fold's
// EVALSHA gets NOSCRIPT and the fold goes on with EVAL; asynq's own EVAL
// (after its EVALSHA got NOSCRIPT) is recognised too.
func TestCompletionFoldNoScript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.StartExclusive(t).Client(t)
	c := startCompletions(t, rdb, zerolog.Nop())
	enqueueRaw(t, rdb, "noscript")
	loadScripts(t, rdb)
	wire := &wireLog{}
	rdb.AddHook(wire)

	t.Run("fold's EVALSHA", func(t *testing.T) {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		runAsynq(t, rdb, 1, func(_ context.Context, q, id string) error {
			if !c.hook(q, id)(testWrite(id)) {
				t.Error("the hook refused the write")
			}
			return nil
		})
		trips := wire.roundTrips("noscript")
		if len(trips) != 2 || trips[0][0] != "evalsha" || trips[1][0] != "eval" {
			t.Fatalf("round trips naming the task: %v; want EVALSHA (NOSCRIPT) then EVAL", trips)
		}
		checkWritten(t, rdb, testWrite("noscript"))
	})

	t.Run("asynq's EVAL", func(t *testing.T) {
		// A completion asynq sends as EVAL, for a task that is not active:
		// asynq's part replies NOT FOUND, the write stays, the entry is used.
		done := completionByName(t, "done")
		w := testWrite("evaltask")
		if !c.hook(QueueDefault, "evaltask")(w) {
			t.Fatal("the hook refused the write")
		}
		keys := []string{asynqActiveKey(QueueDefault), asynqLeaseKey(QueueDefault), asynqTaskPrefix(QueueDefault) + "evaltask",
			asynqProcessedKey(QueueDefault, time.Now()), asynqProcessedTotalKey(QueueDefault)}
		err := done.script.Eval(ctx, rdb, keys, "evaltask", time.Now().Add(time.Hour).Unix(), int64(1<<63-1)).Err()
		if err == nil || !strings.Contains(err.Error(), "NOT FOUND") {
			t.Fatalf("asynq's done on a task that is not active: %v, want NOT FOUND", err)
		}
		checkWritten(t, rdb, w)
		if n := c.pendingLen(); n != 0 {
			t.Fatalf("%d entries pending after a completion that reached Redis, want 0", n)
		}
	})
}

// TestCompletionFoldKeepsEntryOnNetworkError: a completion that never
// reached Redis leaves its writes pending for asynq's retry.
func TestCompletionFoldKeepsEntryOnNetworkError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	c := startCompletions(t, rdb, zerolog.Nop())
	if !c.hook(QueueDefault, "net")(testWrite("net")) {
		t.Fatal("the hook refused the write")
	}
	keys := []string{asynqActiveKey(QueueDefault), asynqLeaseKey(QueueDefault), asynqTaskPrefix(QueueDefault) + "net",
		asynqProcessedKey(QueueDefault, time.Now()), asynqProcessedTotalKey(QueueDefault)}
	err := completionByName(t, "done").script.Run(ctx, rdb, keys, "net", int64(0), int64(1<<63-1)).Err()
	if err == nil || reachedRedis(err) {
		t.Fatalf("completion on a Redis that is not there: %v, want a network error", err)
	}
	if n := c.pendingLen(); n != 1 {
		t.Fatalf("%d entries pending after a completion that did not reach Redis, want 1", n)
	}
}

// TestCompletionFoldGate: the fold is on only for a single Redis, the
// verified asynq and the configuration's consent.
func asynqPendingKeyForPin(q string) string { return asynqQueuePrefix(q) + "pending" }

// TestCompletionFoldVerifiesAtRunTime: in a build without a module list
// (asynq's version unknown) the fold stays off until the hook sees asynq's
// pinned dequeue script, then turns on.
func TestCompletionFoldVerifiesAtRunTime(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	old := asynqVersion
	asynqVersion = func() (string, bool) { return asynqVersionUnknown, false }
	t.Cleanup(func() { asynqVersion = old })
	c := startCompletions(t, rdb, zerolog.Nop())
	if c.hook(QueueDefault, "x") != nil {
		t.Fatal("hook before asynq's dequeue was seen, want nil")
	}
	if err := rdb.Do(context.Background(), "evalsha", "0000000000000000000000000000000000000000", 0).Err(); err == nil {
		t.Fatal("a made-up EVALSHA succeeded")
	}
	if c.hook(QueueDefault, "x") != nil {
		t.Fatal("hook after another script, want nil")
	}
	enqueueRaw(t, rdb, "verify")
	runAsynq(t, rdb, 1, func(context.Context, string, string) error { return nil })
	if c.hook(QueueDefault, "x") == nil {
		t.Fatal("hook nil after asynq's pinned dequeue ran on the client")
	}
}

func TestCompletionFoldGate(t *testing.T) {
	t.Parallel()
	verified := func() (string, bool) { return asynqVerifiedVersion, true }
	for _, tc := range []struct {
		name    string
		rdb     redis.UniversalClient
		enabled bool
		version func() (string, bool)
		want    string // "" when on
	}{
		{"single redis", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), true, verified, ""},
		{"off by configuration", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), false, verified, "off by configuration"},
		{"other asynq", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), true, func() (string, bool) { return "v0.27.0", false }, "asynq v0.27.0 is not"},
		{"cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), true, verified, "*redis.ClusterClient"},
		{"ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), true, verified, "*redis.Ring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer tc.rdb.Close()
			on, why := foldGate(tc.rdb, tc.enabled, tc.version)
			if on != (tc.want == "") || !strings.Contains(why, tc.want) {
				t.Fatalf("foldGate = %v, %q; want on=%v, reason containing %q", on, why, tc.want == "", tc.want)
			}
		})
	}
	t.Run("cluster client gets no hook", func(t *testing.T) {
		t.Parallel()
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
		defer rdb.Close()
		c := newCompletions(rdb, zerolog.Nop(), true)
		if c.hook("q", "id") != nil {
			t.Fatal("hook on a cluster client, want nil (the caller writes synchronously)")
		}
		var r jobs.Result
		r.Outcome = jobs.OutcomeSuccess
		r.SetAtCompletion(c.hook("q", "id"))
		if r.AtCompletion(testWrite("id")) {
			t.Fatal("Result.AtCompletion = true on a cluster client")
		}
	})
}

// TestCompletionSafetyNet: an entry no completion consumed is written
// directly once its attempt returned completionGrace ago, and at stop.
func TestCompletionSafetyNet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	var logs logbuf.Buffer
	c, clock := clockedCompletions(t, rdb, zerolog.New(&logs))
	w := testWrite("lost")
	if !c.hook(QueueDefault, "lost")(w) {
		t.Fatal("the hook refused the write")
	}
	c.release(QueueDefault, "lost")
	if n, err := c.writeOverdue(ctx, clock.now(), false); n != 0 || err != nil {
		t.Fatalf("wrote %d entries (%v) before the grace passed, want 0", n, err)
	}
	if rdb.Exists(ctx, w.Key).Val() != 0 {
		t.Fatal("written before the grace passed")
	}
	clock.add(c.grace)
	if n, err := c.writeOverdue(ctx, clock.now(), false); n != 1 || err != nil {
		t.Fatalf("wrote %d entries (%v) after the grace, want 1", n, err)
	}
	checkWritten(t, rdb, w)
	if c.pendingLen() != 0 || !strings.Contains(logs.String(), "completion fold missed; wrote it directly") {
		t.Fatalf("pending %d, log %s; want 0 and the warning", c.pendingLen(), logs.String())
	}

	w2 := testWrite("at-stop")
	if !c.hook(QueueDefault, "at-stop")(w2) {
		t.Fatal("the hook refused the write")
	}
	c.stop()
	checkWritten(t, rdb, w2)
	if c.pendingLen() != 0 {
		t.Fatalf("pending %d after stop, want 0", c.pendingLen())
	}
}

// TestCompletionPendingBounded: past the bound the hook refuses, so the
// caller writes synchronously.
func TestCompletionPendingBounded(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rdb.Close() })
	c := startCompletions(t, rdb, zerolog.Nop())
	c.max = 2
	for i, want := range []bool{true, true, false} {
		if got := c.hook(QueueDefault, fmt.Sprint(i))(testWrite("x")); got != want {
			t.Fatalf("task %d: hook = %v, want %v", i, got, want)
		}
	}
	at := c.hook(QueueDefault, "0")
	for i := 1; i < maxWritesPerTask; i++ {
		if !at(testWrite(fmt.Sprint(i))) {
			t.Fatalf("write %d of one task refused, want accepted up to %d", i+1, maxWritesPerTask)
		}
	}
	if at(testWrite("over")) {
		t.Fatalf("write %d of one task accepted, want refused", maxWritesPerTask+1)
	}
}

// TestWorkerFoldsCompletionWrite goes through a Worker of two loops: a
// handler's completion write (what the ledger's observer will register)
// lands with asynq's completion of the task; with CompletionFold "off" the
// worker offers no hook.
func TestWorkerFoldsCompletionWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fold string
	}{
		{"auto", CompletionFoldAuto},
		{"off", CompletionFoldOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Client(t)
			reg := NewRegistry()
			var w *Worker
			hooked := make(chan bool, 1)
			err := Register(reg, echoSchema, func(_ context.Context, s *jobs.Step, _ echoArgs) error {
				at := w.atCompletion(&attempt{step: *s})
				hooked <- at != nil
				if at != nil && !at(testWrite(s.TaskID)) {
					t.Error("the hook refused the write")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			l := zerolog.Nop()
			w, err = NewWorker(rdb, reg, WorkerConfig{Concurrency: 2, Loops: 2, CompletionFold: tc.fold, Logger: &l,
				PollInterval: 5 * time.Millisecond, ShutdownTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Shutdown)
			c, err := NewClient(rdb, reg, ClientConfig{})
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := <-hooked; got != (tc.fold == CompletionFoldAuto) {
				t.Fatalf("hook offered: %v, want %v", got, tc.fold == CompletionFoldAuto)
			}
			waitFor(t, 10*time.Second, "the task processed", func() bool {
				n, _ := rdb.Get(context.Background(), asynqProcessedTotalKey(QueueDefault)).Int()
				return n == 1
			})
			if tc.fold == CompletionFoldAuto {
				checkWritten(t, rdb, testWrite(r.ID))
				if n := w.complete.pendingLen(); n != 0 {
					t.Fatalf("%d entries pending after the completion, want 0", n)
				}
			}
		})
	}
}

// startCompletions returns a running completion fold on rdb, stopped at
// the test's end.
func startCompletions(t *testing.T, rdb *redis.Client, log zerolog.Logger) *completions {
	t.Helper()
	c := newCompletions(rdb, log, true)
	c.backoff = time.Millisecond
	c.start()
	t.Cleanup(c.stop)
	return c
}

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockedCompletions is startCompletions on a clock the test moves, with
// no background sweep: the test calls writeOverdue itself.
func clockedCompletions(t *testing.T, rdb *redis.Client, log zerolog.Logger) (*completions, *testClock) {
	t.Helper()
	clock := &testClock{t: time.Unix(1_000_000, 0)}
	c := newCompletions(rdb, log, true)
	c.now, c.sweep, c.backoff = clock.now, time.Hour, time.Millisecond
	c.start()
	t.Cleanup(c.stop)
	return c, clock
}

// TestCompletionFoldOnlyWhileRunning: the fold takes writes only between
// start and stop, while the safety net runs; before and after, the hook is
// nil (or, captured earlier, refuses) and the caller writes synchronously.
// A Worker that was never started offers no hook.
func TestCompletionFoldOnlyWhileRunning(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	c := newCompletions(rdb, zerolog.Nop(), true)
	if c.hook(QueueDefault, "early") != nil {
		t.Fatal("hook before start, want nil")
	}
	c.start()
	at := c.hook(QueueDefault, "running")
	if at == nil || !at(testWrite("running")) {
		t.Fatal("hook while running refused the write")
	}
	c.stop()
	checkWritten(t, rdb, testWrite("running"))
	if c.hook(QueueDefault, "late") != nil {
		t.Fatal("hook after stop, want nil")
	}
	if at(testWrite("late")) {
		t.Fatal("a hook captured while running accepted a write after stop")
	}
	if n := c.pendingLen(); n != 0 {
		t.Fatalf("%d entries pending after stop, want 0", n)
	}
	c.start()
	if c.hook(QueueDefault, "restart") != nil {
		t.Fatal("hook after start following stop, want nil")
	}

	t.Run("worker never started", func(t *testing.T) {
		l := zerolog.Nop()
		w, err := NewWorker(rdb, NewRegistry(), WorkerConfig{Logger: &l})
		if err != nil {
			t.Fatal(err)
		}
		if w.atCompletion(&attempt{step: jobs.Step{Queue: QueueDefault, TaskID: "x"}}) != nil {
			t.Fatal("a Worker that was never started offers a completion hook")
		}
	})
}

// TestCompletionFoldWriteRefused: Redis refuses the fold's write (the
// record's key holds a string): the fold logs it, and asynq's own command
// completes the task at once.
func TestCompletionFoldWriteRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	var logs logbuf.Buffer
	c := startCompletions(t, rdb, zerolog.New(&logs))
	const id = "refused"
	w := testWrite(id)
	if err := rdb.Set(ctx, w.Key, "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	enqueueRaw(t, rdb, id)
	loadScripts(t, rdb)
	wire := &wireLog{}
	rdb.AddHook(wire)
	runAsynq(t, rdb, 1, func(_ context.Context, q, id string) error {
		if !c.hook(q, id)(w) {
			t.Error("the hook refused the write")
		}
		return nil
	})
	trips := wire.roundTrips(id)
	if len(trips) != 2 || trips[0][1] != completionByName(t, "done").fold.Hash() || trips[1][1] != completionByName(t, "done").script.Hash() {
		t.Fatalf("round trips naming the task: %v; want the fold's EVALSHA, then asynq's own", trips)
	}
	if _, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(QueueDefault, id); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("task info: %v; want the task completed (gone)", err)
	}
	if typ := rdb.Type(ctx, w.Key).Val(); typ != "string" {
		t.Fatalf("the record's key is a %s, want the string it was", typ)
	}
	got := logs.String()
	if !strings.Contains(got, "completion write refused by Redis: WRONGTYPE") || !strings.Contains(got, `"task_id":"refused"`) ||
		!strings.Contains(got, "record not written") {
		t.Fatalf("log %s; want the refusal with the task id", got)
	}
	if strings.Contains(got, w.Value) {
		t.Fatalf("log %s names the record's value", got)
	}
	if n := c.pendingLen(); n != 0 {
		t.Fatalf("%d entries pending, want 0", n)
	}
}

// TestCompletionFoldOneHookPerClient: completions started and stopped in
// sequence on one client share one hook, which still folds for the last;
// two running at once on one client both fold.
func TestCompletionFoldOneHookPerClient(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	loadScripts(t, rdb)
	for range 5 {
		c := newCompletions(rdb, zerolog.Nop(), true)
		c.start()
		c.stop()
	}
	d := dispatcherFor(rdb, zerolog.Nop())
	if n := d.hooked.Load(); n != 1 {
		t.Fatalf("%d hooks installed on the client, want 1", n)
	}
	if n := d.registered(); n != 0 {
		t.Fatalf("%d completions registered after all stopped, want 0", n)
	}
	c1 := startCompletions(t, rdb, zerolog.Nop())
	c2 := startCompletions(t, rdb, zerolog.Nop())
	if c1.d != d || c2.d != d || d.registered() != 2 {
		t.Fatalf("dispatchers %p %p, registered %d; want both on %p", c1.d, c2.d, d.registered(), d)
	}
	by := map[string]*completions{"one_a": c1, "one_b": c2}
	for id := range by {
		enqueueRaw(t, rdb, id)
	}
	wire := &wireLog{}
	rdb.AddHook(wire)
	runAsynq(t, rdb, len(by), func(_ context.Context, q, id string) error {
		if !by[id].hook(q, id)(testWrite(id)) {
			t.Errorf("task %s: the hook refused the write", id)
		}
		return nil
	})
	for id, c := range by {
		trips := wire.roundTrips(id)
		if len(trips) != 1 || trips[0][1] != completionByName(t, "done").fold.Hash() {
			t.Fatalf("task %s: round trips %v; want one EVALSHA of the fold", id, trips)
		}
		checkWritten(t, rdb, testWrite(id))
		if n := c.pendingLen(); n != 0 {
			t.Fatalf("task %s: %d entries pending, want 0", id, n)
		}
	}
	if n := d.hooked.Load(); n != 1 {
		t.Fatalf("%d hooks installed on the client, want 1", n)
	}
}

// TestCompletionFinalFlushRetries: when Redis is unreachable at stop, the
// final flush tries stopTries times, then logs the records lost by task id.
func TestCompletionFinalFlushRetries(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs logbuf.Buffer
	c := newCompletions(rdb, zerolog.New(&logs), true)
	c.backoff = time.Millisecond
	c.start()
	if !c.hook(QueueDefault, "lost_at_stop")(testWrite("lost_at_stop")) {
		t.Fatal("the hook refused the write")
	}
	wire := &wireLog{}
	rdb.AddHook(wire)
	c.stop()
	tries := 0
	for _, args := range wire.roundTrips("lost_at_stop") {
		if args[0] == "hset" {
			tries++
		}
	}
	if tries != stopTries {
		t.Fatalf("%d direct writes tried at stop, want %d", tries, stopTries)
	}
	if got := logs.String(); !strings.Contains(got, "record lost") || !strings.Contains(got, "lost_at_stop") {
		t.Fatalf("log %s; want \"record lost\" naming the task", got)
	}
	if n := c.pendingLen(); n != 0 {
		t.Fatalf("%d entries pending after stop, want 0", n)
	}
}

// TestCompletionGraceFromRelease: the grace before the safety net writes an
// entry starts when its attempt returns to asynq, not when it was
// registered: observers after the ledger's may take longer than the grace.
func TestCompletionGraceFromRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	c, clock := clockedCompletions(t, rdb, zerolog.Nop())
	if !c.hook(QueueDefault, "slow")(testWrite("slow")) {
		t.Fatal("the hook refused the write")
	}
	clock.add(2 * c.grace) // a slow observer after the ledger's
	if n, _ := c.writeOverdue(ctx, clock.now(), false); n != 0 {
		t.Fatalf("wrote %d entries before the attempt returned, want 0", n)
	}
	c.release(QueueDefault, "slow")
	if n, _ := c.writeOverdue(ctx, clock.now(), false); n != 0 {
		t.Fatalf("wrote %d entries right after the attempt returned, want 0", n)
	}
	clock.add(c.grace)
	if n, _ := c.writeOverdue(ctx, clock.now(), false); n != 1 {
		t.Fatalf("wrote %d entries a grace after the attempt returned, want 1", n)
	}
	checkWritten(t, rdb, testWrite("slow"))

	t.Run("never released", func(t *testing.T) {
		if !c.hook(QueueDefault, "unreleased")(testWrite("unreleased")) {
			t.Fatal("the hook refused the write")
		}
		clock.add(completionHold - time.Millisecond)
		if n, _ := c.writeOverdue(ctx, clock.now(), false); n != 0 {
			t.Fatalf("wrote %d entries before completionHold, want 0", n)
		}
		clock.add(time.Millisecond)
		if n, _ := c.writeOverdue(ctx, clock.now(), false); n != 1 {
			t.Fatalf("wrote %d entries after completionHold, want 1", n)
		}
	})

	t.Run("worker releases", func(t *testing.T) {
		rdb := redistest.Start(t).Client(t)
		reg := NewRegistry()
		if err := Register(reg, echoSchema, func(context.Context, *jobs.Step, echoArgs) error { return nil }); err != nil {
			t.Fatal(err)
		}
		var w *Worker
		slow := jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) {
			if !r.AtCompletion(testWrite("worker")) {
				t.Error("AtCompletion refused the write")
			}
			clock.add(2 * w.complete.grace) // a slow observer after the ledger's
		})
		l := zerolog.Nop()
		w, err := NewWorker(rdb, reg, WorkerConfig{Logger: &l, Observers: []jobs.Observer{slow}, ShutdownTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		w.complete.now, w.complete.sweep = clock.now, time.Hour
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Shutdown)
		if err := w.ProcessTask(ctx, asynq.NewTask("test.echo", []byte(`{"n":1}`))); err != nil {
			t.Fatal(err)
		}
		if n, _ := w.complete.writeOverdue(ctx, clock.now(), false); n != 0 || w.complete.pendingLen() != 1 {
			t.Fatalf("wrote %d entries (pending %d) right after ProcessTask returned, want 0 (1)", n, w.complete.pendingLen())
		}
		clock.add(w.complete.grace)
		if n, _ := w.complete.writeOverdue(ctx, clock.now(), false); n != 1 {
			t.Fatalf("wrote %d entries a grace after ProcessTask returned, want 1", n)
		}
	})
}
