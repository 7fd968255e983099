package runs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/agentq/agentq/jobs"
)

// Durations in the JSON of Run and StepState (what `agentq run show
// --json` prints) are strings in Go's syntax, "1h30m", "2.5s", as budget
// and breaker windows are, not counts of nanoseconds. Reading accepts
// both, and days ("1d"). A run's stored state keeps its caps'
// max_duration in nanoseconds, which workers of every version read.

// MarshalJSON writes the run with caps.max_duration as a duration string.
func (r Run) MarshalJSON() ([]byte, error) {
	type plain Run
	return json.Marshal(struct {
		plain
		Caps capsOut `json:"caps"`
	}{plain(r), capsOut(r.Caps)})
}

// capsOut is Caps as Run's JSON writes it.
type capsOut Caps

func (c capsOut) MarshalJSON() ([]byte, error) {
	type plain Caps
	return json.Marshal(struct {
		plain
		MaxDuration string `json:"max_duration,omitempty"`
	}{plain(c), durationText(c.MaxDuration)})
}

// UnmarshalJSON reads max_duration as a string ("1h") or nanoseconds.
func (c *Caps) UnmarshalJSON(b []byte) error {
	type plain Caps
	aux := struct {
		*plain
		MaxDuration json.RawMessage `json:"max_duration,omitempty"`
	}{plain: (*plain)(c)}
	c.MaxDuration = 0
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d, err := durationJSON(aux.MaxDuration)
	if err != nil {
		return fmt.Errorf("max_duration: %w", err)
	}
	c.MaxDuration = d
	return nil
}

// MarshalJSON writes duration as a duration string.
func (s StepState) MarshalJSON() ([]byte, error) {
	type plain StepState
	return json.Marshal(struct {
		plain
		Duration string `json:"duration,omitempty"`
	}{plain(s), durationText(s.Duration)})
}

// UnmarshalJSON reads duration as a string ("1.5s") or nanoseconds.
func (s *StepState) UnmarshalJSON(b []byte) error {
	type plain StepState
	aux := struct {
		*plain
		Duration json.RawMessage `json:"duration,omitempty"`
	}{plain: (*plain)(s)}
	s.Duration = 0
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d, err := durationJSON(aux.Duration)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	s.Duration = d
	return nil
}

// durationText is d as written in JSON: "" (left out) for 0.
func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return jobs.FormatDuration(d)
}

// durationJSON reads a JSON duration: a string jobs.ParseDuration reads,
// or a whole number of nanoseconds; absent or null is 0.
func durationJSON(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return jobs.ParseDuration(s)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is neither a duration string nor nanoseconds", raw)
	}
	return time.Duration(n), nil
}
