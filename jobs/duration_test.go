package jobs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want time.Duration
		err  string // a part of the error; "" when accepted
	}{
		{name: "days", in: "3d", want: 72 * time.Hour},
		{name: "a week", in: "7d", want: 168 * time.Hour},
		{name: "days and hours", in: "1d12h", want: 36 * time.Hour},
		{name: "fraction of a day", in: "1.5d", want: 36 * time.Hour},
		{name: "go syntax", in: "1h30m", want: 90 * time.Minute},
		{name: "negative days", in: "-2d", want: -48 * time.Hour},
		{name: "zero", in: "0", want: 0},
		{name: "spaces around", in: " 2d ", want: 48 * time.Hour},
		{name: "micro sign", in: "5µs", want: 5 * time.Microsecond},
		{name: "most negative", in: "-2562047h47m16.854775808s", want: time.Duration(-1 << 63)},
		{name: "most days", in: "106751d23h47m16.854775807s", want: time.Duration(1<<63 - 1)},
		{name: "no unit", in: "3", err: `"3" is not a duration: a number needs a unit (ns, us, ms, s, m, h or d), e.g. "3s"`},
		{name: "unknown unit", in: "3w", err: `unknown unit "w"`},
		{name: "empty", in: "", err: "it is empty"},
		{name: "sign alone", in: "-", err: "a sign needs a number"},
		{name: "dot alone", in: ".d", err: "a lone '.'"},
		{name: "words", in: "soon", err: `expected a number at "soon"`},
		{name: "days overflow", in: "106752d", err: "out of range"},
		{name: "sum overflow", in: "106751d24h", err: "out of range"},
		{name: "long input is cut", in: strings.Repeat("x", 100), err: strings.Repeat("x", 64) + `..."`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := jobs.ParseDuration(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
				}
				if !errors.Is(err, jobs.ErrDuration) {
					t.Fatalf("error %v is not ErrDuration", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{{10 * time.Minute, "10m"}, {24 * time.Hour, "24h"}, {90 * time.Minute, "1h30m"}, {1500 * time.Millisecond, "1.5s"}, {0, "0s"}} {
		t.Run(tc.want, func(t *testing.T) {
			if got := jobs.FormatDuration(tc.in); got != tc.want {
				t.Fatalf("FormatDuration(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseDuration checks ParseDuration against time.ParseDuration: on
// text without a d unit they agree (both refuse, or both give the same
// value); with days, replacing every "Nd" by its hours gives the same
// value; and whatever it accepts, FormatDuration writes back to the same
// duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"3d", "7d", "1d12h", "1.5d", "-2d", "0", "1h30m", "1e3", "30", "", "-", ".d", "1..d",
		"9223372036854775807ns", "9223372036854775808ns", "9223372036854775808ns9223372036854775808ns", "-9223372036854775808ns", "106751d23h47m16.854775807s", "106752d", "1µs", "+5m", "0.000000000000000000001d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := jobs.ParseDuration(s)
		if err != nil {
			if !strings.Contains(err.Error(), "is not a duration: ") {
				t.Fatalf("error %q does not say what it refused", err)
			}
		} else {
			back, err := jobs.ParseDuration(jobs.FormatDuration(got))
			if err != nil || back != got {
				t.Fatalf("%q -> %v -> %q -> %v, %v: no round trip", s, got, jobs.FormatDuration(got), back, err)
			}
		}
		trimmed := strings.TrimSpace(s)
		want, werr := time.ParseDuration(trimmed)
		// time.ParseDuration lets a sum of parts wrap past 1<<64 (two parts
		// of 1<<63 give 0); ParseDuration says it is out of range.
		wraps := werr == nil && err != nil && strings.Contains(err.Error(), "out of range")
		switch {
		case wraps:
		case werr == nil && (err != nil || got != want):
			t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration says %v", s, got, err, want)
		case werr != nil && err == nil && !strings.Contains(trimmed, "d"):
			t.Fatalf("ParseDuration(%q) = %v; time.ParseDuration refuses it: %v", s, got, werr)
		}
	})
}

// TestParseDurationSumOutOfRange: parts that each fit but whose sum passes
// the largest duration are refused, not wrapped to a small value.
func TestParseDurationSumOutOfRange(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"9223372036854775808ns9223372036854775808ns", "106751d106751d", "-9223372036854775808ns1ns"} {
		if d, err := jobs.ParseDuration(s); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("ParseDuration(%q) = %v, %v; want out of range", s, d, err)
		}
	}
}
