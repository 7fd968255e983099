package runs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDurationsInJSON(t *testing.T) {
	t.Parallel()
	run := Run{ID: "r1", Caps: Caps{MaxDuration: 90 * time.Minute, MaxTokens: 5},
		Steps: []StepState{{Name: "a", Duration: 1500 * time.Millisecond, Totals: Totals{Attempts: 2}}, {Name: "b"}}}
	b, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"max_duration":"1h30m"`, `"max_tokens":5`, `"duration":"1.5s"`, `"attempts":2`, `"name":"b"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("JSON %s has no %s", b, want)
		}
	}
	if strings.Count(string(b), `"duration"`) != 1 {
		t.Fatalf("JSON %s: a step that did not run has a duration", b)
	}
	// Caps on their own (as a run's stored state holds them) keep
	// nanoseconds, which every worker version reads.
	if cb, _ := json.Marshal(run.Caps); !strings.Contains(string(cb), `"max_duration":5400000000000`) {
		t.Fatalf("stored caps = %s", cb)
	}
	var back Run
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Caps != run.Caps || back.Steps[0].Duration != run.Steps[0].Duration || back.Steps[0].Attempts != 2 || back.Steps[1].Duration != 0 {
		t.Fatalf("round trip: %+v", back)
	}
	tests := []struct {
		name, in string
		want     time.Duration
		err      bool
	}{
		{"stored before: nanoseconds", `{"max_duration":5400000000000}`, 90 * time.Minute, false},
		{"string", `{"max_duration":"1h30m"}`, 90 * time.Minute, false},
		{"days", `{"max_duration":"1d"}`, 24 * time.Hour, false},
		{"null", `{"max_duration":null}`, 0, false},
		{"absent", `{}`, 0, false},
		{"bad string", `{"max_duration":"soon"}`, 0, true},
		{"fraction", `{"max_duration":1.5}`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Caps{MaxDuration: time.Minute} // decoding replaces it
			err := json.Unmarshal([]byte(tc.in), &c)
			if (err != nil) != tc.err || (!tc.err && c.MaxDuration != tc.want) {
				t.Fatalf("Unmarshal(%s) = %v, %v; want %v (error %v)", tc.in, c.MaxDuration, err, tc.want, tc.err)
			}
		})
	}
}
