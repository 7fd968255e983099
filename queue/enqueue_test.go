package queue

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// asynqReference enqueues what Client.Enqueue enqueues, through asynq's own
// client, the way the client did before it wrote asynq's keys itself.
func asynqReference(ctx context.Context, t *testing.T, rdb redis.UniversalClient, c *Client, kind string, payload []byte, o EnqueueOptions, id string) {
	t.Helper()
	queue := c.cfg.Queue
	policy := c.cfg.Retry
	if o.Workflow != "" {
		wf := c.cfg.Workflows[o.Workflow]
		queue = cmpOr(wf.Queue, queue)
		policy = wf.Retry.Merge(policy)
	}
	queue = cmpOr(o.Queue, queue)
	if o.MaxAttempts > 0 {
		policy.MaxAttempts = o.MaxAttempts
	}
	headers := map[string]string{}
	if o.RetryBase > 0 {
		headers[jobs.HeaderRetryBase] = o.RetryBase.String()
	}
	if o.RetryMax > 0 {
		headers[jobs.HeaderRetryMax] = o.RetryMax.String()
	}
	setIf := func(k, v string) {
		if v != "" {
			headers[k] = v
		}
	}
	setIf(jobs.HeaderWorkflow, o.Workflow)
	setIf(jobs.HeaderRunID, o.RunID)
	setIf(jobs.HeaderKey, o.Key)
	setIf(jobs.HeaderReplayOf, o.ReplayOf)
	opts := []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(policy.MaxAttempts), asynq.TaskID(id)}
	if o.Timeout > 0 {
		headers[jobs.HeaderTimeout] = o.Timeout.String()
		opts = append(opts, asynq.Timeout((o.Timeout+TimeoutGrace).Round(time.Second)+time.Second))
	}
	if o.In > 0 {
		opts = append(opts, asynq.ProcessIn(o.In))
	}
	ac := asynq.NewClientFromRedisClient(rdb)
	if _, err := ac.EnqueueContext(ctx, asynq.NewTaskWithHeaders(kind, payload, headers), opts...); err != nil {
		t.Fatalf("asynq enqueue: %v", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// decodeTaskMessage splits an encoded TaskMessage into its fields, field by
// field, with the headers map collected into one field.
func decodeTaskMessage(t *testing.T, b []byte) map[protowire.Number]any {
	t.Helper()
	out := map[protowire.Number]any{}
	headers := map[string]string{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			out[num], b = v, b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
			if num != tmHeaders {
				out[num] = string(v)
				continue
			}
			var k, val string
			for len(v) > 0 {
				enum, etyp, n := protowire.ConsumeTag(v)
				if n < 0 || etyp != protowire.BytesType {
					t.Fatalf("header entry: bad tag")
				}
				s, m := protowire.ConsumeString(v[n:])
				if m < 0 {
					t.Fatalf("header entry: %v", protowire.ParseError(m))
				}
				v = v[n+m:]
				if enum == 1 {
					k = s
				} else {
					val = s
				}
			}
			headers[k] = val
			out[num] = headers
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
	}
	return out
}

// TestTaskMessageMatchesAsynq pins the task the enqueue script writes to
// what asynq's own client writes for the same task: the task message field
// by field, the task hash, the list or set it is in, and what asynq's
// Inspector reads back.
func TestTaskMessageMatchesAsynq(t *testing.T) {
	t.Parallel()
	wfs := map[string]Workflow{"publish": {Queue: "pub", Retry: jobs.RetryPolicy{MaxAttempts: 2}}}
	tests := []struct {
		name    string
		payload string
		o       EnqueueOptions
	}{
		{"plain", `{"n":1}`, EnqueueOptions{}},
		{"keyed", `{"n":2}`, EnqueueOptions{Key: "order-42", RunID: "run-1"}},
		{"workflow", `{"n":3}`, EnqueueOptions{Workflow: "publish", Key: "wf-1"}},
		{"every option", `{"n":4,"mode":"x"}`, EnqueueOptions{Queue: "other", RunID: "r", Key: "k", MaxAttempts: 7,
			RetryBase: 2 * time.Second, RetryMax: time.Minute, Timeout: 90 * time.Second, ReplayOf: "dlq-1"}},
		{"sub-second timeout", `{"n":5}`, EnqueueOptions{Timeout: 1500 * time.Millisecond}},
		{"delayed", `{"n":6}`, EnqueueOptions{Key: "later", In: time.Hour}},
		{"forced task id", `{"n":7}`, EnqueueOptions{TaskID: "replay-7", ReplayOf: "dlq-7"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{Workflows: wfs})
			ctx := context.Background()
			ours, err := b.client.Enqueue(ctx, "test.echo", []byte(tc.payload), tc.o)
			if err != nil || ours.Duplicate {
				t.Fatalf("enqueue: %+v %v", ours, err)
			}
			const refID = "reference"
			asynqReference(ctx, t, b.rdb, b.client, "test.echo", []byte(tc.payload), tc.o, refID)

			got, err := b.insp.GetTaskInfo(ours.Queue, ours.ID)
			if err != nil {
				t.Fatal(err)
			}
			want, err := b.insp.GetTaskInfo(ours.Queue, refID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != want.Type || string(got.Payload) != string(want.Payload) || !reflect.DeepEqual(got.Headers, want.Headers) ||
				got.Queue != want.Queue || got.MaxRetry != want.MaxRetry || got.Timeout != want.Timeout ||
				!got.Deadline.Equal(want.Deadline) || got.State != want.State || got.Retention != want.Retention || got.Group != want.Group {
				t.Errorf("task info\n got %+v\nwant %+v", got, want)
			}
			if d := got.NextProcessAt.Sub(want.NextProcessAt).Abs(); d > 2*time.Second {
				t.Errorf("next process at %v, asynq's %v", got.NextProcessAt, want.NextProcessAt)
			}

			ourHash := b.rdb.HGetAll(ctx, asynqTaskKey(ours.Queue, ours.ID)).Val()
			refHash := b.rdb.HGetAll(ctx, asynqTaskKey(ours.Queue, refID)).Val()
			if fieldNames(ourHash) != fieldNames(refHash) || ourHash["state"] != refHash["state"] {
				t.Errorf("task hash fields %s state %q, asynq's %s state %q", fieldNames(ourHash), ourHash["state"], fieldNames(refHash), refHash["state"])
			}
			if ps := ourHash["pending_since"]; ps != "" && len(ps) != len(refHash["pending_since"]) {
				t.Errorf("pending_since %q, asynq's %q (Unix ns)", ps, refHash["pending_since"])
			}
			gotMsg := decodeTaskMessage(t, []byte(ourHash["msg"]))
			wantMsg := decodeTaskMessage(t, []byte(refHash["msg"]))
			if gotMsg[tmID] != ours.ID || wantMsg[tmID] != refID {
				t.Errorf("message ids %v and %v, want %s and %s", gotMsg[tmID], wantMsg[tmID], ours.ID, refID)
			}
			delete(gotMsg, tmID)
			delete(wantMsg, tmID)
			if !reflect.DeepEqual(gotMsg, wantMsg) {
				t.Errorf("task message fields\n got %v\nwant %v", gotMsg, wantMsg)
			}

			// The two ids sit side by side in the same list or set.
			where := asynqPendingKey(ours.Queue)
			if tc.o.In > 0 {
				where = asynqScheduledKey(ours.Queue)
				gs, ws := b.rdb.ZScore(ctx, where, ours.ID).Val(), b.rdb.ZScore(ctx, where, refID).Val()
				if gs < ws-2 || gs > ws+2 {
					t.Errorf("scheduled score %v, asynq's %v", gs, ws)
				}
			} else if ids := b.rdb.LRange(ctx, where, 0, -1).Val(); len(ids) != 2 {
				t.Errorf("%s holds %v, want both tasks", where, ids)
			}
			if qs, _ := b.insp.Queues(); !contains(qs, ours.Queue) {
				t.Errorf("asynq's queues %v lack %q", qs, ours.Queue)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func fieldNames(m map[string]string) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestWorkerProcessesOurTasks: asynq's server runs the tasks the enqueue
// script wrote, pending and delayed, and the step sees their headers.
func TestWorkerProcessesOurTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	ctx := context.Background()
	seen := make(chan *jobs.Step, 4)
	b.startWorker(t, WorkerConfig{Middleware: []jobs.Middleware{func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
			seen <- s
			return next.ProcessStep(ctx, s)
		})
	}}})
	now, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "now", RunID: "run-9", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	later, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":2}`), EnqueueOptions{In: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*jobs.Step{}
	for len(got) < 2 {
		select {
		case s := <-seen:
			got[s.TaskID] = s
		case <-time.After(10 * time.Second):
			t.Fatalf("steps run: %v, want %s and %s", got, now.ID, later.ID)
		}
	}
	s := got[now.ID]
	if s == nil || s.RunID != "run-9" || s.Key != "now" || s.Headers[jobs.HeaderTimeout] != "10s" {
		t.Fatalf("step of the keyed task: %+v", s)
	}
	if got[later.ID] == nil {
		t.Fatalf("delayed task %s not run: %v", later.ID, got)
	}
	waitFor(t, 5*time.Second, "both tasks done", func() bool {
		return b.callCount(now.ID) == 1 && b.callCount(later.ID) == 1 && queueSize(t, b, "default") == 0
	})
}

// TestKeyedEnqueueRace: 100 clients on their own connections enqueue one
// key at once; one task results, and 99 duplicates name it.
func TestKeyedEnqueueRace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	reg := NewRegistry()
	if err := Register(reg, echoSchema, func(context.Context, *jobs.Step, echoArgs) error { return nil }); err != nil {
		t.Fatal(err)
	}
	const n = 100
	clients := make([]*Client, n)
	for i := range clients {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: srv.DB, PoolSize: 1})
		t.Cleanup(func() { _ = rdb.Close() })
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(rdb, reg, ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	results := make([]Result, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = clients[i].Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "order-42"})
		}()
	}
	close(start)
	wg.Wait()
	fresh := ""
	dups := 0
	for i, r := range results {
		switch {
		case errs[i] != nil:
			t.Fatalf("enqueue %d: %v", i, errs[i])
		case r.Duplicate:
			dups++
		case fresh != "":
			t.Fatalf("two new tasks: %s and %s", fresh, r.ID)
		default:
			fresh = r.ID
		}
	}
	if fresh == "" || dups != n-1 {
		t.Fatalf("new task %q, %d duplicates; want one and %d", fresh, dups, n-1)
	}
	for i, r := range results {
		if r.ID != fresh {
			t.Fatalf("result %d names %s, want %s", i, r.ID, fresh)
		}
	}
	rdb := srv.Client(t)
	if ids := rdb.LRange(context.Background(), asynqPendingKey("default"), 0, -1).Val(); len(ids) != 1 || ids[0] != fresh {
		t.Fatalf("pending list %v, want [%s]", ids, fresh)
	}
}

