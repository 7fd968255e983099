package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m, binarytest.Cleanup) }

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
	var hooked []int
	opts := Options{
		Tasks: 300, Rate: 200, LatencyFor: time.Second, Reps: 2, Loops: 2, Progress: &progress,
		WorkerConfig: func(cfg *queue.WorkerConfig, loops int) {
			hooked = append(hooked, loops)
			if cfg.Concurrency != ConcurrencyDefault || len(cfg.Middleware) == 0 {
				t.Errorf("WorkerConfig hook got concurrency %d and %d middleware", cfg.Concurrency, len(cfg.Middleware))
			}
		},
	}
	r, err := Run(ctx, rdb, registry(t), opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	e := r.Environment
	if e.GoVersion == "" || e.GOMAXPROCS < 1 || e.NumCPU < 1 || e.RedisVersion == "" {
		t.Errorf("environment not filled: %+v", e)
	}
	if e.Tasks != 300 || e.Rate != 200 || e.LatencyForMS != 1000 || e.Concurrency != ConcurrencyDefault ||
		e.Enqueuers != EnqueuersDefault || e.Reps != 2 || e.Loops != 2 {
		t.Errorf("environment does not echo the options and defaults: %+v", e)
	}
	wantPoll := ms(queue.PollIntervalDefault)
	if e.AsynqPollIntervalMS != wantPoll || e.AgentqPollIntervalMS != wantPoll {
		t.Errorf("poll intervals = %v, %v ms; want %v", e.AsynqPollIntervalMS, e.AgentqPollIntervalMS, wantPoll)
	}
	// Per rep: the 1-loop and the 2-loop processing rows; then the latency
	// phase (2 loops).
	if want := []int{1, 2, 1, 2, 2}; !slices.Equal(hooked, want) {
		t.Errorf("WorkerConfig hook called with loops %v, want %v", hooked, want)
	}

	wantRows := []string{"enqueue plain", "enqueue keyed", "enqueue batch", "process, 1 loop", "process, 2 loops", "ceiling: raw asynq, 2 servers"}
	var names []string
	for _, row := range r.Rows {
		names = append(names, row.Name)
	}
	if !slices.Equal(names, wantRows) {
		t.Fatalf("rows = %q, want %q", names, wantRows)
	}
	for _, row := range r.Rows {
		if len(row.Runs) != 2 {
			t.Errorf("%s: %d runs, want 2 (reps)", row.Name, len(row.Runs))
		}
		for i, run := range row.Runs {
			for side, tp := range map[string]Throughput{"raw": run.Raw, "agentq": run.Agentq} {
				if tp.Tasks != 300 || tp.ElapsedMS <= 0 || tp.TasksPerSec <= 0 {
					t.Errorf("%s run %d %s: not a measurement: %+v", row.Name, i, side, tp)
				}
				if tp.CommandsPerTask <= 0 || tp.CommandsPerTask >= 100 {
					t.Errorf("%s run %d %s: commands per task = %.2f, want in (0, 100)", row.Name, i, side, tp.CommandsPerTask)
				}
				if tp.RoundTripsPerTask == nil || *tp.RoundTripsPerTask <= 0 || *tp.RoundTripsPerTask >= 20 {
					t.Errorf("%s run %d %s: round trips per task = %v, want in (0, 20)", row.Name, i, side, tp.RoundTripsPerTask)
				}
			}
			if got := run.Agentq.TasksPerSec / run.Raw.TasksPerSec; got != run.Ratio {
				t.Errorf("%s run %d: ratio %v, want %v", row.Name, i, run.Ratio, got)
			}
		}
		if row.Ratio.Min > row.Ratio.Median || row.Ratio.Median > row.Ratio.Max || row.Ratio.Min <= 0 {
			t.Errorf("%s: ratio spread %+v out of order", row.Name, row.Ratio)
		}
		if row.RawRoundTripsPerTask == nil || row.AgentqRoundTripsPerTask == nil || row.ExtraRoundTripsPerTask == nil {
			t.Errorf("%s: round trips not summarized: %+v", row.Name, row)
		}
	}
	// Raw asynq's enqueue is one round trip per task (and a few loading
	// its script); the batch pipelines the key claims of many lines into
	// one, which a single keyed enqueue cannot.
	if rt := *r.Rows[0].RawRoundTripsPerTask; rt < 1 || rt > 1.1 {
		t.Errorf("raw asynq enqueue: %.3f round trips per task, want 1 (to 1.1)", rt)
	}
	if batch, single := *r.Rows[2].AgentqRoundTripsPerTask, *r.Rows[1].AgentqRoundTripsPerTask; batch >= single {
		t.Errorf("batch enqueue: %.3f round trips per task, keyed single enqueue %.3f: want fewer (pipelined)", batch, single)
	}
	if r.Rows[0].RawCommandsPerTask >= r.Rows[1].AgentqCommandsPerTask {
		t.Errorf("raw asynq enqueue costs %.2f commands per task, agentq's keyed enqueue %.2f: the key claim should cost more",
			r.Rows[0].RawCommandsPerTask, r.Rows[1].AgentqCommandsPerTask)
	}
	for i, want := range map[int][]string{1: {"ratio >= 0.80"}, 4: {"ratio >= 1.00", "extra round trips/task <= 1"}} {
		var got []string
		for _, tg := range r.Rows[i].Targets {
			got = append(got, tg.Want)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: targets %q, want %q", r.Rows[i].Name, got, want)
		}
	}

	l := r.Latency
	for name, l := range map[string]Latency{"asynq default poll": l.AsynqDefaultPoll, "asynq": l.Asynq, "agentq": l.Agentq} {
		if l.Tasks != 200 {
			t.Errorf("%s latency: %d tasks measured, want 200 (1s at 200/s)", name, l.Tasks)
		}
		if l.P50MS <= 0 || l.P99MS < l.P50MS || l.MaxMS < l.P99MS {
			t.Errorf("%s latency: want 0 < p50 <= p99 <= max, got %+v", name, l)
		}
	}
	if l.AsynqDefaultPoll.PollIntervalMS != 1000 || l.Asynq.PollIntervalMS != wantPoll || l.Agentq.PollIntervalMS != wantPoll {
		t.Errorf("latency poll intervals = %v, %v, %v ms", l.AsynqDefaultPoll.PollIntervalMS, l.Asynq.PollIntervalMS, l.Agentq.PollIntervalMS)
	}

	// One line per run (6 rows x 2 sides x 2 reps) and per latency phase.
	if n := strings.Count(progress.String(), "\n"); n != 6*2*2+3 {
		t.Errorf("progress has %d lines, want one per measured run (27):\n%s", n, progress.String())
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("after Run the database holds %d keys (err %v), want it flushed", n, err)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	for _, want := range []string{"| enqueue keyed |", "| process, 2 loops |", "ratio >= 0.80: ", "extra round trips/task <= 1: ",
		"round trips/task raw", "poll 1s", "poll 10ms", "K = 2 loops", "2 reps", e.RedisVersion} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"rows"`, `"raw_tasks_per_sec"`, `"ratio":{"median"`, `"extra_round_trips_per_task"`, `"round_trips_per_task"`,
		`"targets"`, `"met"`, `"p99_ms"`, `"asynq_default_poll"`, `"redis_version"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("JSON report lacks %s: %s", key, raw)
		}
	}
}

