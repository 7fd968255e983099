package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// startProc runs agentq with args until the test ends, which then stops it
// with SIGINT, or SIGKILL 20s later, without holding it to a clean exit:
// these tests kill processes and Redis under them and check what matters
// themselves.
func startProc(t *testing.T, bin, dir string, env []string, args ...string) *binarytest.Proc {
	t.Helper()
	return binarytest.Start(t, bin, args, binarytest.Options{Dir: dir, Env: env, AllowUncleanExit: true})
}

// hangTool answers every request with 200, except the first request of each
// Idempotency-Key, which hangs until its connection drops or release is
// called: the tasks a worker is running when it is killed. It records every
// request's key and time.
type hangTool struct {
	mu      sync.Mutex
	reqs    map[string][]time.Time
	release chan struct{}
	once    sync.Once
}

func newHangTool(t *testing.T) (*hangTool, *httptest.Server) {
	ht := &hangTool{reqs: map[string][]time.Time{}, release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		ht.mu.Lock()
		ht.reqs[key] = append(ht.reqs[key], time.Now())
		first := len(ht.reqs[key]) == 1
		ht.mu.Unlock()
		if first {
			select {
			case <-r.Context().Done():
				return
			case <-ht.release:
			}
		}
		fmt.Fprintln(w, `{"ok":true}`)
	}))
	t.Cleanup(func() { ht.releaseAll(); srv.Close() })
	return ht, srv
}

func (ht *hangTool) releaseAll() { ht.once.Do(func() { close(ht.release) }) }

// runs returns how many requests each key got and when.
func (ht *hangTool) runs() map[string][]time.Time {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	out := make(map[string][]time.Time, len(ht.reqs))
	for k, v := range ht.reqs {
		out[k] = slices.Clone(v)
	}
	return out
}

func (ht *hangTool) keysWith(n int) int {
	c := 0
	for _, v := range ht.runs() {
		if len(v) >= n {
			c++
		}
	}
	return c
}

// recoverEnv is baseEnv with a long HTTP timeout: the hang tool holds the
// first request of each key for as long as the test needs.
func recoverEnv(redisURL string) []string {
	return append(baseEnv(redisURL), "AGENTQ_HTTP_TIMEOUT=5m")
}

func TestEndToEndWorkerWaitsForRedis(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	dir := t.TempDir()
	port := redistest.FreePort(t)
	const pw = "s3cret-redis-pw"
	url := fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", pw, port)
	vars := recoverEnv(url)
	tool, srv := newHangTool(t)
	tool.releaseAll()

	w := binarytest.Start(t, bin, []string{"worker"}, binarytest.Options{Dir: dir, Env: vars})
	binarytest.WaitFor(t, 20*time.Second, "two logged tries", func() bool {
		return strings.Count(w.Logs(), `"message":"waiting for redis"`) >= 2
	})
	logs := w.Logs()
	if strings.Contains(logs, pw) || !strings.Contains(logs, `"redis":"redis://:****@127.0.0.1:`) ||
		!strings.Contains(logs, `"attempt":2`) || !strings.Contains(logs, `"next_try_in_ms":`) {
		t.Fatalf("try lines lack the masked address, attempt or next try, or show the password:\n%s", logs)
	}

	redistest.StartOnPort(t, port, t.TempDir(), "--requirepass", pw)
	binarytest.WaitFor(t, 40*time.Second, "the worker to connect", func() bool {
		return strings.Contains(w.Logs(), `"message":"redis answered"`) && strings.Contains(w.Logs(), `"message":"worker starting"`)
	})
	e := &env{t: t, bin: bin, dir: dir, vars: vars}
	payload := fmt.Sprintf(`{"url":"%s/x"}`, srv.URL)
	if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", payload, "--key", "after-wait"); code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, errOut)
	}
	binarytest.WaitFor(t, 20*time.Second, "the task to run", func() bool { return tool.keysWith(1) == 1 })
}

