package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
)

// Client defaults.
const (
	// DedupeWindowDefault is how long an idempotency key blocks a second
	// enqueue.
	DedupeWindowDefault = 24 * time.Hour
	// MaxPayloadBytesDefault is the largest payload accepted (256 KiB).
	MaxPayloadBytesDefault = 256 << 10
	// MaxPayloadBytesLimit is the largest MaxPayloadBytes allowed (64 MiB).
	// A payload is read into memory whole (agentq's --payload @FILE too)
	// and asynq stores it in one Redis hash field, which Redis caps at
	// 512 MB; a payload that large belongs in object storage, referenced by
	// URL.
	MaxPayloadBytesLimit = 64 << 20
	// QueueDefault is the queue used when neither the call nor the workflow
	// names one.
	QueueDefault = "default"
	// TimeoutGrace is how much longer asynq's backstop timeout is than the
	// attempt timeout the worker enforces.
	TimeoutGrace = 5 * time.Second
	// MaxKeyBytes is the longest idempotency key, run id or workflow name.
	MaxKeyBytes = 512
	// RunStepPayload is the payload of a run step's task whose payload the
	// worker renders from its run's workflow (EnqueueOptions.Step).
	RunStepPayload = "{}"
)

// Workflow is a named unit of work with its own queue and retry policy.
type Workflow struct {
	// Queue the workflow's tasks go to; default the client's Queue.
	Queue string
	// Retry overrides the global policy field by field; zero fields inherit.
	Retry jobs.RetryPolicy
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// DedupeWindow is how long an idempotency key blocks another enqueue
	// of the same key to the same queue, counted from the enqueue that took
	// it. Default DedupeWindowDefault (24h).
	DedupeWindow time.Duration
	// MaxPayloadBytes refuses larger payloads; at most
	// MaxPayloadBytesLimit (64 MiB). Default MaxPayloadBytesDefault.
	MaxPayloadBytes int
	// Queue is the queue used when nothing else names one. Default "default".
	Queue string
	// Retry is the global retry policy; its MaxAttempts sets a task's retry
	// budget at enqueue. Default jobs' defaults (10 attempts, 1s, 10m).
	Retry jobs.RetryPolicy
	// Workflows are the known workflows; enqueueing to another is an error.
	// Default none.
	Workflows map[string]Workflow
	// Admit, when set, is asked before every enqueue that passed
	// validation; an error refuses the enqueue (e.g. a workflow whose error
	// budget is exhausted with on_exhausted: reject) and is returned as is.
	// It should answer from memory: it runs on every enqueue. Default none.
	Admit func(ctx context.Context, kind string, o EnqueueOptions) error
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DedupeWindowDefault
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = MaxPayloadBytesDefault
	}
	if c.Queue == "" {
		c.Queue = QueueDefault
	}
	c.Retry = c.Retry.Merge(jobs.RetryPolicy{
		MaxAttempts: jobs.MaxAttemptsDefault, Base: jobs.RetryBaseDefault, Max: jobs.RetryMaxDefault,
	})
	return c
}

func (c ClientConfig) validate() error {
	if c.DedupeWindow < time.Second {
		return fmt.Errorf("dedupe_window must be at least 1s, got %v", c.DedupeWindow)
	}
	if c.MaxPayloadBytes < 1 {
		return fmt.Errorf("max_payload_bytes must be at least 1, got %d", c.MaxPayloadBytes)
	}
	if c.MaxPayloadBytes > MaxPayloadBytesLimit {
		return fmt.Errorf("max_payload_bytes must be at most %d (64 MiB; keep larger payloads in object storage and enqueue their URL), got %d",
			MaxPayloadBytesLimit, c.MaxPayloadBytes)
	}
	if err := validQueueName(c.Queue); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	for name, wf := range c.Workflows {
		if err := wf.Retry.Merge(c.Retry).Validate(); err != nil {
			return fmt.Errorf("workflows.%s.retry: %w", name, err)
		}
		if wf.Queue != "" {
			if err := validQueueName(wf.Queue); err != nil {
				return fmt.Errorf("workflows.%s.queue: %w", name, err)
			}
		}
	}
	return nil
}

