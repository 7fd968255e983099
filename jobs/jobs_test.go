package jobs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
	long := RetryPolicy{MaxAttempts: 5, Base: time.Second, Max: 2 * time.Hour}
	tight := RetryPolicy{MaxAttempts: 5, Base: time.Second, Max: time.Second}
	zero := func(int64) int64 { return 0 }
	top := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name  string
		p     RetryPolicy
		err   error
		randN func(int64) int64
		want  time.Duration
	}{
		{"retry-after floor", p, RetryAfter(7*time.Second, nil), zero, 7 * time.Second},
		// 7s + min(max(base 1s, 7s/4), max-7s) = 7s + 1.75s
		{"retry-after top of spread", p, RetryAfter(7*time.Second, nil), top, 8750 * time.Millisecond},
		// Spread at least base: Retry-After 1 spreads over [1s, 2s].
		{"retry-after 1 floor", p, &HTTPError{Status: 429, RetryAfter: time.Second}, zero, time.Second},
		{"retry-after 1 top", p, &HTTPError{Status: 429, RetryAfter: time.Second}, top, 2 * time.Second},
		{"http 503 retry-after top", p, &HTTPError{Status: 503, RetryAfter: 3 * time.Second}, top, 4 * time.Second},
		// The spread stops at max: 9.5s + min(2.375s, 0.5s).
		{"spread stops at max", p, RetryAfter(9500*time.Millisecond, nil), top, 10 * time.Second},
		{"requested exactly max", p, RetryAfter(10*time.Second, nil), top, 10 * time.Second},
		// An hour under a 2h max: spread capped at RequestedJitterMax.
		{"hour floor", long, RetryAfter(time.Hour, nil), zero, time.Hour},
		{"hour top", long, RetryAfter(time.Hour, nil), top, time.Hour + RequestedJitterMax},
		// Beyond max: capped at max, jitter within max's top quarter.
		{"beyond max, zero rand", p, RetryAfter(time.Hour, nil), zero, 10 * time.Second},
		{"beyond max, top rand", p, RetryAfter(time.Hour, nil), top, 7500 * time.Millisecond},
		{"beyond max equal to base", tight, RetryAfter(time.Minute, nil), top, 750 * time.Millisecond},
		{"zero requested spreads over base", p, RetryAfter(0, nil), top, time.Second},
		{"negative requested is zero", p, RetryAfter(-time.Hour, nil), zero, 0},
		{"snooze not bounded, no jitter", p, Snooze(time.Hour), top, time.Hour},
		{"snooze exact", p, Snooze(3 * time.Second), top, 3 * time.Second},
		{"negative snooze is zero", p, Snooze(-time.Second), top, 0},
		{"plain uses backoff", p, errors.New("x"), zero, 0},
		{"plain uses backoff ceiling", p, errors.New("x"), top, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.p.Delay(2, tt.err, tt.randN); got != tt.want {
				t.Errorf("Delay = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDelaySpreadsSameRetryAfter is issue 7 defect 5: 20 calls that got the
// same Retry-After came back in the same instant. With a seeded source, their
// delays must lie in the documented window and cover most of it.
func TestDelaySpreadsSameRetryAfter(t *testing.T) {
	t.Parallel()
	def := RetryPolicy{MaxAttempts: MaxAttemptsDefault, Base: RetryBaseDefault, Max: RetryMaxDefault}
	long := RetryPolicy{MaxAttempts: MaxAttemptsDefault, Base: RetryBaseDefault, Max: 2 * time.Hour}
	tests := []struct {
		name   string
		p      RetryPolicy
		after  time.Duration
		lo, hi time.Duration
	}{
		{"retry-after 1", def, time.Second, time.Second, 2 * time.Second},
		{"retry-after 60", def, time.Minute, time.Minute, 75 * time.Second},
		{"retry-after 3600 under 2h max", long, time.Hour, time.Hour, time.Hour + 5*time.Minute},
		{"retry-after 3600 capped by 10m max", def, time.Hour, 7*time.Minute + 30*time.Second, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := rand.New(rand.NewPCG(7, 7))
			err := &HTTPError{Status: 429, RetryAfter: tt.after}
			distinct := map[time.Duration]bool{}
			minD, maxD := time.Duration(math.MaxInt64), time.Duration(0)
			for range 20 {
				d := tt.p.Delay(0, err, src.Int64N)
				if d < tt.lo || d > tt.hi {
					t.Fatalf("delay %v outside [%v, %v]", d, tt.lo, tt.hi)
				}
				distinct[d] = true
				minD, maxD = min(minD, d), max(maxD, d)
			}
			if len(distinct) < 18 {
				t.Errorf("%d distinct delays of 20, want them spread", len(distinct))
			}
			// 20 uniform draws cover well over half the window.
			if span := maxD - minD; span < (tt.hi-tt.lo)/2 {
				t.Errorf("delays span %v of a %v window", span, tt.hi-tt.lo)
			}
		})
	}
}

func TestBackoffLargestMaxDoesNotOverflow(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 1, Base: time.Second, Max: math.MaxInt64}
	var gotN int64
	d := p.Backoff(80, func(n int64) int64 { gotN = n; return n - 1 })
	if gotN <= 0 || d < 0 {
		t.Fatalf("randN got n=%d, delay %v; want a positive n and a non-negative delay", gotN, d)
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

func TestClassesAreDistinctAndNamed(t *testing.T) {
	t.Parallel()
	seen := map[Class]bool{}
	for _, c := range Classes() {
		if c == ClassNone || seen[c] {
			t.Fatalf("Classes() = %v: %q is empty or repeated", Classes(), c)
		}
		seen[c] = true
	}
	for _, c := range DeadLetterClasses() {
		if !seen[c] || c == ClassSnooze || c == ClassAbandoned {
			t.Fatalf("DeadLetterClasses() = %v: %q is not a class of a dead letter", DeadLetterClasses(), c)
		}
	}
	if len(DeadLetterClasses()) != len(Classes())-2 {
		t.Fatalf("DeadLetterClasses() = %v, want Classes() but snooze and abandoned", DeadLetterClasses())
	}
}
