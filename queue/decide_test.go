package queue

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/jobs"
)

// testPolicy is the retry policy of the decision tests.
var testPolicy = jobs.RetryPolicy{MaxAttempts: 3, Base: time.Second, Max: 8 * time.Second}

func TestDecide(t *testing.T) {
	t.Parallel()
	first := &jobs.Step{Attempt: 1, MaxAttempts: 3}
	last := &jobs.Step{Attempt: 3, MaxAttempts: 3}
	spent := &jobs.Step{Attempt: 4, MaxAttempts: 3}
	zero := func(int64) int64 { return 0 }
	top := func(n int64) int64 { return n - 1 }
	deadline := fmt.Errorf("call: %w", context.DeadlineExceeded)
	tests := []struct {
		name    string
		s       *jobs.Step
		err     error
		randN   func(int64) int64
		outcome jobs.Outcome
		class   jobs.Class
		delay   time.Duration
	}{
		{"success", first, nil, top, jobs.OutcomeSuccess, jobs.ClassNone, 0},
		{"success on the last attempt", last, nil, top, jobs.OutcomeSuccess, jobs.ClassNone, 0},
		{"retryable first, backoff ceiling", first, errors.New("x"), top, jobs.OutcomeRetry, jobs.ClassRetryable, time.Second},
		{"retryable first, no jitter", first, errors.New("x"), zero, jobs.OutcomeRetry, jobs.ClassRetryable, 0},
		{"retryable on the last attempt", last, errors.New("x"), top, jobs.OutcomeDead, jobs.ClassRetryable, 0},
		{"permanent first", first, jobs.Permanent(errors.New("x")), top, jobs.OutcomeDead, jobs.ClassPermanent, 0},
		{"http 404", first, &jobs.HTTPError{Status: 404}, top, jobs.OutcomeDead, jobs.ClassPermanent, 0},
		{"panic", first, &jobs.PanicError{Value: "bug"}, top, jobs.OutcomeRetry, jobs.ClassPanic, time.Second},
		{"timeout", first, deadline, zero, jobs.OutcomeRetry, jobs.ClassTimeout, 0},
		{"snooze", first, jobs.Snooze(3 * time.Second), top, jobs.OutcomeSnooze, jobs.ClassSnooze, 3 * time.Second},
		{"snooze on the last attempt", last, jobs.Snooze(3 * time.Second), top, jobs.OutcomeSnooze, jobs.ClassSnooze, 3 * time.Second},
		{"snooze with no attempt left", spent, jobs.Snooze(time.Second), top, jobs.OutcomeSnooze, jobs.ClassSnooze, time.Second},
		{"retry-after is the floor above backoff", first, jobs.RetryAfter(5*time.Second, errors.New("slow down")), zero,
			jobs.OutcomeRetry, jobs.ClassRateLimited, 5 * time.Second},
		{"429 retry-after floor", first, &jobs.HTTPError{Status: 429, RetryAfter: 2 * time.Second}, zero,
			jobs.OutcomeRetry, jobs.ClassRateLimited, 2 * time.Second},
		{"retry-after capped by max", first, jobs.RetryAfter(time.Hour, errors.New("slow down")), zero,
			jobs.OutcomeRetry, jobs.ClassRateLimited, 8 * time.Second},
		{"429 on the last attempt", last, &jobs.HTTPError{Status: 429, RetryAfter: time.Second}, zero,
			jobs.OutcomeDead, jobs.ClassRateLimited, 0},
		{"abandoned", first, &jobs.AbandonedError{Cause: context.Canceled}, zero, jobs.OutcomeAbandoned, jobs.ClassAbandoned, 0},
		{"abandoned on the last attempt", last, &jobs.AbandonedError{Cause: context.Canceled}, zero,
			jobs.OutcomeAbandoned, jobs.ClassAbandoned, 0},
		{"no attempt left: lease expired", spent, &jobs.AttemptsSpentError{MaxAttempts: 3}, top,
			jobs.OutcomeDead, jobs.ClassLeaseExpired, 0},
		{"asynq's timeout, retry left on the last attempt", last, &endedByQueue{err: context.DeadlineExceeded}, top,
			jobs.OutcomeRetry, jobs.ClassTimeout, 4 * time.Second},
		{"asynq's timeout, no retry left", spent, &endedByQueue{err: context.DeadlineExceeded, spent: true}, top,
			jobs.OutcomeDead, jobs.ClassTimeout, 0},
		{"lease expired, retry left", first, &endedByQueue{err: asynq.ErrLeaseExpired}, zero,
			jobs.OutcomeRetry, jobs.ClassLeaseExpired, 0},
		{"lease expired on spent attempts", spent, &endedByQueue{err: asynq.ErrLeaseExpired, spent: true}, top,
			jobs.OutcomeDead, jobs.ClassLeaseExpired, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Decide(tt.s, tt.err, testPolicy, tt.randN)
			if r.Outcome != tt.outcome || r.Class != tt.class || r.Delay != tt.delay {
				t.Fatalf("Decide = %s/%s/%v, want %s/%s/%v", r.Outcome, r.Class, r.Delay, tt.outcome, tt.class, tt.delay)
			}
			want := tt.err
			if qe, ok := tt.err.(*endedByQueue); ok {
				want = qe.err
			}
			if r.Err != want {
				t.Fatalf("Err = %v, want %v", r.Err, want)
			}
			if wantMsg := ""; want != nil {
				wantMsg = want.Error()
				if r.Message != wantMsg {
					t.Fatalf("Message = %q, want %q", r.Message, wantMsg)
				}
			} else if r.Message != "" {
				t.Fatalf("Message = %q on success", r.Message)
			}
		})
	}
}

