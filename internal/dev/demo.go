package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// DemoStep is one task of the demo and what became of it.
type DemoStep struct {
	// Name says what the step shows.
	Name string `json:"name"`
	// TaskID is the enqueued task's id.
	TaskID string `json:"task_id"`
	// Calls is how many times the tool was called.
	Calls int `json:"calls"`
	// Outcome is "succeeded", "dead-lettered" or "pending".
	Outcome string `json:"outcome"`
	// Error is the last error of a dead-lettered step.
	Error string `json:"error,omitempty"`

	path, id string
}

// Demo enqueues a short agent run against the tool server: one call that
// succeeds at once, two that succeed after retries (503s, then a 429 with
// Retry-After), one that fails permanently (400, dead-lettered without
// retries) and a duplicate enqueue of the first, all on queue q. It waits
// up to within for every step to settle. It records the idempotency keys it
// enqueues with in own (nil: nowhere) before it enqueues.
func Demo(ctx context.Context, c *queue.Client, rdb redis.UniversalClient, ts *ToolServer, q string, within time.Duration, own *Owned) ([]DemoStep, error) {
	steps := []DemoStep{
		{Name: "search: succeeds at once", path: "/ok", id: "search"},
		{Name: "summarize: 503 twice, then succeeds", path: "/flaky", id: "summarize"},
		{Name: "post: 429 with Retry-After, then succeeds", path: "/limited", id: "post"},
		{Name: "publish: 400, dead-lettered at once", path: "/broken", id: "publish"},
	}
	runID := fmt.Sprintf("demo-%d", time.Now().Unix())
	for i := range steps {
		s := &steps[i]
		url := ts.URL() + s.path + "?id=" + s.id + "&fail=2"
		own.AddKeys(runID + "/" + s.id)
		payload, _ := json.Marshal(map[string]any{"method": "POST", "url": url, "body": map[string]string{"step": s.id}, "timeout": "5s"})
		res, err := c.Enqueue(ctx, jobs.KindHTTPCall, payload, queue.EnqueueOptions{
			Queue: q, RunID: runID, Key: runID + "/" + s.id, MaxAttempts: 5, RetryBase: 200 * time.Millisecond, RetryMax: 2 * time.Second,
		})
		if err != nil {
			return steps, fmt.Errorf("enqueue %s: %w", s.id, err)
		}
		s.TaskID = res.ID
	}
	dup, err := c.Enqueue(ctx, jobs.KindHTTPCall, []byte(`{"url":"`+ts.URL()+`/ok"}`), queue.EnqueueOptions{Queue: q, Key: runID + "/search"})
	if err != nil {
		return steps, fmt.Errorf("enqueue duplicate: %w", err)
	}
	steps = append(steps, DemoStep{Name: "search again, same idempotency key", TaskID: dup.ID, Outcome: "not enqueued (duplicate)"})

	insp := queue.NewInspector(rdb)
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	settled := func() bool {
		all := true
		for i := range steps[:4] {
			s := &steps[i]
			s.Calls = ts.Calls(s.path, s.id)
			info, err := insp.Task(ctx, q, s.TaskID)
			switch {
			case err == nil && info.State == queue.TaskGone:
				s.Outcome = "succeeded"
			case err == nil && info.State == queue.TaskArchived:
				s.Outcome, s.Error = "dead-lettered", info.LastErr
			default:
				s.Outcome, all = "pending", false
			}
		}
		return all
	}
	if err := wait(ctx, settled); err != nil {
		return steps, fmt.Errorf("demo did not settle within %v: %w", within, err)
	}
	return steps, nil
}

// WriteDemo prints the demo's steps as a table.
func WriteDemo(w io.Writer, steps []DemoStep) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTASK\tTOOL CALLS\tOUTCOME")
	for _, s := range steps {
		out := s.Outcome
		if s.Error != "" {
			out += ": " + s.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.TaskID, s.Calls, out)
	}
	_ = tw.Flush()
}
