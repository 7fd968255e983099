package config

import (
	"cmp"
	"time"
)

// DefaultRedisURL is the Redis address used by commands that need a server when
// redis.url is not configured.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

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
	// Workflows holds per-workflow settings by workflow name; it is read from the
	// config file only. Default: none.
	Workflows map[string]Workflow `mapstructure:"workflows"`
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
	// Max caps the delay between retries; it must be at least Base. Default: 10m.
	Max time.Duration `mapstructure:"max"`
	// MaxAttempts counts all attempts, the first included. Default: 10.
	MaxAttempts int `mapstructure:"max_attempts"`
}

// Enqueue sets how jobs are enqueued.
type Enqueue struct {
	// DedupeWindow is how long an idempotency key refuses a duplicate job. Default: 24h.
	DedupeWindow time.Duration `mapstructure:"dedupe_window"`
	// MaxPayloadBytes refuses larger payloads at enqueue. Default: 262144 (256 KiB).
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
	// MaxResponseBytes caps the response body kept. Default: 1048576 (1 MiB).
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
	// RedactHeaders names headers whose values are secret, besides Authorization,
	// Cookie, Set-Cookie, Proxy-Authorization and X-Api-Key. Default: none.
	RedactHeaders []string `mapstructure:"redact_headers"`
	// RedactFields names JSON fields and query parameters whose values are secret. Default: none.
	RedactFields []string `mapstructure:"redact_fields"`
}

// Alerts sets where alerts are sent.
type Alerts struct {
	// WebhookURL is an http(s) URL that alerts are POSTed to; empty turns alerts off.
	// Its query string and password are masked when printed. Default: "".
	WebhookURL string `mapstructure:"webhook_url"`
}

// Workflow holds the settings of one workflow.
type Workflow struct {
	// Queue is the workflow's queue; empty means enqueue.queue. Default: "".
	Queue string `mapstructure:"queue"`
	// Retry is the workflow's retry policy; zero fields inherit the global retry. Default: all zero.
	Retry Retry `mapstructure:"retry"`
}

// Default returns the configuration used when nothing else is set.
func Default() Config {
	return Config{
		Redis: Redis{
			DialTimeout:  5 * time.Second,
			ReadTimeout:  3 * time.Second,
			WriteTimeout: 3 * time.Second,
		},
		Log:   Log{Level: "info", Format: "auto"},
		Retry: Retry{Base: time.Second, Max: 10 * time.Minute, MaxAttempts: 10},
		Enqueue: Enqueue{
			DedupeWindow:    24 * time.Hour,
			MaxPayloadBytes: 256 << 10,
			Queue:           "default",
		},
		Worker: Worker{
			Concurrency:          10,
			Queues:               map[string]int{"default": 1},
			PollInterval:         10 * time.Millisecond,
			DelayedCheckInterval: time.Second,
			ShutdownTimeout:      30 * time.Second,
		},
		Dashboard: Dashboard{Addr: "127.0.0.1:8080"},
		HTTP:      HTTP{Timeout: 30 * time.Second, MaxResponseBytes: 1 << 20},
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
