package runs

// Scheduled runs.
//
// A workflow with a Schedule gets a run at each tick of its cron
// expression. Every worker runs a Scheduler; they agree on the ticks
// because a tick is a pure function of the expression and the zone, and
// on who starts it because the run's start key is derived from the tick
// (TickKey): a second Start of the same tick is a Duplicate of the first.
//
// Missed ticks: each workflow's last handled tick is kept in Redis under
// the hash tag {schedule:<workflow>} (see scheduleLastKey), and it only
// moves forward. At start and at each wake-up a Scheduler takes the latest
// tick at or before now; if it is later than the stored one it starts it
// (late, when more than Grace after the tick) and then stores it. So a
// tick missed while no worker ran is started once when a worker comes
// back, and only the latest one: a worker down for three days over a
// daily schedule starts one run, not three. Ticks more than 366 days old
// are not looked for.
//
// A workflow with no stored tick (a new schedule, or its record was lost)
// does not fire a tick more than Grace in the past: that tick is stored
// as handled and the next one is the first to start.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"github.com/agentq/agentq/jobs"
)

// Bounds and defaults of schedules and of SchedulerConfig.
const (
	// ScheduleLookback is how far back Prev looks for a tick (exclusive):
	// a tick older than this is never started late.
	ScheduleLookback = 366 * 24 * time.Hour
	// ScheduleMinEvery is the shortest @every interval.
	ScheduleMinEvery = time.Minute

	// SchedulerMaxWaitDefault is SchedulerConfig.MaxWait's default.
	SchedulerMaxWaitDefault = time.Minute
	// SchedulerGraceDefault is SchedulerConfig.Grace's default.
	SchedulerGraceDefault = time.Minute

	schedulerBackoffMin = time.Second
)

// scheduleRef is where Validate checks that an expression ticks at all
// (robfig gives up after five years: "0 0 30 2 *" never ticks).
var scheduleRef = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// clock is a parsed Schedule: either a cron spec read in loc, or a fixed
// interval anchored at the Unix epoch.
type clock struct {
	spec  cron.Schedule // nil for @every
	every int64         // seconds, for @every
	loc   *time.Location
}

// Validate reports whether s can run. Accepted expressions, parsed by
// robfig/cron's ParseStandard:
//   - five fields: minute hour day-of-month month day-of-week, with names
//     (MON, JAN), ranges, lists and steps ("0 9 * * MON-FRI",
//     "*/15 * * * *");
//   - the descriptors @yearly (@annually), @monthly, @weekly, @daily
//     (@midnight) and @hourly, read in Timezone;
//   - @every <duration> (from ScheduleMinEvery to ScheduleLookback, whole
//     seconds), which
//     ticks at the multiples of the duration since the Unix epoch, so
//     that every worker computes the same ticks: @every 1h ticks on the
//     hour, @every 24h at 00:00 UTC whatever Timezone says (use @daily or
//     "0 0 * * *" for local midnight).
//
// A CRON_TZ= or TZ= prefix is refused: the zone is Timezone's. Timezone
// is an IANA name ("" is UTC; "Local" is refused, as workers in different
// zones would disagree on the ticks). Input is a JSON object, or empty
// (null counts as empty). Errors name the field: "schedule.cron: ...".
func (s Schedule) Validate() error {
	if _, err := s.clock(); err != nil {
		return err
	}
	if err := validateScheduleInput(s.Input); err != nil {
		return err
	}
	return nil
}

func validateScheduleInput(in json.RawMessage) error {
	trimmed := strings.TrimSpace(string(in))
	if trimmed == "" || trimmed == "null" {
		return nil
	}
	if !json.Valid(in) {
		return errors.New("schedule.input: not valid JSON")
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("schedule.input: must be a JSON object, got %s", jsonKindName(trimmed[0]))
	}
	return nil
}

