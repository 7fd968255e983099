// Package budget owns agentq's per-workflow error budgets: counting each
// attempt's outcome in bucketed Redis counters, evaluating the budget and its
// burn rates over a sliding window, and acting when it is spent (alert, pause
// the workflow's queue in asynq, or refuse enqueues) and when it recovers.
//
// The hot path costs no Redis round trip: the middleware counts in memory
// and Run flushes every workflow's counts once a second in one pipeline of
// one atomic script per workflow. The checker evaluates every few seconds;
// of all the processes running it, one acts per evaluation slot (a short
// Redis lock). Admit answers enqueues from a state cached for a second.
//
// A workflow's budget with SLO s over a window holding E attempts of which F
// failed allows (1 - s) * E failures; it is exhausted when E >= MinEvents
// and F exceeds that. A snooze is not an attempt: it is never counted.
package budget

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// Defaults.
const (
	// WindowDefault is the window of a budget that names none.
	WindowDefault = 24 * time.Hour
	// MinEventsDefault is the number of attempts below which a budget is
	// never exhausted.
	MinEventsDefault = 20
	// FlushIntervalDefault is how often counted outcomes go to Redis.
	FlushIntervalDefault = time.Second
	// CheckIntervalDefault is how often budgets are evaluated and acted on.
	CheckIntervalDefault = 2 * time.Second
	// CacheTTLDefault is how long Admit trusts a budget it read.
	CacheTTLDefault = time.Second
)

// Action is what happens when a budget is exhausted.
type Action string

// Actions.
const (
	// ActionAlert logs a warning and calls Config.OnChange.
	ActionAlert Action = "alert"
	// ActionPause alerts and pauses the workflow's queue in asynq until the
	// budget recovers or a person resumes it.
	ActionPause Action = "pause"
	// ActionReject alerts and refuses new enqueues of the workflow until the
	// budget recovers.
	ActionReject Action = "reject"
)

// State is a budget's state as shown to people.
type State string

// States.
const (
	// StateOK is a budget with failures to spare (or too few events to judge).
	StateOK State = "ok"
	// StateExhausted is a budget with more failures than it allows.
	StateExhausted State = "exhausted"
	// StatePaused is a workflow whose queue is paused, by the budget or by hand.
	StatePaused State = "paused"
)

// Policy is one workflow's error budget.
type Policy struct {
	// SLO is the share of attempts that must succeed, in (0, 1). Required.
	SLO float64
	// Window is the sliding window counted over. Default WindowDefault (24h).
	Window time.Duration
	// MinEvents is the number of attempts in the window below which the
	// budget is never exhausted. Default MinEventsDefault (20).
	MinEvents int
	// OnExhausted is the action taken when the budget is spent.
	// Default ActionAlert.
	OnExhausted Action
	// Queue is the workflow's queue, the one ActionPause pauses. Required
	// for ActionPause.
	Queue string
}

func (p Policy) withDefaults() Policy {
	p.Window = cmp.Or(p.Window, WindowDefault)
	p.MinEvents = cmp.Or(p.MinEvents, MinEventsDefault)
	p.OnExhausted = cmp.Or(p.OnExhausted, ActionAlert)
	return p
}

func (p Policy) validate() error {
	switch {
	case p.SLO <= 0 || p.SLO >= 1:
		return fmt.Errorf("slo must be between 0 and 1 (exclusive), got %v", p.SLO)
	case p.Window < WindowMin:
		return fmt.Errorf("window must be at least %v, got %v", WindowMin, p.Window)
	case p.MinEvents < 0:
		return fmt.Errorf("min_events must not be negative, got %d", p.MinEvents)
	case p.OnExhausted != ActionAlert && p.OnExhausted != ActionPause && p.OnExhausted != ActionReject:
		return fmt.Errorf("on_exhausted must be alert, pause or reject, got %q", p.OnExhausted)
	case p.OnExhausted == ActionPause && p.Queue == "":
		return errors.New("on_exhausted pause needs the workflow's queue")
	}
	return nil
}

// EventKind says what changed about a budget.
type EventKind string

// Event kinds.
const (
	// EventExhausted: the budget became exhausted.
	EventExhausted EventKind = "exhausted"
	// EventPaused: the budget paused the workflow's queue.
	EventPaused EventKind = "paused"
	// EventRecovered: the budget is no longer exhausted; a queue it paused
	// was resumed.
	EventRecovered EventKind = "recovered"
)

