package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"plain", errors.New("boom"), ClassRetryable},
		{"permanent", Permanent(errors.New("bad")), ClassPermanent},
		{"wrapped permanent", fmt.Errorf("step: %w", Permanent(errors.New("bad"))), ClassPermanent},
		{"snooze", Snooze(time.Second), ClassSnooze},
		{"retry after", RetryAfter(time.Second, errors.New("slow down")), ClassRateLimited},
		{"panic", &PanicError{Value: "x"}, ClassPanic},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), ClassTimeout},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, ClassTimeout},
		{"conn refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, ClassRetryable},
		{"http 400", &HTTPError{Status: 400}, ClassPermanent},
		{"http 404", &HTTPError{Status: 404}, ClassPermanent},
		{"http 408", &HTTPError{Status: 408}, ClassRetryable},
		{"http 425", &HTTPError{Status: 425}, ClassRetryable},
		{"http 429", &HTTPError{Status: 429}, ClassRateLimited},
		{"http 500", &HTTPError{Status: 500}, ClassRetryable},
		{"http 503", &HTTPError{Status: 503}, ClassRetryable},
		{"http 302 unexpected", &HTTPError{Status: 302}, ClassRetryable},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestClassRetryable(t *testing.T) {
	t.Parallel()
	for c, want := range map[Class]bool{ClassRetryable: true, ClassRateLimited: true, ClassTimeout: true, ClassPanic: true,
		ClassPermanent: false, ClassSnooze: false, ClassNone: false} {
		if got := c.Retryable(); got != want {
			t.Errorf("%q.Retryable() = %v, want %v", c, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"-3", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{"Fri, 27 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Fri, 27 Nov 2026 11:00:00 GMT", 0, true},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v,%v want %v,%v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestBackoffFullJitter(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 5, Base: time.Second, Max: 10 * time.Second}
	maxRand := func(n int64) int64 { return n - 1 }
	zeroRand := func(int64) int64 { return 0 }
	half := func(n int64) int64 { return n / 2 }
	tests := []struct {
		retry int
		randN func(int64) int64
		want  time.Duration
	}{
		{0, maxRand, time.Second},
		{1, maxRand, 2 * time.Second},
		{2, maxRand, 4 * time.Second},
		{3, maxRand, 8 * time.Second},
		{4, maxRand, 10 * time.Second}, // capped at max
		{60, maxRand, 10 * time.Second},
		{3, zeroRand, 0},
		{3, half, 4 * time.Second},
	}
	for _, tt := range tests {
		if got := p.Backoff(tt.retry, tt.randN); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.retry, got, tt.want)
		}
	}
}

func TestDelayHonoursRequestedDelays(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 5, Base: time.Second, Max: 10 * time.Second}
	zero := func(int64) int64 { return 0 }
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"retry-after within max", RetryAfter(7*time.Second, nil), 7 * time.Second},
		{"retry-after bounded by max", RetryAfter(time.Hour, nil), 10 * time.Second},
		{"http retry-after", &HTTPError{Status: 429, RetryAfter: 3 * time.Second}, 3 * time.Second},
		{"snooze not bounded", Snooze(time.Hour), time.Hour},
		{"plain uses backoff", errors.New("x"), 0},
	}
	for _, tt := range tests {
		if got := p.Delay(2, tt.err, zero); got != tt.want {
			t.Errorf("%s: Delay = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRetryPolicyValidateAndMerge(t *testing.T) {
	t.Parallel()
	def := RetryPolicy{MaxAttempts: 10, Base: time.Second, Max: time.Minute}
	if got := (RetryPolicy{MaxAttempts: 3}).Merge(def); got != (RetryPolicy{MaxAttempts: 3, Base: time.Second, Max: time.Minute}) {
		t.Fatalf("Merge = %+v", got)
	}
	bad := []RetryPolicy{{MaxAttempts: 0, Base: 1, Max: 1}, {MaxAttempts: 1, Base: 0, Max: 1}, {MaxAttempts: 1, Base: 2, Max: 1}}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want error", p)
		}
	}
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestChainOrder(t *testing.T) {
	t.Parallel()
	var order []string
	mw := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(ctx context.Context, s *Step) error {
				order = append(order, name)
				return next.ProcessStep(ctx, s)
			})
		}
	}
	h := Chain(HandlerFunc(func(context.Context, *Step) error { order = append(order, "handler"); return nil }), mw("a"), mw("b"))
	if err := h.ProcessStep(context.Background(), &Step{}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[a b handler]" {
		t.Fatalf("order = %v", order)
	}
}
