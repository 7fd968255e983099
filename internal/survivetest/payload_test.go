package survivetest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A payload can pass every check at enqueue and still be poison for the
// worker: an error text quoting unparsable URLs, terminal escapes or
// invalid UTF-8, a request Go's HTTP client refuses to send. Each ends as a
// dead letter of its own, readable in `dlq list` and `dlq show`, and the
// worker and its other tasks carry on.
func TestWorkerSurvivesPoisonPayloads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream failed", http.StatusInternalServerError)
	}))
	t.Cleanup(tool.Close)
	b.startWorker(4)

	cases := []struct {
		name    string
		kind    string
		payload map[string]any
		secret  string // must not appear in the dead letter
	}{
		{name: "error quoting unparsable URLs", kind: "test.fail",
			payload: map[string]any{"message": "tool said: see http://a/%zz or http://[::1 or https://u:hunter2@[::1/%zz"}, secret: "hunter2"},
		{name: "error with terminal escapes, NUL and invalid UTF-8", kind: "test.fail",
			payload: map[string]any{"message": "\x1b]0;pwned\x07\x1b[2J\x00 bad \xff\xfe " + strings.Repeat("long ", 1000), "permanent": true}},
		{name: "url with an undecodable query", kind: "http.call",
			payload: map[string]any{"url": tool.URL + "/x?next=%zz&token=s3cr3t-q"}, secret: "s3cr3t-q"},
		// Header values with control characters and a Host that is not a
		// host are refused at enqueue now (handlers' validate tests); a port
		// out of range parses as a URL but cannot be dialled.
		{name: "port Go cannot dial", kind: "http.call",
			payload: map[string]any{"url": "http://127.0.0.1:99999/x?token=s3cr3t-p"}, secret: "s3cr3t-p"},
	}
	const okBefore, okAfter = 40, 20
	runID := func(i int) string { return fmt.Sprintf("payload-%d", i) }
	var tasks []task
	oks := okTasks("ok-before", okBefore)
	for i, tc := range cases {
		tasks = append(tasks, oks[i*okBefore/len(cases):(i+1)*okBefore/len(cases)]...)
		tasks = append(tasks, task{Kind: tc.kind, Payload: tc.payload, RunID: runID(i), MaxRetry: retries(1), Timeout: "10s"})
	}
	b.enqueue(tasks)
	b.waitFor(60*time.Second, "every ok task and every poison payload to settle", func() bool {
		return b.succeeded("ok-before") == okBefore && len(b.deadLetters()) == len(cases)
	})

	recs := b.dlqList()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := recs[runID(i)]
			// dlq.MaxErrorBytes, plus an ellipsis and the U+FFFD that JSON
			// puts for invalid UTF-8.
			if !ok || r.Status != "dead" || r.Error == "" || len(r.Error) > 2048+16 {
				t.Fatalf("dead letter = %.300q (listed: %v), want a dead one with an error of at most about 2048 bytes", fmt.Sprintf("%+v", r), ok)
			}
			if tc.secret != "" && strings.Contains(r.Error, tc.secret) {
				t.Errorf("dead letter error shows the secret: %q", r.Error)
			}
			out, errOut, code := b.run("", "dlq", "show", r.ID)
			if code != 0 || !strings.Contains(out, r.ID) {
				t.Fatalf("dlq show %s: exit %d err %s", r.ID, code, errOut)
			}
			readable(t, "dlq show output", strings.ReplaceAll(out, "\n", " "))
			if tc.secret != "" && strings.Contains(out, tc.secret) {
				t.Errorf("dlq show shows the secret:\n%s", out)
			}
		})
	}
	b.afterPoison(okAfter)
	t.Logf("one worker process (pid %d) throughout: %d ok tasks succeeded, %d poison payloads dead-lettered",
		b.worker.PID(), okBefore+okAfter, len(cases))
}
