package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"
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
	// QueueDefault is the queue used when neither the call nor the workflow
	// names one.
	QueueDefault = "default"
	// TimeoutGrace is how much longer asynq's backstop timeout is than the
	// attempt timeout the worker enforces.
	TimeoutGrace = 5 * time.Second
	// MaxKeyBytes is the longest idempotency key, run id or workflow name.
	MaxKeyBytes = 512
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
	// DedupeWindow is how long an idempotency key blocks another enqueue.
	// Default DedupeWindowDefault (24h).
	DedupeWindow time.Duration
	// MaxPayloadBytes refuses larger payloads. Default MaxPayloadBytesDefault.
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
	// Key is the idempotency key: a second enqueue with the same key within
	// the dedupe window is not enqueued and reports Duplicate.
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
	// TaskID forces the task id (used by replay); empty derives it from Key
	// or lets asynq pick one.
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
type Client struct {
	rdb redis.UniversalClient
	ac  *asynq.Client
	reg *Registry
	cfg ClientConfig
}

// NewClient returns a Client on rdb that validates payloads with reg. The
// caller keeps ownership of rdb.
func NewClient(rdb redis.UniversalClient, reg *Registry, cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("queue client: %w", err)
	}
	return &Client{rdb: rdb, ac: asynq.NewClientFromRedisClient(rdb), reg: reg, cfg: cfg}, nil
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

// prepared is a validated enqueue, ready to go to Redis.
type prepared struct {
	task  *asynq.Task
	opts  []asynq.Option
	queue string
	id    string // deterministic id when keyed
	hash  string // key hash when keyed
	token string // claim token when the key is claimed by this enqueue
	key   string
}

// prepare validates everything about an enqueue without touching Redis.
func (c *Client) prepare(kind string, payload []byte, o EnqueueOptions) (*prepared, error) {
	if strings.TrimSpace(kind) == "" {
		return nil, errors.New("task kind is empty")
	}
	if len(payload) > c.cfg.MaxPayloadBytes {
		return nil, fmt.Errorf("payload is %d bytes, over the limit of %d (enqueue.max_payload_bytes)", len(payload), c.cfg.MaxPayloadBytes)
	}
	if _, err := c.reg.Validate(kind, payload); err != nil {
		return nil, err
	}
	for _, l := range []struct{ name, v string }{
		{"idempotency key", o.Key}, {"run id", o.RunID}, {"workflow", o.Workflow}, {"replay_of", o.ReplayOf}, {"task id", o.TaskID},
	} {
		if len(l.v) > MaxKeyBytes {
			return nil, fmt.Errorf("%s is %d bytes, over the limit of %d", l.name, len(l.v), MaxKeyBytes)
		}
		if err := checkLabel(l.name, l.v); err != nil {
			return nil, err
		}
	}
	if o.Key != "" && strings.TrimSpace(o.Key) == "" {
		return nil, errors.New("idempotency key is blank")
	}
	queue := c.cfg.Queue
	policy := c.cfg.Retry
	if o.Workflow != "" {
		wf, ok := c.cfg.Workflows[o.Workflow]
		if !ok {
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
	headers := map[string]string{}
	if o.RetryBase > 0 {
		policy.Base = o.RetryBase
		headers[jobs.HeaderRetryBase] = o.RetryBase.String()
	}
	if o.RetryMax > 0 {
		policy.Max = o.RetryMax
		headers[jobs.HeaderRetryMax] = o.RetryMax.String()
	}
	if err := policy.Validate(); err != nil {
		return nil, fmt.Errorf("retry policy: %w", err)
	}
	setIf(headers, jobs.HeaderWorkflow, o.Workflow)
	setIf(headers, jobs.HeaderRunID, o.RunID)
	setIf(headers, jobs.HeaderKey, o.Key)
	setIf(headers, jobs.HeaderReplayOf, o.ReplayOf)

	p := &prepared{queue: queue, key: o.Key}
	// asynq gets one retry more than the policy allows: the worker ends the
	// last attempt itself (SkipRetry), so a snooze on the last attempt still
	// has a retry to use and is not archived by asynq.
	p.opts = []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(policy.MaxAttempts)}
	if o.Timeout > 0 {
		headers[jobs.HeaderTimeout] = o.Timeout.String()
		p.opts = append(p.opts, asynq.Timeout((o.Timeout+TimeoutGrace).Round(time.Second)+time.Second))
	}
	if o.In > 0 {
		p.opts = append(p.opts, asynq.ProcessIn(o.In))
	}
	switch {
	case o.TaskID != "":
		p.id = o.TaskID
	case o.Key != "":
		p.hash = keyHash(o.Key)
		p.id = taskIDForKey(p.hash)
		p.token = newToken()
	}
	if p.id != "" {
		p.opts = append(p.opts, asynq.TaskID(p.id))
	}
	p.task = asynq.NewTaskWithHeaders(kind, payload, headers)
	return p, nil
}

func setIf(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// Enqueue validates payload for kind and enqueues it. With a Key, at most one
// task is enqueued per key within the dedupe window, also under concurrent
// callers: the others get Duplicate with the first task's id and no error.
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
	if p.token != "" {
		existing, claimed, err := c.claim(ctx, p)
		if err != nil {
			return Result{}, err
		}
		if !claimed {
			return Result{ID: existing, Kind: kind, Queue: p.queue, Duplicate: true, Key: p.key}, nil
		}
	}
	return c.send(ctx, kind, p, true)
}

// EnqueueArgs marshals typed args and enqueues them under args.Kind().
func (c *Client) EnqueueArgs(ctx context.Context, args jobs.Args, o EnqueueOptions) (Result, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return Result{}, fmt.Errorf("marshal %s payload: %w", args.Kind(), err)
	}
	return c.Enqueue(ctx, args.Kind(), b, o)
}