func TestEndToEndWorkerWaitingForRedisStopsOnSignal(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	vars := recoverEnv(fmt.Sprintf("redis://127.0.0.1:%d/0", redistest.FreePort(t)))
	for _, cmd := range []string{"worker", "dashboard"} {
		t.Run(cmd, func(t *testing.T) {
			p := startProc(t, bin, t.TempDir(), vars, cmd)
			binarytest.WaitFor(t, 20*time.Second, "a logged try", func() bool { return strings.Contains(p.Logs(), `"message":"waiting for redis"`) })
			start := time.Now()
			p.Interrupt(t)
			exited, err := p.Wait(10 * time.Second)
			if !exited {
				t.Fatalf("agentq %s did not stop within 10s of SIGINT while waiting for Redis", cmd)
			}
			t.Logf("agentq %s stopped %v after SIGINT", cmd, time.Since(start).Round(time.Millisecond))
			if err != nil || strings.Contains(p.Logs(), "goroutine ") {
				t.Fatalf("exit: %v, want 0 and no stack trace; output:\n%s", err, p.Logs())
			}
		})
	}
}

func TestEndToEndWorkerBadRedisConfigFailsAtOnce(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	srv := redistest.StartExclusive(t, "--requirepass", "right-pw")
	tests := []struct {
		name string
		url  string
		want string
	}{
		{name: "wrong password", url: "redis://:wrong-pw@" + srv.Addr + "/0", want: "WRONGPASS"},
		{name: "unknown db", url: "redis://:right-pw@" + srv.Addr + "/99", want: "DB index"},
		{name: "unparseable url", url: "redis://h:1/x", want: `invalid database number: "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, bin: bin, dir: t.TempDir(), vars: recoverEnv(tc.url)}
			start := time.Now()
			_, errOut, code := e.run("", "worker")
			if code != 2 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "wrong-pw") || strings.Contains(errOut, "right-pw") {
				t.Fatalf("exit %d, stderr %q: want 2 and a message naming %q without the password", code, errOut, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v to refuse a bad config", d)
			}
		})
	}
}

func TestEndToEndOneShotCommandsStillFailFast(t *testing.T) {
	t.Parallel()
	e := &env{t: t, bin: agentqBinary(t), dir: t.TempDir(), vars: recoverEnv("redis://127.0.0.1:1/0")}
	start := time.Now()
	_, errOut, code := e.run("", "enqueue", "http.call", "--payload", `{"url":"http://127.0.0.1:1/"}`)
	if code != 1 || !strings.Contains(errOut, "cannot reach Redis") {
		t.Fatalf("exit %d, stderr %q: want 1, cannot reach Redis", code, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("enqueue took %v to fail with Redis down", d)
	}
}

// TestEndToEndWorkerSurvivesRedisOutage: Redis dies under a running worker
// and comes back on the same address: the worker stays up and runs new
// tasks (asynq and go-redis reconnect by themselves).
func TestEndToEndWorkerSurvivesRedisOutage(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	port := redistest.FreePort(t)
	rdir := t.TempDir()
	_, kill := redistest.StartOnPort(t, port, rdir, "--appendonly", "yes", "--appendfsync", "everysec")
	vars := recoverEnv(fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	tool, srv := newHangTool(t)
	tool.releaseAll()
	w := startProc(t, bin, t.TempDir(), vars, "worker")
	binarytest.WaitFor(t, 20*time.Second, "the worker to start", func() bool { return strings.Contains(w.Logs(), `"message":"worker starting"`) })

	kill()
	down := time.Now()
	binarytest.WaitFor(t, 30*time.Second, "the worker to notice", func() bool { return strings.Contains(w.Logs(), `"level":"error"`) })
	// Down for longer than a heartbeat and the client timeouts.
	binarytest.WaitFor(t, 30*time.Second, "8s of outage", func() bool { return time.Since(down) > 8*time.Second })
	if exited, err := w.Exited(); exited {
		t.Fatalf("the worker exited while Redis was down: %v\n%s", err, w.Logs())
	}
	redistest.StartOnPort(t, port, rdir, "--appendonly", "yes", "--appendfsync", "everysec")
	t.Logf("Redis was down %v; the worker stayed up", time.Since(down).Round(time.Second))
	e := &env{t: t, bin: bin, dir: t.TempDir(), vars: vars}
	if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", fmt.Sprintf(`{"url":"%s/x"}`, srv.URL), "--key", "after-outage"); code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, errOut)
	}
	binarytest.WaitFor(t, 30*time.Second, "the task to run after the outage", func() bool { return tool.keysWith(1) == 1 })
	w.Interrupt(t)
	exited, err := w.Wait(20 * time.Second)
	if !exited {
		t.Fatal("worker did not stop within 20s of SIGINT")
	}
	if err != nil {
		t.Fatalf("worker exit: %v", err)
	}
}

// recoverRuns is how many kill -9 runs TestEndToEndKilledWorkerRecovery
// makes (in parallel); AGENTQ_TEST_RECOVER_RUNS raises it for measuring.
func recoverRuns() int {
	if n, err := strconv.Atoi(os.Getenv("AGENTQ_TEST_RECOVER_RUNS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// TestEndToEndKilledWorkerRecovery kills -9 a worker with tasks in flight
// and measures how long until another worker runs them again. It asserts
// correctness only: no task lost, each task run at most twice (once by the
// killed worker, once after recovery). AGENTQ_TEST_RECOVER_INTERVAL=0
// measures asynq's recoverer alone.
func TestEndToEndKilledWorkerRecovery(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	const inFlight = 5
	interval := cmpEnv("AGENTQ_TEST_RECOVER_INTERVAL", "5s")
	var (
		mu    sync.Mutex
		delay []time.Duration
	)
	t.Run("runs", func(t *testing.T) {
		for run := range recoverRuns() {
			t.Run(strconv.Itoa(run), func(t *testing.T) {
				t.Parallel()
				srv := redistest.StartExclusive(t)
				vars := append(recoverEnv(srv.URL), "AGENTQ_WORKER_RECOVER_INTERVAL="+interval)
				tool, ts := newHangTool(t)
				a := startProc(t, bin, t.TempDir(), vars, "worker", "--concurrency", strconv.Itoa(inFlight))
				binarytest.WaitFor(t, 20*time.Second, "worker A to start", func() bool { return strings.Contains(a.Logs(), `"message":"worker starting"`) })
				e := &env{t: t, bin: bin, dir: t.TempDir(), vars: vars}
				for i := range inFlight {
					payload := fmt.Sprintf(`{"url":"%s/t%d"}`, ts.URL, i)
					if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", payload, "--key", fmt.Sprintf("k%d", i)); code != 0 {
						t.Fatalf("enqueue exit %d: %s", code, errOut)
					}
				}
				binarytest.WaitFor(t, 20*time.Second, "all tasks in flight on A", func() bool { return tool.keysWith(1) == inFlight })
				a.Kill(t)
				killed := time.Now()
				binarytest.Start(t, bin, []string{"worker"}, binarytest.Options{Dir: t.TempDir(), Env: vars})
				// Liveness only, with a wide margin: asynq's recoverer alone
				// takes up to 120s.
				binarytest.WaitFor(t, 180*time.Second, "every task to run again", func() bool { return tool.keysWith(2) == inFlight })
				for k, times := range tool.runs() {
					if len(times) != 2 {
						t.Errorf("task %s ran %d times, want 2 (the killed attempt and one after recovery)", k, len(times))
					}
					mu.Lock()
					delay = append(delay, times[1].Sub(killed))
					mu.Unlock()
				}
				rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
				defer rdb.Close()
				binarytest.WaitFor(t, 20*time.Second, "active and lease to empty", func() bool {
					return rdb.LLen(context.Background(), "asynq:{default}:active").Val() == 0 &&
						rdb.ZCard(context.Background(), "asynq:{default}:lease").Val() == 0
				})
			})
		}
	})
	slices.Sort(delay)
	if len(delay) > 0 {
		t.Logf("kill -9 of a worker with %d tasks in flight, %d run(s), worker.recover_interval=%s: tasks ran again after min %v, median %v, max %v",
			inFlight, recoverRuns(), interval, delay[0].Round(100*time.Millisecond), delay[len(delay)/2].Round(100*time.Millisecond), delay[len(delay)-1].Round(100*time.Millisecond))
	}
}

func cmpEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestEndToEndRedisRestartRecovery kills -9 Redis (AOF everysec) under a
// worker running tasks, keeps it down past the 30s lease (the worker then
// gives its attempts up), restarts it on the same port and directory and
// measures how long until the tasks run again. It asserts correctness
// only: no task lost, none run more than twice, the worker stays up.
// AGENTQ_TEST_REDIS_DOWN sets the outage (default 35s);
// AGENTQ_TEST_RECOVER_INTERVAL=0 measures asynq's recoverer alone.
func TestEndToEndRedisRestartRecovery(t *testing.T) {
	t.Parallel()
	bin := agentqBinary(t)
	const inFlight = 5
	down, err := time.ParseDuration(cmpEnv("AGENTQ_TEST_REDIS_DOWN", "35s"))
	if err != nil {
		t.Fatal(err)
	}
	interval := cmpEnv("AGENTQ_TEST_RECOVER_INTERVAL", "5s")
	port, rdir := redistest.FreePort(t), t.TempDir()
	aof := []string{"--appendonly", "yes", "--appendfsync", "everysec"}
	_, kill := redistest.StartOnPort(t, port, rdir, aof...)
	vars := append(recoverEnv(fmt.Sprintf("redis://127.0.0.1:%d/0", port)), "AGENTQ_WORKER_RECOVER_INTERVAL="+interval)
	tool, ts := newHangTool(t)
	w := startProc(t, bin, t.TempDir(), vars, "worker", "--concurrency", strconv.Itoa(inFlight))
	binarytest.WaitFor(t, 20*time.Second, "the worker to start", func() bool { return strings.Contains(w.Logs(), `"message":"worker starting"`) })
	e := &env{t: t, bin: bin, dir: t.TempDir(), vars: vars}
	for i := range inFlight {
		payload := fmt.Sprintf(`{"url":"%s/t%d"}`, ts.URL, i)
		if _, errOut, code := e.run("", "enqueue", "http.call", "--payload", payload, "--key", fmt.Sprintf("k%d", i)); code != 0 {
			t.Fatalf("enqueue exit %d: %s", code, errOut)
		}
	}
	binarytest.WaitFor(t, 20*time.Second, "all tasks in flight", func() bool { return tool.keysWith(1) == inFlight })
	inflight := time.Now()
	// everysec: give the AOF a fsync with every task active.
	binarytest.WaitFor(t, 10*time.Second, "an AOF fsync", func() bool { return time.Since(inflight) > 1500*time.Millisecond })
	kill()
	killed := time.Now()
	binarytest.WaitFor(t, down+10*time.Second, "the outage", func() bool { return time.Since(killed) > down })
	if exited, err := w.Exited(); exited {
		t.Fatalf("the worker exited while Redis was down: %v", err)
	}
	redistest.StartOnPort(t, port, rdir, aof...)
	restarted := time.Now()
	binarytest.WaitFor(t, 180*time.Second, "every task to run again", func() bool { return tool.keysWith(2) == inFlight })
	var delay []time.Duration
	for k, times := range tool.runs() {
		if len(times) != 2 {
			t.Errorf("task %s ran %d times, want 2 (the abandoned attempt and one after recovery)", k, len(times))
		}
		delay = append(delay, times[1].Sub(restarted))
	}
	slices.Sort(delay)
	t.Logf("Redis kill -9 (AOF everysec) with %d tasks in flight, down %v, worker.recover_interval=%s: tasks ran again after restart: min %v, median %v, max %v (kill to rerun: max %v)",
		inFlight, down, interval, delay[0].Round(100*time.Millisecond), delay[len(delay)/2].Round(100*time.Millisecond),
		delay[len(delay)-1].Round(100*time.Millisecond), (delay[len(delay)-1] + restarted.Sub(killed)).Round(100*time.Millisecond))
	if exited, err := w.Exited(); exited {
		t.Fatalf("the worker exited: %v", err)
	}
}
