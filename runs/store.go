package runs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// historyMax is how many events a run's history keeps (the newest).
const historyMax = 500

// summaryMax bounds a step's output summary, in bytes.
const summaryMax = 160

// doc is a run's state as stored (outputs and history apart). It keeps the
// definitions of its steps, so a run goes on with the workflow it started
// with whatever the configuration says later.
type doc struct {
	ID           string            `json:"id"`
	Workflow     string            `json:"workflow"`
	Status       Status            `json:"status"`
	Key          string            `json:"key,omitempty"`
	Input        json.RawMessage   `json:"input"`
	Reason       string            `json:"reason,omitempty"`
	Created      time.Time         `json:"created"`
	Updated      time.Time         `json:"updated"`
	Ended        time.Time         `json:"ended,omitzero"`
	Caps         Caps              `json:"caps"`
	Totals       Totals            `json:"totals"`
	ByModel      map[string]Totals `json:"by_model,omitempty"`
	StepsStarted int               `json:"steps_started"`
	Steps        []stepRec         `json:"steps"`
	// Cap is the cap the run went over, for the steps it stops.
	Cap *capRec `json:"cap,omitempty"`
	// Write is the token of the change that wrote this state (see
	// Runs.update).
	Write string `json:"write,omitempty"`
}

// capRec is a stored *jobs.CapExceededError.
type capRec struct {
	Cap   string `json:"cap"`
	Limit string `json:"limit"`
	Value string `json:"value"`
}

func (c *capRec) err() *jobs.CapExceededError {
	return &jobs.CapExceededError{Cap: c.Cap, Limit: c.Limit, Value: c.Value}
}