// TestIdempotencyKeyLifecycle: a key stays taken for its window, also after
// its task finished; after the window it enqueues again.
func TestIdempotencyKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{DedupeWindow: time.Second})
	ctx := context.Background()
	r1, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "k"})
	if err != nil || r1.Duplicate || r1.ID != taskIDForKey("default", "k") {
		t.Fatalf("first: %+v %v", r1, err)
	}
	dk := dedupeKey("default", keyHash("k"))
	if v, ttl := b.rdb.Get(ctx, dk).Val(), b.rdb.PTTL(ctx, dk).Val(); v != r1.ID || ttl <= 0 || ttl > time.Second {
		t.Fatalf("dedupe key %s = %q ttl %v, want %s for the 1s window", dk, v, ttl, r1.ID)
	}
	b.startWorker(t, WorkerConfig{})
	waitFor(t, 5*time.Second, "task done", func() bool { return b.callCount(r1.ID) == 1 && queueSize(t, b, "default") == 0 })
	// The task is gone from asynq, but the window holds the key.
	if b.rdb.Exists(ctx, dk).Val() == 1 {
		r2, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "k"})
		if err != nil || !r2.Duplicate || r2.ID != r1.ID {
			t.Fatalf("within the window: %+v %v, want a duplicate of %s", r2, err, r1.ID)
		}
	} else {
		t.Log("the task took longer than the window; skipped the within-window check")
	}
	waitFor(t, 5*time.Second, "window to end", func() bool { return b.rdb.Exists(ctx, dk).Val() == 0 })
	r3, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "k"})
	if err != nil || r3.Duplicate || r3.ID != r1.ID {
		t.Fatalf("after the window: %+v %v, want a new task %s", r3, err, r1.ID)
	}
	waitFor(t, 5*time.Second, "second task done", func() bool { return b.callCount(r1.ID) == 2 })
}

