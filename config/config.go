package config

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/dashboard"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// DefaultRedisURL is the Redis address used by commands that need a server when
// redis.url is not configured: queue's RedisURLDefault.
const DefaultRedisURL = queue.RedisURLDefault

// Config is agentq's effective configuration. Keys are the snake_case of the field
// names, nested with dots: worker.poll_interval, redis.tls.ca_file and so on.
type Config struct {
	// Redis says how to reach the Redis server. Defaults: see Redis.
	Redis Redis `mapstructure:"redis"`
	// Log sets the log level and format. Defaults: see Log.
	Log Log `mapstructure:"log"`
	// Retry is the retry policy of steps that set none of their own. Defaults: see Retry.
	Retry Retry `mapstructure:"retry"`
	// Enqueue sets how jobs are enqueued. Defaults: see Enqueue.
	Enqueue Enqueue `mapstructure:"enqueue"`
	// Worker sets how jobs are processed. Defaults: see Worker.
	Worker Worker `mapstructure:"worker"`
	// Dashboard sets the web dashboard. Defaults: see Dashboard.
	Dashboard Dashboard `mapstructure:"dashboard"`
	// HTTP sets outbound HTTP steps. Defaults: see HTTP.
	HTTP HTTP `mapstructure:"http"`
	// Alerts sets where alerts are sent. Defaults: see Alerts.
	Alerts Alerts `mapstructure:"alerts"`
	// DLQ sets the dead-letter store. Defaults: see DLQ.
	DLQ DLQ `mapstructure:"dlq"`
	// Ledger sets the idempotency ledger. Defaults: see Ledger.
	Ledger Ledger `mapstructure:"ledger"`
	// Breakers sets the circuit breakers kept per dependency (an http.call's URL
	// host, or a name a handler gives). Defaults: see Breakers.
	Breakers Breakers `mapstructure:"breakers"`
	// Runs sets how agent runs are kept. Defaults: see Runs.
	Runs Runs `mapstructure:"runs"`
	// LLM names the model providers and models llm.chat steps use; it is read
	// from the config file only. Default: none.
	LLM LLM `mapstructure:"llm"`
	// Workflows holds per-workflow settings by workflow name; it is read from the
	// config file only. Default: none.
	Workflows map[string]Workflow `mapstructure:"workflows"`

	// origins maps the keys of run workflows (steps, caps, schedule and
	// every value of a payload) to where the config file sets them,
	// "agentq.yaml, line 14"; see Origin.
	origins map[string]string
}

// Runs sets how agent runs are kept.
type Runs struct {
	// Retention is how long a finished run's state is kept; at least
	// runs.RetentionMin (1m). Default: 720h (30 days).
	Retention time.Duration `mapstructure:"retention"`
	// MaxOutputBytes bounds a step's stored output; a larger output fails the
	// attempt (permanent). At most runs.MaxOutputBytesLimit (64 MiB).
	// Default: 262144 (256 KiB).
	MaxOutputBytes int `mapstructure:"max_output_bytes"`
	// MaxSteps bounds the steps of any run, steps added at run time included,
	// whatever its caps. Default: 100.
	MaxSteps int `mapstructure:"max_steps"`
}

// LLM is llm.providers and llm.models: the OpenAI-compatible endpoints
// llm.chat calls and the model names its steps use. Names may hold dots.
type LLM struct {
	// Providers are the endpoints by name. Default: none.
	Providers map[string]LLMProvider `mapstructure:"providers"`
	// Models are the model names steps use (payload "model"). Default: none.
	Models map[string]LLMModel `mapstructure:"models"`
}

// LLMProvider is one OpenAI-compatible chat completions endpoint.
type LLMProvider struct {
	// BaseURL is the API root, e.g. https://api.openai.com/v1. Default: "".
	BaseURL string `mapstructure:"base_url"`
	// APIKeyEnv names the environment variable holding the API key, read when
	// a step runs; empty sends no key. Default: "".
	APIKeyEnv string `mapstructure:"api_key_env"`
}

