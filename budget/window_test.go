package budget

import (
	"math"
	"testing"
	"time"
)

func TestBucketSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		window, want time.Duration
		n, ns        int64
	}{
		{10 * time.Second, time.Second, 10, 1},
		{20 * time.Second, time.Second, 20, 1},
		{time.Minute, time.Second, 60, 5},
		{24 * time.Minute, time.Second, 1440, 120},
		{25 * time.Minute, 2 * time.Second, 750, 62},
		{time.Hour, 5 * time.Second, 720, 60}, // short window 5m: the SRE workbook's 1h/5m pair
		{24 * time.Hour, time.Minute, 1440, 120},
		{30 * 24 * time.Hour, 30 * time.Minute, 1440, 120},
		{90 * 24 * time.Hour, 2 * time.Hour, 1080, 90},
	}
	for _, tt := range tests {
		if got := BucketSize(tt.window); got != tt.want {
			t.Errorf("BucketSize(%v) = %v, want %v", tt.window, got, tt.want)
		}
		sp := spanOf(tt.window)
		if sp.n != tt.n || sp.ns != tt.ns {
			t.Errorf("spanOf(%v) = %d long, %d short buckets; want %d, %d", tt.window, sp.n, sp.ns, tt.n, tt.ns)
		}
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	// t0 starts a bucket of every size used here.
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	hour := Policy{SLO: 0.99, Window: time.Hour, MinEvents: 20}.withDefaults()
	tests := []struct {
		name          string
		p             Policy
		s             series
		now           time.Time
		events, fails int64
		exhausted     bool
		remaining     float64 // ratio
		burnLong      float64
		burnShort     float64
		until         time.Time // zero: none
	}{
		{name: "no events", p: hour, s: series{}, now: t0, remaining: 1},
		{name: "at the slo exactly is not exhausted", p: hour, s: series{at(0): {100, 1}}, now: t0,
			events: 100, fails: 1, remaining: 0, burnLong: 1, burnShort: 1},
		{name: "one failure over", p: hour, s: series{at(0): {100, 2}}, now: t0.Add(3 * time.Second),
			events: 100, fails: 2, exhausted: true, remaining: -1, burnLong: 2, burnShort: 2,
			until: t0.Add(time.Hour)},
		{name: "below min events never exhausts", p: hour, s: series{at(0): {10, 10}}, now: t0,
			events: 10, fails: 10, remaining: -99, burnLong: 100, burnShort: 100},
		{name: "min events reached", p: hour, s: series{at(0): {10, 10}, at(5 * time.Second): {10, 0}}, now: t0.Add(5 * time.Second),
			events: 20, fails: 10, exhausted: true, remaining: -49, burnLong: 50, burnShort: 50,
			until: t0.Add(time.Hour)},
		{name: "oldest bucket still inside the window", p: hour, s: series{at(0): {50, 50}},
			now: t0.Add(time.Hour - time.Nanosecond), events: 50, fails: 50, exhausted: true, remaining: -99, burnLong: 100,
			until: t0.Add(time.Hour)},
		{name: "oldest bucket has left the window", p: hour, s: series{at(0): {50, 50}},
			now: t0.Add(time.Hour), remaining: 1},
		{name: "short window sees only recent attempts", p: hour,
			s:   series{at(0): {50, 5}, at(50 * time.Minute): {50, 0}},
			now: t0.Add(55*time.Minute + 2*time.Second), events: 100, fails: 5, exhausted: true, remaining: -4, burnLong: 5, burnShort: 0,
			until: t0.Add(time.Hour)},
		{name: "short window edge: 5m back is inside", p: hour,
			s:   series{at(0): {50, 0}, at(50 * time.Minute): {50, 1}},
			now: t0.Add(54*time.Minute + 59*time.Second), events: 100, fails: 1, remaining: 0, burnLong: 1, burnShort: 2},
		{name: "short window edge: 5m back is outside", p: hour,
			s:   series{at(0): {50, 0}, at(50 * time.Minute): {50, 1}},
			now: t0.Add(55 * time.Minute), events: 100, fails: 1, remaining: 0, burnLong: 1, burnShort: 0},
		{name: "recovery when the failing bucket leaves, successes stay", p: hour,
			s:   series{at(0): {3, 3}, at(10 * time.Minute): {97, 0}},
			now: t0.Add(20 * time.Minute), events: 100, fails: 3, exhausted: true, remaining: -2, burnLong: 3,
			until: t0.Add(time.Hour)},
		{name: "recovery needs two buckets to leave", p: hour,
			s:   series{at(0): {1, 1}, at(10 * time.Minute): {99, 2}},
			now: t0.Add(20 * time.Minute), events: 100, fails: 3, exhausted: true, remaining: -2, burnLong: 3,
			until: t0.Add(70 * time.Minute)},
		{name: "future buckets (clock skew) are ignored", p: hour, s: series{at(time.Minute): {100, 100}}, now: t0, remaining: 1},
		{name: "20s window in 1s buckets", p: Policy{SLO: 0.9, Window: 20 * time.Second, MinEvents: 5}.withDefaults(),
			s:   series{at(0): {3, 3}, at(4 * time.Second): {3, 3}},
			now: t0.Add(10 * time.Second), events: 6, fails: 6, exhausted: true, remaining: -9, burnLong: 10,
			// Without the first bucket 3 events remain: below min_events.
			until: t0.Add(20 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := evaluate("w", tt.p, tt.s, tt.now)
			if st.Events != tt.events || st.Failures != tt.fails || st.Exhausted != tt.exhausted {
				t.Errorf("events, failures, exhausted = %d, %d, %v; want %d, %d, %v", st.Events, st.Failures, st.Exhausted, tt.events, tt.fails, tt.exhausted)
			}
			for what, pair := range map[string][2]float64{
				"remaining ratio": {st.RemainingRatio, tt.remaining},
				"burn rate long":  {st.BurnRateLong, tt.burnLong},
				"burn rate short": {st.BurnRateShort, tt.burnShort},
			} {
				if math.Abs(pair[0]-pair[1]) > 1e-9 {
					t.Errorf("%s = %v, want %v", what, pair[0], pair[1])
				}
			}
			if !st.Until.Equal(tt.until) {
				t.Errorf("until = %v, want %v", st.Until, tt.until)
			}
			wantState := StateOK
			if tt.exhausted {
				wantState = StateExhausted
			}
			if st.State != wantState {
				t.Errorf("state = %q, want %q", st.State, wantState)
			}
		})
	}
}

func TestExhaustedIgnoresFloatRounding(t *testing.T) {
	t.Parallel()
	// (1 - 0.9) * 10 is 0.9999999999999998 in float64: one failure in ten is
	// exactly at an SLO of 0.9 and must not exhaust it.
	p := Policy{SLO: 0.9, MinEvents: 1}.withDefaults()
	if p.exhausted(tally{events: 10, failures: 1}) {
		t.Error("1 failure of 10 at slo 0.9 counted as exhausted")
	}
	if !p.exhausted(tally{events: 10, failures: 2}) {
		t.Error("2 failures of 10 at slo 0.9 not counted as exhausted")
	}
}