// ClaimLease is how long a claim on an idempotency key is held before its
// enqueue is confirmed. A client that dies between claim and enqueue frees
// the key after this long instead of blocking it for the whole window.
const ClaimLease = 30 * time.Second

// claimScript claims an idempotency key: it returns the value already
// holding the key, or nil after storing "<task id> <token>" for the lease.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return false`)

// commitScript turns our pending claim into the task id for the window.
var commitScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return false`)

// releaseScript drops a claim we made, if it is still ours.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0`)

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Client) claimArgs(p *prepared) ([]string, []any) {
	return []string{dedupeKey(p.hash)}, []any{p.id, p.token, ClaimLease.Milliseconds()}
}

func (c *Client) commitArgs(p *prepared) ([]string, []any) {
	return []string{dedupeKey(p.hash)}, []any{p.id, p.token, c.cfg.DedupeWindow.Milliseconds()}
}

// claimedID returns the task id in a claim value ("<id>" or "<id> <token>").
func claimedID(v string) string {
	id, _, _ := strings.Cut(v, " ")
	return id
}

func (c *Client) claim(ctx context.Context, p *prepared) (existing string, claimed bool, err error) {
	keys, args := c.claimArgs(p)
	v, err := claimScript.Run(ctx, c.rdb, keys, args...).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return "", true, nil
	case err != nil:
		return "", false, fmt.Errorf("claim idempotency key: %w", err)
	}
	return claimedID(v), false, nil
}

// release gives a claim back, so that a retry of the enqueue can succeed.
func (c *Client) release(ctx context.Context, p *prepared) {
	keys, args := c.claimArgs(p)
	_ = releaseScript.Run(context.WithoutCancel(ctx), c.rdb, keys, args[:2]...).Err()
}

// send puts a prepared task into asynq. A task id conflict means the keyed
// task from an earlier window still exists: a duplicate, not an error. With
// commit, a claimed key is then held for the window; a batch commits its
// claims in one pipeline instead.
func (c *Client) send(ctx context.Context, kind string, p *prepared, commit bool) (Result, error) {
	res := Result{ID: p.id, Kind: kind, Queue: p.queue, Key: p.key}
	info, err := c.ac.EnqueueContext(ctx, p.task, p.opts...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		// The keyed task from an earlier window is still in Redis. Hold the
		// key for a new window: it is a duplicate either way.
		res.Duplicate = true
		if p.token != "" && commit {
			c.commit(ctx, p)
		}
		return res, nil
	case err != nil:
		if p.token != "" {
			// If the enqueue did land after all, a retry meets the task id
			// and reports a duplicate, which is the truth.
			c.release(ctx, p)
		}
		return Result{}, fmt.Errorf("enqueue %s: %w", kind, err)
	}
	res.ID = info.ID
	if p.token != "" && commit {
		c.commit(ctx, p)
	}
	return res, nil
}

// commit makes a claim last the dedupe window. If it fails the claim's
// lease still blocks the key for ClaimLease, and the deterministic task id
// blocks it while the task exists, so a failed commit only shortens the
// window; it is not reported as an enqueue error.
func (c *Client) commit(ctx context.Context, p *prepared) {
	keys, args := c.commitArgs(p)
	_ = commitScript.Run(context.WithoutCancel(ctx), c.rdb, keys, args...).Err()
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