// recorder is an observer that keeps every Result it receives, by task.
type recorder struct {
	name string
	log  *[]string // observer names in call order, shared
	mu   *sync.Mutex
	got  map[string][]jobs.Result
}

func newRecorders(names ...string) []*recorder {
	var (
		log []string
		mu  sync.Mutex
	)
	rs := make([]*recorder, len(names))
	for i, n := range names {
		rs[i] = &recorder{name: n, log: &log, mu: &mu, got: map[string][]jobs.Result{}}
	}
	return rs
}

func (rc *recorder) Observe(_ context.Context, s *jobs.Step, r *jobs.Result) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got[s.TaskID] = append(rc.got[s.TaskID], *r)
	// One entry per call, naming the attempt: attempts run concurrently,
	// so order is checked per attempt.
	*rc.log = append(*rc.log, fmt.Sprintf("%s/%d %s", s.TaskID, s.Attempt, rc.name))
}

func (rc *recorder) outcomes(id string) string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, r := range rc.got[id] {
		out = append(out, string(r.Outcome))
	}
	return strings.Join(out, ",")
}

func countDead(n *atomic.Int32) jobs.Observer {
	return jobs.ObserverFunc(func(_ context.Context, _ *jobs.Step, r *jobs.Result) {
		if r.Outcome == jobs.OutcomeDead {
			n.Add(1)
		}
	})
}

// TestObserversSeeOneResultPerAttempt runs steps to every outcome through a
// worker and checks that each observer received exactly one Result per
// attempt, in the order the observers were given, with the outcome,
// class, masked message and timing of the attempt.
func TestObserversSeeOneResultPerAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	rs := newRecorders("first", "second")
	b.startWorker(t, WorkerConfig{
		Retry:     jobs.RetryPolicy{Base: time.Millisecond, Max: 5 * time.Millisecond},
		Observers: []jobs.Observer{rs[0], jobs.ObserverFunc(func(context.Context, *jobs.Step, *jobs.Result) { panic("observer bug") }), rs[1]},
		Redact:    func(s string) string { return strings.ReplaceAll(s, "bad request", "[masked]") },
	})
	ctx := context.Background()
	tests := []struct {
		name, payload string
		attempts      int
		want          string
	}{
		{"success", `{"n":1}`, 3, "success"},
		{"flaky", `{"n":3,"mode":"flaky"}`, 3, "retry,retry,success"},
		{"permanent", `{"n":1,"mode":"permanent"}`, 3, "dead"},
		{"snooze", `{"n":2,"mode":"snooze"}`, 3, "snooze,success"},
		{"always", `{"n":1,"mode":"always"}`, 2, "retry,dead"},
	}
	ids := make([]string, len(tests))
	for i, tt := range tests {
		r, err := b.client.Enqueue(ctx, "test.echo", []byte(tt.payload), EnqueueOptions{MaxAttempts: tt.attempts})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := ids[i]
			waitFor(t, 10*time.Second, "the step to end", func() bool {
				o := rs[1].outcomes(id)
				return strings.HasSuffix(o, "success") || strings.HasSuffix(o, "dead")
			})
			for _, rc := range rs {
				if got := rc.outcomes(id); got != tt.want {
					t.Fatalf("%s observer: outcomes %s, want %s", rc.name, got, tt.want)
				}
			}
			if calls := b.callCount(id); calls != strings.Count(tt.want, ",")+1 {
				t.Fatalf("handler ran %d times for %d results", calls, strings.Count(tt.want, ",")+1)
			}
			rs[0].mu.Lock()
			defer rs[0].mu.Unlock()
			for _, r := range rs[0].got[id] {
				if r.Started.IsZero() || r.Duration < 0 {
					t.Fatalf("result not timed: %+v", r)
				}
				if strings.Contains(r.Message, "bad request") {
					t.Fatalf("message not masked: %q", r.Message)
				}
				if r.Outcome == jobs.OutcomeDead && tt.name == "permanent" && (r.Class != jobs.ClassPermanent || r.Message != "[masked]") {
					t.Fatalf("dead result %+v, want class permanent and the masked message", r)
				}
				if (r.Outcome == jobs.OutcomeSuccess) != (r.Err == nil) {
					t.Fatalf("result %+v: Err and outcome disagree", r)
				}
			}
		})
	}
	rs[0].mu.Lock()
	defer rs[0].mu.Unlock()
	seen := map[string]string{} // attempt -> observers so far
	for _, e := range *rs[0].log {
		attempt, name, _ := strings.Cut(e, " ")
		seen[attempt] += name + ","
	}
	for attempt, names := range seen {
		// A snoozed attempt runs again under the same number.
		if names == "" || strings.ReplaceAll(names, "first,second,", "") != "" {
			t.Fatalf("attempt %s: observers called as %q, want first then second each time", attempt, names)
		}
	}
	if !strings.Contains(b.logs.String(), `"message":"observer panicked"`) {
		t.Fatal("a panicking observer was not logged")
	}
}

