package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
	"github.com/agentq/agentq/runs"
)

// FieldError is a bad configuration value. Its message names the key, the value
// (secrets masked) and, when known, where the value came from.
type FieldError struct {
	// Key is the dotted key, e.g. "retry.base".
	Key string
	// Source is where the value came from: "agentq.yaml, line 3", "AGENTQ_RETRY_BASE",
	// "--concurrency"; empty for defaults and for a Config checked by Validate.
	Source string
	// Reason says what is wrong, quoting the value.
	Reason string
}

// Error returns e.g. `config: retry.base: "abc" is not a duration (from AGENTQ_RETRY_BASE)`.
func (e *FieldError) Error() string {
	msg := "config: " + e.Key + ": " + e.Reason
	if e.Source != "" {
		msg += " (from " + e.Source + ")"
	}
	return msg
}

// Validate checks every field of c and returns all problems joined, each a
// *FieldError, or nil. It also checks that the TLS files named exist.
func (c Config) Validate() error {
	return c.validate(nil)
}

// checker collects the problems found by validate.
type checker struct {
	source func(key string) string // may be nil
	errs   []error
}

func (ch *checker) fail(key, format string, args ...any) {
	e := &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)}
	if ch.source != nil {
		e.Source = ch.source(key)
	}
	ch.errs = append(ch.errs, e)
}

// setFrom is " (set in SOURCE)" for key when its source is known, else "".
func (ch *checker) setFrom(key string) string {
	if ch.source == nil {
		return ""
	}
	if s := ch.source(key); s != "" {
		return " (set in " + s + ")"
	}
	return ""
}