// TestRunDefaults runs the benchmark at its default sizes when envFull is
// set, with the full chain in-process and the binary row, and logs the
// table and the JSON report.
func TestRunDefaults(t *testing.T) {
	if os.Getenv(envFull) == "" {
		t.Skip("set " + envFull + "=1 to run the full benchmark")
	}
	bin := binarytest.Build(t)
	srv := redistest.StartExclusive(t)
	rdb := srv.Client(t)
	var progress bytes.Buffer
	mws, obs := fullChain(t, rdb)
	r, err := Run(context.Background(), rdb, registry(t), Options{
		Progress: &progress, Middleware: mws, Observers: obs,
		Binary: bin, BinaryEnv: binarytest.Environ("AGENTQ_REDIS_URL=" + srv.URL),
	})
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
		{"negative reps", rdb, reg, Options{Reps: -1}, "reps must be at least 1, got -1"},
		{"more loops than concurrency", rdb, reg, Options{Concurrency: 2, Loops: 3}, "loops must be between 1 and concurrency (2), got 3"},
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
	benchmarkProcess(b, func(bn *bench) *system { return bn.raw1 })
}

func BenchmarkProcessAgentq(b *testing.B) {
	benchmarkProcess(b, func(bn *bench) *system { return bn.agentqK })
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

func TestSpread(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    []float64
		want Spread
	}{
		{"empty", nil, Spread{}},
		{"one", []float64{0.7}, Spread{0.7, 0.7, 0.7}},
		{"odd, unsorted", []float64{1.2, 0.6, 0.9}, Spread{0.9, 0.6, 1.2}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, Spread{2.5, 1, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := spread(tt.v); got != tt.want {
				t.Fatalf("spread(%v) = %+v, want %+v", tt.v, got, tt.want)
			}
		})
	}
}

