package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// envFull names the variable that makes TestRunDefaults run the benchmark at
// its default sizes and log the table, e.g. for the README:
//
//	AGENTQ_BENCH_FULL=1 go test -run TestRunDefaults -v ./internal/bench/
const envFull = "AGENTQ_BENCH_FULL"

func registry(t testing.TB) *queue.Registry {
	t.Helper()
	reg := queue.NewRegistry()
	if err := handlers.Register(reg, handlers.Config{}); err != nil {
		t.Fatalf("register handlers: %v", err)
	}
	return reg
}

// exclusive gives t a redis-server of its own: Run resets server-wide
// command statistics.
func exclusive(t testing.TB) *redis.Client {
	t.Helper()
	return redistest.StartExclusive(t).Client(t)
}

func TestRun(t *testing.T) {
	t.Parallel()
	rdb := exclusive(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "left-over", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	r, err := Run(ctx, rdb, registry(t), Options{Tasks: 500, Rate: 200, LatencyFor: time.Second, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	e := r.Environment
	if e.GoVersion == "" || e.GOMAXPROCS < 1 || e.RedisVersion == "" {
		t.Errorf("environment not filled: %+v", e)
	}
	if e.Tasks != 500 || e.Rate != 200 || e.LatencyForMS != 1000 || e.Concurrency != ConcurrencyDefault || e.Enqueuers != EnqueuersDefault {
		t.Errorf("environment does not echo the options and defaults: %+v", e)
	}
	wantPoll := ms(queue.PollIntervalDefault)
	if e.AsynqPollIntervalMS != wantPoll || e.AgentqPollIntervalMS != wantPoll {
		t.Errorf("poll intervals = %v, %v ms; want %v", e.AsynqPollIntervalMS, e.AgentqPollIntervalMS, wantPoll)
	}

	for name, s := range map[string]System{"asynq": r.Asynq, "agentq": r.Agentq} {
		for phase, tp := range map[string]Throughput{"enqueue": s.Enqueue, "process": s.Process} {
			if tp.Tasks != 500 || tp.ElapsedMS <= 0 || tp.TasksPerSec <= 0 {
				t.Errorf("%s %s: not a measurement: %+v", name, phase, tp)
			}
			if tp.CommandsPerTask <= 0 || tp.CommandsPerTask >= 100 {
				t.Errorf("%s %s: commands per task = %.2f, want in (0, 100)", name, phase, tp.CommandsPerTask)
			}
		}
		if got, want := s.CommandsPerTask, s.Enqueue.CommandsPerTask+s.Process.CommandsPerTask; got != want || got >= 200 {
			t.Errorf("%s: total commands per task = %.2f, want %.2f", name, got, want)
		}
	}
	if r.Asynq.Enqueue.CommandsPerTask >= r.Agentq.Enqueue.CommandsPerTask {
		t.Errorf("raw asynq enqueue costs %.2f commands per task, agentq's keyed enqueue %.2f: the key claim should cost more",
			r.Asynq.Enqueue.CommandsPerTask, r.Agentq.Enqueue.CommandsPerTask)
	}
	if r.Ratio.Enqueue <= 0 || r.Ratio.Process <= 0 {
		t.Errorf("ratios = %+v, want > 0", r.Ratio)
	}

	for name, l := range map[string]Latency{"asynq default poll": r.AsynqDefaultPoll, "asynq": r.Asynq.Latency, "agentq": r.Agentq.Latency} {
		if l.Tasks != 200 {
			t.Errorf("%s latency: %d tasks measured, want 200 (1s at 200/s)", name, l.Tasks)
		}
		if l.P50MS <= 0 || l.P99MS < l.P50MS || l.MaxMS < l.P99MS {
			t.Errorf("%s latency: want 0 < p50 <= p99 <= max, got %+v", name, l)
		}
	}
	if r.AsynqDefaultPoll.PollIntervalMS != 1000 || r.Asynq.Latency.PollIntervalMS != wantPoll || r.Agentq.Latency.PollIntervalMS != wantPoll {
		t.Errorf("latency poll intervals = %v, %v, %v ms", r.AsynqDefaultPoll.PollIntervalMS, r.Asynq.Latency.PollIntervalMS, r.Agentq.Latency.PollIntervalMS)
	}

	if n := strings.Count(progress.String(), "\n"); n != 7 {
		t.Errorf("progress has %d lines, want one per measured part (7):\n%s", n, progress.String())
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("after Run the database holds %d keys (err %v), want it flushed", n, err)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	for _, want := range []string{"enqueue tasks/s", "process tasks/s", "commands/task, total", "poll 1s", "poll 10ms", "agentq/asynq", e.RedisVersion} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"tasks_per_sec"`, `"commands_per_task"`, `"p99_ms"`, `"agentq_vs_asynq"`, `"asynq_default_poll_latency"`, `"redis_version"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("JSON report lacks %s: %s", key, raw)
		}
	}
}

// TestRunDefaults runs the benchmark at its default sizes when envFull is
// set, and logs the table and the JSON report.
func TestRunDefaults(t *testing.T) {
	if os.Getenv(envFull) == "" {
		t.Skip("set " + envFull + "=1 to run the full benchmark")
	}
	rdb := exclusive(t)
	var progress bytes.Buffer
	r, err := Run(context.Background(), rdb, registry(t), Options{Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("progress:\n%s\n%s\n%s", progress.String(), text.String(), raw)
}

func TestRunRefuses(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	// Nothing listens here: every case must be refused before Redis is used.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { _ = cluster.Close() })

	tests := []struct {
		name string
		rdb  redis.UniversalClient
		reg  *queue.Registry
		opts Options
		want string
	}{
		{"negative tasks", rdb, reg, Options{Tasks: -1}, "tasks must be at least 1, got -1"},
		{"negative rate", rdb, reg, Options{Rate: -5}, "rate must be at least 1 task/s, got -5"},
		{"tiny latency window", rdb, reg, Options{LatencyFor: time.Microsecond}, "latency_for must be at least 1ms, got 1µs"},
		{"negative concurrency", rdb, reg, Options{Concurrency: -2}, "concurrency must be at least 1, got -2"},
		{"negative enqueuers", rdb, reg, Options{Enqueuers: -3}, "enqueuers must be at least 1, got -3"},
		{"cluster", cluster, reg, Options{}, "single Redis server"},
		{"no registry", rdb, nil, Options{}, "registry is nil"},
		{"no noop kind", rdb, queue.NewRegistry(), Options{}, "needs the noop kind registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(context.Background(), tt.rdb, tt.reg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSumCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		info    string
		want    int64
		wantErr bool
	}{
		{"empty", "# Commandstats\r\n", 0, false},
		{
			"sums all but config",
			"# Commandstats\r\n" +
				"cmdstat_evalsha:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
				"cmdstat_hset:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
				"cmdstat_config|resetstat:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
				"cmdstat_client|setinfo:calls=4,usec=1,usec_per_call=0.25,rejected_calls=0,failed_calls=0\r\n",
			24, false,
		},
		{"redis 6 config", "cmdstat_config:calls=1,usec=3,usec_per_call=3.00\r\ncmdstat_get:calls=2,usec=1,usec_per_call=0.5\r\n", 2, false},
		{"bad count", "cmdstat_get:calls=x,usec=1\r\n", 0, true},
		{"no count", "cmdstat_get:usec=1\r\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := sumCalls(tt.info)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("sumCalls = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ten := make([]time.Duration, 10)
	hundred := make([]time.Duration, 100)
	for i := range ten {
		ten[i] = time.Duration(i+1) * time.Millisecond
	}
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name string
		s    []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{7}, 0.99, 7},
		{"median of ten", ten, 0.5, 5 * time.Millisecond},
		{"p99 of ten is the max", ten, 0.99, 10 * time.Millisecond},
		{"p99 of hundred", hundred, 0.99, 99 * time.Millisecond},
		{"max", hundred, 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.s, tt.q); got != tt.want {
				t.Fatalf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestPickup(t *testing.T) {
	t.Parallel()
	var p pickup
	p.enqueued("a")
	time.Sleep(2 * time.Millisecond) // a real gap for "a" to measure
	p.started("a")
	// "b" is picked up before its enqueue call returned: it counts as 0.
	p.started("b")
	p.enqueued("b")

	l := p.latency()
	if l.Tasks != 2 {
		t.Fatalf("tasks = %d, want 2", l.Tasks)
	}
	if l.P50MS != 0 {
		t.Errorf("p50 = %v ms, want 0 (the task picked up before its enqueue returned)", l.P50MS)
	}
	if l.MaxMS < 2 {
		t.Errorf("max = %v ms, want at least the 2ms gap", l.MaxMS)
	}
	left := 0
	p.marks.Range(func(any, any) bool { left++; return true })
	if left != 0 {
		t.Errorf("%d marks left after both sides met, want 0", left)
	}
}

func TestTally(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	tl := newTally()
	tl.add(nil)
	tl.add(nil)
	tl.expect(2) // the target may come after the tasks
	if err := tl.wait(ctx); err != nil {
		t.Fatalf("wait after 2 of 2: %v", err)
	}

	tl = newTally()
	tl.expect(3)
	tl.add(nil)
	tl.add(context.DeadlineExceeded)
	if err := tl.wait(ctx); err == nil || !strings.Contains(err.Error(), "noop task failed") {
		t.Fatalf("wait after a failure = %v, want the failure", err)
	}

	tl = newTally()
	tl.expect(1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tl.wait(cctx); err == nil {
		t.Fatal("wait on a done context returned nil")
	}
}

func BenchmarkProcessRawAsynq(b *testing.B) {
	benchmarkProcess(b, func(bn *bench) *system { return bn.raw })
}

func BenchmarkProcessAgentq(b *testing.B) {
	benchmarkProcess(b, func(bn *bench) *system { return bn.agentq })
}

// benchmarkProcess times a worker of the picked system on b.N waiting noop
// tasks; the pre-fill is not timed.
func benchmarkProcess(b *testing.B, pick func(*bench) *system) {
	rdb := exclusive(b)
	bn, err := newBench(rdb, registry(b), Options{}.withDefaults())
	if err != nil {
		b.Fatal(err)
	}
	s := pick(bn)
	ctx, cancel := context.WithTimeout(context.Background(), bn.phaseTimeout())
	defer cancel()
	if err := bn.fill(ctx, s, b.N); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	tp, err := bn.process(ctx, s, b.N)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(tp.TasksPerSec, "tasks/s")
	b.ReportMetric(tp.CommandsPerTask, "redis-cmds/task")
}
