package runs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// casRetries bounds how often one change is computed again after another
// change of the same run won the compare and set.
const casRetries = 32

// maxInputBytes bounds a run's input.
const maxInputBytes = queue.MaxPayloadBytesDefault

// maxStepNameBytes bounds a step's name.
const maxStepNameBytes = 128

// maxReasonBytes bounds a cancel reason.
const maxReasonBytes = 1024

// Runs starts runs, moves them along as their steps finish (Middleware,
// Observer), and reads and cancels them. It is safe for concurrent use.
type Runs struct {
	rdb    redis.UniversalClient
	client *queue.Client
	insp   *queue.Inspector
	cfg    Config
	wfs    map[string]Workflow
	log    zerolog.Logger
	// counted holds the attempts (their *jobs.Step) whose start the
	// middleware counted (attemptCounted) or deferred (attemptDeferred),
	// until the observer sees them: a snoozed attempt
	// is not an attempt, and the observer takes it back.
	counted sync.Map
	// apart makes a state change and the enqueue it decides two calls, as
	// on Redis Cluster, even on a single Redis (tests of the repair of a
	// crash between the two).
	apart bool
	// cache keeps the states this process wrote (cache.go).
	cache stateCache
	// enqueueFault, in tests, fails an enqueue of a step on its own.
	enqueueFault func() error
}

