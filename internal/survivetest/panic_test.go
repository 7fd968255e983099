package survivetest

import (
	"strings"
	"testing"
	"time"
)

// A handler that panics fails its attempt with class panic: it is retried
// like any unexpected failure and, its attempts spent, dead-lettered with
// the panic's message. The worker process and its other tasks carry on.
func TestWorkerSurvivesPanickingHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(4)

	cases := []struct {
		name, mode, message, wantErr string
	}{
		{name: "panic with a string", mode: "value", message: "boom: the model answered nonsense", wantErr: "panic: boom: the model answered nonsense"},
		{name: "panic with an error", mode: "error", message: "tool client broke", wantErr: "panic: tool client broke"},
		{name: "panic with nil", mode: "nil", wantErr: "panic called with nil argument"},
		{name: "nil pointer dereference", mode: "nil_deref", wantErr: "invalid memory address or nil pointer dereference"},
	}
	const okBefore, okAfter = 40, 20
	var tasks []task
	oks := okTasks("ok-before", okBefore)
	for i, tc := range cases {
		tasks = append(tasks, oks[i*okBefore/len(cases):(i+1)*okBefore/len(cases)]...)
		tasks = append(tasks, task{Kind: "test.panic", Payload: map[string]string{"mode": tc.mode, "message": tc.message},
			RunID: "panic-" + tc.mode, MaxRetry: retries(1)})
	}
	b.enqueue(tasks)
	b.waitFor(60*time.Second, "every ok task and every panicking task to settle", func() bool {
		return b.succeeded("ok-before") == okBefore && len(b.deadLetters()) == len(cases)
	})

	recs := b.dlqList()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runID := "panic-" + tc.mode
			att := b.attempts(runID)
			if len(att) != 2 || att[0]["outcome"] != "retry" || att[1]["outcome"] != "dead" {
				t.Fatalf("attempts = %v, want a retry then dead", att)
			}
			for _, a := range att {
				if a["class"] != "panic" || !strings.Contains(a["error"].(string), tc.wantErr) {
					t.Errorf("attempt line = %v, want class panic and error %q", a, tc.wantErr)
				}
			}
			r, ok := recs[runID]
			if !ok || r.Status != "dead" || r.Class != "panic" || !strings.Contains(r.Error, tc.wantErr) || r.Kind != "test.panic" {
				t.Fatalf("dead letter = %+v (listed: %v), want class panic and error %q", r, ok, tc.wantErr)
			}
			out, errOut, code := b.run("", "dlq", "show", r.ID)
			wantHint := progName + " --redis-url " + b.redis.URL + " dlq replay " + r.ID
			if code != 0 || !strings.Contains(out, tc.wantErr) || !strings.Contains(out, wantHint) {
				t.Fatalf("dlq show %s: exit %d err %s out:\n%s\nwant the error and the hint %q", r.ID, code, errOut, out, wantHint)
			}
			if got := b.deadLetters()[runID]["replay"]; got != wantHint {
				t.Errorf("worker's replay hint = %q, want %q", got, wantHint)
			}
		})
	}

	// The worker still serves after all of them.
	b.enqueue(okTasks("ok-after", okAfter))
	b.waitFor(30*time.Second, "the ok tasks enqueued after the panics", func() bool { return b.succeeded("ok-after") == okAfter })
	b.alive()
	b.cleanOutput()
	t.Logf("one worker process (pid %d) throughout: %d ok tasks succeeded, %d panicking tasks dead-lettered after 2 attempts each",
		b.worker.PID(), okBefore+okAfter, len(cases))
}