func (c Config) validate(source func(key string) string) error {
	ch := &checker{source: source}

	r := c.Redis
	ch.redisURL("redis.url", r.URL, r.ClusterAddrs)
	for _, a := range r.ClusterAddrs {
		ch.hostPort("redis.cluster_addrs", a, true)
	}
	ch.file("redis.tls.ca_file", r.TLS.CAFile)
	ch.file("redis.tls.cert_file", r.TLS.CertFile)
	ch.file("redis.tls.key_file", r.TLS.KeyFile)
	if r.TLS.CertFile != "" && r.TLS.KeyFile == "" {
		ch.fail("redis.tls.key_file", "must be set when redis.tls.cert_file is")
	}
	if r.TLS.KeyFile != "" && r.TLS.CertFile == "" {
		ch.fail("redis.tls.cert_file", "must be set when redis.tls.key_file is")
	}
	ch.positive("redis.dial_timeout", r.DialTimeout)
	ch.positive("redis.read_timeout", r.ReadTimeout)
	ch.positive("redis.write_timeout", r.WriteTimeout)
	ch.atLeast("redis.pool_size", int64(r.PoolSize), 0)

	ch.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ch.oneOf("log.format", c.Log.Format, "auto", "json", "console")

	ch.positive("retry.base", c.Retry.Base)
	ch.positive("retry.max", c.Retry.Max)
	if c.Retry.Max > 0 && c.Retry.Max < c.Retry.Base {
		ch.fail("retry.max", "%s is less than retry.base %s", formatDuration(c.Retry.Max), formatDuration(c.Retry.Base))
	}
	ch.atLeast("retry.max_attempts", int64(c.Retry.MaxAttempts), 1)

	if ch.positive("enqueue.dedupe_window", c.Enqueue.DedupeWindow) {
		ch.component("enqueue.dedupe_window", queue.ClientConfig{DedupeWindow: c.Enqueue.DedupeWindow}.Validate())
	}
	if ch.atLeast("enqueue.max_payload_bytes", int64(c.Enqueue.MaxPayloadBytes), 1) {
		ch.component("enqueue.max_payload_bytes", queue.ClientConfig{MaxPayloadBytes: c.Enqueue.MaxPayloadBytes}.Validate())
	}
	ch.queueName("enqueue.queue", c.Enqueue.Queue)

	w := c.Worker
	ch.atLeast("worker.concurrency", int64(w.Concurrency), 1)
	if len(w.Queues) == 0 {
		ch.fail("worker.queues", "must name at least one queue")
	}
	for _, name := range slices.Sorted(maps.Keys(w.Queues)) {
		ch.queueName("worker.queues", name)
		if p := w.Queues[name]; p < 1 {
			ch.fail("worker.queues", "priority of queue %q must be at least 1, got %d", name, p)
		}
	}
	ch.positive("worker.poll_interval", w.PollInterval)
	ch.positive("worker.delayed_check_interval", w.DelayedCheckInterval)
	ch.positive("worker.shutdown_timeout", w.ShutdownTimeout)
	if w.RecoverInterval < 0 {
		ch.fail("worker.recover_interval", "must not be negative (0 turns the lease sweeper off), got %v", w.RecoverInterval)
	}
	// The grace matters only while the sweeper runs; 0 is refused like
	// any other duration set to 0 (queue would read it as its default).
	if w.RecoverInterval > 0 && ch.positive("worker.recover_grace", w.RecoverGrace) {
		ch.component("worker.recover_grace", w.Recover().Validate())
	}
	if w.MetricsAddr != "" {
		ch.hostPort("worker.metrics_addr", w.MetricsAddr, false)
	}
	if w.Loops < 0 {
		ch.fail("worker.loops", "must not be negative (0 sizes it to the machine), got %d", w.Loops)
	} else if w.Loops > 0 && w.Concurrency >= 1 {
		ch.component("worker.loops", queue.WorkerConfig{Concurrency: w.Concurrency, Loops: w.Loops}.Validate())
	}
	ch.component("worker.completion_fold", queue.WorkerConfig{CompletionFold: w.CompletionFold}.Validate())
	if w.UnknownKindWait < 0 {
		ch.fail("worker.unknown_kind_wait", "must not be negative (0 dead-letters a job of an unknown kind at once), got %v", w.UnknownKindWait)
	}

	d := c.Dashboard
	ch.hostPort("dashboard.addr", d.Addr, false)
	// The key left unset has no source to name: the message names the
	// variable that sets it (compose users set variables) and where the
	// other key was set.
	if d.BasicAuthPassword != "" && d.BasicAuthUser == "" {
		ch.fail("dashboard.basic_auth_user", "must be set (in the config file or %s) when dashboard.basic_auth_password is%s",
			envName("dashboard.basic_auth_user"), ch.setFrom("dashboard.basic_auth_password"))
	}
	if d.BasicAuthUser != "" && d.BasicAuthPassword == "" {
		ch.fail("dashboard.basic_auth_password", "must be set (in the config file or %s) when dashboard.basic_auth_user is%s",
			envName("dashboard.basic_auth_password"), ch.setFrom("dashboard.basic_auth_user"))
	}

	if ch.positive("http.timeout", c.HTTP.Timeout) && (handlers.Config{Timeout: c.HTTP.Timeout}).Validate() != nil {
		ch.fail("http.timeout", "must be at most %s (the longest timeout a payload may ask for), got %s",
			formatDuration(handlers.MaxTimeoutDefault), formatDuration(c.HTTP.Timeout))
	}
	ch.atLeast("http.max_response_bytes", c.HTTP.MaxResponseBytes, 1)
	ch.names("http.redact_headers", c.HTTP.RedactHeaders)
	ch.names("http.redact_fields", c.HTTP.RedactFields)

	ch.webhookURL("alerts.webhook_url", c.Alerts.WebhookURL)

	if c.DLQ.RetentionAge < 0 {
		ch.fail("dlq.retention_age", "must not be negative (0 keeps dead letters forever), got %v", c.DLQ.RetentionAge)
	} else {
		ch.component("dlq.retention_age", dlq.Config{RetentionAge: c.DLQ.RetentionAge}.Validate())
	}
	ch.atLeast("dlq.retention_count", int64(c.DLQ.RetentionCount), 0)
	if ch.positive("dlq.reconcile_interval", c.DLQ.ReconcileInterval) {
		ch.component("dlq.reconcile_interval", dlq.Config{ReconcileInterval: c.DLQ.ReconcileInterval}.Validate())
	}
	if ch.positive("dlq.grace", c.DLQ.Grace) {
		ch.component("dlq.grace", dlq.Config{Grace: c.DLQ.Grace}.Validate())
	}
	if ch.positive("ledger.retention", c.Ledger.Retention) {
		ch.component("ledger.retention", ledger.Config{Retention: c.Ledger.Retention}.Validate())
	}

	b := c.Breakers
	ch.breaker("breakers", Breaker{Failures: b.Failures, FailureRate: b.FailureRate, RateWindow: b.RateWindow,
		MinCalls: b.MinCalls, Cooldown: b.Cooldown}, false)
	for _, name := range slices.Sorted(maps.Keys(b.Overrides)) {
		key := overridesKey + "." + name
		if strings.TrimSpace(name) == "" {
			ch.fail(overridesKey+`.""`, "dependency name must not be empty")
			continue
		}
		ch.breaker(key, b.Overrides[name], true)
	}

	if ch.positive("runs.retention", c.Runs.Retention) {
		ch.component("runs.retention", runs.Config{Retention: c.Runs.Retention}.Validate())
	}
	if ch.atLeast("runs.max_output_bytes", int64(c.Runs.MaxOutputBytes), 1) {
		ch.component("runs.max_output_bytes", runs.Config{MaxOutputBytes: c.Runs.MaxOutputBytes}.Validate())
	}
	if ch.atLeast("runs.max_steps", int64(c.Runs.MaxSteps), 1) {
		ch.component("runs.max_steps", runs.Config{MaxSteps: c.Runs.MaxSteps}.Validate())
	}

	ch.llm(c.LLM)

	for _, name := range slices.Sorted(maps.Keys(c.Workflows)) {
		ch.workflow(name, c.Workflows[name], c.Retry)
		ch.runWorkflow(c, name, c.Workflows[name])
	}
	return errors.Join(ch.errs...)
}

