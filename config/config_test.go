package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// testBundle is one Load's inputs: a file body, an environment and command-line args.
type testBundle struct {
	file string   // agentq.yaml body; "" writes no file
	env  []string // "K=V"
	args []string // parsed by testFlags
}

// testFlags defines the flags a command would, mapped to their keys.
func testFlags(t *testing.T, args []string) (*pflag.FlagSet, map[string]string) {
	t.Helper()
	fs := pflag.NewFlagSet("agentq", pflag.ContinueOnError)
	fs.Int("concurrency", 99, "")
	fs.String("redis-url", "redis://flag-default:6379/0", "")
	fs.Duration("retry-base", 9*time.Second, "")
	fs.Bool("strict-priority", false, "")
	fs.String("queues", "", "")
	fs.StringSlice("cluster-addrs", nil, "")
	fs.StringToInt("queue-weights", nil, "")
	AcceptDays(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags %q: %v", args, err)
	}
	return fs, map[string]string{
		"concurrency":     "worker.concurrency",
		"redis-url":       "redis.url",
		"retry-base":      "retry.base",
		"strict-priority": "worker.strict_priority",
		"queues":          "worker.queues",
		"cluster-addrs":   "redis.cluster_addrs",
		"queue-weights":   "worker.queues",
	}
}

