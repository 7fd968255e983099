package jobs

import (
	"fmt"
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
	c := p.Ceiling(retry)
	if c <= 0 {
		return 0
	}
	return time.Duration(randN(int64(c) + 1))
}

// Delay returns the delay before the next attempt after err: a delay the
// error asks for (Retry-After, Snooze) bounded by Max, else Backoff. A
// snooze is not bounded by Max, as it spends no attempt.
func (p RetryPolicy) Delay(retry int, err error, randN func(n int64) int64) time.Duration {
	if d, ok := RequestedDelay(err); ok {
		if Classify(err) == ClassSnooze || d <= p.Max {
			return d
		}
		return p.Max
	}
	return p.Backoff(retry, randN)
}
