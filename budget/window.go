package budget

import (
	"math"
	"slices"
	"time"
)

// ShortWindowDivisor divides a budget's window into its short window: 24h
// gives 2h, 1h gives 5m. It is the 12:1 ratio of the SRE workbook's
// multiwindow burn-rate alerts (1h long, 5m short), so that a high long-window
// burn rate with a low short-window one says the burn has stopped.
const ShortWindowDivisor = 12

// maxBuckets bounds the buckets of one window, and so the size of a
// workflow's counter hash (two fields per bucket).
const maxBuckets = 1440

// bucketSizes are the bucket lengths a window may use, smallest first.
var bucketSizes = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// BucketSize returns the length of the buckets a window is counted in: the
// smallest of 1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m ... that keeps the
// window within 1440 buckets. 20s gives 1s, 1h gives 5s, 24h gives 1m and
// 30 days 30m. Recovery estimates are accurate to one bucket.
func BucketSize(window time.Duration) time.Duration {
	for _, b := range bucketSizes {
		if window <= b*maxBuckets {
			return b
		}
	}
	return bucketSizes[len(bucketSizes)-1]
}

// counts is what one bucket holds.
type counts struct {
	events, failures int64
}

// series maps the start of a bucket (unix seconds) to its counts.
type series map[int64]counts

// span is a window cut into buckets.
type span struct {
	bucket int64 // bucket length in seconds
	n      int64 // buckets in the long window (the whole window)
	ns     int64 // buckets in the short window
}

func spanOf(window time.Duration) span {
	b := BucketSize(window)
	sec := int64(b / time.Second)
	n := max(1, int64(math.Ceil(float64(window)/float64(b))))
	return span{bucket: sec, n: n, ns: max(1, n/ShortWindowDivisor)}
}

// bucketStart returns the start (unix seconds) of the bucket t falls in.
func (s span) bucketStart(t time.Time) int64 {
	u := t.Unix()
	return u - mod(u, s.bucket)
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// longStart and shortStart return the start of the oldest bucket inside the
// long and short windows at now; the current bucket is the newest.
func (s span) longStart(now time.Time) int64  { return s.bucketStart(now) - (s.n-1)*s.bucket }
func (s span) shortStart(now time.Time) int64 { return s.bucketStart(now) - (s.ns-1)*s.bucket }

// leaves returns when the bucket starting at start leaves the window.
func (s span) leaves(start int64) time.Time { return time.Unix(start+s.n*s.bucket, 0) }

// tally is the sum of counts over a window.
type tally struct {
	events, failures int64
}

// exhausted reports whether a tally spends more than the budget p allows:
// at least MinEvents events and more failures than (1 - SLO) * events.
func (p Policy) exhausted(t tally) bool {
	return t.events > 0 && t.events >= int64(p.MinEvents) && float64(t.failures) > allowed(p.SLO, t.events)+1e-9
}

func allowed(slo float64, events int64) float64 { return (1 - slo) * float64(events) }

// burnRate is how fast failures spend the budget: 1 spends exactly the
// budget over the window, 12 spends it in a twelfth of the window.
func burnRate(slo float64, t tally) float64 {
	if t.events == 0 {
		return 0
	}
	return float64(t.failures) / float64(t.events) / (1 - slo)
}

// evaluate computes a workflow's budget from its buckets at now. It is pure:
// the window arithmetic is tested through it with any clock.
func evaluate(name string, p Policy, s series, now time.Time) Status {
	sp := spanOf(p.Window)
	longStart, shortStart := sp.longStart(now), sp.shortStart(now)
	end := sp.bucketStart(now)
	var long, short tally
	var starts []int64
	for start, c := range s {
		if start < longStart || start > end {
			continue
		}
		starts = append(starts, start)
		long.events += c.events
		long.failures += c.failures
		if start >= shortStart {
			short.events += c.events
			short.failures += c.failures
		}
	}
	st := Status{
		Workflow: name, Queue: p.Queue, SLO: p.SLO, Window: p.Window,
		ShortWindow: time.Duration(sp.ns*sp.bucket) * time.Second, Bucket: time.Duration(sp.bucket) * time.Second,
		MinEvents: p.MinEvents, OnExhausted: p.OnExhausted,
		Events: long.events, Failures: long.failures,
		ShortEvents: short.events, ShortFailures: short.failures,
		Budget:         allowed(p.SLO, long.events),
		BurnRateLong:   burnRate(p.SLO, long),
		BurnRateShort:  burnRate(p.SLO, short),
		RemainingRatio: 1,
		Exhausted:      p.exhausted(long),
		At:             now,
	}
	st.Remaining = st.Budget - float64(st.Failures)
	if st.Budget > 0 {
		st.RemainingRatio = st.Remaining / st.Budget
	}
	st.State = StateOK
	if st.Exhausted {
		st.State = StateExhausted
		// With no new events, the budget recovers once enough of the oldest
		// buckets have left the window.
		slices.Sort(starts)
		rest := long
		for _, start := range starts {
			c := s[start]
			rest.events -= c.events
			rest.failures -= c.failures
			if !p.exhausted(rest) {
				st.Until = sp.leaves(start)
				break
			}
		}
	}
	return st
}