// setup writes the bundle's file into a fresh directory and returns the Options
// loading it, and the file's path.
func setup(t *testing.T, b testBundle) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if b.file != "" {
		if err := os.WriteFile(path, []byte(b.file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := b.env
	if env == nil {
		env = []string{} // never the process environment
	}
	flags, keys := testFlags(t, b.args)
	return Options{Dir: dir, Environ: env, Flags: flags, FlagKeys: keys}, path
}

func mustLoad(t *testing.T, b testBundle) Config {
	t.Helper()
	opts, _ := setup(t, b)
	cfg, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestLoadWithNothingSetGivesDefaults(t *testing.T) {
	t.Parallel()
	// No agentq.yaml in Dir is fine; unrelated variables are ignored.
	cfg := mustLoad(t, testBundle{env: []string{"HOME=/root", "AGENTQ_NOT_A_KEY=1"}})
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("Load() = %+v\nwant Default() = %+v", cfg, Default())
	}
	if got := cfg.RedisURLOrDefault(); got != DefaultRedisURL {
		t.Errorf("RedisURLOrDefault() = %q, want %q", got, DefaultRedisURL)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	const file = `
retry:
  base: 2s
worker:
  concurrency: 2
  strict_priority: false
redis:
  url: redis://file:6379/0
`
	env := []string{
		"AGENTQ_RETRY_BASE=3s",
		"AGENTQ_WORKER_CONCURRENCY=3",
		"AGENTQ_WORKER_STRICT_PRIORITY=true",
		"AGENTQ_REDIS_URL=redis://env:6379/0",
	}
	type want struct {
		base   time.Duration
		conc   int
		strict bool
		url    string
	}
	tests := []struct {
		name string
		b    testBundle
		want want
	}{
		{"defaults", testBundle{}, want{time.Second, 10, false, ""}},
		{"file over defaults", testBundle{file: file}, want{2 * time.Second, 2, false, "redis://file:6379/0"}},
		{"env over file", testBundle{file: file, env: env}, want{3 * time.Second, 3, true, "redis://env:6379/0"}},
		{"flags over env", testBundle{file: file, env: env, args: []string{
			"--retry-base=4s", "--concurrency=4", "--strict-priority=false", "--redis-url=redis://flag:6379/0",
		}}, want{4 * time.Second, 4, false, "redis://flag:6379/0"}},
		{"flags the user did not set keep env", testBundle{file: file, env: env, args: []string{"--concurrency=4"}},
			want{3 * time.Second, 4, true, "redis://env:6379/0"}},
		{"empty env values are unset", testBundle{file: file, env: []string{"AGENTQ_RETRY_BASE=", "AGENTQ_REDIS_URL="}},
			want{2 * time.Second, 2, false, "redis://file:6379/0"}},
		{"later env entry wins", testBundle{env: []string{"AGENTQ_WORKER_CONCURRENCY=5", "AGENTQ_WORKER_CONCURRENCY=6"}},
			want{time.Second, 6, false, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, tt.b)
			got := want{cfg.Retry.Base, cfg.Worker.Concurrency, cfg.Worker.StrictPriority, cfg.Redis.URL}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExplicitFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "custom.yaml")
	if err := os.WriteFile(path, []byte("worker:\n  concurrency: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Dir holds an agentq.yaml too: the explicit file wins.
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("worker:\n  concurrency: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{File: path, Dir: dir, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.Concurrency != 7 {
		t.Errorf("worker.concurrency = %d, want 7 from %s", cfg.Worker.Concurrency, path)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(Options{File: missing, Environ: []string{}})
	want := `config: config file "` + missing + `" does not exist`
	if err == nil || err.Error() != want {
		t.Errorf("Load(missing explicit file) error = %v, want %q", err, want)
	}
}

func TestUnknownKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, want string
	}{
		{"top level", "retyr:\n  base: 1s\n", `unknown key "retyr" in {file}, line 1 (did you mean "retry"?)`},
		{"nested", "retry:\n  base: 1s\n  bsae: 2s\n", `unknown key "retry.bsae" in {file}, line 3 (did you mean "retry.base"?)`},
		{"deep", "redis:\n  tls:\n    cafile: x\n", `unknown key "redis.tls.cafile" in {file}, line 3 (did you mean "redis.tls.ca_file"?)`},
		{"no close key", "zzz: 1\n", `unknown key "zzz" in {file}, line 1`},
		{"workflow", "workflows:\n  review:\n    queu: q\n", `unknown key "workflows.review.queu" in {file}, line 3 (did you mean "workflows.review.queue"?)`},
		{"workflow retry", "workflows:\n  review:\n    retry:\n      bsae: 1s\n", `unknown key "workflows.review.retry.bsae" in {file}, line 4`},
		{"dotted key", "retry.base: 1s\n", `key "retry.base" in {file}, line 1: nest the keys`},
		{"camel case", "worker:\n  pollInterval: 1s\n", `unknown key "worker.pollInterval"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, path := setup(t, testBundle{file: tt.file})
			_, err := Load(opts)
			want := strings.ReplaceAll(tt.want, "{file}", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missingCA := filepath.Join(dir, "ca.pem")
	// want is the exact error; {file} stands for the config file's path.
	tests := []struct {
		name string
		b    testBundle
		want string
	}{
		{"duration syntax from env", testBundle{env: []string{"AGENTQ_RETRY_BASE=abc"}},
			`config: retry.base: "abc" is not a duration: expected a number at "abc" (from AGENTQ_RETRY_BASE)`},
		{"duration without unit from file", testBundle{file: "retry:\n  base: 10\n"},
			`config: retry.base: 10 is not a duration: add a unit, e.g. "10s" (from {file}, line 2)`},
		{"duration without unit from env", testBundle{env: []string{"AGENTQ_HTTP_TIMEOUT=30"}},
			`config: http.timeout: "30" is not a duration: add a unit, e.g. "30s" (from AGENTQ_HTTP_TIMEOUT)`},
		{"negative duration", testBundle{env: []string{"AGENTQ_WORKER_POLL_INTERVAL=-1s"}},
			`config: worker.poll_interval: must be greater than 0, got -1s (from AGENTQ_WORKER_POLL_INTERVAL)`},
		{"recover grace too short", testBundle{env: []string{"AGENTQ_WORKER_RECOVER_GRACE=1s"}},
			`config: worker.recover_grace: must be at least 5s (room for clock skew between workers and Redis), got 1s (from AGENTQ_WORKER_RECOVER_GRACE)`},
		{"more loops than concurrency", testBundle{env: []string{"AGENTQ_WORKER_LOOPS=4", "AGENTQ_WORKER_CONCURRENCY=2"}},
			`config: worker.loops: must not exceed concurrency (2): each loop needs at least one slot, got 4 (from AGENTQ_WORKER_LOOPS)`},
		{"negative loops", testBundle{file: "worker:\n  loops: -1\n"},
			`config: worker.loops: must not be negative (0 sizes it to the machine), got -1 (from {file}, line 2)`},
		{"unknown completion fold", testBundle{env: []string{"AGENTQ_WORKER_COMPLETION_FOLD=maybe"}},
			`config: worker.completion_fold: must be "auto" or "off", got "maybe" (from AGENTQ_WORKER_COMPLETION_FOLD)`},
		{"negative unknown kind wait", testBundle{env: []string{"AGENTQ_WORKER_UNKNOWN_KIND_WAIT=-1s"}},
			`config: worker.unknown_kind_wait: must not be negative (0 dead-letters a job of an unknown kind at once), got -1s (from AGENTQ_WORKER_UNKNOWN_KIND_WAIT)`},
		{"negative recover interval", testBundle{file: "worker:\n  recover_interval: -5s\n"},
			`config: worker.recover_interval: must not be negative (0 turns the lease sweeper off), got -5s (from {file}, line 2)`},
		{"zero duration from file", testBundle{file: "enqueue:\n  dedupe_window: 0s\n"},
			`config: enqueue.dedupe_window: must be greater than 0, got 0s (from {file}, line 2)`},
		// The components' own rules, applied to their keys.
		{"dedupe window below queue's minimum", testBundle{file: "enqueue:\n  dedupe_window: 500ms\n"},
			`config: enqueue.dedupe_window: must be at least 1s, got 500ms (from {file}, line 2)`},
		{"queue name with a brace", testBundle{env: []string{"AGENTQ_ENQUEUE_QUEUE=a{b}"}},
			`config: enqueue.queue: queue name "a{b}" may not contain spaces, ':', '{' or '}' (from AGENTQ_ENQUEUE_QUEUE)`},
		{"http timeout above handlers' max", testBundle{env: []string{"AGENTQ_HTTP_TIMEOUT=20m"}},
			`config: http.timeout: must be at most 10m (the longest timeout a payload may ask for), got 20m (from AGENTQ_HTTP_TIMEOUT)`},
		{"dlq retention age below dlq's minimum", testBundle{file: "dlq:\n  retention_age: 30s\n"},
			`config: dlq.retention_age: must be at least 1m when set, got 30s (from {file}, line 2)`},
		{"dlq reconcile interval below dlq's minimum", testBundle{env: []string{"AGENTQ_DLQ_RECONCILE_INTERVAL=500ms"}},
			`config: dlq.reconcile_interval: must be at least 1s, got 500ms (from AGENTQ_DLQ_RECONCILE_INTERVAL)`},
		{"ledger retention below ledger's minimum", testBundle{env: []string{"AGENTQ_LEDGER_RETENTION=500ms"}},
			`config: ledger.retention: must be at least 1s, got 500ms (from AGENTQ_LEDGER_RETENTION)`},
		{"breaker rate window below breaker's minimum", testBundle{env: []string{"AGENTQ_BREAKERS_RATE_WINDOW=500ms"}},
			`config: breakers.rate_window: must be at least 1s, got 500ms (from AGENTQ_BREAKERS_RATE_WINDOW)`},
		{"retry max below base", testBundle{file: "retry:\n  base: 2s\n  max: 500ms\n"},
			`config: retry.max: 500ms is less than retry.base 2s (from {file}, line 3)`},
		{"max attempts", testBundle{env: []string{"AGENTQ_RETRY_MAX_ATTEMPTS=0"}},
			`config: retry.max_attempts: must be at least 1, got 0 (from AGENTQ_RETRY_MAX_ATTEMPTS)`},
		{"concurrency from flag", testBundle{args: []string{"--concurrency=0"}},
			`config: worker.concurrency: must be at least 1, got 0 (from --concurrency)`},
		{"not a number", testBundle{env: []string{"AGENTQ_WORKER_CONCURRENCY=ten"}},
			`config: worker.concurrency: "ten" is not a whole number (from AGENTQ_WORKER_CONCURRENCY)`},
		{"fraction in file", testBundle{file: "worker:\n  concurrency: 2.5\n"},
			`config: worker.concurrency: 2.5 is not a whole number (from {file}, line 2)`},
		{"not a bool", testBundle{env: []string{"AGENTQ_DASHBOARD_READ_ONLY=maybe"}},
			`config: dashboard.read_only: "maybe" is not true or false (from AGENTQ_DASHBOARD_READ_ONLY)`},
		{"log level", testBundle{env: []string{"AGENTQ_LOG_LEVEL=verbose"}},
			`config: log.level: "verbose" is not one of debug, info, warn, error (from AGENTQ_LOG_LEVEL)`},
		{"log format", testBundle{file: "log:\n  format: xml\n"},
			`config: log.format: "xml" is not one of auto, json, console (from {file}, line 2)`},
		{"dashboard addr", testBundle{env: []string{"AGENTQ_DASHBOARD_ADDR=localhost"}},
			`config: dashboard.addr: "localhost" is not host:port (from AGENTQ_DASHBOARD_ADDR)`},
		{"metrics addr port", testBundle{env: []string{"AGENTQ_WORKER_METRICS_ADDR=:http2"}},
			`config: worker.metrics_addr: ":http2" has an invalid port "http2" (from AGENTQ_WORKER_METRICS_ADDR)`},
		{"payload bytes", testBundle{file: "enqueue:\n  max_payload_bytes: 0\n"},
			`config: enqueue.max_payload_bytes: must be at least 1, got 0 (from {file}, line 2)`},
		{"payload bytes over 64 MiB", testBundle{env: []string{"AGENTQ_ENQUEUE_MAX_PAYLOAD_BYTES=99999999999"}},
			`config: enqueue.max_payload_bytes: must be at most 67108864 (64 MiB; keep larger payloads in object storage and enqueue their URL), got 99999999999 (from AGENTQ_ENQUEUE_MAX_PAYLOAD_BYTES)`},
		{"payload bytes one over 64 MiB", testBundle{file: "enqueue:\n  max_payload_bytes: 67108865\n"},
			`config: enqueue.max_payload_bytes: must be at most 67108864 (64 MiB; keep larger payloads in object storage and enqueue their URL), got 67108865 (from {file}, line 2)`},
		{"response bytes", testBundle{env: []string{"AGENTQ_HTTP_MAX_RESPONSE_BYTES=-5"}},
			`config: http.max_response_bytes: must be at least 1, got -5 (from AGENTQ_HTTP_MAX_RESPONSE_BYTES)`},
		{"pool size", testBundle{env: []string{"AGENTQ_REDIS_POOL_SIZE=-1"}},
			`config: redis.pool_size: must be at least 0, got -1 (from AGENTQ_REDIS_POOL_SIZE)`},
		{"enqueue queue empty", testBundle{file: "enqueue:\n  queue: \"\"\n"},
			`config: enqueue.queue: queue name is empty (from {file}, line 2)`},
		{"queue name with space", testBundle{env: []string{"AGENTQ_WORKER_QUEUES=my queue=1"}},
			`config: worker.queues: queue name "my queue" may not contain spaces, ':', '{' or '}' (from AGENTQ_WORKER_QUEUES)`},
		{"queue name with colon", testBundle{args: []string{"--queues=a:b=1"}},
			`config: worker.queues: queue name "a:b" may not contain spaces, ':', '{' or '}' (from --queues)`},
		{"queue priority", testBundle{file: "worker:\n  queues:\n    low: 0\n"},
			`config: worker.queues: priority of queue "low" must be at least 1, got 0 (from {file}, line 2)`},
		{"no queues", testBundle{file: "worker:\n  queues: {}\n"},
			`config: worker.queues: must name at least one queue (from {file}, line 2)`},
		{"redis scheme", testBundle{env: []string{"AGENTQ_REDIS_URL=http://cache:6379"}},
			`config: redis.url: unsupported scheme "http" (use redis://, rediss://, unix://, redis-sentinel:// or redis-socket://) (from AGENTQ_REDIS_URL)`},
		{"redis db", testBundle{args: []string{"--redis-url=redis://cache:6379/abc"}},
			`config: redis.url: redis://cache:6379/abc: invalid database number: "abc" (from --redis-url)`},
		{"empty redis url flag", testBundle{args: []string{"--redis-url="}},
			`config: redis.url: is empty: give a Redis URL, or leave the flag out to use redis://127.0.0.1:6379/0 (from --redis-url)`},
		{"redis no scheme", testBundle{env: []string{"AGENTQ_REDIS_URL=cache:6379"}},
			`config: redis.url: cache:6379 is not a URL (use redis://, rediss://, unix://, redis-sentinel:// or redis-socket://) (from AGENTQ_REDIS_URL)`},
		{"sentinel without master", testBundle{env: []string{"AGENTQ_REDIS_URL=redis-sentinel://s1:26379,s2:26379/0"}},
			`config: redis.url: redis-sentinel://s1:26379,s2:26379/0: a redis-sentinel URL needs ?master=NAME (from AGENTQ_REDIS_URL)`},
		{"cluster addr", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:7000,b"}},
			`config: redis.cluster_addrs: "b" is not host:port (from AGENTQ_REDIS_CLUSTER_ADDRS)`},
		{"cluster with url host", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:7000", "AGENTQ_REDIS_URL=redis://a:7000/0"}},
			`config: redis.url: redis://a:7000/0 must give only the scheme and credentials (e.g. redis://user:****@) when redis.cluster_addrs is set (from AGENTQ_REDIS_URL)`},
		{"tls file missing", testBundle{env: []string{"AGENTQ_REDIS_TLS_CA_FILE=" + missingCA}},
			`config: redis.tls.ca_file: "` + missingCA + `" does not exist (from AGENTQ_REDIS_TLS_CA_FILE)`},
		{"webhook scheme", testBundle{env: []string{"AGENTQ_ALERTS_WEBHOOK_URL=ftp://hooks.example.com/x"}},
			`config: alerts.webhook_url: ftp://hooks.example.com/**** must be an http:// or https:// URL (from AGENTQ_ALERTS_WEBHOOK_URL)`},
		{"webhook relative", testBundle{file: "alerts:\n  webhook_url: /hook\n"},
			`config: alerts.webhook_url: /**** must be an http:// or https:// URL (from {file}, line 2)`},
		{"basic auth user without password", testBundle{env: []string{"AGENTQ_DASHBOARD_BASIC_AUTH_USER=admin"}},
			`config: dashboard.basic_auth_password: must be set (in the config file or AGENTQ_DASHBOARD_BASIC_AUTH_PASSWORD) when dashboard.basic_auth_user is (set in AGENTQ_DASHBOARD_BASIC_AUTH_USER)`},
		{"basic auth password without user", testBundle{file: "dashboard:\n  basic_auth_password: pw\n"},
			`config: dashboard.basic_auth_user: must be set (in the config file or AGENTQ_DASHBOARD_BASIC_AUTH_USER) when dashboard.basic_auth_password is (set in {file}, line 2)`},
		{"section is a scalar", testBundle{file: "retry: 5\n"},
			`config: retry: must be a mapping of keys, got 5 (from {file}, line 1)`},
		{"top level is a list", testBundle{file: "- a\n- b\n"},
			`config: {file}: the top level must be a mapping of keys, like "worker:"`},
		{"workflow inherits a max below its base", testBundle{file: "workflows:\n  review:\n    retry:\n      base: 20m\n"},
			`config: workflows.review.retry.base: 20m is greater than retry.max 10m, which the workflow inherits (from {file}, line 4)`},
		{"workflow max below its base", testBundle{file: "workflows:\n  review:\n    retry:\n      base: 1m\n      max: 30s\n"},
			`config: workflows.review.retry.max: 30s is less than the workflow's retry base 1m (from {file}, line 5)`},
		{"workflow duration", testBundle{file: "workflows:\n  review:\n    retry:\n      base: 5\n"},
			`config: workflows.review.retry.base: 5 is not a duration: add a unit, e.g. "5s" (from {file}, line 4)`},
		{"workflow queue", testBundle{file: "workflows:\n  review:\n    queue: a b\n"},
			`config: workflows.review.queue: queue name "a b" may not contain spaces, ':', '{' or '}' (from {file}, line 3)`},
		{"workflow without a name", testBundle{file: "workflows:\n  \"\":\n    queue: q\n"},
			`config: workflows."": workflow name must not be empty (from {file}, line 2)`},
		{"workflow not a mapping", testBundle{file: "workflows:\n  review: 3\n"},
			`config: workflows.review: must be a mapping of keys, got 3 (from {file}, line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, path := setup(t, tt.b)
			_, err := Load(opts)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", tt.want)
			}
			want := strings.ReplaceAll(tt.want, "{file}", path)
			// Every problem is one line; the expected one must be among them.
			lines := strings.Split(err.Error(), "\n")
			for _, line := range lines {
				if strings.HasPrefix(line, want) {
					return
				}
			}
			t.Errorf("Load error:\n%v\nwant a line starting with:\n%s", err, want)
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	t.Parallel()
	opts, _ := setup(t, testBundle{env: []string{
		"AGENTQ_RETRY_BASE=abc",          // fails to decode
		"AGENTQ_WORKER_CONCURRENCY=0",    // decodes, fails validation
		"AGENTQ_LOG_LEVEL=loud",          // decodes, fails validation
		"AGENTQ_RETRY_MAX_ATTEMPTS=many", // fails to decode
	}})
	_, err := Load(opts)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	var keys []string
	for _, e := range unwrapJoined(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		keys = append(keys, fe.Key)
	}
	want := []string{"retry.base", "retry.max_attempts", "log.level", "worker.concurrency"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("error keys = %q, want %q", keys, want)
	}
}

func TestWorkerQueues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		b       testBundle
		want    map[string]int
		wantErr string
	}{
		{"default", testBundle{}, map[string]int{"default": 1}, ""},
		{"env string", testBundle{env: []string{"AGENTQ_WORKER_QUEUES=critical=6,default=3,low=1"}},
			map[string]int{"critical": 6, "default": 3, "low": 1}, ""},
		{"spaces and empty items", testBundle{env: []string{"AGENTQ_WORKER_QUEUES= a = 2 ,, b=1 ,"}},
			map[string]int{"a": 2, "b": 1}, ""},
		{"flag string", testBundle{args: []string{"--queues=x=2"}}, map[string]int{"x": 2}, ""},
		{"flag map", testBundle{args: []string{"--queue-weights=x=2,y=1"}}, map[string]int{"x": 2, "y": 1}, ""},
		{"file string", testBundle{file: "worker:\n  queues: \"q1=6,q2=1\"\n"}, map[string]int{"q1": 6, "q2": 1}, ""},
		{"file map keeps case", testBundle{file: "worker:\n  queues:\n    Critical: 6\n    low: 1\n"},
			map[string]int{"Critical": 6, "low": 1}, ""},
		{"env replaces the file's map", testBundle{file: "worker:\n  queues:\n    a: 1\n", env: []string{"AGENTQ_WORKER_QUEUES=b=2"}},
			map[string]int{"b": 2}, ""},
		{"missing priority", testBundle{env: []string{"AGENTQ_WORKER_QUEUES=q1"}}, nil,
			`config: worker.queues: "q1" is not name=priority (write e.g. "critical=6,default=1") (from AGENTQ_WORKER_QUEUES)`},
		{"bad priority", testBundle{env: []string{"AGENTQ_WORKER_QUEUES=q1=x"}}, nil,
			`config: worker.queues: priority "x" of queue "q1" is not a whole number (from AGENTQ_WORKER_QUEUES)`},
		{"empty name", testBundle{env: []string{"AGENTQ_WORKER_QUEUES==1"}}, nil,
			`config: worker.queues: queue name is empty (from AGENTQ_WORKER_QUEUES)`},
		{"duplicate", testBundle{env: []string{"AGENTQ_WORKER_QUEUES=a=1,a=2"}}, nil,
			`config: worker.queues: queue "a" is listed twice (from AGENTQ_WORKER_QUEUES)`},
		{"bad priority in file map", testBundle{file: "worker:\n  queues:\n    a: high\n"}, nil,
			`config: worker.queues: priority "high" of queue "a" is not a whole number`},
		{"list in file", testBundle{file: "worker:\n  queues: [a, b]\n"}, nil,
			`config: worker.queues: [a b] is not a map of queue names to priorities`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, _ := setup(t, tt.b)
			cfg, err := Load(opts)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Worker.Queues, tt.want) {
				t.Errorf("worker.queues = %v, want %v", cfg.Worker.Queues, tt.want)
			}
		})
	}
}

func TestClusterAddrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    testBundle
		want []string
		url  string
	}{
		{"env list", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:7000, b:7001,"}}, []string{"a:7000", "b:7001"}, ""},
		{"file list", testBundle{file: "redis:\n  cluster_addrs: [a:7000, b:7001]\n"}, []string{"a:7000", "b:7001"}, ""},
		{"file string", testBundle{file: "redis:\n  cluster_addrs: a:7000,b:7001\n"}, []string{"a:7000", "b:7001"}, ""},
		{"slice flag over env", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:7000"}, args: []string{"--cluster-addrs=c:1,d:2"}},
			[]string{"c:1", "d:2"}, ""},
		{"url with credentials only", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:7000", "AGENTQ_REDIS_URL=rediss://app:pw@"}},
			[]string{"a:7000"}, "rediss://app:pw@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, tt.b)
			if !reflect.DeepEqual(cfg.Redis.ClusterAddrs, tt.want) {
				t.Errorf("redis.cluster_addrs = %q, want %q", cfg.Redis.ClusterAddrs, tt.want)
			}
			if cfg.Redis.URL != tt.url {
				t.Errorf("redis.url = %q, want %q", cfg.Redis.URL, tt.url)
			}
		})
	}
}

func TestRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		cluster bool
		wantErr string // "" means valid
	}{
		{"redis://127.0.0.1:6379/0", false, ""},
		{"redis://cache", false, ""},
		{"redis://user:p%40ss@cache:6379/2", false, ""},
		{"rediss://cache.example.com:6380/0", false, ""},
		{"redis://[::1]:6379/0", false, ""},
		{"redis-sentinel://:pw@s1:26379,s2:26379/1?master=mymaster", false, ""},
		{"redis-socket:///var/run/redis.sock?db=3", false, ""},
		{"redis-socket:///var/run/redis.sock", false, ""},
		{"rediss://user:pw@", true, ""},
		{"redis://", true, ""},
		{"redis:///0", false, ""},
		{"redis://cache:6379/-1", false, "database -1 is negative"},
		{"redis://cache:abc/0", false, `is not a valid URL: invalid port ":abc" after host`},
		{"redis-sentinel://s1:26379,:26379/0?master=m", false, `addr param: :26379`},
		{"redis-sentinel://s1:26379,s2/0?master=m", false, `is not a valid URL: invalid port`},
		{"redis-sentinel:///0?master=m", false, "needs sentinel addresses"},
		{"redis-socket://host/x.sock", false, "must give an absolute socket path"},
		{"redis-socket:///x.sock?db=a", false, `invalid database number`},
		{"redis-socket:///x.sock", true, "cannot be used with redis.cluster_addrs"},
		{"unix:///x.sock", false, ""},
		{"unix://host/x.sock", false, "must give an absolute socket path and no host"},
		{"redis://cache:6379/0?nonsense=1", false, "unexpected option: nonsense"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.Redis.URL = tt.url
			if tt.cluster {
				c.Redis.ClusterAddrs = []string{"a:7000"}
			}
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "config: redis.url: "):
				t.Errorf("Validate() = %v, want it to name redis.url", err)
			}
		})
	}
}

func TestWorkflows(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{
		file: `
enqueue:
  queue: jobs
retry:
  base: 2s
  max: 1m
workflows:
  Review.PR:
    queue: reviews
    retry:
      max_attempts: 3
  nightly:
    retry:
      base: 10s
      max: 5m
  bare:
`,
		env: []string{"AGENTQ_WORKFLOWS=ignored"}, // workflows are file-only
	})
	tests := []struct {
		name   string
		want   Workflow
		wantOK bool
	}{
		{"Review.PR", Workflow{Queue: "reviews", Retry: Retry{Base: 2 * time.Second, Max: time.Minute, MaxAttempts: 3}}, true},
		{"nightly", Workflow{Queue: "jobs", Retry: Retry{Base: 10 * time.Second, Max: 5 * time.Minute, MaxAttempts: 10}}, true},
		{"bare", Workflow{Queue: "jobs", Retry: Retry{Base: 2 * time.Second, Max: time.Minute, MaxAttempts: 10}}, true},
		{"unknown", Workflow{Queue: "jobs", Retry: Retry{Base: 2 * time.Second, Max: time.Minute, MaxAttempts: 10}}, false},
	}
	for _, tt := range tests {
		got, ok := cfg.Workflow(tt.name)
		if !reflect.DeepEqual(got, tt.want) || ok != tt.wantOK {
			t.Errorf("Workflow(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
	// The raw config keeps zero fields, which mean "inherit".
	if raw := cfg.Workflows["Review.PR"]; raw.Retry.Base != 0 {
		t.Errorf("Workflows[Review.PR].Retry.Base = %v, want 0 (inherit)", raw.Retry.Base)
	}
}

// secretBundle sets every secret, each a distinct string to look for in output.
var secretBundle = testBundle{
	file: `
redis:
  url: redis://app:url-secret-1@cache:6379/0?master_name=mymaster&password=url-secret-2
  password: pw-secret-3
dashboard:
  basic_auth_user: admin
  basic_auth_password: pw-secret-4
alerts:
  webhook_url: https://hooks.example.com/alert?token=hook-secret-5&channel=ops-room
`,
	env: []string{"AGENTQ_DASHBOARD_BEARER_TOKEN=token-secret-6"},
}

var secrets = []string{"url-secret-1", "url-secret-2", "pw-secret-3", "pw-secret-4", "hook-secret-5", "ops-room", "token-secret-6"}

func TestSecretsMaskedInOutput(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, secretBundle)
	wantMasked := []string{
		"redis://app:****@cache:6379/0?master_name=mymaster&password=****",
		"https://hooks.example.com/****?token=****&channel=****",
	}
	writers := map[string]func(Config, *bytes.Buffer) error{
		"yaml": func(c Config, b *bytes.Buffer) error { return c.WriteYAML(b) },
		"json": func(c Config, b *bytes.Buffer) error { return c.WriteJSON(b) },
	}
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := write(cfg, &buf); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output holds secret %q:\n%s", s, out)
				}
			}
			for _, m := range wantMasked {
				if !strings.Contains(out, m) {
					t.Errorf("output lacks %q:\n%s", m, out)
				}
			}
			if n := strings.Count(out, "****"); n < 7 {
				t.Errorf("output has %d masks, want at least 7:\n%s", n, out)
			}
		})
	}
	if cfg.Redis.Password != "pw-secret-3" || cfg.Dashboard.BearerToken != "token-secret-6" {
		t.Error("writing output changed the config's secrets")
	}
}

func TestOutputLoadsBack(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, testBundle{
		file: `
worker:
  queues: {Critical: 6, low: 1}
http:
  redact_headers: [X-Token]
workflows:
  Review.PR:
    retry: {base: 2s}
`,
		env: []string{"AGENTQ_REDIS_URL=redis://app:pw@cache:6379/0", "AGENTQ_RETRY_MAX=1h30m", "AGENTQ_LOG_LEVEL=debug"},
	})
	var y bytes.Buffer
	if err := cfg.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, testBundle{file: y.String()})
	if !reflect.DeepEqual(back, cfg.Masked()) {
		t.Errorf("loading WriteYAML's output gave\n%+v\nwant the masked config\n%+v\nYAML:\n%s", back, cfg.Masked(), y.String())
	}

	var j bytes.Buffer
	if err := cfg.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(j.Bytes(), &fromJSON); err != nil {
		t.Fatalf("WriteJSON output is not JSON: %v\n%s", err, j.String())
	}
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	// JSON numbers decode as float64, YAML's as int: compare through JSON.
	yj, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	var fromYAMLViaJSON any
	if err := json.Unmarshal(yj, &fromYAMLViaJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAMLViaJSON) {
		t.Errorf("WriteJSON and WriteYAML differ:\n%s\n%s", j.String(), y.String())
	}
}

func TestSecretsAbsentFromErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	tests := []struct {
		name string
		b    testBundle
	}{
		{"redis url bad scheme", testBundle{env: []string{"AGENTQ_REDIS_URL=http://app:" + secret + "@cache:6379/0"}}},
		{"redis url bad port", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://app:" + secret + "@cache:port/0"}}},
		{"redis url bad escape in password", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://app:%zz" + secret + "@cache:6379/0"}}},
		{"redis url unescaped slash in password", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://app:ab/" + secret + "@cache:6379/0"}}},
		{"redis url bad db", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://app:" + secret + "@cache:6379/x"}}},
		{"redis url secret query", testBundle{env: []string{"AGENTQ_REDIS_URL=redis-sentinel://s1:1/0?sentinel_password=" + secret}}},
		{"redis url secret in a failover query", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://s1:1/0?master_name=m&password=" + secret + "&bogus=1"}}},
		{"redis url no scheme", testBundle{env: []string{"AGENTQ_REDIS_URL=app:" + secret + "@cache:6379"}}},
		{"cluster with url host", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=a:1", "AGENTQ_REDIS_URL=redis://u:" + secret + "@cache/0"}}},
		{"webhook bad scheme", testBundle{env: []string{"AGENTQ_ALERTS_WEBHOOK_URL=ftp://hooks.example.com/x?token=" + secret}}},
		{"webhook bad escape", testBundle{env: []string{"AGENTQ_ALERTS_WEBHOOK_URL=https://u:" + secret + "%zz@hooks.example.com/"}}},
		{"password as a list", testBundle{file: "redis:\n  password: [" + secret + "]\n"}},
		{"token as a mapping", testBundle{file: "dashboard:\n  bearer_token: {a: " + secret + "}\n"}},
		{"password without user", testBundle{env: []string{"AGENTQ_DASHBOARD_BASIC_AUTH_PASSWORD=" + secret}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, _ := setup(t, tt.b)
			_, err := Load(opts)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q does not start with \"config: \"", err)
			}
		})
	}
}

func TestMaskURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw      string
		allQuery bool
		want     string
	}{
		{"", false, ""},
		{"redis://cache:6379/0", false, "redis://cache:6379/0"},
		{"redis://user@cache:6379/0", false, "redis://****@cache:6379/0"},
		{"https://TOKEN@hooks.example.com/x", false, "https://****@hooks.example.com/x"},
		{"redis://user:pw@cache:6379/0", false, "redis://user:****@cache:6379/0"},
		{"redis://:pw@cache:6379/0", false, "redis://:****@cache:6379/0"},
		{"redis://u:p@ss/w@rd@cache/0", false, "redis://u:****@cache/0"},
		{"redis-sentinel://:pw@a:1,b:2/0?master=m&sentinel_password=x", false, "redis-sentinel://:****@a:1,b:2/0?master=m&sentinel_password=****"},
		{"https://h/p?a=1&flag&b=2#frag", true, "https://h/****?a=****&****&b=****#****"},
		{"https://h/p?a=1#frag", false, "https://h/p?a=1#frag"},
		// No "//": "user:" reads as a scheme, and the rest, holding a ':',
		// as a credential-like path segment.
		{"user:pw@host:1", false, "user:****"},
		{"redis://h:6379/0?token=SECRET1", false, "redis://h:6379/0?token=****"},
		{"redis://h:6379/0?sentinel_password=SECRET3", false, "redis://h:6379/0?sentinel_password=****"},
		// An "@" in a webhook's path is not the end of user info (found by
		// FuzzLoadConfigFile): the path after it was shown.
		{"https://hooks.example.com/services/p@ss%2Fword?token=x", true, "https://hooks.example.com/****?token=****"},
		{"https://u:pw@hooks.example.com/T0/SECRET", true, "https://u:****@hooks.example.com/****"},
	}
	for _, tt := range tests {
		if got := maskURL(tt.raw, tt.allQuery); got != tt.want {
			t.Errorf("maskURL(%q, %v) = %q, want %q", tt.raw, tt.allQuery, got, tt.want)
		}
	}
}

func TestMaskedCopiesMaps(t *testing.T) {
	t.Parallel()
	c := Default()
	m := c.Masked()
	m.Worker.Queues["other"] = 2
	if _, ok := c.Worker.Queues["other"]; ok {
		t.Error("Masked() shares worker.queues with the original")
	}
}

func TestFlagMapping(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("agentq", pflag.ContinueOnError)
	fs.Int("concurrency", 0, "")
	tests := []struct {
		name string
		keys map[string]string
		want string
	}{
		{"unknown key", map[string]string{"concurrency": "worker.concurency"}, `config: flag --concurrency is mapped to unknown key "worker.concurency"`},
		{"undefined flag", map[string]string{"workers": "worker.concurrency"}, `config: flag --workers is mapped to key "worker.concurrency" but is not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(Options{Dir: t.TempDir(), Environ: []string{}, Flags: fs, FlagKeys: tt.keys})
			if err == nil || err.Error() != tt.want {
				t.Errorf("Load error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	// Each key is settable from its environment variable; spot-check names and kinds.
	tests := []struct {
		env   string
		value string
		get   func(Config) any
		want  any
	}{
		{"AGENTQ_RETRY_BASE", "250ms", func(c Config) any { return c.Retry.Base }, 250 * time.Millisecond},
		{"AGENTQ_REDIS_URL", "redis://h:1/2", func(c Config) any { return c.Redis.URL }, "redis://h:1/2"},
		{"AGENTQ_REDIS_TLS_SERVER_NAME", "cache.internal", func(c Config) any { return c.Redis.TLS.ServerName }, "cache.internal"},
		{"AGENTQ_REDIS_TLS_INSECURE_SKIP_VERIFY", "true", func(c Config) any { return c.Redis.TLS.InsecureSkipVerify }, true},
		{"AGENTQ_WORKER_DELAYED_CHECK_INTERVAL", "5s", func(c Config) any { return c.Worker.DelayedCheckInterval }, 5 * time.Second},
		{"AGENTQ_ENQUEUE_DEDUPE_WINDOW", "1h", func(c Config) any { return c.Enqueue.DedupeWindow }, time.Hour},
		{"AGENTQ_HTTP_MAX_RESPONSE_BYTES", "2048", func(c Config) any { return c.HTTP.MaxResponseBytes }, int64(2048)},
		{"AGENTQ_HTTP_REDACT_FIELDS", "ssn, card", func(c Config) any { return c.HTTP.RedactFields }, []string{"ssn", "card"}},
		{"AGENTQ_DASHBOARD_BEARER_TOKEN", "t", func(c Config) any { return c.Dashboard.BearerToken }, "t"},
		{"AGENTQ_WORKER_RECOVER_INTERVAL", "0s", func(c Config) any { return c.Worker.RecoverInterval }, time.Duration(0)},
		{"AGENTQ_WORKER_RECOVER_GRACE", "20s", func(c Config) any { return c.Worker.RecoverGrace }, 20 * time.Second},
		{"AGENTQ_RUNS_RETENTION", "48h", func(c Config) any { return c.Runs.Retention }, 48 * time.Hour},
		{"AGENTQ_RUNS_MAX_OUTPUT_BYTES", "1024", func(c Config) any { return c.Runs.MaxOutputBytes }, 1024},
		{"AGENTQ_RUNS_MAX_STEPS", "7", func(c Config) any { return c.Runs.MaxSteps }, 7},
		{"AGENTQ_WORKER_UNKNOWN_KIND_WAIT", "1d", func(c Config) any { return c.Worker.UnknownKindWait }, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, testBundle{env: []string{tt.env + "=" + tt.value}})
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%s gave %v, want %v", tt.env, tt.value, got, tt.want)
			}
		})
	}
	if n := len(fields); n != 57 {
		t.Errorf("Config has %d keys, want 57: update this count and the tests when adding keys", n)
	}
}

func TestStringKeepsTextAsWritten(t *testing.T) {
	t.Parallel()
	// YAML would read 0123 as a number; a password is kept as written.
	cfg := mustLoad(t, testBundle{file: "redis:\n  password: 0123\n  username: true\n"})
	if cfg.Redis.Password != "0123" || cfg.Redis.Username != "true" {
		t.Errorf("password, username = %q, %q; want \"0123\", \"true\"", cfg.Redis.Password, cfg.Redis.Username)
	}
}

// TestWebhookURLWithAtInPath: an '@' in a webhook URL's path is a valid
// URL (ntfy topics, mailto-like paths), not a malformed password.
func TestWebhookURLWithAtInPath(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.Alerts.WebhookURL = "https://user:pass@ntfy.example.com/alerts/@ops"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