// checkLabel refuses a label (idempotency key, run id, workflow, queue)
// that is not valid UTF-8 or holds a control character: asynq cannot store
// the first (its task message is protobuf, whose strings are UTF-8), and the
// second cannot be sent as a header (Idempotency-Key) and rewrites the
// terminal of whoever lists it.
func checkLabel(name, v string) error {
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Errorf("%s: invalid UTF-8 at byte offset %d", name, i)
		case unicode.IsControl(r):
			return fmt.Errorf("%s contains the control character %U at byte offset %d", name, r, i)
		}
		i += size
	}
	return nil
}

func validQueueName(q string) error {
	if err := checkLabel("queue name", q); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(q) == "":
		return errors.New("queue name is empty")
	case strings.ContainsAny(q, " \t\r\n:{}"):
		return fmt.Errorf("queue name %q may not contain spaces, ':', '{' or '}'", q)
	case len(q) > 128:
		return fmt.Errorf("queue name is longer than 128 bytes")
	}
	return nil
}

// EnqueueOptions are the per-call settings of an enqueue.
type EnqueueOptions struct {
	// Queue overrides the workflow's or the default queue.
	Queue string
	// Workflow names a configured workflow; its queue and retry policy apply.
	Workflow string
	// RunID groups the steps of one run.
	RunID string
	// Key is the idempotency key: a second enqueue with the same key to
	// the same queue within the dedupe window is not enqueued and reports
	// Duplicate with the first task's id. Keys are unique per queue: the
	// same key sent to two queues makes two tasks. The task id is derived
	// from the key ("k_" and a hash), so a task of the key still in its
	// queue after the window also makes a new enqueue a Duplicate.
	Key string
	// MaxAttempts overrides the attempts allowed (first included); 0 keeps
	// the workflow's or global policy.
	MaxAttempts int
	// RetryBase and RetryMax override the backoff of this task; 0 keeps the
	// workflow's or global policy.
	RetryBase, RetryMax time.Duration
	// Timeout bounds one attempt; 0 keeps asynq's 30m. The worker enforces
	// it through the context, and asynq's own timeout (TimeoutGrace later)
	// is the backstop for a handler that ignores its context.
	Timeout time.Duration
	// In delays the first attempt.
	In time.Duration
	// ReplayOf records the dead letter this task replays (lineage).
	ReplayOf string
	// Step names the run step the task is (with RunID). A run step whose
	// payload is RunStepPayload ("{}") is rendered by the worker from its
	// run's workflow, so the kind's schema is checked then, not here.
	Step string
	// RunVersion is the version of the run's state the task was enqueued
	// against (package runs); empty when none.
	RunVersion string
	// TaskID forces the task id (used by replay): an existing task of that
	// id makes the enqueue a Duplicate, and Key is then not taken. Empty
	// derives the id from Key, or picks a random UUID as asynq does.
	TaskID string
}

// Result says what an enqueue did.
type Result struct {
	// ID is the task id: the new task's, or for a duplicate the id of the
	// task it duplicates.
	ID string `json:"id"`
	// Kind is the task kind.
	Kind string `json:"kind"`
	// Queue is the queue the task went to.
	Queue string `json:"queue"`
	// Duplicate is true when the idempotency key was already used within the
	// dedupe window and nothing was enqueued.
	Duplicate bool `json:"duplicate"`
	// Key is the idempotency key given, if any.
	Key string `json:"key,omitempty"`
}

// Client validates and enqueues tasks. It is safe for concurrent use.
//
// An enqueue is one Lua script, one round trip: it takes the idempotency
// key, if any, and writes the task as asynq's own client does (task hash,
// pending list or scheduled set). An idempotency key is unique per queue:
// its Redis key carries the queue's hash tag, as asynq's keys of that queue
// do, so that the script stays in one slot on Redis Cluster.
type Client struct {
	rdb redis.UniversalClient
	reg *Registry
	cfg ClientConfig
	// cluster is set on Redis Cluster, where asynq:queues (no hash tag)
	// cannot be written by the enqueue script.
	cluster bool
	// windowMS is the dedupe window in ms, as the script takes it.
	windowMS string
	// published holds the queues this client has added to asynq:queues.
	published sync.Map
}

// NewClient returns a Client on rdb that validates payloads with reg. The
// caller keeps ownership of rdb.
func NewClient(rdb redis.UniversalClient, reg *Registry, cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("queue client: %w", err)
	}
	_, cluster := rdb.(*redis.ClusterClient)
	return &Client{rdb: rdb, reg: reg, cfg: cfg, cluster: cluster,
		windowMS: strconv.FormatInt(cfg.DedupeWindow.Milliseconds(), 10)}, nil
}