// New returns Runs on rdb that enqueues steps with client and deletes the
// tasks of cancelled runs with insp (nil: an inspector on rdb). client may
// be nil for a Runs that only reads and cancels runs. The caller keeps
// ownership of rdb.
//
// Cancel deletes the queued step's task, so that no further step starts:
// a worker that queued a step keeps the run's state it wrote and starts
// the step from it without reading it again (one round trip less per
// step), so the deleted task is what stops it. A step whose task a worker
// had already taken when the cancel landed runs, and its output is kept.
func New(rdb redis.UniversalClient, client *queue.Client, insp *queue.Inspector, cfg Config) (*Runs, error) {
	if rdb == nil {
		return nil, errors.New("runs: redis client is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	if insp == nil {
		insp = queue.NewInspector(rdb)
	}
	r := &Runs{rdb: rdb, client: client, insp: insp, cfg: cfg, wfs: make(map[string]Workflow, len(cfg.Workflows))}
	if cfg.Logger != nil {
		r.log = *cfg.Logger
	} else {
		r.log = log.Logger
	}
	for name, wf := range cfg.Workflows {
		switch {
		case strings.TrimSpace(name) == "":
			return nil, errors.New("runs: a workflow has an empty name")
		case wf.Name == "":
			wf.Name = name
		case wf.Name != name:
			return nil, fmt.Errorf("runs: workflows.%s: its name says %q", name, wf.Name)
		}
		if err := wf.Caps.Check(); err != nil {
			return nil, fmt.Errorf("runs: workflows.%s.caps: %w", name, err)
		}
		if len(wf.Steps) == 0 {
			return nil, fmt.Errorf("runs: workflows.%s: no steps", name)
		}
		recs, err := planOf(wf.Steps)
		if err != nil {
			return nil, fmt.Errorf("runs: workflows.%s: %w", name, err)
		}
		if n := mainSteps(recs); n > cfg.MaxSteps {
			return nil, fmt.Errorf("runs: workflows.%s: %d steps, over max_steps %d", name, n, cfg.MaxSteps)
		}
		r.wfs[name] = wf
	}
	cfg.Workflows = nil
	return r, nil
}

// Workflows returns the configured workflows by name.
func (r *Runs) Workflows() map[string]Workflow { return maps.Clone(r.wfs) }

// planOf checks a list of step definitions and returns their plan: each
// step in order, followed by its fallback, which runs only in that role.
func planOf(defs []jobs.StepDef) ([]stepRec, error) {
	byName := make(map[string]int, len(defs))
	for i, d := range defs {
		if err := checkStepName(d.Name); err != nil {
			return nil, fmt.Errorf("steps[%d]: %w", i, err)
		}
		if _, dup := byName[d.Name]; dup {
			return nil, fmt.Errorf("steps[%d]: step name %q is used twice", i, d.Name)
		}
		byName[d.Name] = i
		if strings.TrimSpace(d.Kind) == "" {
			return nil, fmt.Errorf("step %q: kind is empty", d.Name)
		}
		if len(d.Payload) > 0 && !json.Valid(d.Payload) {
			return nil, fmt.Errorf("step %q: payload template is not valid JSON", d.Name)
		}
		if d.MaxAttempts < 0 || d.RetryBase < 0 || d.RetryMax < 0 || d.Timeout < 0 {
			return nil, fmt.Errorf("step %q: max_attempts, retry_base, retry_max and timeout must not be negative", d.Name)
		}
	}
	isFallback := map[string]bool{}
	for _, d := range defs {
		if d.Fallback == "" {
			continue
		}
		if _, ok := byName[d.Fallback]; !ok {
			return nil, fmt.Errorf("step %q: fallback %q is not a step of the list", d.Name, d.Fallback)
		}
		if d.Fallback == d.Name {
			return nil, fmt.Errorf("step %q: a step cannot be its own fallback", d.Name)
		}
		isFallback[d.Fallback] = true
	}
	// Each step, then the fallbacks it may reach (a fallback's fallback
	// too) not listed yet; a fallback runs at most once, in the role of
	// the first step that dies with it pending, and then moves next to it.
	recs := make([]stepRec, 0, len(defs))
	listed := make(map[string]bool, len(defs))
	for _, d := range defs {
		if isFallback[d.Name] {
			continue
		}
		recs = append(recs, stepRec{Def: d, Status: StepPending})
		listed[d.Name] = true
		for name := d.Fallback; name != "" && !listed[name]; name = defs[byName[name]].Fallback {
			recs = append(recs, stepRec{Def: defs[byName[name]], Status: StepPending, Only: true})
			listed[name] = true
		}
	}
	if len(recs) == 0 {
		return nil, errors.New("every step is another's fallback: nothing runs first")
	}
	for _, d := range defs {
		if !listed[d.Name] { // in a fallback cycle no step reaches
			recs = append(recs, stepRec{Def: d, Status: StepPending, Only: true})
			listed[d.Name] = true
		}
	}
	return recs, nil
}

// mainSteps counts the steps of a plan that are not fallbacks.
func mainSteps(recs []stepRec) int {
	n := 0
	for _, r := range recs {
		if !r.Only {
			n++
		}
	}
	return n
}

func checkStepName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("step name is empty")
	case len(name) > maxStepNameBytes:
		return fmt.Errorf("step name %.40q... is longer than %d bytes", name, maxStepNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("step name %q is not valid UTF-8", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("step name %q contains a control character", name)
	}
	return nil
}

// normalizeInput checks a run's input: a JSON object, or null or nothing
// for {}.
func normalizeInput(in json.RawMessage) (json.RawMessage, error) {
	trimmed := strings.TrimSpace(string(in))
	if trimmed == "" || trimmed == "null" {
		return json.RawMessage(`{}`), nil
	}
	if len(in) > maxInputBytes {
		return nil, fmt.Errorf("input is %d bytes, over the limit of %d", len(in), maxInputBytes)
	}
	if !utf8.ValidString(trimmed) {
		return nil, errors.New("input is not valid UTF-8")
	}
	v, err := decodeValue([]byte(trimmed))
	if err != nil {
		return nil, fmt.Errorf("input is not valid JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("input must be a JSON object, got %s", jsonType(v))
	}
	return json.RawMessage(trimmed), nil
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// Start starts a run of workflow with input (a JSON object; null or empty
// for {}): it stores the run and enqueues its first step. With o.Key the
// run id derives from workflow and key, and a second start returns the
// first run's id with Duplicate, after making sure the first run's queued
// step has its task (a start that crashed between storing the run and
// enqueuing its step is repaired).
func (r *Runs) Start(ctx context.Context, workflow string, input json.RawMessage, o StartOptions) (Started, error) {
	if r.client == nil {
		return Started{}, errors.New("runs: start needs a queue client")
	}
	wf, ok := r.wfs[workflow]
	if !ok {
		known := slices.Sorted(maps.Keys(r.wfs))
		if len(known) == 0 {
			return Started{}, fmt.Errorf("unknown workflow %q (no workflows are configured)", workflow)
		}
		return Started{}, fmt.Errorf("unknown workflow %q (configured: %s)", workflow, strings.Join(known, ", "))
	}
	in, err := normalizeInput(input)
	if err != nil {
		return Started{}, fmt.Errorf("workflow %s: %w", workflow, err)
	}
	if err := o.Caps.Check(); err != nil {
		return Started{}, fmt.Errorf("caps: %w", err)
	}
	id := newRunID()
	if o.Key != "" {
		if err := checkKey(o.Key); err != nil {
			return Started{}, err
		}
		id = runIDForKey(workflow, o.Key)
	}
	now := r.cfg.Now().UTC()
	recs, err := planOf(wf.Steps)
	if err != nil {
		return Started{}, fmt.Errorf("workflow %s: %w", workflow, err)
	}
	d := &doc{
		ID: id, Workflow: workflow, Status: StatusRunning, Key: o.Key, Input: in, Created: now,
		Caps: wf.Caps.Tighten(o.Caps), Steps: recs,
	}
	for i := range d.Steps {
		d.Steps[i].Queue = r.queueOf(wf, d.Steps[i].Def)
	}
	first := d.next(-1)
	c := &change{doc: d, events: []Event{{At: now, Kind: "started", Text: "run of workflow " + workflow + " started"}}}
	c.events = append(c.events, r.markQueued(d, first, now))

	// The index first: a run is never stored unlisted (an entry without a
	// run is dropped by List).
	if err := r.rdb.ZAddNX(ctx, indexKey(), redis.Z{Score: float64(now.UnixMilli()), Member: id}).Err(); err != nil {
		return Started{}, fmt.Errorf("start run of %s: index: %w", workflow, err)
	}
	c.next = &first
	token := newWriteToken()
	d.Write = token
	v, raw, enqueued, err := r.write(ctx, 0, c)
	if err != nil {
		// Stored already: by an earlier start of the same key (a
		// duplicate), or by this one with its reply lost (its token).
		l, lerr := r.load(ctx, id)
		if lerr != nil {
			if errors.Is(err, errConflict) {
				return Started{RunID: id, Duplicate: true}, lerr
			}
			return Started{}, err
		}
		dup := l.doc.Write != token
		if err := r.ensureQueued(ctx, l.doc, l.version); err != nil {
			return Started{RunID: id, Duplicate: dup}, fmt.Errorf("run %s: repair its queued step: %w", id, err)
		}
		return Started{RunID: id, Duplicate: dup}, nil
	}
	// A worker that starts runs (the scheduler, a Go program) takes their
	// first steps without reading them.
	r.cache.put(id, &loaded{version: v, raw: raw, doc: d, outputs: map[string]json.RawMessage{}})
	if enqueued {
		return Started{RunID: id}, nil
	}
	if err := r.enqueue(ctx, d, first, v); err != nil {
		hint := ""
		if o.Key != "" {
			hint = " (start it again with the same key to enqueue it)"
		}
		return Started{RunID: id}, fmt.Errorf("run %s was stored but its first step %q was not enqueued%s: %w", id, d.Steps[first].Def.Name, hint, err)
	}
	return Started{RunID: id}, nil
}

// checkKey refuses a run key that cannot name a run.
func checkKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return errors.New("run key is blank")
	case len(key) > queue.MaxKeyBytes:
		return fmt.Errorf("run key is %d bytes, over the limit of %d", len(key), queue.MaxKeyBytes)
	case !utf8.ValidString(key) || strings.IndexFunc(key, unicode.IsControl) >= 0:
		return errors.New("run key must be valid UTF-8 without control characters")
	}
	return nil
}

// CheckStart runs the checks of Start that need no Redis on input and o:
// what a caller can refuse before it connects.
func CheckStart(input json.RawMessage, o StartOptions) error {
	if _, err := normalizeInput(input); err != nil {
		return err
	}
	if err := o.Caps.Check(); err != nil {
		return fmt.Errorf("caps: %w", err)
	}
	if o.Key != "" {
		return checkKey(o.Key)
	}
	return nil
}

// CheckReason refuses a cancel reason Cancel would refuse.
func CheckReason(reason string) error {
	if len(reason) > maxReasonBytes {
		return fmt.Errorf("cancel reason is %d bytes, over the limit of %d", len(reason), maxReasonBytes)
	}
	return nil
}

// queueOf is the queue of a step's task: the step's, else the workflow's,
// else the queue client's for the workflow.
func (r *Runs) queueOf(wf Workflow, def jobs.StepDef) string {
	q := cmp.Or(def.Queue, wf.Queue)
	if r.client == nil {
		return cmp.Or(q, queue.QueueDefault)
	}
	return r.client.QueueFor(queue.EnqueueOptions{Queue: q, Workflow: wf.Name})
}

// next returns the index of the first pending step after i that is not a
// fallback, -1 for none.
func (d *doc) next(i int) int {
	for j := i + 1; j < len(d.Steps); j++ {
		if !d.Steps[j].Only && d.Steps[j].Status == StepPending {
			return j
		}
	}
	return -1
}

// markQueued marks step i queued, with the task id its enqueue derives.
func (r *Runs) markQueued(d *doc, i int, now time.Time) Event {
	st := &d.Steps[i]
	st.Status = StepQueued
	st.TaskID = queue.TaskIDForKey(st.Queue, stepKey(d.ID, st.Def.Name))
	return Event{At: now, Kind: "step_queued", Step: st.Def.Name, Text: "step " + st.Def.Name + " queued in " + st.Queue}
}

// enqueue enqueues step i of d, decided at version v. It is idempotent:
// the task id derives from run and step.
func (r *Runs) enqueue(ctx context.Context, d *doc, i int, v int64) error {
	if r.client == nil {
		return errors.New("runs: enqueue needs a queue client")
	}
	st := d.Steps[i]
	o := r.stepOptions(d, i, v)
	// Only a task enqueued atomically with the change that queued it
	// vouches for the run's version (its worker may start it from the
	// state it wrote): this one, enqueued apart or as a repair, does not.
	o.RunVersion = ""
	// A run's own steps are not asked to the client's Admit (an error
	// budget that rejects new work): the run was admitted when it started,
	// and refusing its next step would strand it.
	enq := func(o queue.EnqueueOptions) (queue.Result, error) {
		_, res, _, err := r.client.EnqueueWith(ctx, preAlways, st.Def.Kind, []byte(queue.RunStepPayload), o)
		return res, err
	}
	if r.enqueueFault != nil {
		if err := r.enqueueFault(); err != nil {
			return fmt.Errorf("run %s: enqueue step %q: %w", d.ID, st.Def.Name, err)
		}
	}
	res, err := enq(o)
	if err == nil && res.Duplicate && r.insp != nil {
		// A queued step whose task is archived, completed or gone while
		// its key is still taken: the task is an earlier run's of the same
		// id (a keyed run started again after the first one's retention),
		// since this run's step would not be queued any more. Make room
		// for this run's.
		state, serr := r.insp.State(ctx, res.Queue, res.ID)
		if serr == nil && state == queue.TaskGone {
			r.log.Warn().Str("run_id", d.ID).Str("step", st.Def.Name).Str("task_id", res.ID).
				Msg("a queued run step's key was held by an old task that is gone; enqueued the step by its task id")
			o.TaskID = res.ID
			_, err = enq(o)
		} else if serr == nil && (state == queue.TaskArchived || state == queue.TaskCompleted) {
			if _, err = r.insp.DeleteTask(ctx, res.Queue, res.ID); err == nil {
				r.log.Warn().Str("run_id", d.ID).Str("step", st.Def.Name).Str("task_id", res.ID).Str("state", state.String()).
					Msg("a queued run step's task id was held by an old task; deleted it and enqueued the step")
				o.TaskID = res.ID // the key is still taken within the dedupe window
				_, err = enq(o)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("run %s: enqueue step %q: %w", d.ID, st.Def.Name, err)
	}
	return nil
}

// plural is "1 attempt", "2 attempts".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// preAlways is a queue.Pre that lets every enqueue go on.
var preAlways = queue.Pre{Src: "return {1}"}

// stepOptions are the enqueue options of step i of d, queued at version v.
func (r *Runs) stepOptions(d *doc, i int, v int64) queue.EnqueueOptions {
	st := d.Steps[i]
	return queue.EnqueueOptions{
		Queue: st.Queue, Workflow: d.Workflow, RunID: d.ID, Step: st.Def.Name, Key: stepKey(d.ID, st.Def.Name),
		RunVersion: strconv.FormatInt(v, 10), MaxAttempts: st.Def.MaxAttempts, RetryBase: st.Def.RetryBase,
		RetryMax: st.Def.RetryMax, Timeout: st.Def.Timeout,
	}
}

// ensureQueued enqueues every queued step of d again (a repair: the
// enqueue that should have followed the change that queued it may not
// have happened). A step whose task exists is a duplicate, not enqueued.
func (r *Runs) ensureQueued(ctx context.Context, d *doc, v int64) error {
	if d.Status.Terminal() && d.Status != StatusCapped {
		return nil
	}
	var errs []error
	for i := range d.Steps {
		if d.Steps[i].Status == StepQueued {
			errs = append(errs, r.enqueue(ctx, d, i, v))
		}
	}
	return errors.Join(errs...)
}

// updated is what update did.
type updated struct {
	// before is the state the change was computed from; after the state
	// written (before when nothing was written).
	before, after *loaded
	wrote         bool
	// enqueued is set when the change's next step (change.next) was
	// enqueued with the write.
	enqueued bool
}

// update computes a change of run id's state with fn from l (or the state
// it reads when l is nil) and writes it by compare and set; when another
// change won, it reads the state again and computes the change again, at
// most casRetries times. fn gets a fresh copy of the document to change
// and returns nil for no write; its error is returned as is.
func (r *Runs) update(ctx context.Context, id string, l *loaded, fn func(l *loaded, d *doc) (*change, error)) (updated, error) {
	for try := 0; ; try++ {
		if l == nil {
			var err error
			if l, err = r.load(ctx, id); err != nil {
				return updated{}, err
			}
		}
		d, err := l.fresh()
		if err != nil {
			return updated{before: l}, fmt.Errorf("run %s: %w", id, err)
		}
		c, err := fn(l, d)
		if err != nil || c == nil {
			return updated{before: l, after: l}, err
		}
		if c.doc == nil {
			c.doc = d
		}
		// The change's own token: a write whose reply was lost (it landed
		// or not) is known by it on the next read, and not made twice.
		token := newWriteToken()
		c.doc.Write = token
		v, raw, enqueued, err := r.write(ctx, l.version, c)
		if err != nil && !errors.Is(err, errConflict) {
			if again, lerr := r.load(ctx, id); lerr == nil && again.doc.Write == token {
				err = nil
				v, raw, enqueued = again.version, again.raw, false
			}
		}
		if err == nil {
			after := &loaded{version: v, raw: raw, doc: c.doc, outputs: l.outputs}
			if len(c.outputs) > 0 {
				after.outputs = maps.Clone(l.outputs)
				for k, o := range c.outputs {
					after.outputs[k] = o
				}
			}
			r.cache.put(id, after)
			return updated{before: l, after: after, wrote: true, enqueued: enqueued}, nil
		}
		if !errors.Is(err, errConflict) {
			return updated{before: l}, err
		}
		if again, lerr := r.load(ctx, id); lerr == nil && again.doc.Write == token {
			// This change landed although its reply said otherwise (the
			// combined script's reply was lost and the change went again
			// on its own): it is done, once. The next step's enqueue is
			// not known to have happened: the caller makes sure of it.
			r.cache.put(id, again)
			return updated{before: l, after: again, wrote: true}, nil
		} else if lerr == nil {
			l = again
		} else {
			l = nil
		}
		if try == casRetries {
			return updated{before: l}, fmt.Errorf("run %s: its state changed %d times while this change was computed; try again", id, try+1)
		}
		if try > 2 {
			// Many writers on one run: spread them out a little.
			time.Sleep(rand.N(time.Duration(try) * time.Millisecond))
		}
	}
}

// overCap returns the cap a run is over, nil for none. Cost, tokens and
// duration are over once they reach their cap (nothing is left to
// spend); before an attempt also the steps (counting a step's first
// attempt) and attempts.
func (d *doc) overCap(now time.Time, beforeAttempt, newStep bool) *jobs.CapExceededError {
	c := d.Caps
	fl := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	switch {
	case c.MaxCostUSD > 0 && d.Totals.CostUSD >= c.MaxCostUSD:
		return &jobs.CapExceededError{Cap: "max_cost_usd", Limit: "$" + fl(c.MaxCostUSD), Value: "$" + fl(d.Totals.CostUSD)}
	case c.MaxTokens > 0 && d.Totals.TokensIn+d.Totals.TokensOut >= c.MaxTokens:
		return &jobs.CapExceededError{Cap: "max_tokens", Limit: strconv.FormatInt(c.MaxTokens, 10),
			Value: strconv.FormatInt(d.Totals.TokensIn+d.Totals.TokensOut, 10)}
	case c.MaxDuration > 0 && now.Sub(d.Created) >= c.MaxDuration:
		return &jobs.CapExceededError{Cap: "max_duration", Limit: c.MaxDuration.String(), Value: now.Sub(d.Created).Round(time.Millisecond).String()}
	case !beforeAttempt:
		return nil
	case newStep && c.MaxSteps > 0 && d.StepsStarted >= c.MaxSteps:
		return &jobs.CapExceededError{Cap: "max_steps", Limit: strconv.Itoa(c.MaxSteps), Value: strconv.Itoa(d.StepsStarted + 1)}
	case c.MaxAttempts > 0 && d.Totals.Attempts >= c.MaxAttempts:
		return &jobs.CapExceededError{Cap: "max_attempts", Limit: strconv.Itoa(c.MaxAttempts), Value: strconv.Itoa(d.Totals.Attempts + 1)}
	}
	return nil
}

// capRun makes d capped by ce and returns the event and the CapEvent.
func (r *Runs) capRun(d *doc, step string, ce *jobs.CapExceededError, now time.Time) (Event, *CapEvent) {
	d.Status = StatusCapped
	d.Reason = ce.Error()
	d.Cap = &capRec{Cap: ce.Cap, Limit: ce.Limit, Value: ce.Value}
	d.Ended = now
	return Event{At: now, Kind: "capped", Step: step, Text: ce.Error()},
		&CapEvent{RunID: d.ID, Workflow: d.Workflow, Step: step, Err: ce, At: now}
}

func (r *Runs) notifyCapped(ctx context.Context, ev *CapEvent) {
	if ev != nil && r.cfg.OnCapped != nil {
		r.cfg.OnCapped(ctx, *ev)
	}
}

// Cancel cancels run id: no further step starts, a queued step's task is
// deleted (a running step finishes, and its success is stored). reason is
// kept as the run's reason. Cancelling a run that has ended is an error
// naming its status.
func (r *Runs) Cancel(ctx context.Context, id, reason string) error {
	if id == "" {
		return errors.New("run id is empty")
	}
	if err := CheckReason(reason); err != nil {
		return err
	}
	reason = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(reason, "\uFFFD"))
	var drop []stepRec
	_, err := r.update(ctx, id, nil, func(_ *loaded, d *doc) (*change, error) {
		if d.Status == StatusCancelled {
			// Cancelled before: delete its stopped steps' tasks again (a
			// delete that failed then), and say nothing more.
			drop = drop[:0]
			for _, st := range d.Steps {
				if st.Status == StepSkipped {
					drop = append(drop, st)
				}
			}
			return nil, nil
		}
		if d.Status.Terminal() {
			return nil, fmt.Errorf("run %s is %s already: only a running run can be cancelled", id, d.Status)
		}
		now := r.cfg.Now().UTC()
		drop = drop[:0]
		d.Status, d.Ended = StatusCancelled, now
		d.Reason = "cancelled"
		if reason != "" {
			d.Reason = "cancelled: " + reason
		}
		for i := range d.Steps {
			switch st := &d.Steps[i]; st.Status {
			case StepQueued, StepRetrying:
				drop = append(drop, *st)
				st.Status = StepSkipped
			case StepPending:
				st.Status = StepSkipped
			}
		}
		return &change{doc: d, events: []Event{{At: now, Kind: "cancelled", Text: d.Reason}}}, nil
	})
	if err != nil {
		return err
	}
	if r.insp == nil {
		return nil
	}
	var errs []error
	for _, st := range drop {
		if st.TaskID == "" {
			continue
		}
		if _, err := r.insp.DeleteTask(ctx, st.Queue, st.TaskID); err != nil {
			state, serr := r.insp.State(ctx, st.Queue, st.TaskID)
			if serr == nil && (state == queue.TaskActive || state == queue.TaskGone) {
				continue // running (it finishes) or done
			}
			// A worker that queued the step may start it from the state
			// it holds: say so.
			errs = append(errs, fmt.Errorf("run %s is cancelled, but the task %s of its queued step %q could not be deleted (it may still start): %w", id, st.TaskID, st.Def.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Middleware returns the runs' middleware. For a task that is a run step
// (Step.RunID and Step.Name set) it loads the run and decides whether the
// step runs: a step the run already holds a success of is answered from it
// (and the next step's enqueue repaired), a step of a cancelled or failed
// run is skipped, a step of a run over a cap is dead-lettered with a
// *jobs.CapExceededError; otherwise it counts the attempt, renders the
// step's payload from the run's input and earlier outputs, checks it
// against the kind's schema, calls the handler and, on success, stores the
// output and usage and enqueues the next step. Other tasks pass through.
func (r *Runs) Middleware() jobs.Middleware {
	return func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
			if s.RunID == "" || s.Name == "" {
				return next.ProcessStep(ctx, s)
			}
			return r.process(ctx, s, next)
		})
	}
}

// verdict is the middleware's decision before an attempt.
type verdict int

const (
	runIt    verdict = iota // run the handler
	repaired                // the run holds the step's success
	answered                // not run, nothing to dead-letter
	stray                   // not run: the run never queued this step
	capped                  // not run, dead-letter with cap_exceeded
)

// recordedError is an error the middleware returns after it stored the
// step's success (its usage included): the enqueue of the next step
// failed. The step is retried and its next delivery repairs the enqueue;
// the observer does not count the attempt's usage again.
type recordedError struct{ err error }

func (e *recordedError) Error() string { return e.err.Error() }
func (e *recordedError) Unwrap() error { return e.err }

func (r *Runs) process(ctx context.Context, s *jobs.Step, next jobs.Handler) error {
	l, err := r.cache.get(s), error(nil)
	fromCache := l != nil
	if l == nil {
		l, err = r.load(ctx, s.RunID)
	}
	if errors.Is(err, ErrNotFound) {
		return jobs.Permanent(fmt.Errorf("step %q: run %s is not stored (never started, or past its retention)", s.Name, s.RunID))
	}
	if err != nil {
		return err
	}
	if l.doc.step(s.Name) < 0 {
		return jobs.Permanent(fmt.Errorf("run %s (workflow %s) has no step %q", s.RunID, l.doc.Workflow, s.Name))
	}
	var (
		v        verdict
		capErr   *jobs.CapExceededError
		capEv    *CapEvent
		rendered json.RawMessage
		deferred bool // the step's start is written with its outcome
	)
	up0 := l
	up, err := r.update(ctx, s.RunID, l, func(l *loaded, d *doc) (*change, error) {
		v, capErr, capEv, rendered, deferred = runIt, nil, nil, nil, false
		i := d.step(s.Name)
		st := &d.Steps[i]
		now := r.cfg.Now().UTC()
		skip := func(text string) *change {
			if st.Status == StepSkipped {
				return nil
			}
			st.Status = StepSkipped
			return &change{doc: d, events: []Event{{At: now, Kind: "step_skipped", Step: st.Def.Name, Text: text}}}
		}
		switch {
		case st.Status == StepSucceeded:
			v = repaired
			return nil, nil
		case st.Status == StepReplaced, st.Only && st.Role == "":
			// Replaced, or a fallback that replaces nothing (yet).
			v = answered
			return nil, nil
		case d.Status == StatusCancelled:
			v = answered
			return skip("step " + st.Def.Name + " not run: the run was cancelled"), nil
		case d.Status == StatusCapped:
			v = capped
			if d.Cap != nil {
				capErr = d.Cap.err()
			} else {
				capErr = &jobs.CapExceededError{Cap: "unknown", Limit: "?", Value: "?"}
			}
			st.LastError, st.LastClass = capErr.Error(), jobs.ClassCapExceeded
			return skip("step " + st.Def.Name + " not run: " + d.Reason), nil
		case st.Status == StepSkipped:
			v = answered
			return nil, nil
		case st.Status == StepPending:
			// Not due: no change of the run queued it (a stray task, e.g.
			// of an earlier run of the same keyed id).
			v = stray
			return nil, nil
		case d.Status == StatusFailed && (s.ReplayOf == "" || st.Status != StepDead),
			d.Status == StatusSucceeded:
			v = answered
			return skip("step " + st.Def.Name + " not run: the run is " + string(d.Status)), nil
		}
		if ce := d.overCap(now, true, !st.Counted); ce != nil {
			v, capErr = capped, ce
			ev, cev := r.capRun(d, st.Def.Name, ce, now)
			capEv = cev
			st.Status = StepSkipped
			st.LastError, st.LastClass = ce.Error(), jobs.ClassCapExceeded
			return &change{doc: d, events: []Event{ev}}, nil
		}
		if string(s.Payload) == queue.RunStepPayload {
			p, err := r.render(l, d, i)
			if err != nil {
				return nil, err
			}
			rendered = p
		}
		if fromCache && l == up0 && s.Attempt == 1 && r.insp != nil && d.Status == StatusRunning && st.Status == StepQueued && s.ReplayOf == "" {
			// The state this worker wrote when it queued the step, still
			// the version the task carries: nothing to decide differs, so
			// the step's start is written with its outcome (succeeded,
			// observeFailure), or by the mark below if it runs long.
			deferred = true
			return nil, nil
		}
		var events []Event
		if d.Status == StatusFailed {
			d.Status, d.Reason, d.Ended = StatusRunning, "", time.Time{}
			events = append(events, Event{At: now, Kind: "replayed", Step: st.Def.Name,
				Text: "step " + st.Def.Name + " replayed from dead letter " + s.ReplayOf + "; the run goes on"})
		}
		begin(d, i, s, now, true)
		return &change{doc: d, events: events}, nil
	})
	if err != nil {
		return err
	}
	if v == runIt {
		if deferred {
			r.counted.Store(s, attemptDeferred)
		} else {
			r.counted.Store(s, attemptCounted)
		}
	}
	switch v {
	case repaired:
		if err := r.ensureQueued(ctx, up.after.doc, up.after.version); err != nil {
			return r.repairLater(s, err)
		}
		r.log.Info().Str("run_id", s.RunID).Str("workflow", up.after.doc.Workflow).Str("step", s.Name).Str("task_id", s.TaskID).
			Msg("step already succeeded in its run; handler not called")
		s.Answered = true
		return nil
	case answered:
		s.Answered = true
		return nil
	case stray:
		r.log.Warn().Str("run_id", s.RunID).Str("step", s.Name).Str("task_id", s.TaskID).
			Msg("a task of a run step that is not due; not run, the run unchanged")
		s.Answered = true
		return nil
	case capped:
		r.notifyCapped(ctx, capEv)
		return capErr
	}
	if rendered != nil {
		s.Payload = rendered
	}
	start := r.cfg.Now()
	var stopMark func()
	if deferred {
		// A step that runs long is shown running while it does; once the
		// mark is written, its start is no longer deferred (counted says
		// so to the observer).
		done := make(chan struct{})
		t := time.AfterFunc(runningMarkAfter, func() {
			defer close(done)
			if r.markRunning(context.WithoutCancel(ctx), s, up.after, start) {
				deferred = false
				r.counted.Store(s, attemptCounted)
			}
		})
		stopMark = func() {
			if !t.Stop() {
				<-done // the mark ran or is running: wait for its verdict
			}
		}
	}
	err = next.ProcessStep(ctx, s)
	if stopMark != nil {
		stopMark()
	}
	if err != nil {
		return err
	}
	// The step's side effect is done: storing its success must not fail
	// because the attempt's deadline is near.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	return r.succeeded(sctx, s, up.after, start, r.cfg.Now().Sub(start), deferred)
}

// runningMarkAfter is how long a step whose start was deferred runs before
// its run shows it running.
const runningMarkAfter = time.Second

// How the middleware left an attempt's start, for the observer
// (Runs.counted).
type attemptStart int

const (
	attemptCounted  attemptStart = iota + 1 // written before the handler
	attemptDeferred                         // to be written with the outcome
)

// begin writes the start of an attempt of step i into d: running, the
// attempt counted (unless it is a snooze's, which spends none), the step
// counted as started once.
func begin(d *doc, i int, s *jobs.Step, at time.Time, attempt bool) {
	st := &d.Steps[i]
	st.Status = StepRunning
	if attempt {
		st.Totals.Attempts++
		d.Totals.Attempts++
	}
	if !st.Counted {
		st.Counted = true
		st.Started = at.UTC()
		d.StepsStarted++
	}
	st.Ended, st.Duration = time.Time{}, 0
	if s.TaskID != "" {
		st.TaskID = s.TaskID
	}
}

// markRunning writes the deferred start of s's attempt, begun at start,
// when its step is still queued in the run.
// It reports whether it wrote.
func (r *Runs) markRunning(ctx context.Context, s *jobs.Step, l *loaded, start time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	up, err := r.update(ctx, s.RunID, l, func(_ *loaded, d *doc) (*change, error) {
		i := d.step(s.Name)
		if i < 0 || d.Steps[i].Status != StepQueued {
			return nil, nil
		}
		begin(d, i, s, start, true)
		return &change{doc: d}, nil
	})
	if err != nil {
		r.log.Warn().Str("run_id", s.RunID).Str("step", s.Name).Err(err).Msg("could not mark the step running in its run")
		return false
	}
	return up.wrote
}

// repairDelay is how soon a step whose success is stored but whose next
// step's enqueue failed is delivered again, to repair the enqueue.
const repairDelay = 5 * time.Second

// repairLater is the error of an attempt whose success is stored but
// whose next step's enqueue failed: a snooze (no attempt spent, so also
// the last attempt comes back) whose next delivery repairs the enqueue;
// the observer does not count its usage again (recordedError).
func (r *Runs) repairLater(s *jobs.Step, err error) error {
	return &recordedError{errors.Join(jobs.Snooze(repairDelay), fmt.Errorf("step %q succeeded and is stored, but the next step's enqueue failed (repaired on its next delivery): %w", s.Name, err))}
}

// storeTimeout bounds the storing of a step's success and the enqueue of
// the next step after the handler returned.
const storeTimeout = 10 * time.Second

// render renders step i's payload from the run's input and the outputs of
// its succeeded steps, and checks it against the kind's schema.
func (r *Runs) render(l *loaded, d *doc, i int) (json.RawMessage, error) {
	st := d.Steps[i]
	input, err := decodeValue(d.Input)
	if err != nil {
		return nil, jobs.Permanent(fmt.Errorf("step %q: run input: %w", st.Def.Name, err))
	}
	steps := map[string]any{}
	for _, o := range d.Steps {
		if o.Status != StepSucceeded {
			continue
		}
		var out any
		if raw := l.outputs[o.Def.Name]; len(raw) > 0 {
			if out, err = decodeValue(raw); err != nil {
				return nil, jobs.Permanent(fmt.Errorf("step %q: output of step %q: %w", st.Def.Name, o.Def.Name, err))
			}
		}
		entry := map[string]any{"output": out}
		steps[o.Def.Name] = entry
		for _, name := range o.Stands {
			steps[name] = entry // a fallback's output stands in for the steps it replaced
		}
	}
	data := map[string]any{"input": input, "run_id": d.ID, "steps": steps}
	p, err := Render(st.Def.Name, st.Def.Payload, data)
	if err != nil {
		if !strings.Contains(err.Error(), strconv.Quote(st.Def.Name)) {
			err = fmt.Errorf("step %q: payload template: %w", st.Def.Name, err)
		}
		return nil, jobs.Permanent(err)
	}
	if r.client != nil && r.client.Registry() != nil {
		if _, err := r.client.Registry().Validate(st.Def.Kind, p); err != nil {
			return nil, jobs.Permanent(fmt.Errorf("step %q: rendered payload: %w", st.Def.Name, err))
		}
	}
	return p, nil
}

// succeeded stores a step's success (output, usage, added steps), decides
// what comes next and enqueues it: one compare and set, one enqueue.
func (r *Runs) succeeded(ctx context.Context, s *jobs.Step, l *loaded, start time.Time, took time.Duration, deferred bool) error {
	out := s.Output()
	if len(out) > r.cfg.MaxOutputBytes {
		return jobs.Permanent(fmt.Errorf("step %q: output is %d bytes, over the limit of %d (max_output_bytes)", s.Name, len(out), r.cfg.MaxOutputBytes))
	}
	usage, added := s.Usage(), s.Added()
	var (
		nextStep = -1
		capEv    *CapEvent
		already  bool
		late     bool
	)
	up, err := r.update(ctx, s.RunID, l, func(_ *loaded, d *doc) (*change, error) {
		nextStep, capEv, already, late = -1, nil, false, false
		i := d.step(s.Name)
		if i < 0 {
			return nil, jobs.Permanent(fmt.Errorf("run %s has no step %q", s.RunID, s.Name))
		}
		st := &d.Steps[i]
		switch st.Status {
		case StepSucceeded:
			// A concurrent delivery stored it first; this delivery's
			// usage was spent all the same.
			already = true
			if usage.IsZero() && !deferred {
				return nil, nil
			}
			d.addUsage(i, usage, true)
			if deferred { // this delivery's attempt, not written before
				st.Totals.Attempts++
				d.Totals.Attempts++
			}
			return &change{doc: d}, nil
		case StepDead, StepReplaced:
			// Declared dead meanwhile (its lease expired and the sweeper
			// ended it; its fallback or the run's failure stands): a late
			// success changes nothing but what it spent.
			late = true
			d.addUsage(i, usage, true)
			return &change{doc: d, events: []Event{{At: r.cfg.Now().UTC(), Kind: "late_success", Step: s.Name,
				Text: "step " + s.Name + " succeeded after it was dead-lettered; its output is dropped"}}}, nil
		}
		if st.Status == StepQueued || deferred {
			begin(d, i, s, start, true) // its start was deferred
		}
		now := r.cfg.Now().UTC()
		c := &change{doc: d}
		d.addUsage(i, usage, true)
		st.Status, st.Ended, st.Duration = StepSucceeded, now, took
		if out != nil {
			c.outputs = map[string][]byte{s.Name: out}
			st.Summary = outputSummary(out)
		}
		c.events = append(c.events, Event{At: now, Kind: "step_succeeded", Step: s.Name, Text: stepDoneText(st, usage)})
		if len(added) > 0 {
			names, err := r.insertSteps(d, i, added)
			if err != nil {
				return nil, jobs.Permanent(fmt.Errorf("step %q: %w", s.Name, err))
			}
			c.events = append(c.events, Event{At: now, Kind: "steps_added", Step: s.Name,
				Text: fmt.Sprintf("step %s added %s", s.Name, strings.Join(names, ", "))})
		}
		if d.Status != StatusRunning && d.Status != StatusWaiting && d.Status != StatusCapped {
			return c, nil // cancelled: the success is stored, nothing more starts
		}
		over := d.overCap(now, false, false)
		nextStep = d.next(i)
		switch {
		case nextStep < 0 && d.Status == StatusCapped:
			// Nothing left to stop: the run is done, over its cap.
		case nextStep < 0:
			d.Status, d.Ended = StatusSucceeded, now
			text := "run succeeded"
			if over != nil {
				text += "; its last step took it " + over.Error()
			}
			c.events = append(c.events, Event{At: now, Kind: "succeeded", Text: text})
		default:
			// Over a cap, the next step is still queued: its middleware
			// dead-letters it with cap_exceeded, so the stop shows where
			// the run stopped.
			c.events = append(c.events, r.markQueued(d, nextStep, now))
			c.next = &nextStep
			if over != nil && d.Status != StatusCapped {
				ev, cev := r.capRun(d, d.Steps[nextStep].Def.Name, over, now) // the step it stops
				c.events, capEv = append(c.events, ev), cev
			}
		}
		return c, nil
	})
	if err != nil {
		return err
	}
	if late {
		r.log.Warn().Str("run_id", s.RunID).Str("step", s.Name).Str("task_id", s.TaskID).
			Msg("step succeeded after it was dead-lettered; its output is dropped, the run goes on as it was")
		return nil
	}
	if already {
		if err := r.ensureQueued(ctx, up.after.doc, up.after.version); err != nil {
			return r.repairLater(s, err)
		}
		return nil
	}
	r.notifyCapped(ctx, capEv)
	if nextStep >= 0 && !up.enqueued {
		if err := r.enqueue(ctx, up.after.doc, nextStep, up.after.version); err != nil {
			return r.repairLater(s, err)
		}
	}
	return nil
}

func stepDoneText(st *stepRec, u jobs.Usage) string {
	text := "step " + st.Def.Name + " succeeded"
	if st.Role != "" {
		text += " in place of " + st.Role
	}
	if !u.IsZero() {
		text += fmt.Sprintf(" (%d tokens, $%s)", u.Tokens(), strconv.FormatFloat(u.CostUSD, 'f', -1, 64))
	}
	return text
}

// insertSteps checks defs, added by step i, and puts them into d's plan
// after step i (and its fallback). It returns their names.
func (r *Runs) insertSteps(d *doc, i int, defs []jobs.StepDef) ([]string, error) {
	recs, err := planOf(defs)
	if err != nil {
		return nil, fmt.Errorf("added steps: %w", err)
	}
	var kinds []string
	if r.client != nil && r.client.Registry() != nil {
		kinds = r.client.Registry().Kinds()
	}
	names := make([]string, 0, len(defs))
	for _, def := range defs {
		if d.step(def.Name) >= 0 {
			return nil, fmt.Errorf("added step %q: the run has a step of that name already", def.Name)
		}
		if kinds != nil {
			if _, ok := slices.BinarySearch(kinds, def.Kind); !ok {
				return nil, fmt.Errorf("added step %q: unknown kind %q (registered: %s)", def.Name, def.Kind, strings.Join(kinds, ", "))
			}
		}
		names = append(names, def.Name)
	}
	limit := r.cfg.MaxSteps
	if d.Caps.MaxSteps > 0 && d.Caps.MaxSteps < limit {
		limit = d.Caps.MaxSteps
	}
	if n := mainSteps(d.Steps) + mainSteps(recs); n > limit {
		return nil, fmt.Errorf("adding %d steps makes the run %d steps long, over its limit of %d (max_steps)", len(names), n, limit)
	}
	wf := r.wfs[d.Workflow]
	wf.Name = d.Workflow
	for k := range recs {
		recs[k].Added = true
		recs[k].Queue = r.queueOf(wf, recs[k].Def)
	}
	pos := i + 1
	for pos < len(d.Steps) && d.Steps[pos].Only && d.Steps[pos].Role == "" {
		pos++ // fallbacks listed after this step, not run
	}
	d.Steps = slices.Insert(d.Steps, pos, recs...)
	return names, nil
}

// Observer returns the runs' observer. For a run step's failed attempt
// (retry, snooze, dead) it records the attempt's usage (failed attempts'
// tokens are real cost), its error and class; for a dead step it enqueues
// the step's fallback when it has one that has not run, and fails the run
// otherwise. Successes are recorded by the middleware. A write that fails
// is logged; the outcome never changes.
func (r *Runs) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(ctx context.Context, s *jobs.Step, res *jobs.Result) {
		if s.RunID == "" || s.Name == "" {
			return
		}
		v, _ := r.counted.LoadAndDelete(s)
		mark, _ := v.(attemptStart)
		switch res.Outcome {
		case jobs.OutcomeRetry, jobs.OutcomeSnooze, jobs.OutcomeDead:
			r.observeFailure(context.WithoutCancel(ctx), s, res, mark)
		}
	})
}

// fallbackEnqueueTries bounds the observer's enqueue of a fallback step:
// there is no redelivery to repair it.
const fallbackEnqueueTries = 3

func (r *Runs) observeFailure(ctx context.Context, s *jobs.Step, res *jobs.Result, mark attemptStart) {
	usage := res.Usage
	var rec *recordedError
	if errors.As(res.Err, &rec) {
		usage = jobs.Usage{} // stored with the step's success
	}
	var (
		fallback = -1
		capEv    *CapEvent
	)
	up, err := r.update(ctx, s.RunID, nil, func(_ *loaded, d *doc) (*change, error) {
		fallback, capEv = -1, nil
		i := d.step(s.Name)
		if i < 0 {
			return nil, nil
		}
		st := &d.Steps[i]
		now := r.cfg.Now().UTC()
		switch st.Status {
		case StepSucceeded, StepSkipped, StepReplaced:
			// Not this attempt's to decide; keep what it spent.
			if usage.IsZero() {
				return nil, nil
			}
			d.addUsage(i, usage, true)
			return &change{doc: d}, nil
		}
		if mark == attemptDeferred || (mark == 0 && st.Status == StepQueued) {
			// The attempt's start was deferred, or it ran on a worker that
			// died before writing anything: count it now (begin counts the
			// step as started once).
			at := res.Started
			if at.IsZero() {
				at = now
			}
			begin(d, i, s, at, res.Outcome != jobs.OutcomeSnooze)
		}
		d.addUsage(i, usage, res.Outcome != jobs.OutcomeSnooze)
		st.LastError, st.LastClass = res.Message, res.Class
		c := &change{doc: d}
		if res.Outcome == jobs.OutcomeSnooze && mark == attemptCounted && st.Totals.Attempts > 0 {
			// A snooze spends no attempt: take back the one counted.
			st.Totals.Attempts--
			d.Totals.Attempts--
		}
		if res.Outcome != jobs.OutcomeDead {
			st.Status = StepRetrying
			if res.Outcome == jobs.OutcomeRetry {
				c.events = append(c.events, Event{At: now, Kind: "step_retry", Step: s.Name,
					Text: fmt.Sprintf("attempt %d of step %s failed (%s): %s; retry in %v", s.Attempt, s.Name, res.Class, res.Message, res.Delay.Round(time.Millisecond))})
			}
			return c, nil
		}
		st.Status, st.Ended = StepDead, now
		c.events = append(c.events, Event{At: now, Kind: "step_dead", Step: s.Name,
			Text: fmt.Sprintf("step %s dead-lettered after %s (%s): %s", s.Name, plural(st.Totals.Attempts, "attempt"), res.Class, res.Message)})
		var ce *jobs.CapExceededError
		switch {
		case d.Status.Terminal():
			// Cancelled or capped already: nothing more starts.
		case res.Class == jobs.ClassCapExceeded && errors.As(res.Err, &ce):
			ev, cev := r.capRun(d, s.Name, ce, now)
			c.events, capEv = append(c.events, ev), cev
		case d.pendingFallback(i) >= 0:
			st.Status, st.Replacement = StepReplaced, st.Def.Fallback
			c.events = append(c.events, Event{At: now, Kind: "fallback", Step: s.Name,
				Text: "step " + s.Name + " replaced by its fallback " + st.Def.Fallback})
			fallback = activateFallback(d, i)
			c.events = append(c.events, r.markQueued(d, fallback, now))
			c.next = &fallback
		default:
			d.Status, d.Ended = StatusFailed, now
			d.Reason = fmt.Sprintf("step %s was dead-lettered (%s): %s", s.Name, res.Class, res.Message)
			c.events = append(c.events, Event{At: now, Kind: "failed", Step: s.Name, Text: d.Reason})
		}
		return c, nil
	})
	if err != nil {
		r.log.Error().Str("run_id", s.RunID).Str("workflow", s.Workflow).Str("step", s.Name).Str("task_id", s.TaskID).
			Str("outcome", string(res.Outcome)).Err(err).Msg("could not record the step's failed attempt in its run")
		return
	}
	r.notifyCapped(ctx, capEv)
	if fallback < 0 || up.enqueued {
		// On a single Redis the fallback's task went with the write.
		return
	}
	// On Redis Cluster (two calls) it is enqueued now; should that fail,
	// the run shows the fallback queued, and starting nothing more: a
	// repeated delivery of nothing repairs it, so say so loudly.
	for try := 1; ; try++ {
		err := r.enqueue(ctx, up.after.doc, fallback, up.after.version)
		if err == nil {
			return
		}
		if try == fallbackEnqueueTries {
			r.log.Error().Str("run_id", s.RunID).Str("workflow", s.Workflow).Str("step", up.after.doc.Steps[fallback].Def.Name).
				Err(err).Msg("could not enqueue the fallback step; the run stays with it queued")
			return
		}
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
	}
}

// pendingFallback returns the index of step i's fallback when it has one
// that has not run, -1 otherwise.
func (d *doc) pendingFallback(i int) int {
	name := d.Steps[i].Def.Fallback
	if name == "" {
		return -1
	}
	k := d.step(name)
	if k < 0 || !d.Steps[k].Only || d.Steps[k].Status != StepPending || d.Steps[k].Role != "" {
		return -1
	}
	return k
}

// activateFallback makes step i's pending fallback stand in for it: the
// fallback moves right after step i (the run goes on after step i once it
// succeeds) and its output will stand in for step i's and for those step
// i stood in for. It returns the fallback's new index.
func activateFallback(d *doc, i int) int {
	k := d.pendingFallback(i)
	fb := d.Steps[k]
	fb.Role = d.Steps[i].Def.Name
	fb.Stands = append([]string{fb.Role}, d.Steps[i].Stands...)
	d.Steps = slices.Delete(d.Steps, k, k+1)
	if k < i {
		i--
	}
	d.Steps = slices.Insert(d.Steps, i+1, fb)
	return i + 1
}
