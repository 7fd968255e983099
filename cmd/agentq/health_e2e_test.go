package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// healthReport is `agentq health --json`'s output.
type healthReport struct {
	Healthy bool `json:"healthy"`
	Checks  []struct {
		Name    string `json:"name"`
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	} `json:"checks"`
}

func (e *env) health(args ...string) (healthReport, string, int) {
	e.t.Helper()
	out, errOut, code := e.run("", append([]string{"health", "--json"}, args...)...)
	var rep healthReport
	if code == 0 || code == 1 {
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			e.t.Fatalf("health --json printed %q (%v), stderr %q", out, err, errOut)
		}
	}
	return rep, errOut, code
}

func (r healthReport) message(name string) string {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Message
		}
	}
	return ""
}

// TestEndToEndHealth drives `agentq health` as a container healthcheck
// would: Redis down is 1, up is 0; --worker is 1 until a worker runs on
// this host, 0 while it runs, 1 again once it stopped; --dashboard checks
// the dashboard's /healthz; bad flags are 2.
func TestEndToEndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("redis down", func(t *testing.T) {
		down := *e
		down.t = t
		down.vars = baseEnv(fmt.Sprintf("redis://:hunter2@127.0.0.1:%d/0", redistest.FreePort(t)))
		out, errOut, code := down.run("", "health")
		if code != 1 || !strings.Contains(out, "FAIL redis: cannot reach Redis at redis://:****@127.0.0.1:") ||
			!strings.Contains(errOut, "unhealthy: redis") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and the failed check", code, out, errOut)
		}
		if strings.Contains(out+errOut, "hunter2") {
			t.Fatalf("the password leaked: %s %s", out, errOut)
		}
	})
	t.Run("redis with a password", func(t *testing.T) {
		// As in the compose stack: the URL has no password,
		// AGENTQ_REDIS_PASSWORD gives it.
		srv := redistest.StartExclusive(t, "--requirepass", "s3cret-pw")
		for _, tc := range []struct {
			name, password string
			code           int
		}{
			{"right", "s3cret-pw", 0},
			{"wrong", "not-it", 1},
		} {
			withPW := *e
			withPW.t = t
			withPW.vars = append(baseEnv(srv.URL), "AGENTQ_REDIS_PASSWORD="+tc.password)
			out, errOut, code := withPW.run("", "health")
			if code != tc.code || strings.Contains(out+errOut, tc.password) {
				t.Errorf("%s password: exit %d, want %d; stdout %q, stderr %q", tc.name, code, tc.code, out, errOut)
			}
		}
	})
	t.Run("redis up", func(t *testing.T) {
		out, errOut, code := e.run("", "health")
		if code != 0 || !strings.Contains(out, "ok   redis: PONG from "+e.redis.URL) {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"health", "--host", "x"},
			{"health", "--timeout", "0s"},
			{"health", "--dashboard", "ftp://x"},
			{"health", "extra"},
		} {
			if _, errOut, code := e.run("", args...); code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
			}
		}
	})

	rep, _, code := e.health("--worker")
	if code != 1 || rep.Healthy || !strings.Contains(rep.message("worker"), fmt.Sprintf("no worker on host %q", host)) {
		t.Fatalf("--worker with no worker: exit %d, %+v", code, rep)
	}

	w := binarytest.Start(t, e.bin, []string{"worker", "--queues", "critical=6,default=1"}, binarytest.Options{Dir: e.dir, Env: e.vars})
	binarytest.WaitFor(t, 30*time.Second, "the worker's heartbeat", func() bool {
		_, _, code := e.health("--worker")
		return code == 0
	})
	rep, _, _ = e.health("--worker")
	if msg := rep.message("worker"); !rep.Healthy || !strings.Contains(msg, fmt.Sprintf("1 worker active on host %q (pid %d; ", host, w.PID())) || !strings.Contains(msg, "dequeue loops, asynq servers)") ||
		!strings.Contains(msg, "queues critical=6,default=1") {
		t.Fatalf("--worker with a worker: %+v", rep)
	}
	rep, _, code = e.health("--worker", "--host", "elsewhere")
	if code != 1 || !strings.Contains(rep.message("worker"), "Live workers run on other hosts: "+host) {
		t.Fatalf("--worker --host elsewhere: exit %d, %+v", code, rep)
	}

	// A worker that stops cleanly takes its records with it.
	w.Interrupt(t)
	if exited, err := w.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("worker exited %v (%v)", exited, err)
	}
	if rep, _, code := e.health("--worker"); code != 1 {
		t.Fatalf("--worker after the worker stopped: exit %d, %+v", code, rep)
	}

	t.Run("dashboard", func(t *testing.T) {
		port := redistest.FreePort(t)
		binarytest.Start(t, e.bin, []string{"dashboard", "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, binarytest.Options{Env: e.vars, AllowUncleanExit: true})
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		binarytest.WaitFor(t, 30*time.Second, "the dashboard's healthz", func() bool {
			_, _, code := e.health("--dashboard", url)
			return code == 0
		})
		rep, _, _ := e.health("--dashboard", url+"/")
		if !rep.Healthy || len(rep.Checks) != 2 || !strings.Contains(rep.message("dashboard"), url+"/healthz answered 200") {
			t.Fatalf("--dashboard: %+v", rep)
		}
		rep, _, code := e.health("--dashboard", fmt.Sprintf("http://127.0.0.1:%d", redistest.FreePort(t)))
		if code != 1 || !strings.Contains(rep.message("dashboard"), "does not answer") {
			t.Fatalf("--dashboard with nothing listening: exit %d, %+v", code, rep)
		}
	})
}
