package dlq

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// TestEveryDeadClassParses: every class of jobs whose failure queue.Decide
// dead-letters is one of jobs.DeadLetterClasses, and ParseClass (so `dlq
// list --class`) accepts it; the classes Decide never dead-letters are left
// out. A class added to jobs without a case here fails the test.
func TestEveryDeadClassParses(t *testing.T) {
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
			half := func(n int64) int64 { return n / 2 }
			r := queue.Decide(s, err, jobs.RetryPolicy{MaxAttempts: 3, Base: time.Second, Max: time.Minute}, half)
			dead := r.Outcome == jobs.OutcomeDead
			if listed := slices.Contains(jobs.DeadLetterClasses(), class); listed != dead {
				t.Fatalf("Decide's outcome on the last attempt is %s, but DeadLetterClasses lists %q: %v", r.Outcome, class, listed)
			}
			got, perr := ParseClass(string(class))
			if dead && (perr != nil || got != class) {
				t.Fatalf("ParseClass(%q) = %q, %v: dlq refuses a class it stores", class, got, perr)
			}
			if !dead && perr == nil {
				t.Fatalf("ParseClass(%q) accepts a class no dead letter has", class)
			}
		})
	}
	if got, err := ParseClass(" Manual "); err != nil || got != ClassManual {
		t.Fatalf("ParseClass(manual) = %q, %v", got, err)
	}
}

// TestReadmeNamesEveryClass: the README's list of `dlq list --class`
// values is Classes.
func TestReadmeNamesEveryClass(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(string(data), "`--class` is one of ")
	list, _, ok2 := strings.Cut(list, " (archived")
	if !ok || !ok2 {
		t.Fatal("the README's list of --class values is gone")
	}
	var named []jobs.Class
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(list, -1) {
		named = append(named, jobs.Class(m[1]))
	}
	if !slices.Equal(named, Classes) {
		t.Fatalf("the README names the classes %v, want %v", named, Classes)
	}
}
