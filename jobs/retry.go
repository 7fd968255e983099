package jobs

import (
	"fmt"
	"math"
	"time"
)

// Retry policy defaults.
const (
	// RetryBaseDefault is the default base delay of the backoff.
	RetryBaseDefault = time.Second
	// RetryMaxDefault is the default cap on one backoff delay.
	RetryMaxDefault = 10 * time.Minute
	// MaxAttemptsDefault is the default number of attempts of a task.
	MaxAttemptsDefault = 10
)

// Jitter of a requested delay (Retry-After): see RetryPolicy.Delay.
const (
	// RequestedJitterDivisor sets the spread added to a requested delay d to
	// d/RequestedJitterDivisor (a quarter), at least Base.
	RequestedJitterDivisor = 4
	// RequestedJitterMax caps the spread added to a requested delay, so that
	// an hour's Retry-After spreads its callers over minutes, not a quarter
	// of an hour.
	RequestedJitterMax = 5 * time.Minute
)

// RetryPolicy says how often and how far apart a task is attempted.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts in all, first one included.
	// Default MaxAttemptsDefault.
	MaxAttempts int
	// Base is the backoff's base delay. Default RetryBaseDefault.
	Base time.Duration
	// Max caps a single delay, a requested Retry-After included.
	// Default RetryMaxDefault.
	Max time.Duration
}

// Validate reports the first field that is out of range.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("max_attempts must be at least 1, got %d", p.MaxAttempts)
	case p.Base <= 0:
		return fmt.Errorf("base must be positive, got %v", p.Base)
	case p.Max < p.Base:
		return fmt.Errorf("max (%v) must not be below base (%v)", p.Max, p.Base)
	}
	return nil
}

// Merge returns p with every zero field taken from fallback.
func (p RetryPolicy) Merge(fallback RetryPolicy) RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = fallback.MaxAttempts
	}
	if p.Base == 0 {
		p.Base = fallback.Base
	}
	if p.Max == 0 {
		p.Max = fallback.Max
	}
	return p
}

// Ceiling returns min(Max, Base * 2^retry), the upper bound of the delay
// before retry number retry+1 (retry counts from 0).
func (p RetryPolicy) Ceiling(retry int) time.Duration {
	if retry < 0 {
		retry = 0
	}
	d := p.Base
	for i := 0; i < retry; i++ {
		if d >= p.Max/2 {
			return p.Max
		}
		d *= 2
	}
	if d > p.Max {
		return p.Max
	}
	return d
}

// Backoff returns the full-jitter delay random(0, Ceiling(retry)).
// randN returns a uniform value in [0, n) and is injected so that tests can
// decide it; n is always positive.
func (p RetryPolicy) Backoff(retry int, randN func(n int64) int64) time.Duration {
	return jitter(p.Ceiling(retry), randN)
}

// Delay returns the delay before the next attempt after err.
//
// An error that asks for a delay d (a Retry-After from a tool, RetryAfter
// from a handler) gets d as a floor plus jitter above it, so that the calls
// that got the same answer at the same time do not all come back in the same
// instant:
//
//	d <= Max: d + random[0, min(J(d), Max-d)], J(d) = max(Base, min(d/4, RequestedJitterMax))
//	d >  Max: Max - random[0, min(Max/4, RequestedJitterMax)]
//
// The floor d is never undercut unless the policy's Max caps it: Max bounds
// every delay, and when it has already cut d short the jitter goes below Max
// (within its top quarter), as the calls would otherwise meet again at Max.
// Retry-After: 1 with the default Base spreads callers over [1s, 2s];
// Retry-After: 3600 under a Max of two hours over [60m, 65m].
//
// A Snooze is returned as it is: it spends no attempt, so Max does not bound
// it, and it gets no jitter, as the caller chose the instant (the breaker
// adds its own jitter to the snoozes it makes). Any other error gets Backoff.
// A negative requested delay counts as zero. randN is as for Backoff.
func (p RetryPolicy) Delay(retry int, err error, randN func(n int64) int64) time.Duration {
	d, ok := RequestedDelay(err)
	if !ok {
		return p.Backoff(retry, randN)
	}
	if d < 0 {
		d = 0
	}
	if Classify(err) == ClassSnooze {
		return d
	}
	if d > p.Max {
		return p.Max - jitter(min(p.Max/RequestedJitterDivisor, RequestedJitterMax), randN)
	}
	spread := max(p.Base, min(d/RequestedJitterDivisor, RequestedJitterMax))
	return d + jitter(min(spread, p.Max-d), randN)
}

// jitter returns random[0, j] (random[0, j) for the largest j, where j+1
// would overflow), 0 for j <= 0.
func jitter(j time.Duration, randN func(n int64) int64) time.Duration {
	switch {
	case j <= 0:
		return 0
	case j == math.MaxInt64:
		return time.Duration(randN(int64(j)))
	}
	return time.Duration(randN(int64(j) + 1))
}