// stepRec is one step of a run as stored.
type stepRec struct {
	Def    jobs.StepDef `json:"def"`
	Status StepStatus   `json:"status"`
	Queue  string       `json:"queue"`
	TaskID string       `json:"task_id,omitempty"`
	// Only marks a step that is some step's fallback: it runs only in
	// that role. Role names the step it replaced once it did, Stands every
	// step whose output its output stands in for (Role, and the steps Role
	// stood in for: fallbacks of fallbacks).
	Only        bool              `json:"fallback_only,omitempty"`
	Role        string            `json:"role,omitempty"`
	Stands      []string          `json:"stands_for,omitempty"`
	Replacement string            `json:"replacement,omitempty"`
	Added       bool              `json:"added,omitempty"`
	Counted     bool              `json:"counted,omitempty"` // counted in steps started
	Started     time.Time         `json:"started,omitzero"`
	Ended       time.Time         `json:"ended,omitzero"`
	Duration    time.Duration     `json:"duration,omitempty"`
	Totals      Totals            `json:"totals"`
	ByModel     map[string]Totals `json:"by_model,omitempty"`
	Summary     string            `json:"output_summary,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	LastClass   jobs.Class        `json:"last_class,omitempty"`
	DeadLetter  string            `json:"dead_letter,omitempty"`
}

// loaded is a run's state as read at one version.
type loaded struct {
	version int64
	raw     []byte // the document, decoded afresh for each change
	doc     *doc
	outputs map[string]json.RawMessage
}

// fresh returns a copy of l's document to change.
func (l *loaded) fresh() (*doc, error) {
	var d doc
	if err := json.Unmarshal(l.raw, &d); err != nil {
		return nil, fmt.Errorf("run state is corrupt: %w", err)
	}
	return &d, nil
}

// step returns the index of step name in d, -1 when it has none.
func (d *doc) step(name string) int {
	for i := range d.Steps {
		if d.Steps[i].Def.Name == name {
			return i
		}
	}
	return -1
}

// addUsage adds u, what one attempt of step i spent, to the step's and
// the run's totals. When u names a model, the attempt also counts in that
// model's attempts (by_model) unless it is a snooze's, which spends no
// attempt (attempt false).
func (d *doc) addUsage(i int, u jobs.Usage, attempt bool) {
	if u.IsZero() && u.Model == "" {
		return
	}
	st := &d.Steps[i]
	addTotals(&st.Totals, u)
	addTotals(&d.Totals, u)
	if u.Model != "" {
		st.ByModel = addModel(st.ByModel, u, attempt)
		d.ByModel = addModel(d.ByModel, u, attempt)
	}
}

func addTotals(t *Totals, u jobs.Usage) {
	t.TokensIn += u.TokensIn
	t.TokensOut += u.TokensOut
	t.CostUSD += u.CostUSD
}

func addModel(m map[string]Totals, u jobs.Usage, attempt bool) map[string]Totals {
	if m == nil {
		m = map[string]Totals{}
	}
	t := m[u.Model]
	addTotals(&t, u)
	if attempt {
		t.Attempts++
	}
	m[u.Model] = t
	return m
}

// summary is the run's list line, stored apart so that List reads little.
func (d *doc) summary() Summary {
	s := Summary{ID: d.ID, Workflow: d.Workflow, Status: d.Status, Created: d.Created, Updated: d.Updated, Totals: d.Totals}
	for _, st := range d.Steps {
		switch st.Status {
		case StepQueued, StepRunning, StepRetrying:
			s.Step = st.Def.Name
			return s
		case StepPending:
		default:
			s.Step = st.Def.Name
		}
	}
	return s
}

// outputSummary is a short line of an output.
func outputSummary(out []byte) string {
	s := strings.Join(strings.Fields(string(out)), " ")
	if len(s) <= summaryMax {
		return s
	}
	cut := summaryMax
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// change is one change of a run's state, written by one script.
type change struct {
	doc     *doc
	events  []Event
	outputs map[string][]byte
	// next, when set, is the step whose task is enqueued with the write:
	// in the same script on a single Redis (queue.Client.EnqueueWith), so
	// a step's success and the next step's task are one round trip.
	next *int
}

// errConflict is a compare-and-set that found another version.
var errConflict = errors.New("run state changed concurrently")

// write writes c over the state at version from ("0": the run must not
// exist) in one script and returns the new version and the document
// written; errConflict when the state is no longer at from.
//
// With c.next set, the step's task is enqueued with the write (enqueued
// reports it did; when it did not although the write happened, on Redis
// Cluster or for a task id an old task holds, the caller enqueues it).
func (r *Runs) write(ctx context.Context, from int64, c *change) (v int64, raw []byte, enqueued bool, err error) {
	d := c.doc
	d.Updated = r.cfg.Now().UTC()
	docJSON, err := json.Marshal(d)
	if err != nil {
		return 0, nil, false, fmt.Errorf("run %s: encode state: %w", d.ID, err)
	}
	sum, err := json.Marshal(d.summary())
	if err != nil {
		return 0, nil, false, fmt.Errorf("run %s: encode summary: %w", d.ID, err)
	}
	ttl := "0"
	if d.Status.Terminal() {
		ttl = strconv.FormatInt(r.cfg.Retention.Milliseconds(), 10)
	}
	args := make([]any, 0, 6+2*len(c.outputs)+len(c.events))
	args = append(args, from, docJSON, sum, ttl, historyMax, len(c.outputs))
	for name, out := range c.outputs {
		args = append(args, outputField(name), out)
	}
	for _, ev := range c.events {
		b, err := json.Marshal(ev)
		if err != nil {
			return 0, nil, false, fmt.Errorf("run %s: encode event: %w", d.ID, err)
		}
		args = append(args, b)
	}
	keys := []string{stateKey(d.ID), historyKey(d.ID)}
	var res []int64
	if c.next != nil && r.client != nil && !r.apart {
		st := d.Steps[*c.next]
		reply, qr, enq, qerr := r.client.EnqueueWith(ctx, queue.Pre{Src: casSrc, Keys: keys, Args: args},
			st.Def.Kind, []byte(queue.RunStepPayload), r.stepOptions(d, *c.next, from+1))
		if reply != nil {
			for _, x := range reply {
				n, _ := x.(int64)
				res = append(res, n)
			}
			enqueued = enq && qerr == nil && !qr.Duplicate
		} else {
			// The enqueue was refused before anything ran (this worker
			// does not know the step's kind), or the reply was lost. The
			// change is written on its own all the same, so that a step's
			// success is never lost to its successor's enqueue: the
			// caller enqueues (and repairs) the next step apart. Had the
			// script run, the version has moved and this is a conflict.
			r.log.Warn().Str("run_id", d.ID).Str("step", st.Def.Name).Err(qerr).Msg("could not write the run's change with its next step's enqueue; writing it alone")
			if res, err = casScript.Run(ctx, r.rdb, keys, args...).Int64Slice(); err != nil {
				return 0, nil, false, fmt.Errorf("run %s: write state: %w", d.ID, err)
			}
		}
	} else {
		res, err = casScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
		if err != nil {
			return 0, nil, false, fmt.Errorf("run %s: write state: %w", d.ID, err)
		}
	}
	if len(res) != 2 {
		return 0, nil, false, fmt.Errorf("run %s: write state: unexpected reply %v", d.ID, res)
	}
	if res[0] != 1 {
		return res[1], nil, false, errConflict
	}
	for _, ev := range c.events {
		// A step's routine moves (queued, succeeded, retried) are in the
		// worker's attempt lines already: they log at debug, the run's own
		// changes at info.
		l := r.log.Info()
		switch ev.Kind {
		case "step_queued", "step_succeeded", "step_retry":
			l = r.log.Debug()
		}
		l.Str("run_id", d.ID).Str("workflow", d.Workflow).Str("step", ev.Step).
			Str("status", string(d.Status)).Str("event", ev.Kind).Int64("version", res[1]).Msg(ev.Text)
	}
	return res[1], docJSON, enqueued, nil
}

// load reads a run's state in one round trip; ErrNotFound when absent.
func (r *Runs) load(ctx context.Context, id string) (*loaded, error) {
	m, err := r.rdb.HGetAll(ctx, stateKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("run %s: read state: %w", id, err)
	}
	return parseState(id, m)
}

func parseState(id string, m map[string]string) (*loaded, error) {
	if len(m) == 0 || m[fieldDoc] == "" {
		return nil, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	v, err := strconv.ParseInt(m[fieldVersion], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("run %s: state version %q is not a number", id, m[fieldVersion])
	}
	l := &loaded{version: v, raw: []byte(m[fieldDoc]), outputs: map[string]json.RawMessage{}}
	if l.doc, err = l.fresh(); err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	for f, val := range m {
		if name, ok := strings.CutPrefix(f, outputPrefix); ok {
			l.outputs[name] = json.RawMessage(val)
		}
	}
	return l, nil
}

// Get returns run id's full state: steps in plan order (a fallback after
// the step it may replace), outputs, totals and history. It returns an
// error wrapping ErrNotFound for a run that is not stored.
func (r *Runs) Get(ctx context.Context, id string) (*Run, error) {
	if id == "" {
		return nil, errors.New("run id is empty")
	}
	var hcmd *redis.MapStringStringCmd
	var lcmd *redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		hcmd = p.HGetAll(ctx, stateKey(id))
		lcmd = p.LRange(ctx, historyKey(id), 0, -1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("run %s: read state: %w", id, err)
	}
	l, err := parseState(id, hcmd.Val())
	if err != nil {
		return nil, err
	}
	d := l.doc
	run := &Run{
		ID: d.ID, Workflow: d.Workflow, Status: d.Status, Key: d.Key, Input: d.Input, Reason: d.Reason,
		Created: d.Created, Updated: d.Updated, Ended: d.Ended, Caps: d.Caps, Totals: d.Totals,
		ByModel: d.ByModel, StepsStarted: d.StepsStarted, Version: l.version,
		Steps: make([]StepState, 0, len(d.Steps)),
	}
	for _, st := range d.Steps {
		ss := StepState{
			Name: st.Def.Name, Kind: st.Def.Kind, Queue: st.Queue, Status: st.Status, TaskID: st.TaskID,
			FallbackFor: st.Role, Replacement: st.Replacement, Added: st.Added,
			Started: st.Started, Ended: st.Ended, Duration: st.Duration, Totals: st.Totals, ByModel: st.ByModel,
			Output: l.outputs[st.Def.Name], OutputSummary: st.Summary,
			LastError: st.LastError, LastClass: st.LastClass, DeadLetter: st.DeadLetter,
		}
		if ss.DeadLetter == "" && ss.LastClass != "" && r.cfg.DeadLetterOf != nil && ss.TaskID != "" &&
			(ss.Status == StepDead || ss.Status == StepReplaced || ss.Status == StepSkipped) {
			if id, err := r.cfg.DeadLetterOf(ctx, ss.Queue, ss.TaskID); err == nil {
				ss.DeadLetter = id
			}
		}
		run.Steps = append(run.Steps, ss)
	}
	for _, raw := range lcmd.Val() {
		var ev Event
		if json.Unmarshal([]byte(raw), &ev) == nil {
			run.History = append(run.History, ev)
		}
	}
	return run, nil
}

// listPage is how many index entries List reads per round trip.
const listPage = 200

// List returns the runs that match o, newest first. Index entries of runs
// created more than Retention ago, and of runs whose state has expired,
// are removed as it goes.
func (r *Runs) List(ctx context.Context, o ListOptions) ([]Summary, error) {
	limit := o.Limit
	switch {
	case limit == 0:
		limit = ListLimitDefault
	case limit < 0:
		limit = math.MaxInt
	}
	now := r.cfg.Now()
	cutoff := now.Add(-r.cfg.Retention).UnixMilli()
	if err := r.rdb.ZRemRangeByScore(ctx, indexKey(), "-inf", "("+strconv.FormatInt(cutoff, 10)).Err(); err != nil {
		return nil, fmt.Errorf("runs: trim the index: %w", err)
	}
	minScore := "-inf"
	if !o.Since.IsZero() {
		minScore = strconv.FormatInt(o.Since.UnixMilli(), 10)
	}
	out := []Summary{}
	for offset := int64(0); len(out) < limit; offset += listPage {
		ids, err := r.rdb.ZRevRangeByScore(ctx, indexKey(), &redis.ZRangeBy{Min: minScore, Max: "+inf", Offset: offset, Count: listPage}).Result()
		if err != nil {
			return nil, fmt.Errorf("runs: read the index: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		cmds := make([]*redis.StringCmd, len(ids))
		_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HGet(ctx, stateKey(id), fieldSummary)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("runs: read summaries: %w", err)
		}
		var gone []any
		for i, c := range cmds {
			raw, err := c.Result()
			switch {
			case errors.Is(err, redis.Nil):
				gone = append(gone, ids[i])
				continue
			case err != nil:
				return nil, fmt.Errorf("runs: read summary of %s: %w", ids[i], err)
			}
			var s Summary
			if err := json.Unmarshal([]byte(raw), &s); err != nil {
				r.log.Warn().Str("run_id", ids[i]).Err(err).Msg("run summary is corrupt; not listed")
				continue
			}
			if (o.Workflow != "" && s.Workflow != o.Workflow) || (o.Status != "" && s.Status != o.Status) {
				continue
			}
			out = append(out, s)
			if len(out) == limit {
				break
			}
		}
		if len(gone) > 0 {
			if err := r.rdb.ZRem(ctx, indexKey(), gone...).Err(); err != nil {
				r.log.Warn().Err(err).Msg("could not remove expired runs from the index")
			}
			offset -= int64(len(gone))
		}
		if len(ids) < listPage {
			break
		}
	}
	return out, nil
}

// decodeValue decodes raw with numbers kept as json.Number (so that a big
// integer renders as written).
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}