// Close releases the client. It does not close the Redis connection.
func (c *Client) Close() error { return nil }

// Registry returns the registry the client validates with.
func (c *Client) Registry() *Registry { return c.reg }

// Policy returns the effective retry policy for a workflow ("" for none).
func (c *Client) Policy(workflow string) jobs.RetryPolicy {
	return policyFor(c.cfg.Retry, c.cfg.Workflows, workflow)
}

func policyFor(global jobs.RetryPolicy, wfs map[string]Workflow, workflow string) jobs.RetryPolicy {
	if wf, ok := wfs[workflow]; ok && workflow != "" {
		return wf.Retry.Merge(global)
	}
	return global
}

// checkOption refuses a label option (idempotency key, run id ...) that is
// too long or not a clean UTF-8 label.
func checkOption(name, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > MaxKeyBytes {
		return fmt.Errorf("%s is %d bytes, over the limit of %d", name, len(v), MaxKeyBytes)
	}
	return checkLabel(name, v)
}

// prepare validates everything about an enqueue without touching Redis and
// encodes the task message asynq will read.
func (c *Client) prepare(kind string, payload []byte, o EnqueueOptions) (*prepared, error) {
	return c.prepareChecked(kind, payload, o, false)
}

// prepareChecked is prepare; checked says payload's UTF-8, syntax, depth
// and keys were checked already, with the batch line it came in.
func (c *Client) prepareChecked(kind string, payload []byte, o EnqueueOptions, checked bool) (*prepared, error) {
	if strings.TrimSpace(kind) == "" {
		return nil, errors.New("task kind is empty")
	}
	if len(payload) > c.cfg.MaxPayloadBytes {
		return nil, fmt.Errorf("payload is %d bytes, over the limit of %d (enqueue.max_payload_bytes)", len(payload), c.cfg.MaxPayloadBytes)
	}
	e, err := c.reg.lookup(kind)
	if err != nil {
		return nil, err
	}
	if o.Step != "" && o.RunID == "" {
		return nil, fmt.Errorf("step %q: a run step needs a run id", o.Step)
	}
	if o.Step == "" || string(payload) != RunStepPayload {
		if _, err := e.validate(payload, checked); err != nil {
			return nil, err
		}
	}
	for _, l := range [...]struct{ name, v string }{
		{"idempotency key", o.Key}, {"run id", o.RunID}, {"workflow", o.Workflow}, {"replay_of", o.ReplayOf}, {"task id", o.TaskID},
		{"step", o.Step}, {"run version", o.RunVersion},
	} {
		if err := checkOption(l.name, l.v); err != nil {
			return nil, err
		}
	}
	if o.Key != "" && strings.TrimSpace(o.Key) == "" {
		return nil, errors.New("idempotency key is blank")
	}
	if o.TaskID != "" && strings.TrimSpace(o.TaskID) == "" {
		return nil, errors.New("task id is blank")
	}
	queue := c.cfg.Queue
	policy := c.cfg.Retry
	if o.Workflow != "" {
		wf, ok := c.cfg.Workflows[o.Workflow]
		switch {
		case !ok && o.Step != "" && o.Queue != "":
			// A run's step carries its queue and retry settings from its
			// run, which knows its workflow even where this client's
			// configuration does not (yet): the global policy applies to
			// what the step leaves unset.
		case !ok:
			return nil, fmt.Errorf("unknown workflow %q (configured: %s)", o.Workflow, strings.Join(sortedKeys(c.cfg.Workflows), ", "))
		}
		if wf.Queue != "" {
			queue = wf.Queue
		}
		policy = wf.Retry.Merge(policy)
	}
	if o.Queue != "" {
		if err := validQueueName(o.Queue); err != nil {
			return nil, err
		}
		queue = o.Queue
	}
	switch {
	case o.MaxAttempts < 0:
		return nil, fmt.Errorf("max attempts must not be negative, got %d", o.MaxAttempts)
	case o.RetryBase < 0 || o.RetryMax < 0:
		return nil, errors.New("retry base and max must not be negative")
	case o.Timeout < 0:
		return nil, fmt.Errorf("timeout must not be negative, got %v", o.Timeout)
	case o.In < 0:
		return nil, fmt.Errorf("delay must not be negative, got %v", o.In)
	}
	if o.MaxAttempts > 0 {
		policy.MaxAttempts = o.MaxAttempts
	}
	if o.RetryBase > 0 {
		policy.Base = o.RetryBase
	}
	if o.RetryMax > 0 {
		policy.Max = o.RetryMax
	}
	if err := policy.Validate(); err != nil {
		return nil, fmt.Errorf("retry policy: %w", err)
	}

	// The headers, in key order (a map in the message; the order is ours).
	var hs [9]header
	h := hs[:0]
	add := func(k, v string) {
		if v != "" {
			h = append(h, header{k, v})
		}
	}
	add(jobs.HeaderKey, o.Key)
	add(jobs.HeaderReplayOf, o.ReplayOf)
	if o.RetryBase > 0 {
		add(jobs.HeaderRetryBase, o.RetryBase.String())
	}
	if o.RetryMax > 0 {
		add(jobs.HeaderRetryMax, o.RetryMax.String())
	}
	add(jobs.HeaderRunID, o.RunID)
	add(jobs.HeaderRunVersion, o.RunVersion)
	add(jobs.HeaderStep, o.Step)
	m := taskMessage{
		kind:    kind,
		payload: payload,
		queue:   queue,
		// asynq gets one retry more than the policy allows: the worker
		// ends the last attempt itself (SkipRetry), so a snooze on the
		// last attempt still has a retry to use and is not archived by
		// asynq.
		retry:   int32(min(policy.MaxAttempts, math.MaxInt32)),
		timeout: asynqDefaultTimeout,
	}
	if o.Timeout > 0 {
		add(jobs.HeaderTimeout, o.Timeout.String())
		m.timeout = int64(((o.Timeout + TimeoutGrace).Round(time.Second) + time.Second) / time.Second)
	}
	add(jobs.HeaderWorkflow, o.Workflow)
	m.headers = h

	p := &prepared{kind: kind, queue: queue, key: o.Key}
	switch {
	case o.TaskID != "":
		p.id = o.TaskID
	case o.Key != "":
		p.id = taskIDForKey(queue, o.Key)
		p.dedupe = dedupeKey(queue, keyHash(o.Key))
	default:
		p.id = uuid.NewString()
	}
	m.id = p.id
	if o.In > 0 {
		p.processAt = time.Now().Add(o.In).Unix()
	}
	msg, err := appendTaskMessage(make([]byte, 0, taskMessageSize(&m)), &m)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", kind, err)
	}
	p.msg = msg
	return p, nil
}