// llm checks llm.providers and llm.models: names, then handlers' own rules
// for llm.chat's configuration when handlers has them.
func (ch *checker) llm(l LLM) {
	for _, name := range slices.Sorted(maps.Keys(l.Providers)) {
		if strings.TrimSpace(name) == "" {
			ch.fail(providersKey+`.""`, "provider name must not be empty")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(l.Models)) {
		if strings.TrimSpace(name) == "" {
			ch.fail(modelsKey+`.""`, "model name must not be empty")
		}
	}
	// handlers.LLMConfig.Validate holds the rules (base URLs, a model's
	// provider, prices); this builds with or without it.
	if v, ok := any(l.Handlers()).(interface{ Validate() error }); ok {
		for _, err := range unwrapJoined(v.Validate()) {
			// "llm.models.m.provider: reason": the key names the line.
			key, reason, ok := strings.Cut(err.Error(), ": ")
			if !ok || !strings.HasPrefix(key, llmKey+".") {
				key, reason = llmKey, err.Error()
			}
			ch.fail(key, "%s", reason)
		}
	}
}

// runWorkflow checks what a workflow defines for runs: caps and a schedule
// need steps, and the steps are checked with package runs' rules (names,
// fallbacks, templates, caps, schedule). Kinds are not checked here: a Go
// program registers its own, so agentq.New checks them against its
// registry. Each problem names the key of the value and, loaded from a
// file, its line.
func (ch *checker) runWorkflow(c Config, name string, w Workflow) {
	prefix := workflowKey(name)
	if !w.IsRun() {
		if w.Caps != (Caps{}) {
			ch.failAt(c, prefix+".caps", "needs steps: caps bound the runs of a workflow that defines steps")
		}
		if !isZeroSchedule(w.Schedule) {
			ch.failAt(c, prefix+".schedule", "needs steps: a schedule starts runs of a workflow that defines steps")
		}
		return
	}
	ch.errs = append(ch.errs, RunErrors(c, name, w.Run(name).Validate(func(string) bool { return true }))...)
}

// flatten returns the errors joined in err, however deeply.
func flatten(err error) []error {
	var out []error
	for _, e := range unwrapJoined(err) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				out = append(out, flatten(inner)...)
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// failAt is fail with the source taken from c's origins (nearest key).
func (ch *checker) failAt(c Config, key, format string, args ...any) {
	e := &FieldError{Key: key, Reason: fmt.Sprintf(format, args...), Source: c.Origin(key)}
	if e.Source == "" && ch.source != nil {
		e.Source = ch.source(key)
	}
	ch.errs = append(ch.errs, e)
}

// RunErrors turns err, from package runs' validation of the workflow
// named name (runs.Workflow.Validate), into one *FieldError per problem:
// each *runs.FieldError's path, relative to the workflow, becomes the key
// workflows.<name>.<path>, with where the config file sets it. Other
// errors are kept under the workflow's key. agentq.New uses it for the
// kinds it checks.
func RunErrors(c Config, name string, err error) []error {
	prefix := workflowKey(name)
	var out []error
	for _, e := range flatten(err) {
		key, reason := prefix, e.Error()
		var fe *runs.FieldError
		if errors.As(e, &fe) {
			reason = fe.Reason
			if fe.Path != "" {
				key = prefix + "." + fe.Path
			}
		}
		out = append(out, &FieldError{Key: key, Source: c.Origin(key), Reason: reason})
	}
	return out
}

// breaker checks one set of breaker settings under prefix with the breaker
// package's rules, one field at a time so that every bad field is named
// (breaker.Settings.Validate reports the first). A zero field is config's
// own case: with inherit it takes the global value; without, it is
// refused, as breaker would read it as its default, which a key set to 0
// does not mean.
func (ch *checker) breaker(prefix string, b Breaker, inherit bool) {
	field := func(name string, zero bool, def any, s breaker.Settings) {
		key := prefix + "." + name
		switch {
		case zero && inherit:
		case zero:
			ch.fail(key, "must not be 0 (leave it out for the default, %v)", def)
		default:
			ch.component(key, s.Validate())
		}
	}
	field("failures", b.Failures == 0, breaker.FailuresDefault, breaker.Settings{Failures: b.Failures})
	field("failure_rate", b.FailureRate == 0, formatFloat(breaker.FailureRateDefault), breaker.Settings{FailureRate: b.FailureRate})
	field("rate_window", b.RateWindow == 0, formatDuration(breaker.RateWindowDefault), breaker.Settings{RateWindow: b.RateWindow})
	field("min_calls", b.MinCalls == 0, breaker.MinCallsDefault, breaker.Settings{MinCalls: b.MinCalls})
	field("cooldown", b.Cooldown == 0, formatDuration(breaker.CooldownDefault), breaker.Settings{Cooldown: b.Cooldown})
}

// budget checks a workflow's error budget. An SLO of 0 turns it off, so the other
// fields then must be left out.
func (ch *checker) budget(prefix string, b Budget) {
	if b.SLO == 0 {
		if b != (Budget{}) {
			ch.fail(prefix+".slo", "must be set (between 0 and 1, e.g. 0.99) when other budget keys are")
		}
		return
	}
	if b.SLO <= 0 || b.SLO >= 1 {
		ch.fail(prefix+".slo", "must be between 0 and 1 (exclusive), e.g. 0.99, got %s", formatFloat(b.SLO))
	}
	if b.Window != 0 {
		ch.component(prefix+".window", budget.Policy{SLO: 0.5, Window: b.Window}.Validate())
	}
	if b.MinEvents < 0 {
		ch.fail(prefix+".min_events", "must not be negative (leave it out for 20), got %d", b.MinEvents)
	}
	if b.OnExhausted != "" {
		ch.oneOf(prefix+".on_exhausted", b.OnExhausted, "alert", "pause", "reject")
	}
}

// positive refuses a duration that is not above 0 and reports whether d is.
func (ch *checker) positive(key string, d time.Duration) bool {
	if d <= 0 {
		ch.fail(key, "must be greater than 0, got %s", formatDuration(d))
		return false
	}
	return true
}

// component reports err, a component's refusal of key's value, under key.
// The component's message starts with its own name for the setting, the
// last part of key, which is dropped: "dedupe_window must be at least 1s,
// got 500ms" becomes "enqueue.dedupe_window: must be at least 1s, got 500ms".
func (ch *checker) component(key string, err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	name := key[strings.LastIndex(key, ".")+1:]
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, name+": "), name+" ")
	ch.fail(key, "%s", msg)
}