// TestOnlyQueueDecides checks that no package but queue calls queue.Decide:
// every other part reads the Result the worker hands its observers.
func TestOnlyQueueDecides(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	const queuePath = "github.com/agentq/agentq/queue"
	fset := token.NewFileSet()
	var files int
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || filepath.Dir(path) == filepath.Join(root, "queue") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		name := ""
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == queuePath {
				name = "queue"
				if im.Name != nil {
					name = im.Name.Name
				}
			}
		}
		if name == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Decide" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == name {
					t.Errorf("%s: calls queue.Decide; observe the worker's Result instead", fset.Position(sel.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read %d files outside queue; the walk missed the module", files)
	}
}

// TestDeadLetterClassesAreDecides: Decide dead-letters a failure on its
// last attempt exactly when its class is one of jobs.DeadLetterClasses,
// the list package dlq accepts (dlq's TestEveryDeadClassParses). A class
// added to jobs without a case here fails the test.
func TestDeadLetterClassesAreDecides(t *testing.T) {
	t.Parallel()
	errOf := map[jobs.Class]error{
		jobs.ClassRetryable:    errors.New("boom"),
		jobs.ClassRateLimited:  jobs.RetryAfter(time.Second, nil),
		jobs.ClassTimeout:      context.DeadlineExceeded,
		jobs.ClassPermanent:    jobs.Permanent(nil),
		jobs.ClassPanic:        &jobs.PanicError{Value: "x"},
		jobs.ClassSchema:       &jobs.SchemaError{Err: errors.New("no field")},
		jobs.ClassCapExceeded:  &jobs.CapExceededError{Cap: "max_steps", Limit: "1", Value: "2"},
		jobs.ClassLeaseExpired: &jobs.AttemptsSpentError{MaxAttempts: 3},
		jobs.ClassSnooze:       jobs.Snooze(time.Second),
		jobs.ClassAbandoned:    &jobs.AbandonedError{Cause: context.Canceled},
	}
	half := func(n int64) int64 { return n / 2 }
	for _, class := range jobs.Classes() {
		t.Run(string(class), func(t *testing.T) {
			t.Parallel()
			err, ok := errOf[class]
			if !ok {
				t.Fatalf("no error of class %q here: add one", class)
			}
			if got := jobs.Classify(err); got != class {
				t.Fatalf("Classify(%v) = %q, want %q", err, got, class)
			}
			s := &jobs.Step{Attempt: 3, MaxAttempts: 3}
			r := Decide(s, err, jobs.RetryPolicy{MaxAttempts: 3, Base: time.Second, Max: time.Minute}, half)
			dead := r.Outcome == jobs.OutcomeDead
			if listed := slices.Contains(jobs.DeadLetterClasses(), class); listed != dead {
				t.Fatalf("Decide's outcome on the last attempt is %s, but DeadLetterClasses lists %q: %v", r.Outcome, class, listed)
			}
		})
	}
}