func TestSummarizeTargets(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	pair := func(raw, agentq float64, rawRT, agentqRT *float64) Pair {
		return Pair{
			Raw:    Throughput{TasksPerSec: raw, RoundTripsPerTask: rawRT},
			Agentq: Throughput{TasksPerSec: agentq, RoundTripsPerTask: agentqRT},
			Ratio:  agentq / raw,
		}
	}
	def := row{name: "r", targets: []target{{kind: targetRatio, bound: 1}, {kind: targetExtraRoundTrips, bound: 1}}}
	tests := []struct {
		name      string
		runs      []Pair
		wantRatio Spread
		wantExtra *float64
		wantMet   []bool
	}{
		{
			"one slow run does not decide",
			[]Pair{pair(100, 110, f(2), f(2.5)), pair(100, 40, f(2), f(3.5)), pair(100, 105, f(2), f(2.9))},
			Spread{1.05, 0.4, 1.1}, f(0.9), []bool{true, true},
		},
		{
			"too many round trips",
			[]Pair{pair(100, 120, f(2), f(3.2)), pair(100, 130, f(2), f(3.1))},
			Spread{1.25, 1.2, 1.3}, f(1.15), []bool{true, false},
		},
		{
			"round trips not counted: not met, not guessed",
			[]Pair{pair(100, 90, f(2), nil)},
			Spread{0.9, 0.9, 0.9}, nil, []bool{false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := summarize(def, tt.runs)
			if d := r.Ratio.Median - tt.wantRatio.Median; d > 1e-9 || d < -1e-9 || r.Ratio.Min != tt.wantRatio.Min || r.Ratio.Max != tt.wantRatio.Max {
				t.Errorf("ratio = %+v, want %+v", r.Ratio, tt.wantRatio)
			}
			switch {
			case (r.ExtraRoundTripsPerTask == nil) != (tt.wantExtra == nil):
				t.Errorf("extra round trips = %v, want %v", r.ExtraRoundTripsPerTask, tt.wantExtra)
			case tt.wantExtra != nil && (*r.ExtraRoundTripsPerTask-*tt.wantExtra > 1e-9 || *tt.wantExtra-*r.ExtraRoundTripsPerTask > 1e-9):
				t.Errorf("extra round trips = %v, want %v", *r.ExtraRoundTripsPerTask, *tt.wantExtra)
			}
			var met []bool
			for _, tg := range r.Targets {
				met = append(met, tg.Met)
			}
			if !slices.Equal(met, tt.wantMet) {
				t.Errorf("targets %+v, want met %v", r.Targets, tt.wantMet)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		total, n int
		want     []int
	}{
		{"one part", 10, 1, []int{10}},
		{"even", 10, 2, []int{5, 5}},
		{"remainder first", 10, 4, []int{3, 3, 2, 2}},
		{"one each", 3, 3, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := split(tt.total, tt.n); !slices.Equal(got, tt.want) {
				t.Fatalf("split(%d, %d) = %v, want %v", tt.total, tt.n, got, tt.want)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		v    float64
		want string
	}{
		{"small", 999.4, "999"},
		{"rounds up", 999.5, "1,000"},
		{"issue 8", 29882, "29,882"},
		{"millions", 1234567, "1,234,567"},
		{"negative", -4321, "-4,321"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := thousands(tt.v); got != tt.want {
				t.Fatalf("thousands(%v) = %q, want %q", tt.v, got, tt.want)
			}
		})
	}
}
