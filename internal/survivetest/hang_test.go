package survivetest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A handler that honours its context is cut by the attempt timeout (class
// timeout) and retried, then dead-lettered. A handler that never returns
// and ignores its context is abandoned by asynq at its own deadline (the
// attempt timeout plus queue.TimeoutGrace, rounded up to whole seconds):
// the worker slot is released then, and the task retried or dead-lettered,
// but Go cannot stop a goroutine, so the handler's goroutine stays until
// the process ends. The test holds every slot with such handlers and shows
// that the worker serves again once they are abandoned, and measures what
// they leave behind.
func TestWorkerSurvivesHangingHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const concurrency = 4
	b.startWorker(concurrency)

	b.enqueue(okTasks("ok-warmup", 10))
	b.waitFor(30*time.Second, "warm-up tasks", func() bool { return b.succeeded("ok-warmup") == 10 })
	before := b.metric("go_goroutines")

	// As many handlers that never return as there are slots, then two that
	// honour their context, then ordinary tasks queued behind them.
	var tasks []task
	for i := range concurrency {
		tasks = append(tasks, task{Kind: "test.hang", Payload: map[string]string{"mode": "ignore"},
			RunID: fmt.Sprintf("hang-ignore-%d", i), MaxRetry: retries(0), Timeout: "1s"})
	}
	for i := range 2 {
		tasks = append(tasks, task{Kind: "test.hang", Payload: map[string]string{"mode": "ctx"},
			RunID: fmt.Sprintf("hang-ctx-%d", i), MaxRetry: retries(1), Timeout: "1s"})
	}
	const okDuring, okAfter = 20, 20
	tasks = append(tasks, okTasks("ok-during", okDuring)...)
	start := time.Now()
	b.enqueue(tasks)
	b.waitFor(60*time.Second, "the ok tasks queued behind the hanging ones", func() bool { return b.succeeded("ok-during") == okDuring })
	queuedBehind := time.Since(start)
	b.waitFor(60*time.Second, "every hanging task to be dead-lettered", func() bool { return len(b.deadLetters()) == concurrency+2 })

	// Every slot is free again: new tasks run at once.
	start = time.Now()
	b.enqueue(okTasks("ok-after", okAfter))
	b.waitFor(30*time.Second, "the ok tasks enqueued after the hangs", func() bool { return b.succeeded("ok-after") == okAfter })
	servedAfter := time.Since(start) // reported, not asserted: the wait above is the liveness check
	after := b.metric("go_goroutines")

	// Go cannot stop a goroutine: each abandoned attempt keeps its handler's
	// goroutine, and nothing more.
	if left := after - before; left > 2*concurrency {
		t.Errorf("goroutines %v before, %v after %d abandoned handlers: more left behind than the handlers themselves", before, after, concurrency)
	}
	recs := b.dlqList()
	for i := range 2 {
		runID := fmt.Sprintf("hang-ctx-%d", i)
		att := b.attempts(runID)
		if len(att) != 2 || att[0]["class"] != "timeout" || att[1]["outcome"] != "dead" || att[1]["class"] != "timeout" {
			t.Errorf("%s attempts = %v, want two cut by the 1s timeout, then dead", runID, att)
		}
		if d := att[0]["duration_ms"].(float64); d < 900 {
			t.Errorf("%s first attempt lasted %vms, cut before its 1s timeout", runID, d)
		}
		if r := recs[runID]; r.Status != "dead" || r.Class != "timeout" {
			t.Errorf("%s dead letter = %+v, want class timeout", runID, r)
		}
	}
	for i := range concurrency {
		runID := fmt.Sprintf("hang-ignore-%d", i)
		att := b.attempts(runID)
		// asynq's deadline ends the attempt (the chain never returns, so
		// the line comes from the worker's asynq error handler); the
		// redelivery finds no attempt left and dead-letters it unrun.
		if len(att) != 2 || att[0]["class"] != "timeout" || att[1]["outcome"] != "dead" || att[1]["class"] != "lease_expired" {
			t.Errorf("%s attempts = %v, want one abandoned at asynq's deadline, then dead", runID, att)
		}
		r := recs[runID]
		if r.Status != "dead" || !strings.Contains(r.Error, "attempt") {
			t.Errorf("%s dead letter = %+v", runID, r)
		}
	}
	b.alive()
	b.cleanOutput()
	t.Logf("one worker process (pid %d) throughout, concurrency %d: %d handlers that ignore their context held every slot; "+
		"%d ok tasks queued behind them finished %v after enqueue; once they were abandoned, %d new ok tasks finished in %v; "+
		"goroutines %v before, %v after (%v left behind by %d abandoned handlers)",
		b.worker.PID(), concurrency, concurrency, okDuring, queuedBehind.Round(100*time.Millisecond), okAfter,
		servedAfter.Round(10*time.Millisecond), before, after, after-before, concurrency)
}