// Event is a change of a budget, for alerting.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Status is the budget when it happened.
	Status Status
	// Message says it in a sentence.
	Message string
}

// Config configures Budgets.
type Config struct {
	// Workflows maps workflow names to their budgets; workflows without one
	// are not counted. Default none.
	Workflows map[string]Policy
	// FlushInterval is how often Run sends counted outcomes to Redis.
	// Default FlushIntervalDefault (1s).
	FlushInterval time.Duration
	// CheckInterval is how often Run evaluates budgets; one process acts per
	// interval. Default CheckIntervalDefault (2s).
	CheckInterval time.Duration
	// CacheTTL is how long Admit answers from a budget it read.
	// Default CacheTTLDefault (1s).
	CacheTTL time.Duration
	// OnChange is called when a budget becomes exhausted, pauses its queue
	// or recovers, by the process that acted; it must not block. The change
	// is logged whether or not it is set. Default none.
	OnChange func(ctx context.Context, e Event)
	// Logger receives the changes and flush errors. Default: no logging.
	Logger *zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Command is the start of the commands that messages suggest (`<Command>
	// budget resume W`): the program's name and the flags that point it at
	// this Redis. Default CommandDefault ("agentq").
	Command string
}

// CommandDefault is Config.Command's default.
const CommandDefault = "agentq"

func (c Config) withDefaults() Config {
	c.Command = cmp.Or(c.Command, CommandDefault)
	c.FlushInterval = cmp.Or(c.FlushInterval, FlushIntervalDefault)
	c.CheckInterval = cmp.Or(c.CheckInterval, CheckIntervalDefault)
	c.CacheTTL = cmp.Or(c.CacheTTL, CacheTTLDefault)
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	ws := make(map[string]Policy, len(c.Workflows))
	for name, p := range c.Workflows {
		ws[name] = p.withDefaults()
	}
	c.Workflows = ws
	return c
}

func (c Config) validate() error {
	for _, name := range slices.Sorted(maps.Keys(c.Workflows)) {
		if err := c.Workflows[name].validate(); err != nil {
			return fmt.Errorf("workflows.%s.budget: %w", name, err)
		}
	}
	for name, d := range map[string]time.Duration{"flush_interval": c.FlushInterval, "check_interval": c.CheckInterval, "cache_ttl": c.CacheTTL} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	return nil
}

// Status is a workflow's budget at one moment.
type Status struct {
	// Workflow and Queue name the workflow and its queue.
	Workflow, Queue string
	// SLO, Window, MinEvents and OnExhausted are the policy.
	SLO         float64
	Window      time.Duration
	MinEvents   int
	OnExhausted Action
	// ShortWindow is the short burn-rate window, Window/12; Bucket is the
	// counting granularity.
	ShortWindow, Bucket time.Duration
	// Events and Failures count attempts in the window.
	Events, Failures int64
	// ShortEvents and ShortFailures count attempts in the short window.
	ShortEvents, ShortFailures int64
	// Budget is the failures the window allows, (1 - SLO) * Events.
	Budget float64
	// Remaining is Budget - Failures; negative when overspent.
	Remaining float64
	// RemainingRatio is Remaining / Budget: 1 untouched, 0 spent, negative
	// overspent; 1 with no events.
	RemainingRatio float64
	// BurnRateLong and BurnRateShort are the failure ratio over each window
	// divided by (1 - SLO): 1 spends the budget exactly over the window.
	BurnRateLong, BurnRateShort float64
	// Exhausted reports Events >= MinEvents and Failures > Budget.
	Exhausted bool
	// Until estimates, for an exhausted budget, when it recovers if no new
	// attempts come: when enough of the oldest failures leave the window.
	Until time.Time
	// Paused reports whether the workflow's queue is paused in asynq;
	// PausedByBudget whether this package paused it.
	Paused, PausedByBudget bool
	// Held reports a pause-budget resumed by hand while still exhausted: it
	// is not paused again until new failures arrive.
	Held bool
	// State is paused, exhausted or ok, in that order of precedence.
	State State
	// At is when the status was computed.
	At time.Time
}

