package jobs

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRetryAfter: any header value parses without a panic; an accepted
// value is a non-negative delay; integer seconds round-trip.
func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range []string{
		"0", "7", " 120 ", "+5", "-3", "", "soon", "1.5", "3600",
		"9223372036854775807", "99999999999999999999999",
		"Fri, 27 Nov 2026 12:00:30 GMT", "Fri, 27 Nov 2026 11:00:00 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
		"\x00", "7\x00", "\u00a07\u00a0",
	} {
		f.Add(v, int64(1795780800))
	}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		d, ok := ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("rejected %q with delay %v, want 0", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, want >= 0", v, d)
		}
		if strings.TrimSpace(v) == "" {
			t.Fatalf("accepted the empty value %q", v)
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			if n < 0 {
				t.Fatalf("accepted negative seconds %q", v)
			}
			if want := time.Duration(min(n, math.MaxInt64/int64(time.Second))) * time.Second; d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", v, d, want)
			}
			// Integer seconds round-trip through their decimal form.
			back, ok := ParseRetryAfter(strconv.FormatInt(int64(d/time.Second), 10), now)
			if !ok || back != d {
				t.Fatalf("round trip of %q: %v,%v, want %v", v, back, ok, d)
			}
		}
	})
}

// FuzzRetryDelay: for every policy Validate accepts and every requested
// delay, Delay is never negative, stays within [0, Max] for a retry, keeps
// the requested floor unless Max caps it, and adds at most the documented
// spread. randN is only ever asked for a positive n.
func FuzzRetryDelay(f *testing.F) {
	s, m := int64(time.Second), int64(time.Minute)
	f.Add(10, s, 10*m, s, 0, uint8(0), uint64(1))
	f.Add(10, s, 10*m, 60*m, 3, uint8(1), uint64(2))
	f.Add(5, s, 120*m, 60*m, 0, uint8(1), uint64(3))
	f.Add(5, s, s, 60*m, 0, uint8(0), uint64(4))
	f.Add(5, s, 10*m, 60*m, 0, uint8(2), uint64(5))
	f.Add(5, s, 10*m, -s, 0, uint8(0), uint64(6))
	f.Add(1, int64(1), int64(math.MaxInt64), int64(0), 200, uint8(3), uint64(7))
	f.Add(1, int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), math.MaxInt, uint8(4), uint64(8))
	f.Add(1, int64(math.MaxInt64/2), int64(math.MaxInt64), int64(0), 0, uint8(0), uint64(9))
	f.Fuzz(func(t *testing.T, attempts int, base, maxD, requested int64, retry int, kind uint8, seed uint64) {
		p := RetryPolicy{MaxAttempts: attempts, Base: time.Duration(base), Max: time.Duration(maxD)}
		if p.Validate() != nil {
			return
		}
		req := time.Duration(requested)
		var err error
		switch kind % 5 {
		case 0:
			err = RetryAfter(req, errors.New("slow down"))
		case 1:
			err = &HTTPError{Status: 429, RetryAfter: req}
		case 2:
			err = Snooze(req)
		case 3:
			err = errors.New("boom")
		case 4:
			err = &HTTPError{Status: 503, RetryAfter: req}
		}
		src := rand.New(rand.NewPCG(seed, seed>>1))
		randN := func(n int64) int64 {
			if n <= 0 {
				t.Fatalf("randN(%d): n must be positive", n)
			}
			switch kind / 5 % 3 {
			case 0:
				return 0
			case 1:
				return n - 1
			}
			return src.Int64N(n)
		}
		d := p.Delay(retry, err, randN)
		if d < 0 {
			t.Fatalf("Delay = %v, negative", d)
		}
		floor, asked := RequestedDelay(err)
		floor = max(floor, 0)
		switch {
		case Classify(err) == ClassSnooze:
			if d != floor {
				t.Fatalf("snooze %v: Delay = %v, want it exactly", req, d)
			}
			return
		case d > p.Max:
			t.Fatalf("Delay = %v above max %v", d, p.Max)
		case !asked:
			if d > p.Ceiling(retry) {
				t.Fatalf("backoff %v above ceiling %v", d, p.Ceiling(retry))
			}
		case floor > p.Max:
			if d < p.Max-p.Max/RequestedJitterDivisor {
				t.Fatalf("capped delay %v below max's top quarter (max %v)", d, p.Max)
			}
		default:
			spread := max(p.Base, min(floor/RequestedJitterDivisor, RequestedJitterMax))
			if d < floor || d-floor > spread {
				t.Fatalf("requested %v: Delay = %v, want in [%v, %v+%v]", floor, d, floor, floor, spread)
			}
		}
	})
}