// LLMModel is one model name steps use.
type LLMModel struct {
	// Provider names an entry of llm.providers. Default: "".
	Provider string `mapstructure:"provider"`
	// Model is the provider's model id, e.g. gpt-4o-mini. Default: "".
	Model string `mapstructure:"model"`
	// InputPerMTok is the price in US dollars per million prompt tokens. Default: 0.
	InputPerMTok float64 `mapstructure:"input_per_mtok"`
	// OutputPerMTok is the price in US dollars per million completion tokens. Default: 0.
	OutputPerMTok float64 `mapstructure:"output_per_mtok"`
}

// Handlers returns llm.chat's configuration (handlers.Config.LLM).
func (l LLM) Handlers() handlers.LLMConfig {
	var out handlers.LLMConfig
	if len(l.Providers) > 0 {
		out.Providers = make(map[string]handlers.LLMProvider, len(l.Providers))
		for name, p := range l.Providers {
			out.Providers[name] = handlers.LLMProvider{BaseURL: p.BaseURL, APIKeyEnv: p.APIKeyEnv}
		}
	}
	if len(l.Models) > 0 {
		out.Models = make(map[string]handlers.LLMModel, len(l.Models))
		for name, m := range l.Models {
			out.Models[name] = handlers.LLMModel{Provider: m.Provider, Model: m.Model,
				InputPerMTok: m.InputPerMTok, OutputPerMTok: m.OutputPerMTok}
		}
	}
	return out
}

// Redis says how to reach the Redis server.
type Redis struct {
	// URL is redis://[user:pass@]host:port/db, rediss://..., redis-sentinel://[:pass@]h1:p1,h2:p2/db?master=NAME
	// or redis-socket:///path?db=N. Empty means not configured: callers decide
	// (`agentq dev` embeds a server, others use DefaultRedisURL). Default: "".
	URL string `mapstructure:"url"`
	// Username is the ACL user name; it overrides the URL's. Default: "".
	Username string `mapstructure:"username"`
	// Password is a secret; it overrides the URL's password. Default: "".
	Password string `mapstructure:"password"`
	// ClusterAddrs, when non-empty, selects Redis Cluster with these host:port seed
	// addresses; URL must then be empty or give only the scheme and credentials
	// (rediss://user:pass@). Default: none.
	ClusterAddrs []string `mapstructure:"cluster_addrs"`
	// TLS sets client TLS. Defaults: see TLS.
	TLS TLS `mapstructure:"tls"`
	// DialTimeout bounds establishing a connection. Default: 5s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// ReadTimeout bounds a socket read. Default: 3s.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds a socket write. Default: 3s.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// PoolSize is the connection pool size; 0 keeps the client library's default. Default: 0.
	PoolSize int `mapstructure:"pool_size"`
}