// ExhaustedError refuses an enqueue of a workflow whose budget, with
// on_exhausted reject, is exhausted.
type ExhaustedError struct {
	// Status is the budget that refused.
	Status Status
	// Command is the start of the reset command the message suggests
	// (Config.Command); "agentq" when empty.
	Command string
}

func (e *ExhaustedError) Error() string {
	st := e.Status
	msg := fmt.Sprintf("workflow %q refuses new tasks: its error budget is exhausted (%d failures of %d attempts over the last %v; slo %v allows %s) and on_exhausted is reject",
		st.Workflow, st.Failures, st.Events, jobs.FormatDuration(st.Window), st.SLO, fmtFloat(st.Budget))
	if !st.Until.IsZero() {
		msg += fmt.Sprintf("; enqueues are refused until about %s (in %v), when the oldest failures leave the window",
			st.Until.UTC().Format(time.RFC3339), jobs.FormatDuration(max(0, st.Until.Sub(st.At)).Round(time.Second)))
	}
	return msg + fmt.Sprintf(" (`%s budget reset %s` clears the budget)", cmp.Or(e.Command, CommandDefault), st.Workflow)
}

// Budgets counts outcomes, evaluates budgets and acts on them. It is safe
// for concurrent use.
type Budgets struct {
	rdb  redis.UniversalClient
	insp *queue.Inspector
	cfg  Config
	log  zerolog.Logger
	id   string // prefix of flush ids and lock token

	mu      sync.Mutex
	pending map[string]series // counted, not yet flushed
	failed  []batch           // flushed with an unknown outcome, to send again
	seq     uint64

	cacheMu sync.Mutex
	cache   map[string]Status
}

// batch is one workflow's counts sent in one flush.
type batch struct {
	workflow string
	id       string
	counts   series
}

// New returns Budgets on rdb. The caller keeps ownership of rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Budgets, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	return &Budgets{
		rdb: rdb, insp: queue.NewInspector(rdb), cfg: cfg,
		log: cfg.Logger.With().Str("component", "budget").Logger(), id: hex.EncodeToString(raw[:]),
		pending: map[string]series{}, cache: map[string]Status{},
	}, nil
}

// Workflows returns the names of the workflows with a budget, sorted.
func (b *Budgets) Workflows() []string { return slices.Sorted(maps.Keys(b.cfg.Workflows)) }

// Policy returns a workflow's budget with defaults filled in.
func (b *Budgets) Policy(workflow string) (Policy, bool) {
	p, ok := b.cfg.Workflows[workflow]
	return p, ok
}

// Observer counts each decided attempt of a workflow with a budget once
// (queue.WorkerConfig.Observers): a success as an event, a failure (retry
// or dead) as an event and a failure. A snooze, an abandoned attempt and a
// step a run's cap stopped (class cap_exceeded: the run's own limit, not
// a failure of the work) are not counted. It touches no Redis.
func (b *Budgets) Observer() jobs.Observer {
	return jobs.ObserverFunc(func(_ context.Context, s *jobs.Step, r *jobs.Result) {
		if r.Class == jobs.ClassCapExceeded {
			return
		}
		b.observe(s, r.Outcome)
	})
}

func (b *Budgets) observe(s *jobs.Step, outcome jobs.Outcome) {
	if s.Workflow == "" || outcome == jobs.OutcomeSnooze || outcome == jobs.OutcomeAbandoned {
		return
	}
	p, ok := b.cfg.Workflows[s.Workflow]
	if !ok {
		return
	}
	start := spanOf(p.Window).bucketStart(b.cfg.Now())
	b.mu.Lock()
	sr := b.pending[s.Workflow]
	if sr == nil {
		sr = series{}
		b.pending[s.Workflow] = sr
	}
	c := sr[start]
	c.events++
	if outcome != jobs.OutcomeSuccess {
		c.failures++
	}
	sr[start] = c
	b.mu.Unlock()
}