// TestIdempotencyKeyWithinWindowAfterTask: deterministic version of the
// within-window check, with the window long and the task deleted by hand.
func TestIdempotencyKeyWithinWindowAfterTask(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{DedupeWindow: time.Hour})
	ctx := context.Background()
	r1, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.insp.DeleteTask("default", r1.ID); err != nil {
		t.Fatal(err)
	}
	r2, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "k"})
	if err != nil || !r2.Duplicate || r2.ID != r1.ID || queueSize(t, b, "default") != 0 {
		t.Fatalf("%+v %v, want a duplicate of %s and nothing enqueued", r2, err, r1.ID)
	}
}

// TestTaskIDConflictIsDuplicate: a task that outlived its key's window
// (its id is derived from the key) still makes the key a duplicate, and the
// key is taken for a new window; a forced task id that exists is a duplicate.
func TestTaskIDConflictIsDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{DedupeWindow: time.Hour})
	ctx := context.Background()
	r1, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "long-lived", In: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dk := dedupeKey("default", keyHash("long-lived"))
	if err := b.rdb.Del(ctx, dk).Err(); err != nil { // the window ends
		t.Fatal(err)
	}
	r2, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "long-lived"})
	if err != nil || !r2.Duplicate || r2.ID != r1.ID {
		t.Fatalf("%+v %v, want a duplicate of %s (task id conflict)", r2, err, r1.ID)
	}
	if v, ttl := b.rdb.Get(ctx, dk).Val(), b.rdb.PTTL(ctx, dk).Val(); v != r1.ID || ttl < 59*time.Minute {
		t.Fatalf("key after the conflict = %q ttl %v, want %s for a new window", v, ttl, r1.ID)
	}
	if n := b.rdb.LLen(ctx, asynqPendingKey("default")).Val(); n != 0 {
		t.Fatalf("pending holds %d tasks, want none", n)
	}
	r3, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{TaskID: "fixed"})
	if err != nil || r3.Duplicate || r3.ID != "fixed" {
		t.Fatalf("forced id: %+v %v", r3, err)
	}
	r4, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{TaskID: "fixed"})
	if err != nil || !r4.Duplicate || r4.ID != "fixed" || queueSize(t, b, "default") != 2 {
		t.Fatalf("forced id again: %+v %v, want a duplicate", r4, err)
	}
}

