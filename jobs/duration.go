package jobs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day is the "d" unit of ParseDuration: 24 hours, not a calendar day.
const Day = 24 * time.Hour

// durationUnits are the units ParseDuration reads: Go's, and d for days.
var durationUnits = map[string]uint64{
	"ns": uint64(time.Nanosecond),
	"us": uint64(time.Microsecond),
	"µs": uint64(time.Microsecond), // U+00B5 micro sign
	"μs": uint64(time.Microsecond), // U+03BC Greek mu
	"ms": uint64(time.Millisecond),
	"s":  uint64(time.Second),
	"m":  uint64(time.Minute),
	"h":  uint64(time.Hour),
	"d":  uint64(Day),
}

// durationUnitNames lists the units for error messages.
const durationUnitNames = "ns, us, ms, s, m, h or d"

// maxDurationMagnitude is the magnitude of the most negative Duration.
const maxDurationMagnitude = 1 << 63

// ParseDuration reads a duration the way time.ParseDuration does, with
// one more unit: d, a day of 24 hours. "3d", "7d", "1d12h", "1.5d" and
// "-2h30m" are durations; so is "0". Every string time.ParseDuration
// accepts it accepts with the same value, and it refuses the others,
// with an error that quotes the input (cut to 64 bytes) and says why.
// Surrounding spaces are ignored. Every agentq flag, configuration key
// and environment variable that takes a duration reads it with this.
func ParseDuration(s string) (time.Duration, error) {
	d, why := parseDuration(strings.TrimSpace(s))
	if why != "" {
		return 0, &DurationError{Value: s, Reason: why}
	}
	return d, nil
}

// DurationError is a string ParseDuration refused.
type DurationError struct {
	// Value is the string as given.
	Value string
	// Reason says what is wrong with it.
	Reason string
}

func (e *DurationError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("%s is not a duration: %s", strconv.Quote(v), e.Reason)
}

// ErrDuration is matched by every *DurationError (errors.Is).
var ErrDuration = errors.New("not a duration")

// Is makes errors.Is(err, ErrDuration) hold.
func (e *DurationError) Is(target error) bool { return target == ErrDuration }

// parseDuration returns d, or why s is not a duration. It follows
// time.ParseDuration's grammar: [-+]? ( number unit )+ or "0", a number
// being digits with an optional fraction ("1.5", ".5", "1.").
func parseDuration(s string) (time.Duration, string) {
	orig := s
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	switch {
	case s == "0":
		return 0, ""
	case s == "" && orig == "":
		return 0, "it is empty (write e.g. 30s, 10m, 24h or 7d)"
	case s == "":
		return 0, "a sign needs a number and a unit after it"
	}
	var total uint64
	for s != "" {
		if s[0] != '.' && (s[0] < '0' || s[0] > '9') {
			return 0, fmt.Sprintf("expected a number at %s", strconv.Quote(s))
		}
		// The whole part.
		pl := len(s)
		whole, rest, overflow := leadingInt(s)
		if overflow {
			return 0, "out of range"
		}
		pre := pl != len(rest)
		s = rest
		// The fraction.
		var frac, scale uint64 = 0, 1
		post := false
		if s != "" && s[0] == '.' {
			s = s[1:]
			pl := len(s)
			frac, scale, s = leadingFraction(s)
			post = pl != len(s)
		}
		if !pre && !post {
			return 0, "a lone '.' is not a number"
		}
		// The unit.
		i := 0
		for ; i < len(s); i++ {
			if c := s[i]; c == '.' || ('0' <= c && c <= '9') {
				break
			}
		}
		if i == 0 {
			return 0, fmt.Sprintf("a number needs a unit (%s), e.g. %s", durationUnitNames, strconv.Quote(strings.TrimLeft(orig, "+-")+"s"))
		}
		u := s[:i]
		s = s[i:]
		unit, ok := durationUnits[u]
		if !ok {
			return 0, fmt.Sprintf("unknown unit %s (use %s)", strconv.Quote(u), durationUnitNames)
		}
		if whole > maxDurationMagnitude/unit {
			return 0, "out of range"
		}
		v := whole * unit
		if frac > 0 {
			// float64 is needed to be nanosecond accurate for fractions
			// of hours (and days): as time.ParseDuration does.
			v += uint64(float64(frac) * (float64(unit) / float64(scale)))
			if v > maxDurationMagnitude {
				return 0, "out of range"
			}
		}
		// Checked before adding: two parts of 1<<63 each would wrap total
		// to 0 (time.ParseDuration takes "9223372036854775808ns" twice for
		// 0).
		if v > maxDurationMagnitude-total {
			return 0, "out of range"
		}
		total += v
	}
	if neg {
		return -time.Duration(total), ""
	}
	if total > maxDurationMagnitude-1 {
		return 0, "out of range"
	}
	return time.Duration(total), ""
}

// leadingInt consumes the leading digits of s.
func leadingInt(s string) (x uint64, rest string, overflow bool) {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			break
		}
		if x > maxDurationMagnitude/10 {
			return 0, "", true
		}
		x = x*10 + uint64(c-'0')
		if x > maxDurationMagnitude {
			return 0, "", true
		}
	}
	return x, s[i:], false
}

// leadingFraction consumes the leading digits of s, keeping as many as
// fit without overflow, and returns them with their scale.
func leadingFraction(s string) (x, scale uint64, rest string) {
	i := 0
	scale = 1
	overflow := false
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			break
		}
		if overflow {
			continue
		}
		if x > (maxDurationMagnitude-1)/10 {
			overflow = true
			continue
		}
		y := x*10 + uint64(c-'0')
		if y > maxDurationMagnitude {
			overflow = true
			continue
		}
		x = y
		scale *= 10
	}
	return x, scale, s[i:]
}

// FormatDuration writes d as people write it and ParseDuration reads it
// back: 10m rather than 10m0s, 24h rather than 24h0m0s, 1.5s; days are
// written in hours (72h), as Go does.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