// atLeast refuses n below lo and reports whether n is at least lo.
func (ch *checker) atLeast(key string, n, lo int64) bool {
	if n < lo {
		ch.fail(key, "must be at least %d, got %d", lo, n)
		return false
	}
	return true
}

func (ch *checker) oneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		ch.fail(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// queueName checks a queue name with queue's rule.
func (ch *checker) queueName(key, name string) {
	if err := queue.CheckQueueName(name); err != nil {
		ch.fail(key, "%v", err)
	}
}

func (ch *checker) names(key string, names []string) {
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			ch.fail(key, "names must not be empty")
			return
		}
	}
}

// hostPort checks a host:port address; needHost refuses ":8080".
func (ch *checker) hostPort(key, addr string, needHost bool) {
	if reason := checkHostPort(addr, needHost); reason != "" {
		ch.fail(key, "%s", reason)
	}
}

func checkHostPort(addr string, needHost bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", addr)
	}
	if needHost && host == "" {
		return fmt.Sprintf("%q has no host", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q has an invalid port %q", addr, port)
	}
	return ""
}

// file checks that a file named by key exists, when one is named.
func (ch *checker) file(key, path string) {
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ch.fail(key, "%q does not exist", path)
	case err != nil:
		ch.fail(key, "%q cannot be read: %v", path, errors.Unwrap(err))
	case st.IsDir():
		ch.fail(key, "%q is a directory, not a file", path)
	}
}

