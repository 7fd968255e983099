package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestMain(m *testing.M) { redistest.Main(m, binarytest.Cleanup) }

// stepArgs is the payload of test.step. Mode decides what the handler does:
// ok, fail (retryable, with a secret in the message), permanent, toggle
// (fails permanently while bundle.failing is set), flip (fails retryably
// while bundle.failing is set).
type stepArgs struct {
	Mode string `json:"mode"`
	N    int    `json:"n,omitempty"`
}

func (stepArgs) Kind() string { return "test.step" }

const stepSchema = `{"type":"object","properties":{"mode":{"enum":["ok","fail","permanent","toggle","flip"]},"n":{"type":"integer"}},"required":["mode"],"additionalProperties":false}`

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink that reads back JSON lines.
type syncBuffer struct{ logbuf.Buffer }

// lines returns the JSON log lines whose message contains msg.
func (s *syncBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && strings.Contains(m["message"].(string), msg) {
			out = append(out, m)
		}
	}
	return out
}

type fakeAlerter struct {
	mu     sync.Mutex
	alerts []Alert
}

func (f *fakeAlerter) Send(v any) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alerts = append(f.alerts, v.(Alert))
	return true
}

func (f *fakeAlerter) all() []Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Alert(nil), f.alerts...)
}

type bundle struct {
	srv     *redistest.Server
	rdb     *redis.Client
	reg     *queue.Registry
	client  *queue.Client
	store   *Store
	insp    *asynq.Inspector
	clock   *clock
	logs    *syncBuffer
	metrics *prometheus.Registry
	alerts  *fakeAlerter
	failing atomic.Bool
	// replayOf records the ReplayOf each task id saw.
	replayOf sync.Map
}

// setup gives a test its own Redis DB, a registry with test.step, a client
// with 3 attempts and millisecond backoff, and a store on a test clock that
// starts now (asynq stamps its archive with the wall clock).
func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	b := &bundle{srv: srv, rdb: srv.Client(t), reg: queue.NewRegistry(), clock: &clock{t: time.Now()}, logs: &syncBuffer{},
		metrics: prometheus.NewRegistry(), alerts: &fakeAlerter{}}
	err := queue.Register(b.reg, stepSchema, func(ctx context.Context, s *jobs.Step, a stepArgs) error {
		b.replayOf.Store(s.TaskID, s.ReplayOf)
		switch a.Mode {
		case "fail":
			return errors.New("upstream broke; retry with token=s3cr3t-token")
		case "permanent":
			return jobs.Permanent(errors.New("bad request"))
		case "toggle":
			if b.failing.Load() {
				return jobs.Permanent(errors.New("still broken"))
			}
		case "flip":
			if b.failing.Load() {
				return errors.New("flaky")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.client, err = queue.NewClient(b.rdb, b.reg, queue.ClientConfig{
		Retry: jobs.RetryPolicy{MaxAttempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	log := zerolog.New(b.logs)
	cfg.Logger = &log
	cfg.Now = b.clock.Now
	cfg.Registerer = b.metrics
	cfg.Alerter = b.alerts
	if cfg.Client == nil {
		cfg.Client = b.client
	}
	b.store, err = New(b.rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) startWorker(t *testing.T, mws ...jobs.Middleware) *queue.Worker {
	t.Helper()
	log := zerolog.New(b.logs)
	w, err := queue.NewWorker(b.rdb, b.reg, queue.WorkerConfig{
		Concurrency: 4, PollInterval: 5 * time.Millisecond, DelayedCheckInterval: 20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, Logger: &log,
		Retry:      jobs.RetryPolicy{MaxAttempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond},
		Middleware: mws,
		Observers:  []jobs.Observer{b.store.Observer()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	return w
}

// waitFor polls cond: asynq, not the test, decides when tasks move.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

func (b *bundle) taskState(t *testing.T, id string) queue.TaskState {
	t.Helper()
	state, err := queue.NewInspector(b.rdb).State(context.Background(), queue.QueueDefault, id)
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func (b *bundle) get(t *testing.T, id string) Record {
	t.Helper()
	r, err := b.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *bundle) enqueue(t *testing.T, mode string, o queue.EnqueueOptions) string {
	t.Helper()
	res, err := b.client.EnqueueArgs(context.Background(), stepArgs{Mode: mode}, o)
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// deadDirect records a death without a worker.
func (b *bundle) deadDirect(t *testing.T, d Death) string {
	t.Helper()
	if d.Queue == "" {
		d.Queue = queue.QueueDefault
	}
	if d.Kind == "" {
		d.Kind = "test.step"
	}
	if d.Payload == nil {
		d.Payload = []byte(`{"mode":"toggle"}`)
	}
	if d.Final.At.IsZero() {
		d.Final.At = b.clock.Now()
	}
	if d.Final.TaskID == "" {
		d.Final.TaskID = d.TaskID
	}
	if d.Final.Attempt == 0 {
		d.Final.Attempt = 1
	}
	if d.Final.Class == "" {
		d.Final.Class = jobs.ClassPermanent
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 3
	}
	id, mode, err := b.store.Dead(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if mode != modeCreated && mode != modeAppended {
		t.Fatalf("Dead mode = %q", mode)
	}
	return id
}

// counter returns the value of a counter in the bundle's registry.
func (b *bundle) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := b.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