// Enqueue validates payload for kind and enqueues it in one round trip.
// With a Key, at most one task is enqueued per key and queue within the
// dedupe window, also under concurrent callers: the others get Duplicate
// with the first task's id and no error. The key stays taken for the whole
// window, also after its task finished; after the window a task of the same
// key that is still in Redis (its id is derived from the key) makes a new
// enqueue a Duplicate too.
func (c *Client) Enqueue(ctx context.Context, kind string, payload []byte, o EnqueueOptions) (Result, error) {
	p, err := c.prepare(kind, payload, o)
	if err != nil {
		return Result{}, err
	}
	if c.cfg.Admit != nil {
		if err := c.cfg.Admit(ctx, kind, o); err != nil {
			return Result{}, err
		}
	}
	return c.send(ctx, p)
}

// EnqueueArgs marshals typed args and enqueues them under args.Kind().
func (c *Client) EnqueueArgs(ctx context.Context, args jobs.Args, o EnqueueOptions) (Result, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return Result{}, fmt.Errorf("marshal %s payload: %w", args.Kind(), err)
	}
	return c.Enqueue(ctx, args.Kind(), b, o)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	sort.Strings(out)
	return out
}

// Check runs every validation of an enqueue without Redis: kind, payload
// size, JSON, schema, options and workflow. It is what Enqueue checks first.
func Check(reg *Registry, cfg ClientConfig, kind string, payload []byte, o EnqueueOptions) error {
	c := &Client{reg: reg, cfg: cfg.withDefaults()}
	if err := c.cfg.validate(); err != nil {
		return err
	}
	_, err := c.prepare(kind, payload, o)
	return err
}