// TestIdempotencyKeyIsPerQueue: the dedupe key carries the queue's hash tag,
// so one key in two queues is two tasks.
func TestIdempotencyKeyIsPerQueue(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	ctx := context.Background()
	ids := map[string]bool{}
	for _, q := range []string{"a", "b"} {
		r, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "same", Queue: q})
		if err != nil || r.Duplicate || r.Queue != q || r.ID != taskIDForKey(q, "same") {
			t.Fatalf("queue %s: %+v %v", q, r, err)
		}
		ids[r.ID] = true
		if queueSize(t, b, q) != 1 {
			t.Fatalf("queue %s holds %d tasks", q, queueSize(t, b, q))
		}
	}
	if len(ids) != 2 {
		t.Fatalf("one key in two queues gave task ids %v, want two different ids", ids)
	}
}

// hashTag returns the part of a Redis key Cluster hashes: the first {...}.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestScriptKeysShareASlot: on Cluster every key of the script hashes to the
// queue's slot and asynq:queues (no tag) is not one of them; the queue is
// published on its own instead, once. On one server the script publishes it.
func TestScriptKeysShareASlot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cluster bool
	}{{"cluster", true}, {"single server", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{})
			b.client.cluster = tc.cluster
			ctx := context.Background()
			for _, o := range []EnqueueOptions{{Key: "k", Queue: "q1"}, {Queue: "q1", In: time.Hour}, {Key: "k", Queue: "q2"}} {
				p, err := b.client.prepare("test.echo", []byte(`{"n":1}`), o)
				if err != nil {
					t.Fatal(err)
				}
				keys, _ := b.client.scriptArgs(p, time.Now(), b.client.publishing(p.queue) && !tc.cluster)
				for _, k := range keys {
					if k == asynqAllQueues {
						if tc.cluster {
							t.Fatalf("asynq:queues in the script's keys %v on Cluster", keys)
						}
						continue
					}
					if hashTag(k) != o.Queue {
						t.Fatalf("key %s hashes on %q, not the queue %q", k, hashTag(k), o.Queue)
					}
				}
				if _, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), o); err != nil {
					t.Fatal(err)
				}
			}
			qs, err := b.insp.Queues()
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(qs)
			if !reflect.DeepEqual(qs, []string{"q1", "q2"}) {
				t.Fatalf("asynq's queues = %v", qs)
			}
			// Published once: later enqueues of q1 no longer touch asynq:queues.
			p, _ := b.client.prepare("test.echo", []byte(`{"n":1}`), EnqueueOptions{Queue: "q1"})
			if b.client.publishing(p.queue) {
				t.Fatal("q1 still to be published after its first enqueue")
			}
		})
	}
}

