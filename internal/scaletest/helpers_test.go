//go:build unix

package scaletest

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// WorkArgs is the payload of the test kind: Fail makes the step fail
// permanently, Dep fails it (retryable) through the breaker "scale-dep".
type WorkArgs struct {
	ID   string `json:"id,omitempty"`
	Fail bool   `json:"fail,omitempty"`
	Dep  bool   `json:"dep,omitempty"`
	// Work is how long the step works, in milliseconds.
	Work int `json:"work,omitempty"`
}

// Kind names the test kind.
func (WorkArgs) Kind() string { return "scale.work" }

// recorder counts every run of the handler by task id, in memory, so that
// a Redis that loses writes cannot hide a duplicate.
type recorder struct {
	mu    sync.Mutex
	runs  map[string]int
	first map[string]time.Time
	// last is when the handler last ran, for gaps in service.
	times []time.Time
}

func newRecorder() *recorder {
	return &recorder{runs: map[string]int{}, first: map[string]time.Time{}}
}

func (r *recorder) record(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.runs[id]++
	if _, ok := r.first[id]; !ok {
		r.first[id] = now
	}
	r.times = append(r.times, now)
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

// register adds the test kind, recording into rec.
func register(rec *recorder) func(reg *queue.Registry) error {
	return func(reg *queue.Registry) error {
		return queue.Register(reg, `{"type":"object"}`, func(ctx context.Context, s *jobs.Step, a WorkArgs) error {
			rec.record(s.TaskID)
			if a.Work > 0 {
				select {
				case <-time.After(time.Duration(a.Work) * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if a.Dep {
				return breaker.Do(ctx, "scale-dep", func(context.Context) error {
					// A retryable error: it counts against the dependency.
					return errors.New("dependency unavailable")
				})
			}
			if a.Fail {
				return jobs.Permanent(errors.New("step refused"))
			}
			return s.SetOutput(map[string]string{"id": a.ID})
		})
	}
}

// baseConfig is a config for tests: quiet logs, fast retries and sweeps.
func baseConfig() config.Config {
	cfg := config.Default()
	cfg.Redis.URL = ""
	cfg.Log.Level = "error"
	cfg.Retry.Base = 100 * time.Millisecond
	cfg.Retry.Max = time.Second
	cfg.Worker.DelayedCheckInterval = 100 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	cfg.Worker.RecoverInterval = time.Second
	cfg.Worker.RecoverGrace = queue.RecoverGraceMin
	cfg.DLQ.ReconcileInterval = time.Second
	cfg.DLQ.Grace = time.Second
	return cfg
}

// newRuntime builds a runtime on cfg with the test kind and workflows.
func newRuntime(t *testing.T, cfg config.Config, rec *recorder, wfs map[string]runs.Workflow) *agentq.Runtime {
	t.Helper()
	rt, err := agentq.New(cfg, agentq.Options{Register: register(rec), Workflows: wfs, LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// runWorker runs rt's worker until the test ends.
func runWorker(t *testing.T, rt *agentq.Runtime) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := rt.NewWorker(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
