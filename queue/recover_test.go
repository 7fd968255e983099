package queue

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
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
	for _, k := range []string{asynqRetryKey(q), AsynqArchivedKey(q)} {
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
			_, moved, err := testSweeper(rdb, "q", 10*time.Second, time.Hour).recoverTask(ctx, "q", "t1", []byte(raw), cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if moved {
				t.Fatal("moved a task that changed since it was read")
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
	b.startWorker(t, WorkerConfig{Retry: jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond}, Recover: RecoverConfig{Interval: 50 * time.Millisecond, Grace: RecoverGraceMin}})
	deadline := time.Now().Add(20 * time.Second)
	for b.callCount(info.ID) == 0 {
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
}

func TestRecoverConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     RecoverConfig
		wantErr string
	}{
		{name: "defaults", cfg: RecoverConfig{}},
		{name: "grace too short", cfg: RecoverConfig{Grace: time.Second}, wantErr: "at least 5s"},
		{name: "off ignores grace", cfg: RecoverConfig{Interval: -1, Grace: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.withDefaults().validate()
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