// TestBatchMatchesOneByOne: a batch gives the results of enqueueing its
// lines one by one, also after the script cache was flushed.
func TestBatchMatchesOneByOne(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	for i := 0; i < 3*BatchChunk/2; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":%d},"key":"k-%d"}`+"\n", i, i%50)
		case 1:
			fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":%d},"key":"k-%d","queue":"q%d"}`+"\n", i, i%7, i%3)
		case 2:
			fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":%d},"in":"1h","key":"d-%d"}`+"\n", i, i%9)
		default:
			fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":%d},"run_id":"r","timeout":"3s"}`+"\n", i)
		}
	}
	ctx := context.Background()
	batch := setup(t, ClientConfig{})
	sum, err := batch.client.EnqueueBatch(ctx, strings.NewReader(in.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	single := setup(t, ClientConfig{})
	var want []BatchResult
	for i, line := range strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n") {
		kind, payload, o, err := ParseBatchLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		r, err := single.client.Enqueue(ctx, kind, payload, o)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, BatchResult{Line: i + 1, Result: r})
	}
	if len(sum.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(sum.Results), len(want))
	}
	for i := range want {
		g, w := sum.Results[i], want[i]
		if w.Key == "" { // a random id
			g.ID, w.ID = "", ""
		}
		if g != w {
			t.Fatalf("line %d: batch %+v, one by one %+v", w.Line, g, w)
		}
	}
	for _, q := range []string{"default", "q0", "q1", "q2"} {
		if g, w := queueSize(t, batch, q), queueSize(t, single, q); g != w || g == 0 {
			t.Fatalf("queue %s: batch %d tasks, one by one %d", q, g, w)
		}
	}

	// A flushed script cache: the pipeline's EVALSHAs fail and run again.
	srv := redistest.StartExclusive(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb, batch.reg, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var ps []*prepared
	for _, k := range []string{"x", "y", "x"} {
		p, err := c.prepare("test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	res, errs := c.sendAll(ctx, ps)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("after SCRIPT FLUSH, enqueue %d: %v", i, err)
		}
	}
	if res[0].Duplicate || res[1].Duplicate || !res[2].Duplicate || res[2].ID != res[0].ID {
		t.Fatalf("after SCRIPT FLUSH: %+v", res)
	}
}