// flushScript adds one batch of counts to a workflow's counters, once: a
// batch id seen before is skipped.
// KEYS[1] counts, KEYS[2] the batch's flush marker.
// ARGV[1] ttl ms of the counters, ARGV[2] marker ttl ms, ARGV[3] failures in
// the batch, then field, increment pairs.
var flushScript = redis.NewScript(`
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) == false then return 0 end
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'tf', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)

// Flush sends the counted outcomes to Redis in one pipeline, one atomic
// script per workflow. A batch whose outcome is unknown (an error) is kept
// and sent again with the same id, so it is counted exactly once.
func (b *Budgets) Flush(ctx context.Context) error {
	b.mu.Lock()
	batches := b.failed
	b.failed = nil
	for _, wf := range slices.Sorted(maps.Keys(b.pending)) {
		b.seq++
		batches = append(batches, batch{workflow: wf, id: b.id + "-" + strconv.FormatUint(b.seq, 36), counts: b.pending[wf]})
	}
	clear(b.pending)
	b.mu.Unlock()
	if len(batches) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batches))
	for i, bt := range batches {
		p := b.cfg.Workflows[bt.workflow]
		sp := spanOf(p.Window)
		ttl := (p.Window + 2*time.Duration(sp.bucket)*time.Second + time.Minute).Milliseconds()
		var fails int64
		args := []any{ttl, (10 * time.Minute).Milliseconds(), 0}
		for _, start := range slices.Sorted(maps.Keys(bt.counts)) {
			c := bt.counts[start]
			args = append(args, eventsField(start), c.events)
			if c.failures > 0 {
				args = append(args, failuresField(start), c.failures)
				fails += c.failures
			}
		}
		args[2] = fails
		cmds[i] = flushScript.Eval(ctx, pipe, []string{countsKey(bt.workflow), flushKey(bt.workflow, bt.id)}, args...)
	}
	_, _ = pipe.Exec(ctx)
	var errs []error
	b.mu.Lock()
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			b.failed = append(b.failed, batches[i])
			errs = append(errs, fmt.Errorf("flush budget counts of %q: %w", batches[i].workflow, err))
		}
	}
	b.mu.Unlock()
	return errors.Join(errs...)
}

// snapshot is what Redis holds about one workflow.
type snapshot struct {
	counts  series
	stale   []string // counter fields older than the window
	total   int64    // failures ever flushed
	paused  bool     // the queue is paused (by anyone)
	pausedB bool     // this package paused it
	hold    int64    // total failures at a manual resume; -1 for none
	alerted bool
}

// read fetches the snapshots of workflows in one pipeline.
func (b *Budgets) read(ctx context.Context, names []string, now time.Time, withState bool) ([]snapshot, error) {
	pipe := b.rdb.Pipeline()
	type cmds struct {
		counts, state *redis.MapStringStringCmd
	}
	cs := make([]cmds, len(names))
	var queues []string
	var queueOf []int // index in queues of names[i]'s queue, -1 for none
	for i, name := range names {
		cs[i].counts = pipe.HGetAll(ctx, countsKey(name))
		if withState {
			cs[i].state = pipe.HGetAll(ctx, stateKey(name))
			queueOf = append(queueOf, -1)
			if q := b.cfg.Workflows[name].Queue; q != "" {
				queueOf[i] = len(queues)
				queues = append(queues, q)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	paused, err := b.insp.Paused(ctx, queues...)
	if err != nil {
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	out := make([]snapshot, len(names))
	for i, name := range names {
		sp := spanOf(b.cfg.Workflows[name].Window)
		out[i] = parseCounts(cs[i].counts.Val(), sp.longStart(now)-sp.bucket)
		out[i].hold = -1
		if !withState {
			continue
		}
		st := cs[i].state.Val()
		_, out[i].pausedB = st[pausedField]
		_, out[i].alerted = st[alertedField]
		if v, ok := st[holdField]; ok {
			out[i].hold, _ = strconv.ParseInt(v, 10, 64)
		}
		if queueOf[i] >= 0 {
			out[i].paused = paused[queueOf[i]]
		}
	}
	return out, nil
}

// parseCounts reads a counter hash; fields of buckets before keepFrom are
// reported as stale.
func parseCounts(h map[string]string, keepFrom int64) snapshot {
	sn := snapshot{counts: series{}}
	for f, v := range h {
		n, _ := strconv.ParseInt(v, 10, 64)
		if f == totalField {
			sn.total = n
			continue
		}
		var startStr string
		var failures bool
		switch {
		case strings.HasPrefix(f, eventsPrefix):
			startStr = f[len(eventsPrefix):]
		case strings.HasPrefix(f, failuresPrefix):
			startStr, failures = f[len(failuresPrefix):], true
		default:
			continue
		}
		start, err := strconv.ParseInt(startStr, 10, 64)
		if err != nil {
			continue
		}
		if start < keepFrom {
			sn.stale = append(sn.stale, f)
			continue
		}
		c := sn.counts[start]
		if failures {
			c.failures += n
		} else {
			c.events += n
		}
		sn.counts[start] = c
	}
	return sn
}

func (b *Budgets) status(name string, sn snapshot, now time.Time) Status {
	st := evaluate(name, b.cfg.Workflows[name], sn.counts, now)
	st.Paused, st.PausedByBudget = sn.paused, sn.pausedB && sn.paused
	st.Held = st.Exhausted && sn.hold >= 0 && sn.total <= sn.hold
	if st.Paused {
		st.State = StatePaused
	}
	return st
}

// Statuses returns the budgets of the named workflows (all when none are
// named) as Redis holds them now. It only reads. An unknown workflow or one
// without a budget is an error.
func (b *Budgets) Statuses(ctx context.Context, workflows ...string) ([]Status, error) {
	if len(workflows) == 0 {
		workflows = b.Workflows()
	}
	for _, w := range workflows {
		if _, ok := b.cfg.Workflows[w]; !ok {
			return nil, fmt.Errorf("workflow %q has no error budget", w)
		}
	}
	now := b.cfg.Now()
	sns, err := b.read(ctx, workflows, now, true)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(workflows))
	for i, w := range workflows {
		out[i] = b.status(w, sns[i], now)
	}
	return out, nil
}

// Admit is a queue.ClientConfig.Admit hook: it refuses an enqueue of a
// workflow whose budget, with on_exhausted reject, is exhausted, with an
// *ExhaustedError. It answers from a budget read at most CacheTTL ago, so
// it costs at most one Redis read per workflow per CacheTTL. If Redis
// cannot be read it admits: the enqueue itself reports Redis errors.
func (b *Budgets) Admit(ctx context.Context, _ string, o queue.EnqueueOptions) error {
	p, ok := b.cfg.Workflows[o.Workflow]
	if !ok || p.OnExhausted != ActionReject {
		return nil
	}
	st, err := b.cached(ctx, o.Workflow)
	if err != nil {
		b.log.Warn().Err(err).Str("workflow", o.Workflow).Msg("budget unknown; admitting")
		return nil
	}
	if st.Exhausted {
		return &ExhaustedError{Status: st, Command: b.cfg.Command}
	}
	return nil
}

func (b *Budgets) cached(ctx context.Context, workflow string) (Status, error) {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	now := b.cfg.Now()
	if st, ok := b.cache[workflow]; ok && now.Sub(st.At) < b.cfg.CacheTTL && !now.Before(st.At) {
		return st, nil
	}
	sns, err := b.read(ctx, []string{workflow}, now, false)
	if err != nil {
		return Status{}, err
	}
	st := b.status(workflow, sns[0], now)
	b.cache[workflow] = st
	return st, nil
}

// Run flushes every FlushInterval and checks every CheckInterval until ctx
// is done, then flushes what is left. Errors are logged, not returned.
func (b *Budgets) Run(ctx context.Context) {
	flush := time.NewTicker(b.cfg.FlushInterval)
	defer flush.Stop()
	check := time.NewTicker(b.cfg.CheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := b.Flush(fctx); err != nil {
				b.log.Error().Err(err).Msg("final flush of budget counts failed; these outcomes are not counted")
			}
			return
		case <-flush.C:
			if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn().Err(err).Msg("budget counts not flushed; sending them again next time")
			}
		case <-check.C:
			if _, err := b.Check(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn().Err(err).Msg("budget check failed")
			}
		}
	}
}

// Check evaluates every budget and, if this process is the first to check
// in the current slot of CheckInterval (a Redis lock per slot), acts on
// each: alert, pause and resume. It returns the statuses when it acted and
// nil when another process holds the slot.
func (b *Budgets) Check(ctx context.Context) ([]Status, error) {
	names := b.Workflows()
	if len(names) == 0 {
		return nil, nil
	}
	now := b.cfg.Now()
	slot := now.UnixNano() / int64(b.cfg.CheckInterval)
	ok, err := b.rdb.SetNX(ctx, lockKey(slot), b.id, 2*b.cfg.CheckInterval).Result()
	if err != nil {
		return nil, fmt.Errorf("budget check lock: %w", err)
	}
	if !ok {
		return nil, nil
	}
	sns, err := b.read(ctx, names, now, true)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(names))
	var errs []error
	prune := b.rdb.Pipeline()
	for i, name := range names {
		st, err := b.act(ctx, b.status(name, sns[i], now), sns[i])
		out[i] = st
		errs = append(errs, err)
		if len(sns[i].stale) > 0 {
			prune.HDel(ctx, countsKey(name), sns[i].stale...)
		}
		b.cacheMu.Lock()
		b.cache[name] = st
		b.cacheMu.Unlock()
	}
	if prune.Len() > 0 {
		if _, err := prune.Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("prune budget buckets: %w", err))
		}
	}
	return out, errors.Join(errs...)
}

// act applies a workflow's policy to its status.
//
// Pause never fights a person: a queue resumed by hand (with `agentq budget
// resume`, or in asynqmon) while the budget is still exhausted is not paused
// again until new failures arrive; the hold ends when the budget recovers or
// is reset. A queue paused by hand is never resumed by the budget.
func (b *Budgets) act(ctx context.Context, st Status, sn snapshot) (Status, error) {
	name := st.Workflow
	key := stateKey(name)
	nowMS := strconv.FormatInt(st.At.UnixMilli(), 10)
	log := b.log.With().Str("workflow", name).Str("queue", st.Queue).Logger()
	if !st.Exhausted {
		var errs []error
		if sn.pausedB {
			if sn.paused {
				if _, err := b.insp.Unpause(ctx, st.Queue); err != nil {
					return st, fmt.Errorf("resume queue %q of workflow %q: %w", st.Queue, name, err)
				}
				st.Paused, st.PausedByBudget, st.State = false, false, StateOK
			}
		}
		if sn.pausedB || sn.alerted {
			msg := fmt.Sprintf("error budget of workflow %q recovered: %d failures of %d attempts over the last %v (slo %v allows %s)",
				name, st.Failures, st.Events, jobs.FormatDuration(st.Window), st.SLO, fmtFloat(st.Budget))
			if sn.pausedB && sn.paused {
				msg += fmt.Sprintf("; queue %q resumed", st.Queue)
			}
			log.Info().Int64("events", st.Events).Int64("failures", st.Failures).Msg(msg)
			b.notify(ctx, Event{Kind: EventRecovered, Status: st, Message: msg})
		}
		if sn.pausedB || sn.alerted || sn.hold >= 0 {
			errs = append(errs, b.rdb.HDel(ctx, key, pausedField, alertedField, holdField).Err())
		}
		return st, errors.Join(errs...)
	}

	if !sn.alerted {
		if err := b.rdb.HSet(ctx, key, alertedField, nowMS).Err(); err != nil {
			return st, fmt.Errorf("budget state of %q: %w", name, err)
		}
		msg := fmt.Sprintf("error budget of workflow %q is exhausted: %d failures of %d attempts over the last %v, slo %v allows %s (burn rate %s over %v, %s over %v); on_exhausted: %s",
			name, st.Failures, st.Events, jobs.FormatDuration(st.Window), st.SLO, fmtFloat(st.Budget),
			fmtFloat(st.BurnRateLong), jobs.FormatDuration(st.Window), fmtFloat(st.BurnRateShort), jobs.FormatDuration(st.ShortWindow), st.OnExhausted)
		log.Warn().Int64("events", st.Events).Int64("failures", st.Failures).Time("until", st.Until).
			Str("on_exhausted", string(st.OnExhausted)).Msg(msg)
		b.notify(ctx, Event{Kind: EventExhausted, Status: st, Message: msg})
	}
	if st.OnExhausted != ActionPause {
		return st, nil
	}
	switch {
	case sn.pausedB && !sn.paused:
		// Paused by the budget, resumed by a person (asynqmon): hold.
		st.Held = true
		log.Info().Msg("queue was resumed by hand while the budget is exhausted; not pausing it again until new failures arrive")
		pipe := b.rdb.TxPipeline()
		pipe.HDel(ctx, key, pausedField)
		pipe.HSet(ctx, key, holdField, sn.total)
		_, err := pipe.Exec(ctx)
		return st, err
	case sn.pausedB, sn.paused:
		return st, nil // paused already, by the budget or by a person
	case st.Held:
		return st, nil
	}
	// The marker goes first: a pause the checker cannot record would never
	// be resumed.
	pipe := b.rdb.TxPipeline()
	pipe.HSet(ctx, key, pausedField, nowMS)
	pipe.HDel(ctx, key, holdField)
	if _, err := pipe.Exec(ctx); err != nil {
		return st, fmt.Errorf("budget state of %q: %w", name, err)
	}
	if _, err := b.insp.Pause(ctx, st.Queue); err != nil {
		_ = b.rdb.HDel(ctx, key, pausedField).Err()
		return st, fmt.Errorf("pause queue %q of workflow %q: %w", st.Queue, name, err)
	}
	st.Paused, st.PausedByBudget, st.Held, st.State = true, true, false, StatePaused
	msg := fmt.Sprintf("paused queue %q of workflow %q: its error budget is exhausted; it resumes when the budget recovers (about %s) or with `%s budget resume %s`",
		st.Queue, name, st.Until.UTC().Format(time.RFC3339), b.cfg.Command, name)
	log.Warn().Time("until", st.Until).Msg(msg)
	b.notify(ctx, Event{Kind: EventPaused, Status: st, Message: msg})
	return st, nil
}

func (b *Budgets) notify(ctx context.Context, e Event) {
	if b.cfg.OnChange != nil {
		b.cfg.OnChange(ctx, e)
	}
}

// Resume resumes a workflow's queue by hand. If its budget is still
// exhausted, the checker does not pause it again until new failures arrive
// (or the budget recovers or is reset first). It reports whether the queue
// was paused.
func (b *Budgets) Resume(ctx context.Context, workflow string) (wasPaused bool, st Status, err error) {
	p, ok := b.cfg.Workflows[workflow]
	if !ok {
		return false, Status{}, fmt.Errorf("workflow %q has no error budget", workflow)
	}
	now := b.cfg.Now()
	sns, err := b.read(ctx, []string{workflow}, now, true)
	if err != nil {
		return false, Status{}, err
	}
	sn := sns[0]
	if sn.paused {
		if _, err := b.insp.Unpause(ctx, p.Queue); err != nil {
			return false, Status{}, fmt.Errorf("resume queue %q: %w", p.Queue, err)
		}
	}
	pipe := b.rdb.TxPipeline()
	pipe.HDel(ctx, stateKey(workflow), pausedField)
	pipe.HSet(ctx, stateKey(workflow), holdField, sn.total)
	if _, err := pipe.Exec(ctx); err != nil {
		return sn.paused, Status{}, fmt.Errorf("record the resume of %q: %w", workflow, err)
	}
	sn.paused, sn.pausedB, sn.hold = false, false, sn.total
	return sns[0].paused, b.status(workflow, sn, now), nil
}

// Reset clears a workflow's counters and checker state, and resumes its
// queue if the budget had paused it. It returns the status before the
// reset and whether it resumed the queue. Outcomes counted in memory by
// running workers but not yet flushed (at most FlushInterval's worth) still
// arrive.
func (b *Budgets) Reset(ctx context.Context, workflow string) (before Status, resumed bool, err error) {
	p, ok := b.cfg.Workflows[workflow]
	if !ok {
		return Status{}, false, fmt.Errorf("workflow %q has no error budget", workflow)
	}
	now := b.cfg.Now()
	sns, err := b.read(ctx, []string{workflow}, now, true)
	if err != nil {
		return Status{}, false, err
	}
	before = b.status(workflow, sns[0], now)
	if err := b.rdb.Del(ctx, countsKey(workflow), stateKey(workflow)).Err(); err != nil {
		return before, false, fmt.Errorf("reset budget of %q: %w", workflow, err)
	}
	if sns[0].pausedB && sns[0].paused {
		if _, err := b.insp.Unpause(ctx, p.Queue); err != nil {
			return before, false, fmt.Errorf("resume queue %q: %w", p.Queue, err)
		}
		resumed = true
	}
	b.cacheMu.Lock()
	delete(b.cache, workflow)
	b.cacheMu.Unlock()
	return before, resumed, nil
}

// fmtFloat prints a count or rate with up to 3 decimals: 0.5, 2, 14.4.
func fmtFloat(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64) }
