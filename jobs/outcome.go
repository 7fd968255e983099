package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Class names the kind of failure an error is. Classes drive retry decisions,
// dead-letter triage and metrics.
type Class string

// Error classes.
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = ""
	// ClassRetryable is a transient failure: network error, 408, 425, 429, 5xx.
	ClassRetryable Class = "retryable"
	// ClassRateLimited is a 429 or another answer that asked to come back later.
	ClassRateLimited Class = "rate_limited"
	// ClassTimeout is an attempt that ran out of time.
	ClassTimeout Class = "timeout"
	// ClassPermanent is a failure that another attempt cannot fix: other 4xx,
	// invalid payload, schema violation. It dead-letters at once.
	ClassPermanent Class = "permanent"
	// ClassPanic is a handler that panicked.
	ClassPanic Class = "panic"
	// ClassSnooze is a deliberate reschedule that spends no attempt.
	ClassSnooze Class = "snooze"
	// ClassLeaseExpired is an attempt whose worker stopped heartbeating
	// (crashed or cut off from Redis); the queue retried or archived it.
	ClassLeaseExpired Class = "lease_expired"
	// ClassAbandoned is an attempt the queue gave up on while it ran; see
	// AbandonedError.
	ClassAbandoned Class = "abandoned"
)

// Classes returns every class Classify can return but ClassNone, in a fixed
// order: the ones of a failed attempt.
func Classes() []Class {
	return []Class{
		ClassRetryable, ClassRateLimited, ClassTimeout, ClassPermanent, ClassPanic, ClassSchema,
		ClassCapExceeded, ClassLeaseExpired, ClassSnooze, ClassAbandoned,
	}
}

// DeadLetterClasses returns the classes of Classes a dead-lettered step's
// failure can have: all but ClassSnooze (a snooze spends no attempt) and
// ClassAbandoned (the queue decides what comes next). Package dlq lists
// them, with its own for tasks archived outside agentq's worker.
func DeadLetterClasses() []Class {
	return slices.DeleteFunc(Classes(), func(c Class) bool { return c == ClassSnooze || c == ClassAbandoned })
}

// Retryable reports whether errors of class c are retried.
func (c Class) Retryable() bool {
	switch c {
	case ClassRetryable, ClassRateLimited, ClassTimeout, ClassPanic, ClassLeaseExpired, ClassSchema:
		return true
	}
	return false
}

// PermanentError marks a failure that must not be retried.
type PermanentError struct{ Err error }

// Permanent wraps err so that the task dead-letters at once without spending
// its remaining attempts.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError asks for the next attempt no sooner than Delay.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter wraps err so that the next attempt waits d (bounded by the
// retry policy's maximum) instead of the computed backoff.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = fmt.Errorf("retry after %v", d)
	}
	return &RetryAfterError{Delay: d, Err: err}
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// SnoozeError reschedules the task after Delay without spending an attempt.
type SnoozeError struct{ Delay time.Duration }

// Snooze reschedules the task after d without spending an attempt or counting
// as a failure.
func Snooze(d time.Duration) error { return &SnoozeError{Delay: d} }

func (e *SnoozeError) Error() string { return fmt.Sprintf("snoozed for %v", e.Delay) }

// PanicError is a recovered panic.
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// AbandonedError marks an attempt the queue gave up on while it ran (a
// shutdown requeued the task, or the queue's own backstop timeout or a lease
// expiry ended it): its outcome is decided elsewhere, so it is neither a
// success nor a failure of the step.
type AbandonedError struct{ Cause error }

func (e *AbandonedError) Error() string { return "attempt abandoned by the queue: " + e.Cause.Error() }
func (e *AbandonedError) Unwrap() error { return e.Cause }

// AttemptsSpentError ends a delivery that arrives with no attempt left: the
// queue ended the last attempt itself (a worker crash and lease expiry, or
// its backstop timeout) and redelivered the task once more.
type AttemptsSpentError struct{ MaxAttempts int }

func (e *AttemptsSpentError) Error() string {
	return fmt.Sprintf("no attempts left after %d: the last one was cut off (worker crash and lease expiry, or the queue's backstop timeout)", e.MaxAttempts)
}

// HTTPError is a tool's answer with a non-success status.
type HTTPError struct {
	// Status is the HTTP status code.
	Status int
	// RetryAfter is the delay the tool asked for; zero when it gave none.
	RetryAfter time.Duration
	// Body is a short, redacted excerpt of the response body.
	Body string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("http %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// ClassifyHTTPStatus returns the class of an HTTP status: 408, 425 and 5xx
// are retryable, 429 is rate limited, other 4xx are permanent. Statuses below
// 400 are not failures and return ClassNone.
func ClassifyHTTPStatus(code int) Class {
	switch {
	case code < 400:
		return ClassNone
	case code == http.StatusTooManyRequests:
		return ClassRateLimited
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code >= 500:
		return ClassRetryable
	default:
		return ClassPermanent
	}
}

// Classify returns the class of err. Typed outcome errors decide first; then
// HTTP statuses, timeouts and network errors; anything unknown is retryable,
// so that an unexpected failure is retried rather than lost.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var (
		snooze *SnoozeError
		perm   *PermanentError
		pan    *PanicError
		ra     *RetryAfterError
		he     *HTTPError
		aband  *AbandonedError
		spent  *AttemptsSpentError
		capx   *CapExceededError
		schema *SchemaError
	)
	switch {
	case errors.As(err, &aband):
		return ClassAbandoned
	case errors.As(err, &spent):
		return ClassLeaseExpired
	case errors.As(err, &snooze):
		return ClassSnooze
	case errors.As(err, &capx):
		return ClassCapExceeded
	case errors.As(err, &perm):
		return ClassPermanent
	case errors.As(err, &schema):
		return ClassSchema
	case errors.As(err, &pan):
		return ClassPanic
	case errors.As(err, &ra):
		return ClassRateLimited
	case errors.As(err, &he):
		if c := ClassifyHTTPStatus(he.Status); c != ClassNone {
			return c
		}
		return ClassRetryable
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	return ClassRetryable
}

// RequestedDelay returns the delay an error asks for: a RetryAfter, a Snooze
// or an HTTPError carrying Retry-After. ok is false when it asks for none.
func RequestedDelay(err error) (d time.Duration, ok bool) {
	var (
		snooze *SnoozeError
		ra     *RetryAfterError
		he     *HTTPError
	)
	switch {
	case errors.As(err, &snooze):
		return snooze.Delay, true
	case errors.As(err, &ra):
		return ra.Delay, true
	case errors.As(err, &he) && he.RetryAfter > 0:
		return he.RetryAfter, true
	}
	return 0, false
}

// ParseRetryAfter parses an HTTP Retry-After value, either delay-seconds or an
// HTTP date, relative to now. ok is false for an empty or malformed value; a
// date in the past gives zero.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		if secs > maxSecs {
			secs = maxSecs
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d = t.Sub(now); d < 0 {
		d = 0
	}
	return d, true
}