// countHook counts the commands and round trips a go-redis client sends.
type countHook struct {
	mu       sync.Mutex
	cmds     []string
	roundTrs int
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if handshake(cmd.Name()) {
			return next(ctx, cmd)
		}
		h.mu.Lock()
		h.cmds, h.roundTrs = append(h.cmds, cmd.Name()), h.roundTrs+1
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			if !handshake(c.Name()) {
				names = append(names, c.Name())
			}
		}
		if len(names) == 0 {
			return next(ctx, cmds)
		}
		h.mu.Lock()
		h.roundTrs++
		h.cmds = append(h.cmds, names...)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// handshake reports whether name is sent when a connection is opened.
func handshake(name string) bool {
	switch name {
	case "hello", "client", "select", "auth":
		return true
	}
	return false
}

func (h *countHook) take() (roundTrips int, cmds string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	roundTrips, cmds = h.roundTrs, strings.Join(h.cmds, " ")
	h.cmds, h.roundTrs = nil, 0
	return roundTrips, cmds
}

// TestEnqueueRoundTrips counts what an enqueue sends: one EVALSHA, keyed or
// not, once the script is loaded; on Cluster one SADD more the first time a
// queue is used; a batch one pipeline per BatchChunk lines.
func TestEnqueueRoundTrips(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cluster bool
		// first is what the first enqueue to a queue sends after the script
		// is loaded.
		first string
	}{{"single server", false, "evalsha"}, {"cluster", true, "sadd evalsha"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, ClientConfig{})
			b.client.cluster = tc.cluster
			ctx := context.Background()
			if err := enqueueScript.Load(ctx, b.rdb).Err(); err != nil {
				t.Fatal(err)
			}
			h := &countHook{}
			b.rdb.AddHook(h)
			steps := []struct {
				o    EnqueueOptions
				want string
			}{
				{EnqueueOptions{Key: "a"}, tc.first},
				{EnqueueOptions{Key: "b"}, "evalsha"},
				{EnqueueOptions{Key: "a"}, "evalsha"}, // a duplicate
				{EnqueueOptions{}, "evalsha"},
				{EnqueueOptions{In: time.Hour}, "evalsha"},
			}
			for i, s := range steps {
				if _, err := b.client.Enqueue(ctx, "test.echo", []byte(`{"n":1}`), s.o); err != nil {
					t.Fatal(err)
				}
				n, cmds := h.take()
				if cmds != s.want || n != strings.Count(s.want, " ")+1 {
					t.Fatalf("enqueue %d sent %q in %d round trips, want %q", i, cmds, n, s.want)
				}
			}
			var in strings.Builder
			for i := 0; i < BatchChunk+10; i++ {
				fmt.Fprintf(&in, `{"kind":"test.echo","payload":{"n":1},"key":"batch-%d"}`+"\n", i)
			}
			if _, err := b.client.EnqueueBatch(ctx, strings.NewReader(in.String()), nil); err != nil {
				t.Fatal(err)
			}
			n, cmds := h.take()
			if want := 1 + 2; n != want || strings.Count(cmds, "evalsha") != BatchChunk+10 {
				t.Fatalf("batch: %d round trips (want %d: script load, two pipelines), %d EVALSHAs: %.200s", n, want, strings.Count(cmds, "evalsha"), strings.ReplaceAll(cmds, "evalsha ", ""))
			}
		})
	}
}