// input returns the input a scheduled run starts with: Input, or {}.
func (s Schedule) input() json.RawMessage {
	trimmed := strings.TrimSpace(string(s.Input))
	if trimmed == "" || trimmed == "null" {
		return json.RawMessage("{}")
	}
	return s.Input
}

// clock parses the zone and the expression.
func (s Schedule) clock() (clock, error) {
	loc, err := scheduleLocation(s.Timezone)
	if err != nil {
		return clock{}, err
	}
	expr := strings.TrimSpace(s.Cron)
	if expr == "" {
		return clock{}, errors.New("schedule.cron: empty; give five fields (\"0 9 * * MON\") or a descriptor (@daily, @every 1h)")
	}
	if upper := strings.ToUpper(expr); strings.HasPrefix(upper, "CRON_TZ=") || strings.HasPrefix(upper, "TZ=") {
		return clock{}, fmt.Errorf("schedule.cron: %q: a CRON_TZ= or TZ= prefix is not accepted; set schedule.timezone instead", short(expr))
	}
	if f := strings.Fields(expr); f[0] == "@every" {
		if len(f) != 2 {
			return clock{}, fmt.Errorf("schedule.cron: %q: @every takes one duration, e.g. @every 1h", short(expr))
		}
		d, err := jobs.ParseDuration(f[1])
		if err != nil {
			return clock{}, fmt.Errorf("schedule.cron: %q: bad @every duration: %w", short(expr), err)
		}
		if d < ScheduleMinEvery {
			return clock{}, fmt.Errorf("schedule.cron: %q: @every must be at least %s", short(expr), ScheduleMinEvery)
		}
		if d > ScheduleLookback {
			return clock{}, fmt.Errorf("schedule.cron: %q: @every must be at most %s (366 days)", short(expr), ScheduleLookback)
		}
		if d%time.Second != 0 {
			return clock{}, fmt.Errorf("schedule.cron: %q: @every must be whole seconds", short(expr))
		}
		return clock{every: int64(d / time.Second), loc: loc}, nil
	}
	parsed, err := cron.ParseStandard(expr)
	if err != nil {
		return clock{}, fmt.Errorf("schedule.cron: %q: %w", short(expr), err)
	}
	spec, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		// ParseStandard returns a *SpecSchedule for everything but @every,
		// which is handled above.
		return clock{}, fmt.Errorf("schedule.cron: %q: unsupported expression", short(expr))
	}
	spec.Location = loc
	c := clock{spec: spec, loc: loc}
	if c.next(scheduleRef).IsZero() {
		return clock{}, fmt.Errorf("schedule.cron: %q: never ticks (no such date)", short(expr))
	}
	return c, nil
}