// TLS sets client TLS for Redis.
type TLS struct {
	// Enabled turns TLS on (a rediss:// URL turns it on too). Default: false.
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM bundle of CAs to trust instead of the system pool. Default: "".
	CAFile string `mapstructure:"ca_file"`
	// CertFile is the PEM client certificate; it needs KeyFile. Default: "".
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the PEM client key; it needs CertFile. Default: "".
	KeyFile string `mapstructure:"key_file"`
	// ServerName overrides the name checked in the server certificate. Default: "".
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify turns off server certificate checks; for tests only. Default: false.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// Log sets logging.
type Log struct {
	// Level is one of debug, info, warn, error. Default: "info".
	Level string `mapstructure:"level"`
	// Format is one of auto (console on a terminal, JSON otherwise), json, console. Default: "auto".
	Format string `mapstructure:"format"`
}

// Retry is a retry policy: exponential backoff from Base, capped at Max, for at most
// MaxAttempts attempts. In a Workflow, zero fields inherit the global policy.
type Retry struct {
	// Base is the delay before the first retry. Default: 1s.
	Base time.Duration `mapstructure:"base"`
	// Max caps the delay between retries, a tool's Retry-After included (one
	// beyond Max is jittered within Max's top quarter); it must be at least
	// Base. Default: 10m.
	Max time.Duration `mapstructure:"max"`
	// MaxAttempts counts all attempts, the first included. Default: 10.
	MaxAttempts int `mapstructure:"max_attempts"`
}

// MaxPayloadBytesLimit is the largest enqueue.max_payload_bytes allowed:
// queue's MaxPayloadBytesLimit (64 MiB), which says why.
const MaxPayloadBytesLimit = queue.MaxPayloadBytesLimit

// Enqueue sets how jobs are enqueued.
type Enqueue struct {
	// DedupeWindow is how long an idempotency key refuses a duplicate job. Default: 24h.
	DedupeWindow time.Duration `mapstructure:"dedupe_window"`
	// MaxPayloadBytes refuses larger payloads at enqueue; at most
	// MaxPayloadBytesLimit (64 MiB). Default: 262144 (256 KiB).
	MaxPayloadBytes int `mapstructure:"max_payload_bytes"`
	// Queue is the queue of jobs that name none. Default: "default".
	Queue string `mapstructure:"queue"`
}

// Worker sets how jobs are processed.
type Worker struct {
	// Concurrency is the number of jobs processed at once. Default: 10.
	Concurrency int `mapstructure:"concurrency"`
	// Queues maps queue names to priorities (at least 1). From the environment or a
	// flag it is written "q1=6,q2=1". Default: {"default": 1}.
	Queues map[string]int `mapstructure:"queues"`
	// StrictPriority drains higher-priority queues first instead of weighting them. Default: false.
	StrictPriority bool `mapstructure:"strict_priority"`
	// PollInterval is how long an idle worker waits before polling again. Default: 10ms.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// DelayedCheckInterval is how often scheduled and retry jobs are moved to pending. Default: 1s.
	DelayedCheckInterval time.Duration `mapstructure:"delayed_check_interval"`
	// ShutdownTimeout is how long running jobs get to finish on shutdown. Default: 30s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// MetricsAddr is the host:port serving Prometheus metrics; empty turns them off. Default: "".
	MetricsAddr string `mapstructure:"metrics_addr"`
	// RecoverInterval is how often a worker brings back tasks whose worker died (lease
	// expired RecoverGrace ago); 0 turns the lease sweeper off, leaving them to asynq's
	// recoverer (60-120s). Recover maps it to queue's RecoverConfig. Default: 5s.
	RecoverInterval time.Duration `mapstructure:"recover_interval"`
	// RecoverGrace is how long past its 30s lease a dead worker's task waits, room for
	// clock skew between workers and Redis; at least queue.RecoverGraceMin (5s).
	// Default: 10s.
	RecoverGrace time.Duration `mapstructure:"recover_grace"`
	// Loops is how many dequeue loops (asynq servers) share Concurrency in one
	// worker process; asynqmon lists each as a server with the same host and pid.
	// 0 sizes it to the machine: twice GOMAXPROCS, at least 2, at most 8 and at most
	// Concurrency. Default: 0.
	Loops int `mapstructure:"loops"`
	// CompletionFold is "auto" to write the idempotency ledger's success record in
	// the same Lua script that completes the task in asynq (single Redis, pinned
	// asynq), or "off" to write it in a round trip of its own first. Default: "auto".
	CompletionFold string `mapstructure:"completion_fold"`
	// UnknownKindWait is how long a job whose kind this worker has no handler for
	// (a newer version's kind during a rolling deploy) is snoozed, spending no
	// attempt, for a worker that has one; then it is dead-lettered as permanent.
	// 0 dead-letters such a job at once. Default: 10m.
	UnknownKindWait time.Duration `mapstructure:"unknown_kind_wait"`
}

// Recover is the lease sweeper's queue.RecoverConfig for these settings. The
// one difference in meaning: RecoverInterval 0 is off here and the default in
// queue (where a negative Interval is off).
func (w Worker) Recover() queue.RecoverConfig {
	rc := queue.RecoverConfig{Interval: w.RecoverInterval, Grace: w.RecoverGrace}
	if rc.Interval == 0 {
		rc.Interval = -1
	}
	return rc
}

// Dashboard sets the web dashboard.
type Dashboard struct {
	// Addr is the host:port to listen on. Default: "127.0.0.1:8080".
	Addr string `mapstructure:"addr"`
	// ReadOnly hides actions that change state. Default: false.
	ReadOnly bool `mapstructure:"read_only"`
	// BasicAuthUser turns on HTTP basic auth with BasicAuthPassword. Default: "".
	BasicAuthUser string `mapstructure:"basic_auth_user"`
	// BasicAuthPassword is a secret. Default: "".
	BasicAuthPassword string `mapstructure:"basic_auth_password"`
	// BearerToken, a secret, turns on bearer-token auth. Default: "".
	BearerToken string `mapstructure:"bearer_token"`
}

// HTTP sets outbound HTTP steps.
type HTTP struct {
	// Timeout bounds one request, body included. Default: 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxResponseBytes caps the response body read; the rest of a larger
	// body is dropped (an expected status still succeeds). Default: 1048576 (1 MiB).
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
	// RedactHeaders names headers whose values are secret, besides package
	// redact's defaults (Authorization, Cookie, X-Api-Key and the like). Default: none.
	RedactHeaders []string `mapstructure:"redact_headers"`
	// RedactFields names JSON fields and query parameters whose values are secret,
	// besides package redact's defaults (token, password, sig and the like). Default: none.
	RedactFields []string `mapstructure:"redact_fields"`
}

// Alerts sets where alerts are sent.
type Alerts struct {
	// WebhookURL is an http(s) URL that alerts are POSTed to; empty turns alerts off.
	// Its query string and password are masked when printed. Default: "".
	WebhookURL string `mapstructure:"webhook_url"`
}

// DLQ sets the dead-letter store.
type DLQ struct {
	// RetentionAge drops dead letters whose last failure is older; 0 keeps
	// them forever. Every drop is logged and counted. Default: 0 (none).
	RetentionAge time.Duration `mapstructure:"retention_age"`
	// RetentionCount keeps at most this many dead letters, dropping the
	// oldest (logged and counted); 0 is no cap. Default: 0 (none).
	RetentionCount int `mapstructure:"retention_count"`
	// ReconcileInterval is how often a worker sweeps asynq's archive for dead
	// tasks the middleware never saw (lease expiry, archived by hand).
	// Default: 30s.
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// Grace is how long the reconciler leaves a fresh record alone before it
	// reads asynq's state for it. Default: 1m.
	Grace time.Duration `mapstructure:"grace"`
}

// Ledger sets the idempotency ledger.
type Ledger struct {
	// Retention is how long a recorded success answers a repeated delivery
	// of its idempotency key. Default: 168h (7 days).
	Retention time.Duration `mapstructure:"retention"`
}

// Workflow holds the settings of one workflow.
type Workflow struct {
	// Queue is the workflow's queue; empty means enqueue.queue. Default: "".
	Queue string `mapstructure:"queue"`
	// Retry is the workflow's retry policy; zero fields inherit the global retry. Default: all zero.
	Retry Retry `mapstructure:"retry"`
	// Budget is the workflow's error budget; an SLO of 0 means none. Default: none.
	Budget Budget `mapstructure:"budget"`
	// Caps bound each run of the workflow; they need Steps. Default: none.
	Caps Caps `mapstructure:"caps"`
	// Schedule starts runs of the workflow on a cron schedule; it needs
	// Steps. Default: none.
	Schedule Schedule `mapstructure:"schedule"`
	// Steps make the workflow one agent runs can start (`agentq run start`):
	// its steps, run in order. Default: none.
	Steps []Step `mapstructure:"steps"`
}

// Caps bound a run; zero means no cap (runs.Caps).
type Caps struct {
	// MaxCostUSD bounds the run's cost in US dollars. Default: 0 (none).
	MaxCostUSD float64 `mapstructure:"max_cost_usd"`
	// MaxTokens bounds the run's tokens, in and out. Default: 0 (none).
	MaxTokens int64 `mapstructure:"max_tokens"`
	// MaxDuration bounds the run's wall time from its start. Default: 0 (none).
	MaxDuration time.Duration `mapstructure:"max_duration"`
	// MaxSteps bounds how many steps start, fallbacks and added steps
	// included. Default: 0 (none but runs.max_steps).
	MaxSteps int `mapstructure:"max_steps"`
	// MaxAttempts bounds the attempts of all the run's steps together. Default: 0 (none).
	MaxAttempts int `mapstructure:"max_attempts"`
}

// Schedule starts a workflow's runs on a cron schedule (runs.Schedule).
type Schedule struct {
	// Cron is a five-field cron expression ("0 9 * * MON") or a descriptor
	// (@hourly, @every 10m). Default: "" (no schedule).
	Cron string `mapstructure:"cron"`
	// Timezone is the IANA zone the expression is read in. Default: "" (UTC).
	Timezone string `mapstructure:"timezone"`
	// Input is each run's input, written as YAML and kept as JSON. Default: {}.
	Input json.RawMessage `mapstructure:"input"`
}

// Step is one step of a workflow (jobs.StepDef).
type Step struct {
	// Name is unique within the workflow; templates see its output as
	// .steps.<name>.output. Default: "".
	Name string `mapstructure:"name"`
	// Kind is the task kind that runs it, e.g. llm.chat. Default: "".
	Kind string `mapstructure:"kind"`
	// Queue overrides the workflow's queue. Default: "" (the workflow's).
	Queue string `mapstructure:"queue"`
	// MaxAttempts overrides the workflow's retry.max_attempts. Default: 0 (inherit).
	MaxAttempts int `mapstructure:"max_attempts"`
	// RetryBase overrides the workflow's retry.base. Default: 0 (inherit).
	RetryBase time.Duration `mapstructure:"retry_base"`
	// RetryMax overrides the workflow's retry.max. Default: 0 (inherit).
	RetryMax time.Duration `mapstructure:"retry_max"`
	// Timeout bounds one attempt. Default: 0 (the kind's).
	Timeout time.Duration `mapstructure:"timeout"`
	// Fallback names the step run instead of this one when this one is
	// dead-lettered. Default: "" (none).
	Fallback string `mapstructure:"fallback"`
	// Payload is the payload template, written as YAML and kept as JSON;
	// its string values are Go templates over .input, .run_id and
	// .steps.<name>.output. Default: none.
	Payload json.RawMessage `mapstructure:"payload"`
}

// IsRun reports whether the workflow defines steps, so runs of it can start.
func (w Workflow) IsRun() bool { return len(w.Steps) > 0 }

// Run returns the workflow named name as package runs defines it. Its
// queue is as written (empty uses enqueue.queue); its retry policy is the
// client's, by workflow name.
func (w Workflow) Run(name string) runs.Workflow {
	rw := runs.Workflow{
		Name:  name,
		Queue: w.Queue,
		Caps: runs.Caps{MaxCostUSD: w.Caps.MaxCostUSD, MaxTokens: w.Caps.MaxTokens, MaxDuration: w.Caps.MaxDuration,
			MaxSteps: w.Caps.MaxSteps, MaxAttempts: w.Caps.MaxAttempts},
	}
	for _, s := range w.Steps {
		rw.Steps = append(rw.Steps, jobs.StepDef{Name: s.Name, Kind: s.Kind, Queue: s.Queue, Payload: s.Payload,
			Fallback: s.Fallback, MaxAttempts: s.MaxAttempts, RetryBase: s.RetryBase, RetryMax: s.RetryMax, Timeout: s.Timeout})
	}
	if !isZeroSchedule(w.Schedule) {
		rw.Schedule = &runs.Schedule{Cron: w.Schedule.Cron, Timezone: w.Schedule.Timezone, Input: w.Schedule.Input}
	}
	return rw
}

func isZeroSchedule(s Schedule) bool { return s.Cron == "" && s.Timezone == "" && len(s.Input) == 0 }

// RunWorkflows returns the workflows that define steps, as package runs
// defines them, by name; nil when none does.
func (c Config) RunWorkflows() map[string]runs.Workflow {
	var out map[string]runs.Workflow
	for name, w := range c.Workflows {
		if !w.IsRun() {
			continue
		}
		if out == nil {
			out = map[string]runs.Workflow{}
		}
		out[name] = w.Run(name)
	}
	return out
}

// Origin returns where the config file sets key, "agentq.yaml, line 14",
// for the keys of run workflows (workflows.<name>.steps[1].fallback,
// workflows.<name>.steps[0].payload.messages[0].content, ...). A key the
// file does not set itself gives the origin of the nearest enclosing key
// it does set; "" when there is none (a Config not loaded from a file).
func (c Config) Origin(key string) string {
	for key != "" {
		if o, ok := c.origins[key]; ok {
			return o
		}
		i := strings.LastIndexAny(key, ".[")
		if i <= 0 {
			return ""
		}
		key = key[:i]
	}
	return ""
}

// Budget is a workflow's error budget: over a sliding Window, at most (1 - SLO) of
// its attempts may fail. Zero fields other than SLO take the defaults below.
type Budget struct {
	// SLO is the share of attempts that must succeed, strictly between 0 and 1,
	// e.g. 0.99; 0 turns the budget off. Default: 0 (no budget).
	SLO float64 `mapstructure:"slo"`
	// Window is the sliding window the budget is counted over. Default: 24h.
	Window time.Duration `mapstructure:"window"`
	// MinEvents is the number of attempts in the window below which the budget is
	// never exhausted, so that a handful of early failures does not trip it. Default: 20.
	MinEvents int `mapstructure:"min_events"`
	// OnExhausted is what happens when the budget is spent: alert (log and alert),
	// pause (pause the workflow's queue in asynq until the budget recovers or
	// `agentq budget resume`; give the workflow a queue of its own, as every
	// workflow on that queue pauses with it) or reject (refuse new enqueues of the
	// workflow). Default: "alert".
	OnExhausted string `mapstructure:"on_exhausted"`
}

// Breakers sets the circuit breakers. A breaker opens after Failures consecutive
// failures, or when at least MinCalls calls in RateWindow failed at FailureRate or
// more; while open its calls are snoozed; after Cooldown one probe goes through and
// closes or re-opens it.
type Breakers struct {
	// Failures is the number of consecutive failures that opens a breaker. Default: 5.
	Failures int `mapstructure:"failures"`
	// FailureRate is the share of failed calls in RateWindow that opens a breaker,
	// above 0 and at most 1. Default: 0.5.
	FailureRate float64 `mapstructure:"failure_rate"`
	// RateWindow is the sliding window FailureRate is measured over. Default: 1m.
	RateWindow time.Duration `mapstructure:"rate_window"`
	// MinCalls is the number of calls in RateWindow below which FailureRate does
	// not open a breaker. Default: 10.
	MinCalls int `mapstructure:"min_calls"`
	// Cooldown is how long a breaker stays open before a probe goes through. Default: 30s.
	Cooldown time.Duration `mapstructure:"cooldown"`
	// Overrides gives settings per dependency name; zero fields inherit the ones
	// above. An http.call's dependency is its URL's host as written, lower-cased,
	// with the port if the URL gives one ("api.example.com", "10.0.0.5:8080"). It is
	// read from the config file only. Default: none.
	Overrides map[string]Breaker `mapstructure:"overrides"`
}

// Breaker is the settings of one dependency's breaker in breakers.overrides; zero
// fields inherit the global breakers settings.
type Breaker struct {
	// Failures is the number of consecutive failures that opens the breaker. Default: inherited.
	Failures int `mapstructure:"failures"`
	// FailureRate is the share of failed calls that opens the breaker. Default: inherited.
	FailureRate float64 `mapstructure:"failure_rate"`
	// RateWindow is the window FailureRate is measured over. Default: inherited.
	RateWindow time.Duration `mapstructure:"rate_window"`
	// MinCalls is the number of calls below which FailureRate does not open it. Default: inherited.
	MinCalls int `mapstructure:"min_calls"`
	// Cooldown is how long the breaker stays open before a probe. Default: inherited.
	Cooldown time.Duration `mapstructure:"cooldown"`
}

// Default returns the configuration used when nothing else is set: the
// components' own defaults, so that one value holds for each.
func Default() Config {
	return Config{
		Redis: Redis{
			DialTimeout:  queue.RedisDialTimeoutDefault,
			ReadTimeout:  queue.RedisReadTimeoutDefault,
			WriteTimeout: queue.RedisWriteTimeoutDefault,
		},
		Log:   Log{Level: "info", Format: "auto"},
		Retry: Retry{Base: jobs.RetryBaseDefault, Max: jobs.RetryMaxDefault, MaxAttempts: jobs.MaxAttemptsDefault},
		Enqueue: Enqueue{
			DedupeWindow:    queue.DedupeWindowDefault,
			MaxPayloadBytes: queue.MaxPayloadBytesDefault,
			Queue:           queue.QueueDefault,
		},
		Worker: Worker{
			Concurrency:          queue.ConcurrencyDefault,
			Queues:               map[string]int{queue.QueueDefault: 1},
			PollInterval:         queue.PollIntervalDefault,
			DelayedCheckInterval: queue.DelayedCheckIntervalDefault,
			ShutdownTimeout:      queue.ShutdownTimeoutDefault,
			RecoverInterval:      queue.RecoverIntervalDefault,
			RecoverGrace:         queue.RecoverGraceDefault,
			CompletionFold:       queue.CompletionFoldAuto,
			UnknownKindWait:      queue.UnknownKindWaitDefault,
		},
		Dashboard: Dashboard{Addr: dashboard.AddrDefault},
		HTTP:      HTTP{Timeout: handlers.TimeoutDefault, MaxResponseBytes: handlers.MaxResponseBytesDefault},
		DLQ:       DLQ{ReconcileInterval: dlq.ReconcileIntervalDefault, Grace: dlq.GraceDefault},
		Ledger:    Ledger{Retention: ledger.RetentionDefault},
		Runs:      Runs{Retention: runs.RetentionDefault, MaxOutputBytes: runs.MaxOutputBytesDefault, MaxSteps: runs.MaxStepsDefault},
		Breakers: Breakers{
			Failures:    breaker.FailuresDefault,
			FailureRate: breaker.FailureRateDefault,
			RateWindow:  breaker.RateWindowDefault,
			MinCalls:    breaker.MinCallsDefault,
			Cooldown:    breaker.CooldownDefault,
		},
	}
}

// Breaker returns the breaker settings of the named dependency: its override, if
// breakers.overrides has one, with zero fields taken from the global settings.
func (c Config) Breaker(name string) Breaker {
	o := c.Breakers.Overrides[name]
	b := c.Breakers
	return Breaker{
		Failures:    cmp.Or(o.Failures, b.Failures),
		FailureRate: cmp.Or(o.FailureRate, b.FailureRate),
		RateWindow:  cmp.Or(o.RateWindow, b.RateWindow),
		MinCalls:    cmp.Or(o.MinCalls, b.MinCalls),
		Cooldown:    cmp.Or(o.Cooldown, b.Cooldown),
	}
}

// RedisURLOrDefault returns redis.url, or DefaultRedisURL when it is empty.
func (c Config) RedisURLOrDefault() string {
	return cmp.Or(c.Redis.URL, DefaultRedisURL)
}

// Workflow returns the settings of the named workflow with inheritance resolved:
// an empty queue becomes enqueue.queue and zero retry fields take the global
// retry's. It reports whether the workflow is configured; if not, the result holds
// the global settings.
func (c Config) Workflow(name string) (Workflow, bool) {
	w, ok := c.Workflows[name]
	w.Queue = cmp.Or(w.Queue, c.Enqueue.Queue)
	w.Retry = w.Retry.inherit(c.Retry)
	return w, ok
}

// inherit returns r with its zero fields taken from global.
func (r Retry) inherit(global Retry) Retry {
	return Retry{
		Base:        cmp.Or(r.Base, global.Base),
		Max:         cmp.Or(r.Max, global.Max),
		MaxAttempts: cmp.Or(r.MaxAttempts, global.MaxAttempts),
	}
}
