package queue

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

// dequeueScript is asynq v0.26's dequeueCmd without the pause check, with
// the lease score given: it leaves a task where a worker killed while
// running it leaves it.
var dequeueScript = redis.NewScript(`
local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[2])
if not id then return nil end
redis.call("HSET", ARGV[2] .. id, "state", "active")
redis.call("HDEL", ARGV[2] .. id, "pending_since")
redis.call("ZADD", KEYS[3], ARGV[1], id)
return id`)

type orphanSpec struct {
	id       string
	maxRetry int
}

// orphan enqueues tasks with asynq's own client and leaves them active
// with a lease that expired `ago` before Redis's clock (negative: a live
// lease), as a killed worker would.
func orphan(t *testing.T, rdb *redis.Client, q string, ago time.Duration, specs ...orphanSpec) {
	t.Helper()
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(rdb)
	for _, s := range specs {
		tk := asynq.NewTaskWithHeaders("test.orphan", []byte(`{"n":1}`), map[string]string{"x-a": "1", "x-b": "2", "x-c": "3"})
		if _, err := c.Enqueue(tk, asynq.Queue(q), asynq.TaskID(s.id), asynq.MaxRetry(s.maxRetry), asynq.Timeout(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for range specs {
		if err := dequeueScript.Run(ctx, rdb, []string{"asynq:{" + q + "}:pending", asynqActiveKey(q), asynqLeaseKey(q)},
			now.Add(-ago).Unix(), asynqTaskPrefix(q)).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func testSweeper(rdb redis.UniversalClient, q string, grace time.Duration, delay time.Duration) *sweeper {
	cfg := WorkerConfig{Queues: map[string]int{q: 1}, Recover: RecoverConfig{Interval: time.Hour, Grace: grace}}.withDefaults()
	return newSweeper(rdb, cfg, func(int, error, *asynq.Task) time.Duration { return delay })
}

// snapshot is every key of queue q, values made comparable: timestamps
// (zset scores, last_failed_at) replaced by "t" (timestamps compares them),
// task messages decoded field by field.
func snapshot(t *testing.T, rdb *redis.Client, q string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "asynq:{"+q+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		ttl := rdb.TTL(ctx, k).Val()
		v := typ
		if ttl > 0 {
			v += fmt.Sprintf(" ttl~%dd", (ttl+12*time.Hour)/(24*time.Hour))
		}
		switch typ {
		case "string":
			v += " " + rdb.Get(ctx, k).Val()
		case "list":
			v += fmt.Sprint(" ", rdb.LRange(ctx, k, 0, -1).Val())
		case "zset":
			for _, z := range rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
				v += fmt.Sprintf(" %v@t", z.Member)
			}
		case "hash":
			h := rdb.HGetAll(ctx, k).Val()
			for _, f := range slices.Sorted(maps.Keys(h)) {
				fv := h[f]
				if f == "msg" {
					fv = decodeForCompare(t, []byte(fv))
				}
				v += fmt.Sprintf(" %s=%s", f, fv)
			}
		}
		out[k] = v
	}
	return out
}

// decodeForCompare lists a task message's fields in field order, map
// entries sorted, last_failed_at rounded: two encodings of the same message
// (map order is not deterministic) compare equal.
func decodeForCompare(t *testing.T, b []byte) string {
	t.Helper()
	var parts []string
	err := eachField(b, func(num protowire.Number, typ protowire.Type, _ []byte, val []byte, v uint64) error {
		switch {
		case num == fieldLastFailedAt:
			parts = append(parts, fmt.Sprintf("%d:t", num))
		case typ == protowire.BytesType:
			parts = append(parts, fmt.Sprintf("%d:%q", num, val))
		default:
			parts = append(parts, fmt.Sprintf("%d:%d", num, v))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("decode task message: %v", err)
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

// TestSweeperMatchesAsynqRecoverer pins the sweeper to asynq: the same
// orphaned tasks, recovered by asynq's own recoverer in one DB and by the
// sweeper in another, must leave the same keys, fields and messages. An
// asynq upgrade that changes its layout fails here (and the version gate
// turns the sweeper off until this test is updated).
func TestSweeperMatchesAsynqRecoverer(t *testing.T) {
	t.Parallel()
	const q = "pin"
	specs := []orphanSpec{{id: "retry-me", maxRetry: 3}, {id: "archive-me", maxRetry: 0}}
	theirs, ours := redistest.Start(t), redistest.Start(t)
	rdbTheirs, rdbOurs := theirs.Client(t), ours.Client(t)
	// 2 minutes ago: past asynq's own 30s cutoff as well as our grace.
	orphan(t, rdbTheirs, q, 2*time.Minute, specs...)
	orphan(t, rdbOurs, q, 2*time.Minute, specs...)

	// asynq's recoverer runs once when its server starts.
	srv := asynq.NewServerFromRedisClient(rdbTheirs, asynq.Config{
		Queues:         map[string]int{q: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for rdbTheirs.LLen(context.Background(), asynqActiveKey(q)).Val() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("asynq's recoverer did not recover the orphans within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Shutdown()

	sw, err := testSweeper(rdbOurs, q, RecoverGraceDefault, time.Hour).sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sw.retried != 1 || sw.archived != 1 {
		t.Fatalf("sweep = %+v, want 1 retried and 1 archived", sw)
	}

	want, got := snapshot(t, rdbTheirs, q), snapshot(t, rdbOurs, q)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s:\n asynq: %s\n ours:  %s", k, want[k], got[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: only ours wrote it: %s", k, got[k])
		}
	}
	// Timestamps agree within the seconds between the two recoveries.
	for _, k := range []string{asynqRetryKey(q), asynqArchivedKey(q)} {
		a, b := rdbTheirs.ZRangeWithScores(context.Background(), k, 0, -1).Val(), rdbOurs.ZRangeWithScores(context.Background(), k, 0, -1).Val()
		if len(a) != 1 || len(b) != 1 || b[0].Score-a[0].Score > 10 || a[0].Score-b[0].Score > 10 {
			t.Errorf("%s: asynq %v, ours %v: want one member each, scores within 10s", k, a, b)
		}
	}
	// What asynq reads back of ours, through its public API.
	for _, tc := range []struct {
		id      string
		state   asynq.TaskState
		retried int
	}{{"retry-me", asynq.TaskStateRetry, 1}, {"archive-me", asynq.TaskStateArchived, 0}} {
		info, err := asynq.NewInspectorFromRedisClient(rdbOurs).GetTaskInfo(q, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != tc.state || info.Retried != tc.retried || info.LastErr != asynq.ErrLeaseExpired.Error() ||
			info.LastFailedAt.IsZero() || info.Type != "test.orphan" || len(info.Headers) != 3 {
			t.Errorf("%s: asynq reads state %v retried %d last_err %q failed_at %v type %q headers %v",
				tc.id, info.State, info.Retried, info.LastErr, info.LastFailedAt, info.Type, info.Headers)
		}
	}
}

func TestSweeperLeavesLiveAndFreshLeases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		ago       time.Duration // lease expired this long before Redis's clock
		recovered bool
	}{
		{name: "live lease", ago: -20 * time.Second, recovered: false},
		{name: "expired within grace", ago: 5 * time.Second, recovered: false},
		{name: "expired past grace", ago: 15 * time.Second, recovered: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Client(t)
			orphan(t, rdb, "q", tc.ago, orphanSpec{id: "t1", maxRetry: 3})
			sw, err := testSweeper(rdb, "q", 10*time.Second, time.Hour).sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			state := rdb.HGet(context.Background(), asynqTaskPrefix("q")+"t1", "state").Val()
			if got := sw.retried == 1 && state == "retry"; got != tc.recovered {
				t.Fatalf("recovered = %v (sweep %+v, state %q), want %v", got, sw, state, tc.recovered)
			}
			if !tc.recovered && (state != "active" || rdb.ZCard(context.Background(), asynqLeaseKey("q")).Val() != 1) {
				t.Fatalf("a task the sweeper left alone is no longer active: state %q", state)
			}
		})
	}
}

// TestSweeperMovesOnlyWhatItRead: between listing and moving, the task's
// lease was renewed, or its message changed (another recoverer retried it
// and a worker took it again): the move must not happen.
func TestSweeperMovesOnlyWhatItRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(rdb *redis.Client)
	}{
		{name: "lease renewed", change: func(rdb *redis.Client) {
			rdb.ZAdd(context.Background(), asynqLeaseKey("q"), redis.Z{Member: "t1", Score: float64(time.Now().Add(30 * time.Second).Unix())})
		}},
		{name: "message changed", change: func(rdb *redis.Client) {
			raw := rdb.HGet(context.Background(), asynqTaskPrefix("q")+"t1", "msg").Val()
			rdb.HSet(context.Background(), asynqTaskPrefix("q")+"t1", "msg", withFailure([]byte(raw), 1, "other", 1))
		}},
		{name: "lease gone", change: func(rdb *redis.Client) {
			rdb.ZRem(context.Background(), asynqLeaseKey("q"), "t1")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb := redistest.Start(t).Client(t)
			orphan(t, rdb, "q", time.Minute, orphanSpec{id: "t1", maxRetry: 3})
			raw := rdb.HGet(ctx, asynqTaskPrefix("q")+"t1", "msg").Val()
			cutoff := time.Now().Add(-10 * time.Second).Unix()
			tc.change(rdb)
			before := snapshot(t, rdb, "q")
			r, err := testSweeper(rdb, "q", 10*time.Second, time.Hour).recoverTask(ctx, "q", "t1", []byte(raw), cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if r != leftChanged {
				t.Fatalf("recoverTask = %v, want leftChanged: moved a task that changed since it was read", r)
			}
			if after := snapshot(t, rdb, "q"); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("state changed:\n before %v\n after  %v", before, after)
			}
		})
	}
}

// TestWorkerRecoversOrphansBeforeAsynqWould: a task left active by a dead
// worker, lease expired 12s ago (asynq's recoverer waits for 30s), is run
// again by a live worker's sweeper.
func TestWorkerRecoversOrphansBeforeAsynqWould(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	info, err := b.client.Enqueue(context.Background(), "test.echo", []byte(`{"n":1}`), EnqueueOptions{Key: "orphan-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := b.rdb.Time(ctx).Val()
	if err := dequeueScript.Run(ctx, b.rdb, []string{"asynq:{default}:pending", asynqActiveKey("default"), asynqLeaseKey("default")},
		now.Add(-12*time.Second).Unix(), asynqTaskPrefix("default")).Err(); err != nil {
		t.Fatal(err)
	}
	rc := newRecorders("r")[0]
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond}, Recover: RecoverConfig{Interval: 50 * time.Millisecond, Grace: RecoverGraceMin},
		Observers: []jobs.Observer{rc}})
	deadline := time.Now().Add(20 * time.Second)
	for rc.outcomes(info.ID) != "retry,success" {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan did not run within 20s; logs:\n%s", b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := b.callCount(info.ID); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	if !strings.Contains(b.logs.String(), `"class":"lease_expired"`) {
		t.Fatalf("no lease_expired attempt line in logs:\n%s", b.logs.String())
	}
	// The sweeper's move is observed as the dead worker's attempt: a
	// lease_expired retry with no timing, then the run's success.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	got := rc.got[info.ID]
	if len(got) != 2 || got[0].Class != jobs.ClassLeaseExpired || !got[0].Started.IsZero() || got[0].Err != asynq.ErrLeaseExpired ||
		got[1].Outcome != jobs.OutcomeSuccess {
		t.Fatalf("observed %+v, want a lease_expired retry then a success", got)
	}
}

func TestRecoverConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     RecoverConfig
		wantErr string
	}{
		{name: "defaults", cfg: RecoverConfig{}},
		{name: "grace too short", cfg: RecoverConfig{Grace: time.Second}, wantErr: "recover_grace must be at least 5s"},
		{name: "grace at the minimum", cfg: RecoverConfig{Grace: RecoverGraceMin}},
		{name: "off ignores grace", cfg: RecoverConfig{Interval: -1, Grace: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// goModAsynqVersion is the asynq version go.mod requires: test binaries
// carry no module versions for the sweeper's gate to read.
func goModAsynqVersion() string {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/hibiken/asynq" {
			return f[1]
		}
	}
	return "unknown"
}

func init() {
	asynqVersion = func() (string, bool) {
		v := goModAsynqVersion()
		return v, v == asynqVerifiedVersion
	}
}

func TestAsynqVersionIsVerified(t *testing.T) {
	t.Parallel()
	if v := goModAsynqVersion(); v != asynqVerifiedVersion {
		t.Fatalf("go.mod requires asynq %s, the sweeper is checked against %s: check TestSweeperMatchesAsynqRecoverer and asynq's recoverer on the new version, then update asynqVerifiedVersion", v, asynqVerifiedVersion)
	}
	if v, ok := builtAsynqVersion(); ok || v != "unknown" {
		t.Fatalf("builtAsynqVersion() = %s, %v in a test binary, which carries no module versions: want unknown, false", v, ok)
	}
}

func FuzzTaskMsg(f *testing.F) {
	f.Add([]byte{}, 1, "err")
	f.Add([]byte("\x0a\x09test.echo\x12\x02{}\x28\x03"), 2, "asynq: task lease expired")
	f.Add([]byte("\x0a\x01x\x7a\x06\x0a\x01k\x12\x01v\x30\x05\x38\x01"), 0, "")
	f.Add([]byte("\x0a\xff\xff\xff\xff\x0f"), 1, "x")
	f.Fuzz(func(t *testing.T, raw []byte, retried int, errMsg string) {
		m, err := parseTaskMsg(raw)
		if err != nil {
			return
		}
		retried = max(0, retried%1000)
		out := withFailure(raw, retried, errMsg, 1700000000)
		if len(out) > len(raw)+len(errMsg)+32 {
			t.Fatalf("output grew from %d to %d bytes", len(raw), len(out))
		}
		m2, err := parseTaskMsg(out)
		if err != nil {
			t.Fatalf("withFailure made an unreadable message: %v", err)
		}
		if m2.typ != m.typ || string(m2.payload) != string(m.payload) || m2.retry != m.retry ||
			!maps.Equal(m2.headers, m.headers) || m2.retried != retried {
			t.Fatalf("fields changed: %+v -> %+v", m, m2)
		}
	})
}

// cmdCounter counts the commands a client sends.
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// stuckKinds are lease-expired entries no recoverer can move.
var stuckKinds = []struct {
	name  string
	setup func(p redis.Pipeliner, q, id string)
}{
	{name: "no task hash", setup: func(redis.Pipeliner, string, string) {}},
	{name: "unreadable message", setup: func(p redis.Pipeliner, q, id string) {
		p.HSet(context.Background(), asynqTaskPrefix(q)+id, "msg", "\xff\xff", "state", "active")
		p.LPush(context.Background(), asynqActiveKey(q), id)
	}},
	{name: "not in active", setup: func(p redis.Pipeliner, q, id string) {
		p.HSet(context.Background(), asynqTaskPrefix(q)+id, "msg", "\x0a\x09test.echo\x12\x02{}\x28\x03", "state", "active")
	}},
}

// stuck writes n lease entries of kind k (an index in stuckKinds), expired
// ago before Redis's clock, ids prefix-0, prefix-1, ...
func stuck(t *testing.T, rdb *redis.Client, q string, k, n int, prefix string, ago time.Duration) {
	t.Helper()
	ctx := context.Background()
	now := rdb.Time(ctx).Val()
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			stuckKinds[k].setup(p, q, id)
			p.ZAdd(ctx, asynqLeaseKey(q), redis.Z{Score: float64(now.Add(-ago).Unix()), Member: id})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// sweepWithin runs one sweep and fails the test if it does not return
// within a generous deadline (a liveness check, not a timing one).
func sweepWithin(t *testing.T, s *sweeper) swept {
	t.Helper()
	type result struct {
		sw  swept
		err error
	}
	done := make(chan result, 1)
	go func() {
		sw, err := s.sweep(context.Background())
		done <- result{sw, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.sw
	case <-time.After(time.Minute):
		t.Fatal("sweep did not return within a minute")
		return swept{}
	}
}

// TestSweeperPassesWhatItCannotMove: lease-expired entries that no
// recoverer can move (no task hash, an unreadable message, not in the
// active list) come first in the lease set, real orphans behind them. One
// sweep returns, reaches and moves the real ones with a bounded number of
// commands, and names each stuck id once, not once a sweep.
func TestSweeperPassesWhatItCannotMove(t *testing.T) {
	t.Parallel()
	const q, perKind, real = "q", 150, 3
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	for k, sk := range stuckKinds {
		stuck(t, rdb, q, k, perKind, strings.ReplaceAll(sk.name, " ", "_"), 2*time.Minute)
	}
	orphan(t, rdb, q, time.Minute, orphanSpec{id: "real-0", maxRetry: 3}, orphanSpec{id: "real-1", maxRetry: 3}, orphanSpec{id: "real-2", maxRetry: 0})
	entries := perKind*len(stuckKinds) + real

	counted := redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = counted.Close() })
	var cmds cmdCounter
	counted.AddHook(&cmds)
	s := testSweeper(counted, q, RecoverGraceDefault, time.Hour)
	var logs bytes.Buffer
	s.log = zerolog.New(&logs)

	// At most 2 commands a page (EVALSHA, and EVAL the first time) and 2 a
	// task it tries to move (real ones and those not in active).
	pages := entries/sweepBatch + 1
	bound := int64(2*pages + 2*(real+perKind) + 10)
	for i, want := range []swept{{retried: 2, archived: 1}, {}} {
		cmds.n.Store(0)
		logs.Reset()
		sw := sweepWithin(t, s)
		if sw != want {
			t.Fatalf("sweep %d = %+v, want %+v", i+1, sw, want)
		}
		t.Logf("sweep %d: %d commands", i+1, cmds.n.Load())
		if n := cmds.n.Load(); n > bound {
			t.Errorf("sweep %d sent %d commands for %d entries, want at most %d", i+1, n, entries, bound)
		}
		warned := strings.Count(logs.String(), "left alone") + strings.Count(logs.String(), "cannot read task message")
		if wantWarned := []int{perKind * len(stuckKinds), 0}[i]; warned != wantWarned {
			t.Errorf("sweep %d named %d stuck tasks, want %d; logs:\n%.2000s", i+1, warned, wantWarned, logs.String())
		}
	}
	for _, id := range []string{"real-0", "real-1", "real-2"} {
		if st := rdb.HGet(context.Background(), asynqTaskPrefix(q)+id, "state").Val(); st != "retry" && st != "archived" {
			t.Errorf("%s is %q, want recovered", id, st)
		}
	}

	// An id that left the lease set and comes back is named again.
	rdb.ZRem(context.Background(), asynqLeaseKey(q), "no_task_hash-0")
	sweepWithin(t, s)
	logs.Reset()
	stuck(t, rdb, q, 0, 1, "no_task_hash", 2*time.Minute)
	sweepWithin(t, s)
	if n := strings.Count(logs.String(), `"task_id":"no_task_hash-0"`); n != 1 {
		t.Errorf("a stuck id back in the lease set was named %d times, want 1; logs:\n%s", n, logs.String())
	}
}

// TestSweeperResumes: with more stuck entries than one sweep lists, the
// next sweep goes on where the last stopped, so real orphans behind them
// are reached.
func TestSweeperResumes(t *testing.T) {
	t.Parallel()
	const q = "q"
	rdb := redistest.Start(t).Client(t)
	stuck(t, rdb, q, 0, 2*sweepBatch+sweepBatch/2, "ghost", 2*time.Minute)
	orphan(t, rdb, q, time.Minute, orphanSpec{id: "real", maxRetry: 3})
	s := testSweeper(rdb, q, RecoverGraceDefault, time.Hour)
	s.pages = 1
	var got []int
	for range 4 {
		got = append(got, sweepWithin(t, s).retried)
	}
	if want := []int{0, 0, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("retried per sweep = %v, want %v", got, want)
	}
}

// TestSweeperClockSkew: the sweeper compares the worker's clock (injected)
// with Redis's: past Grace/2 apart it warns once and still moves; Grace or
// more apart it moves nothing and says why, once; agreeing again, it moves.
func TestSweeperClockSkew(t *testing.T) {
	t.Parallel()
	const grace = 10 * time.Second
	tests := []struct {
		name    string
		skew    time.Duration
		moves   bool
		logLine string // in the logs once over two sweeps; "" for no line
	}{
		{name: "agrees", skew: 0, moves: true},
		{name: "ahead within grace/2", skew: 4 * time.Second, moves: true},
		{name: "ahead past grace/2", skew: 6 * time.Second, moves: true, logLine: "differ by more than half the recover grace"},
		{name: "behind past grace/2", skew: -6 * time.Second, moves: true, logLine: "differ by more than half the recover grace"},
		{name: "ahead by grace", skew: grace + time.Second, moves: false, logLine: "lease sweeper paused"},
		{name: "behind by grace", skew: -grace - time.Second, moves: false, logLine: "lease sweeper paused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Start(t).Client(t)
			orphan(t, rdb, "q", time.Minute, orphanSpec{id: "t1", maxRetry: 3}, orphanSpec{id: "t2", maxRetry: 3})
			s := testSweeper(rdb, "q", grace, time.Hour)
			skew := tc.skew
			s.now = func() time.Time { return time.Now().Add(skew) }
			var logs bytes.Buffer
			s.log = zerolog.New(&logs)
			var moved int
			for range 2 {
				moved += sweepWithin(t, s).retried
			}
			if wantMoved := map[bool]int{true: 2, false: 0}[tc.moves]; moved != wantMoved {
				t.Fatalf("moved %d, want %d; logs:\n%s", moved, wantMoved, logs.String())
			}
			n := strings.Count(logs.String(), `"clock_skew"`)
			switch {
			case tc.logLine == "" && n != 0:
				t.Fatalf("clock lines logged with skew %v:\n%s", skew, logs.String())
			case tc.logLine != "" && (n != 1 || !strings.Contains(logs.String(), tc.logLine) || !strings.Contains(logs.String(), `"grace":10000`)):
				t.Fatalf("want one line %q naming the skew and the grace, got:\n%s", tc.logLine, logs.String())
			}
			if tc.moves {
				return
			}
			skew = 0
			logs.Reset()
			if sw := sweepWithin(t, s); sw.retried != 2 || !strings.Contains(logs.String(), "agree again") {
				t.Fatalf("clocks agreeing again: sweep %+v, logs:\n%s", sw, logs.String())
			}
		})
	}
}