// redisURL checks redis.url with queue's own parser (go-redis's ParseURL,
// ParseClusterURL and ParseFailoverURL): one rule for what a Redis URL is.
func (ch *checker) redisURL(key, raw string, clusterAddrs []string) {
	if raw == "" {
		// An empty environment variable is unset; an empty flag is a
		// mistake (--redis-url "$UNSET"), and the default Redis may be
		// somebody else's.
		if ch.source != nil && strings.HasPrefix(ch.source(key), "--") {
			ch.fail(key, "is empty: give a Redis URL, or leave the flag out to use %s", queue.RedisURLDefault)
		}
		return
	}
	if err := (queue.RedisConfig{URL: raw, ClusterAddrs: clusterAddrs}).Validate(); err != nil {
		ch.fail(key, "%s", strings.TrimPrefix(err.Error(), key+": "))
	}
}

func (ch *checker) webhookURL(key, raw string) {
	if raw == "" {
		return
	}
	shown := maskURL(raw, true)
	u, reason := redact.ParseURL(raw)
	switch {
	case reason != "":
		ch.fail(key, "%s is not a valid URL: %s", shown, reason)
	case u.Scheme != "http" && u.Scheme != "https":
		ch.fail(key, "%s must be an http:// or https:// URL", shown)
	case u.Host == "":
		ch.fail(key, "%s has no host", shown)
	}
}

// workflow checks one workflow; its retry must be valid once zero fields take the
// global retry's values.
func (ch *checker) workflow(name string, w Workflow, global Retry) {
	prefix := workflowKey(name)
	if name == "" {
		ch.fail(prefix, "workflow name must not be empty")
	}
	if w.Queue != "" {
		ch.queueName(prefix+".queue", w.Queue)
	}
	if w.Retry.Base < 0 {
		ch.fail(prefix+".retry.base", "must not be negative (leave it out to inherit retry.base), got %s", formatDuration(w.Retry.Base))
	}
	if w.Retry.Max < 0 {
		ch.fail(prefix+".retry.max", "must not be negative (leave it out to inherit retry.max), got %s", formatDuration(w.Retry.Max))
	}
	if w.Retry.MaxAttempts < 0 {
		ch.fail(prefix+".retry.max_attempts", "must not be negative (leave it out to inherit retry.max_attempts), got %d", w.Retry.MaxAttempts)
	}
	ch.budget(prefix+".budget", w.Budget)
	if w.Budget.SLO > 0 && w.Budget.OnExhausted == "pause" && w.Queue == "" {
		ch.fail(prefix+".budget.on_exhausted", "pause needs %s.queue: a queue of the workflow's own (pausing enqueue.queue would stop every workflow)", prefix)
	}
	eff := w.Retry.inherit(global)
	if eff.Base <= 0 || eff.Max <= 0 || eff.Max >= eff.Base {
		return
	}
	if w.Retry.Max != 0 {
		ch.fail(prefix+".retry.max", "%s is less than the workflow's retry base %s", formatDuration(eff.Max), formatDuration(eff.Base))
	} else {
		ch.fail(prefix+".retry.base", "%s is greater than retry.max %s, which the workflow inherits", formatDuration(eff.Base), formatDuration(eff.Max))
	}
}
