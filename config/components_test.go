package config

import (
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// TestConfigAgreesWithComponents: for each key whose rule a component
// owns, a value the component accepts is accepted by Validate and a value
// it refuses is refused, naming the key. The component's verdict is
// checked too, so that a rule changed in the component without config
// following (or the reverse) fails here.
func TestConfigAgreesWithComponents(t *testing.T) {
	t.Parallel()
	type value struct {
		set       func(*Config)
		component error // the component's verdict on the value
	}
	dur := func(set func(*Config, time.Duration), check func(time.Duration) error) func(time.Duration) value {
		return func(d time.Duration) value {
			return value{set: func(c *Config) { set(c, d) }, component: check(d)}
		}
	}
	num := func(set func(*Config, int), check func(int) error) func(int) value {
		return func(n int) value {
			return value{set: func(c *Config) { set(c, n) }, component: check(n)}
		}
	}
	rate := func(set func(*Config, float64), check func(float64) error) func(float64) value {
		return func(f float64) value {
			return value{set: func(c *Config) { set(c, f) }, component: check(f)}
		}
	}
	retention := dur(func(c *Config, d time.Duration) { c.Runs.Retention = d },
		func(d time.Duration) error { return runs.Config{Retention: d}.Validate() })
	maxOutput := num(func(c *Config, n int) { c.Runs.MaxOutputBytes = n },
		func(n int) error { return runs.Config{MaxOutputBytes: n}.Validate() })
	maxSteps := num(func(c *Config, n int) { c.Runs.MaxSteps = n },
		func(n int) error { return runs.Config{MaxSteps: n}.Validate() })
	maxPayload := num(func(c *Config, n int) { c.Enqueue.MaxPayloadBytes = n },
		func(n int) error { return queue.ClientConfig{MaxPayloadBytes: n}.Validate() })
	grace := dur(func(c *Config, d time.Duration) { c.Worker.RecoverGrace = d },
		func(d time.Duration) error {
			return queue.RecoverConfig{Interval: queue.RecoverIntervalDefault, Grace: d}.Validate()
		})
	failures := num(func(c *Config, n int) { c.Breakers.Failures = n },
		func(n int) error { return breaker.Settings{Failures: n}.Validate() })
	failureRate := rate(func(c *Config, f float64) { c.Breakers.FailureRate = f },
		func(f float64) error { return breaker.Settings{FailureRate: f}.Validate() })
	rateWindow := dur(func(c *Config, d time.Duration) { c.Breakers.RateWindow = d },
		func(d time.Duration) error { return breaker.Settings{RateWindow: d}.Validate() })
	minCalls := num(func(c *Config, n int) { c.Breakers.MinCalls = n },
		func(n int) error { return breaker.Settings{MinCalls: n}.Validate() })
	cooldown := dur(func(c *Config, d time.Duration) { c.Breakers.Cooldown = d },
		func(d time.Duration) error { return breaker.Settings{Cooldown: d}.Validate() })
	override := num(func(c *Config, n int) { c.Breakers.Overrides = map[string]Breaker{"api": {MinCalls: n}} },
		func(n int) error { return breaker.Settings{MinCalls: n}.Validate() })

	for _, tc := range []struct {
		name, key         string
		accepted, refused value
	}{
		{"runs retention", "runs.retention", retention(runs.RetentionMin), retention(30 * time.Second)},
		{"runs output at and over the limit", "runs.max_output_bytes", maxOutput(runs.MaxOutputBytesLimit), maxOutput(100 << 20)},
		{"runs negative output", "runs.max_output_bytes", maxOutput(1), maxOutput(-1)},
		{"runs steps", "runs.max_steps", maxSteps(1), maxSteps(-1)},
		{"payload at and over the limit", "enqueue.max_payload_bytes", maxPayload(queue.MaxPayloadBytesLimit), maxPayload(100 << 20)},
		{"recover grace", "worker.recover_grace", grace(queue.RecoverGraceMin), grace(time.Second)},
		{"breaker failures", "breakers.failures", failures(1), failures(-1)},
		{"breaker failure rate over 1", "breakers.failure_rate", failureRate(1), failureRate(1.5)},
		{"breaker failure rate negative", "breakers.failure_rate", failureRate(0.01), failureRate(-0.5)},
		{"breaker rate window", "breakers.rate_window", rateWindow(time.Second), rateWindow(500 * time.Millisecond)},
		{"breaker min calls", "breakers.min_calls", minCalls(1), minCalls(-3)},
		{"breaker cooldown", "breakers.cooldown", cooldown(time.Millisecond), cooldown(-time.Second)},
		{"breaker override min calls", "breakers.overrides.api.min_calls", override(1), override(-3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.accepted.component != nil {
				t.Fatalf("the component refuses the accepted value: %v", tc.accepted.component)
			}
			if tc.refused.component == nil {
				t.Fatal("the component accepts the refused value")
			}
			c := Default()
			tc.accepted.set(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate refuses a value the component accepts: %v", err)
			}
			c = Default()
			tc.refused.set(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), "config: "+tc.key+": ") {
				t.Errorf("Validate = %v, want an error naming %s (the component says %q)", err, tc.key, tc.refused.component)
			}
		})
	}
}

// TestDefaultTakesComponentConstants: the Redis defaults are queue's.
func TestDefaultTakesComponentConstants(t *testing.T) {
	t.Parallel()
	r := Default().Redis
	if r.DialTimeout != queue.RedisDialTimeoutDefault || r.ReadTimeout != queue.RedisReadTimeoutDefault ||
		r.WriteTimeout != queue.RedisWriteTimeoutDefault {
		t.Errorf("Default().Redis timeouts = %v, %v, %v, want queue's", r.DialTimeout, r.ReadTimeout, r.WriteTimeout)
	}
	if DefaultRedisURL != queue.RedisURLDefault {
		t.Errorf("DefaultRedisURL = %q, want queue's %q", DefaultRedisURL, queue.RedisURLDefault)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}
