package runs

import (
	"cmp"
	"fmt"
	"time"

	"github.com/agentq/agentq/jobs"
)

// Limits of Config.
const (
	// RetentionMin is the shortest Retention accepted: finished runs are
	// kept this long for `agentq run show`.
	RetentionMin = time.Minute
	// MaxOutputBytesLimit is the largest MaxOutputBytes accepted (64 MiB):
	// a step's output is stored in its run's state, one Redis value that
	// every step of the run reads and writes again.
	MaxOutputBytesLimit = 64 << 20
)

// Validate reports the first of Retention, MaxOutputBytes and MaxSteps
// that New refuses, after filling the defaults (zero fields are valid).
// Messages start with the setting's snake_case name; package config
// applies them to the runs.* keys. New also checks the workflows (see
// Workflow.Validate).
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) withDefaults() Config {
	c.Retention = cmp.Or(c.Retention, RetentionDefault)
	c.MaxOutputBytes = cmp.Or(c.MaxOutputBytes, MaxOutputBytesDefault)
	c.MaxSteps = cmp.Or(c.MaxSteps, MaxStepsDefault)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Retention < RetentionMin:
		return fmt.Errorf("retention must be at least %s (finished runs are kept this long for run show), got %s",
			jobs.FormatDuration(RetentionMin), jobs.FormatDuration(c.Retention))
	case c.MaxOutputBytes < 1:
		return fmt.Errorf("max_output_bytes must be at least 1, got %d", c.MaxOutputBytes)
	case c.MaxOutputBytes > MaxOutputBytesLimit:
		return fmt.Errorf("max_output_bytes must be at most %d (64 MiB), got %d", MaxOutputBytesLimit, c.MaxOutputBytes)
	case c.MaxSteps < 1:
		return fmt.Errorf("max_steps must be at least 1, got %d", c.MaxSteps)
	}
	return nil
}