func scheduleLocation(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, errors.New(`schedule.timezone: "Local" is each worker's own zone; name an IANA zone such as "Europe/Berlin"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("schedule.timezone: unknown time zone %q", short(name))
	}
	return loc, nil
}

// short bounds a user's string quoted in an error.
func short(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// Next returns the schedule's first tick strictly after after, in the
// schedule's zone. Local times a DST change skips have no tick that day
// ("30 2 * * *" does not tick on the spring-forward day in Europe/Berlin);
// local times it repeats tick twice, once per UTC instant (robfig/cron's
// reading). It fails when s is not valid or no tick comes within five
// years.
//
// Known robfig/cron limit: in Australia/Lord_Howe, whose DST shift is 30
// minutes, Next can pass over a tick right after a shift (Prev finds it,
// so the Scheduler still starts it, late by up to MaxWait).
func (s Schedule) Next(after time.Time) (time.Time, error) {
	c, err := s.clock()
	if err != nil {
		return time.Time{}, err
	}
	n := c.next(after)
	if n.IsZero() {
		return time.Time{}, fmt.Errorf("schedule.cron: %q: no tick within five years after %s", short(s.Cron), after.Format(time.RFC3339))
	}
	return n, nil
}

// Prev returns the schedule's latest tick at or before at, in the
// schedule's zone, and false when none lies within ScheduleLookback (366
// days) of at. Its work is bounded: about 45 computations of the next
// tick (a doubling search back from one minute to 366 days, then a binary
// search to the second).
func (s Schedule) Prev(at time.Time) (time.Time, bool, error) {
	c, err := s.clock()
	if err != nil {
		return time.Time{}, false, err
	}
	p, ok := c.prev(at)
	return p, ok, nil
}

// next is the first tick strictly after t, or the zero time.
func (c clock) next(t time.Time) time.Time {
	if c.spec == nil {
		sec := t.Unix() // floor: ticks are whole seconds
		return time.Unix(floorDiv(sec, c.every)*c.every+c.every, 0).In(c.loc)
	}
	n := c.spec.Next(t)
	if n.IsZero() {
		return n
	}
	return n.In(c.loc)
}

// nextSec is next on Unix seconds; math.MaxInt64 for no tick.
func (c clock) nextSec(sec int64) int64 {
	n := c.next(time.Unix(sec, 0))
	if n.IsZero() {
		return math.MaxInt64
	}
	return n.Unix()
}

// prev is the latest tick at or before at within ScheduleLookback.
func (c clock) prev(at time.Time) (time.Time, bool) {
	end := at.Unix() // a tick (whole seconds) is <= at iff it is <= end
	if c.spec == nil {
		return time.Unix(floorDiv(end, c.every)*c.every, 0).In(c.loc), true
	}
	const maxBack = int64(ScheduleLookback / time.Second)
	// Find lo with a tick in (lo, end], doubling the window back.
	var lo int64
	for w := int64(60); ; w *= 2 {
		if w > maxBack {
			w = maxBack
		}
		lo = end - w
		if c.nextSec(lo) <= end {
			break
		}
		if w == maxBack {
			return time.Time{}, false
		}
	}
	// nextSec(lo) <= end < nextSec(end): find the last x with
	// nextSec(x) <= end; nextSec(x) is then the latest tick <= end (a
	// later one would also follow x+1).
	hi := end
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if c.nextSec(mid) <= end {
			lo = mid
		} else {
			hi = mid
		}
	}
	return time.Unix(c.nextSec(lo), 0).In(c.loc), true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// TickKey is the start key (StartOptions.Key) of the run of workflow's
// tick: "schedule:" and the tick in UTC, RFC 3339 ("schedule:2026-12-07T08:00:00Z").
// Start scopes keys by workflow, so the key holds only the tick; every
// worker derives the same key for the same tick, which makes a tick's
// start idempotent across workers.
func TickKey(workflow string, tick time.Time) string {
	_ = workflow
	return "schedule:" + tick.UTC().Format(time.RFC3339)
}

// scheduleLastKey is the key of workflow's last handled tick (Unix
// seconds). Its hash tag {schedule:<workflow>} keeps a workflow's schedule
// keys in one slot.
func scheduleLastKey(workflow string) string {
	return "agentq:{schedule:" + workflow + "}:last"
}

// setLastScript stores ARGV[1] (Unix seconds) in KEYS[1] only if it is
// later than what is stored (or nothing, or garbage, is stored): the last
// handled tick only moves forward. It returns 1 when it stored.
var setLastScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]))
local new = tonumber(ARGV[1])
if cur and cur >= new then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// Starter starts a workflow's run; Runs' Start is one.
type Starter interface {
	Start(ctx context.Context, workflow string, input json.RawMessage, o StartOptions) (Started, error)
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Logger receives the scheduler's log lines. Default: zerolog's global.
	Logger *zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// After waits: it returns a channel that receives once d has passed.
	// Default time.After. Tests give a fake clock's.
	After func(d time.Duration) <-chan time.Time
	// MaxWait bounds a sleep between two looks at the schedules, so a
	// clock change or another worker's progress is seen, and bounds the
	// retry backoff after an error. Default SchedulerMaxWaitDefault (1m).
	MaxWait time.Duration
	// Grace is how long after its tick a run still starts on time: one
	// started later is logged late=true, and a workflow with no stored
	// tick does not start a tick older than Grace. Default
	// SchedulerGraceDefault (1m).
	Grace time.Duration
}

// Scheduler starts the scheduled workflows' runs at their ticks. Run one
// per worker; any number of them share a Redis and start each tick once.
type Scheduler struct {
	rdb     redis.UniversalClient
	starter Starter
	entries []scheduleEntry
	log     zerolog.Logger
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	maxWait time.Duration
	grace   time.Duration
}

type scheduleEntry struct {
	workflow string
	clock    clock
	input    json.RawMessage
	// tick and until cache the latest tick at or before a recent now, and
	// the tick after it: Prev runs once per tick, not once per look.
	tick, until time.Time
	hasTick     bool
}

// latest returns the latest tick at or before now, cached until the next.
func (e *scheduleEntry) latest(now time.Time) (time.Time, bool) {
	if e.hasTick && !now.Before(e.tick) && now.Before(e.until) {
		return e.tick, true
	}
	tick, ok := e.clock.prev(now)
	e.tick, e.hasTick = tick, ok
	if ok {
		e.until = e.clock.next(tick)
		if e.until.IsZero() {
			e.hasTick = false
		}
	}
	return tick, ok
}

// NewScheduler returns a Scheduler of the workflows with a Schedule (the
// map's keys are the workflows' names). It fails when a schedule is not
// valid, naming the workflow.
func NewScheduler(rdb redis.UniversalClient, st Starter, workflows map[string]Workflow, cfg SchedulerConfig) (*Scheduler, error) {
	if rdb == nil {
		return nil, errors.New("runs: NewScheduler: nil Redis client")
	}
	if st == nil {
		return nil, errors.New("runs: NewScheduler: nil Starter")
	}
	if cfg.MaxWait < 0 {
		return nil, fmt.Errorf("runs: SchedulerConfig.MaxWait: negative (%s)", cfg.MaxWait)
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("runs: SchedulerConfig.Grace: negative (%s)", cfg.Grace)
	}
	s := &Scheduler{
		rdb:     rdb,
		starter: st,
		log:     log.Logger,
		now:     cfg.Now,
		after:   cfg.After,
		maxWait: cfg.MaxWait,
		grace:   cfg.Grace,
	}
	if cfg.Logger != nil {
		s.log = *cfg.Logger
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.after == nil {
		s.after = time.After
	}
	if s.maxWait == 0 {
		s.maxWait = SchedulerMaxWaitDefault
	}
	if s.grace == 0 {
		s.grace = SchedulerGraceDefault
	}
	for name, wf := range workflows {
		if wf.Schedule == nil {
			continue
		}
		c, err := wf.Schedule.clock()
		if err == nil {
			err = validateScheduleInput(wf.Schedule.Input)
		}
		if err != nil {
			return nil, fmt.Errorf("workflow %q: %w", name, err)
		}
		s.entries = append(s.entries, scheduleEntry{workflow: name, clock: c, input: wf.Schedule.input()})
	}
	sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].workflow < s.entries[j].workflow })
	return s, nil
}

// NextTicks returns each scheduled workflow's first tick strictly after
// now (what `agentq run list` shows as the next tick). A schedule with no
// tick within five years is left out.
func (s *Scheduler) NextTicks(now time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(s.entries))
	for _, e := range s.entries {
		if n := e.clock.next(now); !n.IsZero() {
			out[e.workflow] = n
		}
	}
	return out
}

// Run starts the scheduled runs until ctx ends, then returns nil; call it
// once per Scheduler. It
// looks at every schedule at once, then sleeps until the earliest next
// tick (at most MaxWait) and looks again. A Redis or Start error is
// logged and retried after a backoff (1s doubling up to MaxWait); it
// never ends Run.
func (s *Scheduler) Run(ctx context.Context) error {
	var backoff time.Duration
	for {
		if ctx.Err() != nil {
			return nil
		}
		failed := false
		for i := range s.entries {
			if ctx.Err() != nil {
				return nil
			}
			if !s.handle(ctx, &s.entries[i]) {
				failed = true
			}
		}
		wait := s.wait(s.now())
		if failed {
			backoff = min(max(2*backoff, schedulerBackoffMin), s.maxWait)
			wait = backoff
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.after(wait):
		}
	}
}

// wait is how long to sleep from now: until the earliest next tick, at
// most maxWait.
func (s *Scheduler) wait(now time.Time) time.Duration {
	d := s.maxWait
	for _, e := range s.entries {
		n := e.clock.next(now)
		if n.IsZero() {
			continue
		}
		if w := n.Sub(now); w < d {
			d = w
		}
	}
	return max(d, 0)
}

// handle starts e's latest tick at or before now when it is later than
// the stored last tick, then stores it. It logs what it did and reports
// false on an error (to be retried).
func (s *Scheduler) handle(ctx context.Context, e *scheduleEntry) bool {
	now := s.now()
	tick, ok := e.latest(now)
	if !ok {
		return true
	}
	lg := s.log.With().Str("workflow", e.workflow).Time("tick", tick.UTC()).Logger()
	last, seen, err := s.lastTick(ctx, e.workflow)
	if err != nil {
		if ctx.Err() == nil {
			lg.Error().Err(err).Msg("schedule: read the last handled tick")
		}
		return false
	}
	if seen && !tick.After(last) {
		return true
	}
	lateBy := now.Sub(tick)
	if !seen && lateBy > s.grace {
		if err := s.setLastTick(ctx, e.workflow, tick); err != nil {
			if ctx.Err() == nil {
				lg.Error().Err(err).Msg("schedule: store the last handled tick")
			}
			return false
		}
		lg.Info().Msg("schedule: first seen; its past tick is not started, the next one will be")
		return true
	}
	st, err := s.start(ctx, e, tick)
	if err != nil {
		if ctx.Err() == nil {
			lg.Error().Err(err).Msg("schedule: start the tick's run")
		}
		return false
	}
	late := lateBy > s.grace
	if st.Duplicate {
		lg.Debug().Str("run_id", st.RunID).Msg("schedule: tick's run already started")
	} else {
		ev := lg.Info().Str("run_id", st.RunID).Bool("late", late)
		if late {
			ev = ev.Dur("late_by", lateBy)
		}
		ev.Msg("schedule: run started")
	}
	if err := s.setLastTick(ctx, e.workflow, tick); err != nil {
		// The run is started; the next look starts it again as a
		// Duplicate and stores the tick then.
		if ctx.Err() == nil {
			lg.Error().Err(err).Str("run_id", st.RunID).Msg("schedule: store the last handled tick")
		}
		return false
	}
	return true
}

// start calls the Starter, turning a panic into an error: a bad start
// must not end the worker.
func (s *Scheduler) start(ctx context.Context, e *scheduleEntry, tick time.Time) (st Started, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start panicked: %v", r)
		}
	}()
	return s.starter.Start(ctx, e.workflow, e.input, StartOptions{Key: TickKey(e.workflow, tick)})
}

// lastTick reads workflow's last handled tick; seen is false when none is
// stored (or what is stored is not a tick).
func (s *Scheduler) lastTick(ctx context.Context, workflow string) (last time.Time, seen bool, err error) {
	v, err := s.rdb.Get(ctx, scheduleLastKey(workflow)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		s.log.Warn().Str("workflow", workflow).Msg("schedule: the stored last tick is not a number; treated as none")
		return time.Time{}, false, nil
	}
	return time.Unix(sec, 0), true, nil
}

// setLastTick stores tick as workflow's last handled tick unless a later
// one is stored.
func (s *Scheduler) setLastTick(ctx context.Context, workflow string, tick time.Time) error {
	return setLastScript.Run(ctx, s.rdb, []string{scheduleLastKey(workflow)}, strconv.FormatInt(tick.Unix(), 10)).Err()
}
