package metrics

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// commands returns the commands the server ran since the last CONFIG
// RESETSTAT (INFO commandstats; commands inside scripts included, CONFIG
// and INFO left out).
func commands(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, stats, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || strings.HasPrefix(name, "cmdstat_config") || name == "cmdstat_info" {
			continue
		}
		for field := range strings.SplitSeq(stats, ",") {
			if k, v, _ := strings.Cut(field, "="); k == "calls" {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

func resetStats(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// guardsFor builds the guards on rdb (metrics and budget counting as
// observers, the breaker as middleware) and starts their loops; stop ends
// them after a last flush.
func guardsFor(t *testing.T, rdb redis.UniversalClient) (mws []jobs.Middleware, obs []jobs.Observer, stop func()) {
	t.Helper()
	b, err := budget.New(rdb, budget.Config{Workflows: map[string]budget.Policy{"w": {SLO: 0.99, Window: time.Hour, Queue: "cost"}}})
	if err != nil {
		t.Fatal(err)
	}
	br, err := breaker.New(rdb, breaker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.Run(ctx) }()
	go func() { defer wg.Done(); br.Run(ctx) }()
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return []jobs.Middleware{br.Middleware()}, []jobs.Observer{m.Observer(), b.Observer()}, stop
}

// TestHotPathRedisCost measures the Redis commands the guards' middleware
// (metrics, budget counting, breaker) adds per task. It asserts the design
// bound (well under one command per task: counts are flushed once a
// second, breaker state is cached for 250ms) and logs the numbers.
func TestHotPathRedisCost(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("measures a few thousand tasks")
	}
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer tool.Close()
	payload := []byte(fmt.Sprintf(`{"url":%q}`, tool.URL))
	const chainN = 20000

	// The middleware alone: steps through Worker.ProcessTask, no asynq
	// server, so every command counted is the guards'.
	srv := redistest.StartExclusive(t)
	rdb := redis.NewClient(srv.Options())
	defer rdb.Close()
	reg := queue.NewRegistry()
	if err := handlers.Register(reg, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	mws, obs, stop := guardsFor(t, rdb)
	w, err := queue.NewWorker(rdb, reg, queue.WorkerConfig{Middleware: mws, Observers: obs})
	if err != nil {
		t.Fatal(err)
	}
	task := asynq.NewTaskWithHeaders(jobs.KindHTTPCall, payload, map[string]string{jobs.HeaderWorkflow: "w"})
	resetStats(t, rdb)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range chainN / 10 {
				if err := w.ProcessTask(context.Background(), task); err != nil {
					t.Errorf("worker %d: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	stop() // the last flush counts too
	chain := commands(t, rdb)
	t.Logf("middleware alone: %d http.call steps in %v: %d Redis commands (%.4f per step; breaker reads every 250ms, budget flush every 1s)",
		chainN, took.Round(time.Millisecond), chain, float64(chain)/chainN)
	// Per second: 4 breaker reads, 1 budget flush script (~5 commands inside
	// it), 2 breaker success flush commands; allow twice that.
	if limit := int64(2 * 12 * (took.Seconds() + 1)); chain > limit {
		t.Errorf("middleware ran %d Redis commands for %d steps in %v, want at most %d: it is not off the hot path", chain, chainN, took, limit)
	}
}
