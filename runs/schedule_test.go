package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestScheduleValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		s       Schedule
		wantErr string // substring; "" means valid
	}{
		{name: "five fields", s: Schedule{Cron: "0 9 * * MON", Timezone: "Europe/Berlin", Input: json.RawMessage(`{"topic":"news"}`)}},
		{name: "ranges steps lists", s: Schedule{Cron: "*/15 8-18 1,15 JAN-JUN MON-FRI"}},
		{name: "surrounding spaces", s: Schedule{Cron: "  0 9 * * *  "}},
		{name: "hourly", s: Schedule{Cron: "@hourly"}},
		{name: "daily in zone", s: Schedule{Cron: "@daily", Timezone: "America/New_York"}},
		{name: "every hour", s: Schedule{Cron: "@every 1h"}},
		{name: "every minute", s: Schedule{Cron: "@every 1m"}},
		{name: "every day, in days", s: Schedule{Cron: "@every 1d"}},
		{name: "every 366 days", s: Schedule{Cron: "@every 366d"}},
		{name: "every 367 days", s: Schedule{Cron: "@every 367d"}, wantErr: "@every must be at most"},
		{name: "leap day", s: Schedule{Cron: "0 0 29 2 *"}},
		{name: "UTC by name", s: Schedule{Cron: "@daily", Timezone: "UTC"}},
		{name: "null input", s: Schedule{Cron: "@daily", Input: json.RawMessage(`null`)}},
		{name: "empty object input", s: Schedule{Cron: "@daily", Input: json.RawMessage(` {} `)}},

		{name: "empty cron", s: Schedule{Cron: " "}, wantErr: "schedule.cron: empty"},
		{name: "four fields", s: Schedule{Cron: "0 9 * *"}, wantErr: "schedule.cron: \"0 9 * *\": expected exactly 5 fields"},
		{name: "six fields (seconds)", s: Schedule{Cron: "0 0 9 * * MON"}, wantErr: "schedule.cron: \"0 0 9 * * MON\": expected exactly 5 fields"},
		{name: "minute out of range", s: Schedule{Cron: "60 9 * * *"}, wantErr: "schedule.cron: \"60 9 * * *\": end of range (60) above maximum (59)"},
		{name: "bad weekday name", s: Schedule{Cron: "0 9 * * MOO"}, wantErr: "schedule.cron: \"0 9 * * MOO\""},
		{name: "zero step", s: Schedule{Cron: "*/0 * * * *"}, wantErr: "step of range should be a positive number"},
		{name: "unknown descriptor", s: Schedule{Cron: "@fortnightly"}, wantErr: "schedule.cron: \"@fortnightly\""},
		{name: "never ticks", s: Schedule{Cron: "0 0 30 2 *"}, wantErr: "schedule.cron: \"0 0 30 2 *\": never ticks"},
		{name: "every too short", s: Schedule{Cron: "@every 30s"}, wantErr: "@every must be at least 1m0s"},
		{name: "every too long", s: Schedule{Cron: "@every 8785h"}, wantErr: "@every must be at most 8784h0m0s (366 days)"},
		{name: "every fractional", s: Schedule{Cron: "@every 90.5s"}, wantErr: "@every must be whole seconds"},
		{name: "every bad duration", s: Schedule{Cron: "@every soon"}, wantErr: "bad @every duration"},
		{name: "every no duration", s: Schedule{Cron: "@every"}, wantErr: "@every takes one duration"},
		{name: "every two durations", s: Schedule{Cron: "@every 1h 2h"}, wantErr: "@every takes one duration"},
		{name: "CRON_TZ prefix", s: Schedule{Cron: "CRON_TZ=Europe/Berlin 0 9 * * *"}, wantErr: "a CRON_TZ= or TZ= prefix is not accepted; set schedule.timezone instead"},
		{name: "TZ prefix without space", s: Schedule{Cron: "TZ=UTC"}, wantErr: "a CRON_TZ= or TZ= prefix is not accepted"},
		{name: "tz prefix lower case", s: Schedule{Cron: "tz=UTC 0 9 * * *"}, wantErr: "a CRON_TZ= or TZ= prefix is not accepted"},
		{name: "unknown zone", s: Schedule{Cron: "@daily", Timezone: "Mars/Olympus"}, wantErr: `schedule.timezone: unknown time zone "Mars/Olympus"`},
		{name: "Local zone", s: Schedule{Cron: "@daily", Timezone: "Local"}, wantErr: `schedule.timezone: "Local" is each worker's own zone`},
		{name: "path zone", s: Schedule{Cron: "@daily", Timezone: "../../etc/passwd"}, wantErr: "schedule.timezone: unknown time zone"},
		{name: "array input", s: Schedule{Cron: "@daily", Input: json.RawMessage(`[1]`)}, wantErr: "schedule.input: must be a JSON object, got an array"},
		{name: "string input", s: Schedule{Cron: "@daily", Input: json.RawMessage(`"x"`)}, wantErr: "schedule.input: must be a JSON object, got a string"},
		{name: "broken input", s: Schedule{Cron: "@daily", Input: json.RawMessage(`{"a":`)}, wantErr: "schedule.input: not valid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestScheduleNextPrev(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		cron, tz string
		at       string
		next     string // first tick > at
		prev     string // latest tick <= at; "" for none
	}{
		{name: "weekly before spring forward", cron: "0 9 * * MON", tz: "Europe/Berlin",
			at: "2026-03-23T08:00:00Z", next: "2026-03-30T07:00:00Z", prev: "2026-03-23T08:00:00Z"},
		{name: "weekly after spring forward", cron: "0 9 * * MON", tz: "Europe/Berlin",
			at: "2026-03-30T07:30:00Z", next: "2026-04-06T07:00:00Z", prev: "2026-03-30T07:00:00Z"},
		{name: "weekly a second before the tick", cron: "0 9 * * MON", tz: "Europe/Berlin",
			at: "2026-03-30T06:59:59.999Z", next: "2026-03-30T07:00:00Z", prev: "2026-03-23T08:00:00Z"},
		{name: "skipped local time has no tick that day", cron: "30 2 * * *", tz: "Europe/Berlin",
			at: "2026-03-28T02:00:00Z", next: "2026-03-30T00:30:00Z", prev: "2026-03-28T01:30:00Z"},
		{name: "prev over the skipped day", cron: "30 2 * * *", tz: "Europe/Berlin",
			at: "2026-03-29T12:00:00Z", next: "2026-03-30T00:30:00Z", prev: "2026-03-28T01:30:00Z"},
		{name: "repeated local time, first", cron: "30 2 * * *", tz: "Europe/Berlin",
			at: "2026-10-24T12:00:00Z", next: "2026-10-25T00:30:00Z", prev: "2026-10-24T00:30:00Z"},
		{name: "repeated local time, second", cron: "30 2 * * *", tz: "Europe/Berlin",
			at: "2026-10-25T01:00:00Z", next: "2026-10-25T01:30:00Z", prev: "2026-10-25T00:30:00Z"},
		{name: "after the repeat", cron: "30 2 * * *", tz: "Europe/Berlin",
			at: "2026-10-25T02:00:00Z", next: "2026-10-26T01:30:00Z", prev: "2026-10-25T01:30:00Z"},
		{name: "hourly over spring forward", cron: "0 * * * *", tz: "Europe/Berlin",
			at: "2026-03-29T00:30:00Z", next: "2026-03-29T01:00:00Z", prev: "2026-03-29T00:00:00Z"},
		{name: "daily descriptor reads the zone", cron: "@daily", tz: "Europe/Berlin",
			at: "2026-03-28T23:30:00Z", next: "2026-03-29T22:00:00Z", prev: "2026-03-28T23:00:00Z"},
		{name: "every hour over spring forward", cron: "@every 1h", tz: "Europe/Berlin",
			at: "2026-03-29T00:30:00Z", next: "2026-03-29T01:00:00Z", prev: "2026-03-29T00:00:00Z"},
		{name: "every at a tick", cron: "@every 90m",
			at: "1970-01-01T03:00:00Z", next: "1970-01-01T04:30:00Z", prev: "1970-01-01T03:00:00Z"},
		{name: "every before the epoch", cron: "@every 90m",
			at: "1969-12-31T23:00:00Z", next: "1970-01-01T00:00:00Z", prev: "1969-12-31T22:30:00Z"},
		{name: "every minute, at a tick plus nanos", cron: "* * * * *",
			at: "2026-01-01T10:00:00.5Z", next: "2026-01-01T10:01:00Z", prev: "2026-01-01T10:00:00Z"},
		{name: "leap day within the lookback", cron: "0 0 29 2 *",
			at: "2024-06-01T00:00:00Z", next: "2028-02-29T00:00:00Z", prev: "2024-02-29T00:00:00Z"},
		{name: "leap day beyond the lookback", cron: "0 0 29 2 *",
			at: "2026-06-01T00:00:00Z", next: "2028-02-29T00:00:00Z", prev: ""},
		{name: "yearly, last tick almost a year back", cron: "@yearly", tz: "Asia/Tokyo",
			at: "2026-12-31T14:59:59Z", next: "2026-12-31T15:00:00Z", prev: "2025-12-31T15:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Schedule{Cron: tc.cron, Timezone: tc.tz}
			at := utc(tc.at)
			next, err := s.Next(at)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if !next.Equal(utc(tc.next)) {
				t.Errorf("Next(%s) = %s, want %s", tc.at, next.UTC().Format(time.RFC3339), tc.next)
			}
			wantLoc := "UTC"
			if tc.tz != "" {
				wantLoc = tc.tz
			}
			if next.Location().String() != wantLoc {
				t.Errorf("Next is in %s, want %s", next.Location(), wantLoc)
			}
			prev, ok, err := s.Prev(at)
			if err != nil {
				t.Fatalf("Prev: %v", err)
			}
			if tc.prev == "" {
				if ok {
					t.Errorf("Prev(%s) = %s, want none", tc.at, prev.UTC().Format(time.RFC3339))
				}
				return
			}
			if !ok || !prev.Equal(utc(tc.prev)) {
				t.Errorf("Prev(%s) = %s, %v; want %s", tc.at, prev.UTC().Format(time.RFC3339), ok, tc.prev)
			}
		})
	}
}

// TestSchedulePrevAgreesWithNext checks Prev against a forward walk of
// Next over many instants, in zones with DST.
func TestSchedulePrevAgreesWithNext(t *testing.T) {
	t.Parallel()
	exprs := []Schedule{
		{Cron: "*/7 * * * *", Timezone: "Europe/Berlin"},
		{Cron: "30 2 * * *", Timezone: "Europe/Berlin"},
		{Cron: "0 9 * * MON-FRI", Timezone: "America/New_York"},
		{Cron: "15 0 1 * *", Timezone: "America/St_Johns"},
		{Cron: "45 1 * * *", Timezone: "Asia/Kathmandu"},
		{Cron: "0 0 * * *", Timezone: "America/Sao_Paulo"},
		{Cron: "@every 7m", Timezone: "Europe/Berlin"},
		{Cron: "@weekly"},
	}
	start := utc("2026-03-20T00:00:00Z")
	for _, s := range exprs {
		t.Run(s.Cron+" "+s.Timezone, func(t *testing.T) {
			t.Parallel()
			// ticks from a forward walk, then Prev at and between them.
			first, ok, err := s.Prev(start)
			if err != nil || !ok {
				t.Fatalf("Prev(start) = %v, %v", ok, err)
			}
			ticks := []time.Time{first}
			for len(ticks) < 300 {
				n, err := s.Next(ticks[len(ticks)-1])
				if err != nil {
					t.Fatal(err)
				}
				if !n.After(ticks[len(ticks)-1]) {
					t.Fatalf("Next(%s) = %s, not later", ticks[len(ticks)-1], n)
				}
				ticks = append(ticks, n)
			}
			for i := 0; i+1 < len(ticks); i++ {
				for _, at := range []time.Time{ticks[i], ticks[i].Add(time.Nanosecond), ticks[i+1].Add(-time.Nanosecond), ticks[i].Add(ticks[i+1].Sub(ticks[i]) / 2)} {
					p, ok, err := s.Prev(at)
					if err != nil || !ok || !p.Equal(ticks[i]) {
						t.Fatalf("Prev(%s) = %s, %v, %v; want %s", at.UTC(), p.UTC(), ok, err, ticks[i].UTC())
					}
				}
			}
		})
	}
}

func TestTickKey(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2026, 3, 30, 9, 0, 0, 0, berlin)
	if got, want := TickKey("report", tick), "schedule:2026-03-30T07:00:00Z"; got != want {
		t.Fatalf("TickKey = %q, want %q", got, want)
	}
	if TickKey("report", tick) != TickKey("report", tick.UTC()) {
		t.Fatal("TickKey depends on the tick's zone")
	}
}

// fakeClock is a clock the test moves; the scheduler's waits are handed
// to the test, which fires them.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	// One outstanding wait at most: the scheduler blocks on it.
	return &fakeClock{now: now, waits: make(chan fakeWait, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// fakeStarter starts one run per workflow and key, as Runs.Start does.
type fakeStarter struct {
	mu    sync.Mutex
	runs  map[string]string // workflow/key -> run id
	calls []fakeCall
	fail  int // fail this many calls first
	panic bool
}

type fakeCall struct {
	workflow string
	input    string
	key      string
}

func newFakeStarter() *fakeStarter { return &fakeStarter{runs: map[string]string{}} }

func (f *fakeStarter) Start(_ context.Context, workflow string, input json.RawMessage, o StartOptions) (Started, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{workflow: workflow, input: string(input), key: o.Key})
	if f.panic {
		f.panic = false
		panic("starter broke")
	}
	if f.fail > 0 {
		f.fail--
		return Started{}, errors.New("store unavailable")
	}
	k := workflow + "/" + o.Key
	if id, ok := f.runs[k]; ok {
		return Started{RunID: id, Duplicate: true}, nil
	}
	id := fmt.Sprintf("run-%d", len(f.runs)+1)
	f.runs[k] = id
	return Started{RunID: id}, nil
}

// started lists the workflow/key of every run started, sorted.
func (f *fakeStarter) started() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.runs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *fakeStarter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// lockedBuffer is a log sink that reads back JSON lines.
type lockedBuffer struct{ logbuf.Buffer }

// lines returns the JSON log lines with the given message.
func (l *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// schedHarness runs a Scheduler on a fake clock.
type schedHarness struct {
	s       *Scheduler
	clock   *fakeClock
	starter *fakeStarter
	logs    *lockedBuffer
	cancel  context.CancelFunc
	done    chan error
	pending fakeWait
}

func newHarness(t *testing.T, rdb redis.UniversalClient, st *fakeStarter, workflows map[string]Workflow, now time.Time) *schedHarness {
	t.Helper()
	h := &schedHarness{clock: newFakeClock(now), starter: st, logs: &lockedBuffer{}}
	lg := zerolog.New(h.logs).Level(zerolog.DebugLevel)
	s, err := NewScheduler(rdb, st, workflows, SchedulerConfig{
		Logger:  &lg,
		Now:     h.clock.Now,
		After:   h.clock.After,
		MaxWait: 10 * time.Minute,
		Grace:   time.Minute,
	})
	if err != nil {
		t.Fatalf("NewScheduler: %v", err)
	}
	h.s = s
	return h
}

// start runs the scheduler and returns once its first look is done.
func (h *schedHarness) start(t *testing.T) fakeWait {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h.next(t)
}

// next waits until the scheduler sleeps (its look is done) and returns
// the sleep.
func (h *schedHarness) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-h.clock.waits:
		h.pending = w
		return w
	case err := <-h.done:
		t.Fatalf("Run returned %v while a wait was expected", err)
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("the scheduler did not sleep again")
	}
	return fakeWait{}
}

// advance moves the clock to now, wakes the scheduler and waits for its
// next sleep.
func (h *schedHarness) advance(t *testing.T, now time.Time) fakeWait {
	t.Helper()
	h.clock.set(now)
	h.pending.fire <- now
	return h.next(t)
}

func storedLast(t *testing.T, rdb redis.UniversalClient, workflow string) time.Time {
	t.Helper()
	v, err := rdb.Get(context.Background(), scheduleLastKey(workflow)).Result()
	if err != nil {
		t.Fatalf("get last tick: %v", err)
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("last tick %q: %v", v, err)
	}
	return time.Unix(sec, 0).UTC()
}

func setLast(t *testing.T, rdb redis.UniversalClient, workflow string, tick time.Time) {
	t.Helper()
	if err := rdb.Set(context.Background(), scheduleLastKey(workflow), tick.Unix(), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func everyFive() map[string]Workflow {
	return map[string]Workflow{
		"digest":   {Name: "digest", Schedule: &Schedule{Cron: "*/5 * * * *", Input: json.RawMessage(`{"n":1}`)}},
		"adhoc":    {Name: "adhoc"}, // no schedule: ignored
		"weeklies": {Name: "weeklies", Schedule: &Schedule{Cron: "0 9 * * MON", Timezone: "Europe/Berlin"}},
	}
}

func TestSchedulerStartsEachTickOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter()
	// Monday 2026-03-23 10:02 UTC; digest has never run here.
	h := newHarness(t, rdb, st, everyFive(), utc("2026-03-23T10:02:00Z"))

	w := h.start(t)
	if n := st.callCount(); n != 0 {
		t.Fatalf("first look started %d runs, want 0 (past ticks of a new schedule do not fire)", n)
	}
	if got := storedLast(t, rdb, "digest"); !got.Equal(utc("2026-03-23T10:00:00Z")) {
		t.Fatalf("stored last = %s, want the past tick 10:00", got)
	}
	if w.d != 3*time.Minute {
		t.Fatalf("sleep = %s, want 3m (until 10:05)", w.d)
	}

	w = h.advance(t, utc("2026-03-23T10:05:00Z"))
	if w.d != 5*time.Minute {
		t.Fatalf("sleep = %s, want 5m", w.d)
	}
	w = h.advance(t, utc("2026-03-23T10:07:00Z")) // an early wake-up starts nothing
	if w.d != 3*time.Minute {
		t.Fatalf("sleep = %s, want 3m", w.d)
	}
	w = h.advance(t, utc("2026-03-23T10:10:00.2Z"))
	h.advance(t, utc("2026-03-23T10:10:30Z")) // same tick again: nothing

	want := []string{"digest/schedule:2026-03-23T10:05:00Z", "digest/schedule:2026-03-23T10:10:00Z"}
	if got := st.started(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("started %v, want %v", got, want)
	}
	if n := st.callCount(); n != 2 {
		t.Fatalf("Start called %d times, want 2", n)
	}
	st.mu.Lock()
	if st.calls[0].input != `{"n":1}` || st.calls[0].workflow != "digest" {
		t.Errorf("call = %+v, want digest with its input", st.calls[0])
	}
	st.mu.Unlock()
	if got := storedLast(t, rdb, "digest"); !got.Equal(utc("2026-03-23T10:10:00Z")) {
		t.Fatalf("stored last = %s, want 10:10", got)
	}
	lines := h.logs.lines(t, "schedule: run started")
	if len(lines) != 2 {
		t.Fatalf("%d run started lines, want 2", len(lines))
	}
	l := lines[1]
	if l["workflow"] != "digest" || l["run_id"] != "run-2" || l["tick"] != "2026-03-23T10:10:00Z" || l["late"] != false || l["level"] != "info" {
		t.Fatalf("log line = %v", l)
	}
}

func TestSchedulerStartsATickWithinGraceOfFirstLook(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter()
	h := newHarness(t, rdb, st, everyFive(), utc("2026-03-23T10:05:40Z"))
	h.start(t)
	want := []string{"digest/schedule:2026-03-23T10:05:00Z"}
	if got := st.started(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("started %v, want %v", got, want)
	}
}

func TestSchedulerMissedTickStartsOnceLate(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter()
	wfs := map[string]Workflow{"report": {Schedule: &Schedule{Cron: "0 9 * * *", Timezone: "Europe/Berlin"}}}
	// Last handled Friday 2026-03-20 09:00 CET; the worker comes back
	// Monday 2026-03-23 14:00 UTC: three daily ticks were missed.
	setLast(t, rdb, "report", utc("2026-03-20T08:00:00Z"))
	h := newHarness(t, rdb, st, wfs, utc("2026-03-23T14:00:00Z"))
	h.start(t)
	h.advance(t, utc("2026-03-23T14:10:00Z"))

	want := []string{"report/schedule:2026-03-23T08:00:00Z"}
	if got := st.started(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("started %v, want only the latest missed tick %v", got, want)
	}
	if n := st.callCount(); n != 1 {
		t.Fatalf("Start called %d times, want 1", n)
	}
	lines := h.logs.lines(t, "schedule: run started")
	if len(lines) != 1 || lines[0]["late"] != true || lines[0]["late_by"] != float64(6*time.Hour/time.Millisecond) {
		t.Fatalf("log lines = %v, want one with late=true and late_by 6h", lines)
	}

	// The next tick, 09:00 CET on Tuesday, starts on time.
	h.advance(t, utc("2026-03-24T08:00:01Z"))
	if got := st.started(); len(got) != 2 || got[1] != "report/schedule:2026-03-24T08:00:00Z" {
		t.Fatalf("started %v", got)
	}
	lines = h.logs.lines(t, "schedule: run started")
	if len(lines) != 2 || lines[1]["late"] != false {
		t.Fatalf("log lines = %v", lines)
	}
}

func TestSchedulerTwoWorkersStartEachTickOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter() // shared: it dedupes by key, as Runs.Start does
	start := utc("2026-03-23T10:00:30Z")
	a := newHarness(t, rdb, st, everyFive(), start)
	b := newHarness(t, rdb, st, everyFive(), start)
	a.start(t)
	b.start(t)
	var want []string
	want = append(want, "digest/schedule:2026-03-23T10:00:00Z")
	for i := 1; i <= 12; i++ {
		tick := utc("2026-03-23T10:00:00Z").Add(time.Duration(i) * 5 * time.Minute)
		want = append(want, "digest/schedule:"+tick.Format(time.RFC3339))
		now := tick.Add(time.Duration(i%3) * time.Second)
		// Wake both at once; they race for the tick.
		a.clock.set(now)
		b.clock.set(now)
		a.pending.fire <- now
		b.pending.fire <- now
		a.next(t)
		b.next(t)
	}
	if got := st.started(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("started %v\nwant %v", got, want)
	}
	started := len(a.logs.lines(t, "schedule: run started")) + len(b.logs.lines(t, "schedule: run started"))
	if started != len(want) {
		t.Fatalf("%d run started lines across both workers, want %d", started, len(want))
	}
	if got := storedLast(t, rdb, "digest"); !got.Equal(utc("2026-03-23T11:00:00Z")) {
		t.Fatalf("stored last = %s", got)
	}
}

func TestSchedulerRetriesAFailedStart(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter()
	st.fail = 2
	setLast(t, rdb, "digest", utc("2026-03-23T10:00:00Z"))
	setLast(t, rdb, "weeklies", utc("2026-03-23T08:00:00Z"))
	h := newHarness(t, rdb, st, everyFive(), utc("2026-03-23T10:05:00Z"))
	w := h.start(t)
	if w.d != time.Second {
		t.Fatalf("sleep after a failure = %s, want the 1s backoff", w.d)
	}
	w = h.advance(t, utc("2026-03-23T10:05:01Z"))
	if w.d != 2*time.Second {
		t.Fatalf("sleep after a second failure = %s, want 2s", w.d)
	}
	w = h.advance(t, utc("2026-03-23T10:05:03Z"))
	if w.d != 5*time.Minute-3*time.Second {
		t.Fatalf("sleep after success = %s, want until 10:10", w.d)
	}
	if got := st.started(); len(got) != 1 || got[0] != "digest/schedule:2026-03-23T10:05:00Z" {
		t.Fatalf("started %v", got)
	}
	if n := len(h.logs.lines(t, "schedule: start the tick's run")); n != 2 {
		t.Fatalf("%d start error lines, want 2", n)
	}
	if got := storedLast(t, rdb, "digest"); !got.Equal(utc("2026-03-23T10:05:00Z")) {
		t.Fatalf("stored last = %s", got)
	}
}

func TestSchedulerSurvivesAPanickingStarter(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	st := newFakeStarter()
	st.panic = true
	setLast(t, rdb, "digest", utc("2026-03-23T10:00:00Z"))
	h := newHarness(t, rdb, st, map[string]Workflow{"digest": everyFive()["digest"]}, utc("2026-03-23T10:05:00Z"))
	h.start(t)
	h.advance(t, utc("2026-03-23T10:05:01Z"))
	if got := st.started(); len(got) != 1 {
		t.Fatalf("started %v, want the tick once after the panic", got)
	}
	lines := h.logs.lines(t, "schedule: start the tick's run")
	if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["error"]), "start panicked: starter broke") {
		t.Fatalf("error lines = %v", lines)
	}
}

func TestSchedulerRedisDownBacksOff(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{
		Addr:        "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
		MaxRetries:  -1,
		DialTimeout: time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	st := newFakeStarter()
	h := newHarness(t, rdb, st, everyFive(), utc("2026-03-23T10:05:00Z"))
	h.s.maxWait = 8 * time.Second
	w := h.start(t)
	var got []time.Duration
	now := h.clock.Now()
	for range 6 {
		got = append(got, w.d)
		now = now.Add(w.d)
		w = h.advance(t, now)
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 8s 8s]" {
		t.Fatalf("backoff = %v, want [1s 2s 4s 8s 8s 8s]", got)
	}
	if st.callCount() != 0 {
		t.Fatal("Start called without the last tick read")
	}
	if len(h.logs.lines(t, "schedule: read the last handled tick")) == 0 {
		t.Fatal("no error logged")
	}
}

func TestSchedulerRunReturnsWhenCancelled(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	h := newHarness(t, rdb, newFakeStarter(), everyFive(), utc("2026-03-23T10:02:00Z"))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.Run(ctx); err != nil {
		t.Fatalf("Run on a done context = %v, want nil", err)
	}

	h.start(t) // now asleep until 10:05
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	h.done <- nil // for the cleanup
}

func TestSetLastTickOnlyMovesForward(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	s, err := NewScheduler(rdb, newFakeStarter(), nil, SchedulerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rdb.Set(ctx, scheduleLastKey("w"), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, seen, err := s.lastTick(ctx, "w"); err != nil || seen {
		t.Fatalf("garbage read as seen=%v err=%v, want none", seen, err)
	}
	steps := []struct{ set, want string }{
		{"2026-03-23T10:00:00Z", "2026-03-23T10:00:00Z"}, // garbage overwritten
		{"2026-03-23T11:00:00Z", "2026-03-23T11:00:00Z"},
		{"2026-03-23T09:00:00Z", "2026-03-23T11:00:00Z"}, // not back
		{"2026-03-23T11:00:00Z", "2026-03-23T11:00:00Z"},
	}
	for _, step := range steps {
		if err := s.setLastTick(ctx, "w", utc(step.set)); err != nil {
			t.Fatal(err)
		}
		last, seen, err := s.lastTick(ctx, "w")
		if err != nil || !seen || !last.Equal(utc(step.want)) {
			t.Fatalf("after set %s: last = %s, %v, %v; want %s", step.set, last, seen, err, step.want)
		}
	}
	if k := scheduleLastKey("w"); k != "agentq:{schedule:w}:last" {
		t.Fatalf("key = %q", k)
	}
}

func TestNewScheduler(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { _ = rdb.Close() })
	st := newFakeStarter()

	_, err := NewScheduler(rdb, st, map[string]Workflow{
		"ok":  {Schedule: &Schedule{Cron: "@daily"}},
		"bad": {Schedule: &Schedule{Cron: "@daily", Timezone: "Mars/Olympus"}},
	}, SchedulerConfig{})
	if err == nil || err.Error() != `workflow "bad": schedule.timezone: unknown time zone "Mars/Olympus"` {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewScheduler(nil, st, nil, SchedulerConfig{}); err == nil {
		t.Fatal("nil Redis accepted")
	}
	if _, err := NewScheduler(rdb, nil, nil, SchedulerConfig{}); err == nil {
		t.Fatal("nil Starter accepted")
	}
	if _, err := NewScheduler(rdb, st, nil, SchedulerConfig{Grace: -time.Second}); err == nil || !strings.Contains(err.Error(), "SchedulerConfig.Grace") {
		t.Fatalf("negative grace: %v", err)
	}

	s, err := NewScheduler(rdb, st, everyFive(), SchedulerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	next := s.NextTicks(utc("2026-03-23T10:02:00Z"))
	want := map[string]time.Time{
		"digest":   utc("2026-03-23T10:05:00Z"),
		"weeklies": utc("2026-03-30T07:00:00Z"),
	}
	if len(next) != len(want) {
		t.Fatalf("NextTicks = %v, want %v", next, want)
	}
	for wf, tick := range want {
		if !next[wf].Equal(tick) {
			t.Errorf("NextTicks[%s] = %s, want %s", wf, next[wf], tick)
		}
	}
	for _, e := range s.entries {
		if e.workflow == "weeklies" && string(e.input) != "{}" {
			t.Errorf("a schedule without input starts runs with %s, want {}", e.input)
		}
	}
}

var fuzzZones = []string{"", "Europe/Berlin", "America/Sao_Paulo", "America/Havana", "Asia/Beirut", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kathmandu", "America/St_Johns", "Mars/Olympus", "Local"}

// FuzzSchedule checks that Validate, Next and Prev never panic or hang on
// any expression, and that Next and Prev keep their promises.
func FuzzSchedule(f *testing.F) {
	seeds := []string{
		"0 9 * * MON", "*/15 8-18 1,15 JAN-JUN MON-FRI", "@hourly", "@every 1h", "@every 1ms",
		"@every -5m", "@every 9223372036s", "CRON_TZ=UTC 0 9 * * *", "TZ=UTC", "TZ=", "0 0 30 2 *",
		"0 0 29 2 *", "*/0 * * * *", "", "@", "@every", "59 23 31 12 *", "* * * * *", "30 2 * * *",
		"0 0 * * *", "1-2-3 * * * *", "*/100000000000000000000 * * * *", "0 0 31 4,6 *", "? ? ? ? ?",
	}
	for i, s := range seeds {
		f.Add(s, uint8(i), int64(i)*7919*3600)
	}
	f.Fuzz(func(t *testing.T, expr string, zone uint8, offset int64) {
		s := Schedule{Cron: expr, Timezone: fuzzZones[int(zone)%len(fuzzZones)]}
		// at lies between 2001 and 2096.
		if offset < 0 {
			offset = -(offset + 1)
		}
		at := time.Unix(1_000_000_000+offset%3_000_000_000, offset%1_000_000_000)
		if err := s.Validate(); err != nil {
			if !strings.HasPrefix(err.Error(), "schedule.") {
				t.Fatalf("error does not name the field: %v", err)
			}
			if _, err := s.Next(at); err == nil {
				t.Fatal("Next accepted an invalid schedule")
			}
			if _, _, err := s.Prev(at); err == nil {
				t.Fatal("Prev accepted an invalid schedule")
			}
			return
		}
		next, err := s.Next(at)
		if err == nil && !next.After(at) {
			t.Fatalf("Next(%s) = %s, not after", at, next)
		}
		prev, ok, err := s.Prev(at)
		if err != nil {
			t.Fatalf("Prev: %v", err)
		}
		if ok && (prev.After(at) || !prev.After(at.Add(-ScheduleLookback))) {
			t.Fatalf("Prev(%s) = %s, outside (at-366d, at]", at, prev)
		}
		if ok && prev.Nanosecond() != 0 {
			t.Fatalf("Prev(%s) = %s, not a whole second", at, prev)
		}
	})
}

func ExampleSchedule_Next() {
	s := Schedule{Cron: "0 9 * * MON", Timezone: "Europe/Berlin"}
	if err := s.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2026, 3, 25, 12, 0, 0, 0, time.UTC)
	next, _ := s.Next(now)
	prev, _, _ := s.Prev(now)
	fmt.Println("next:", next)
	fmt.Println("prev:", prev)
	fmt.Println("key: ", TickKey("weekly-report", next))
	fmt.Println(Schedule{Cron: "CRON_TZ=Europe/Berlin 0 9 * * MON"}.Validate())
	// Output:
	// next: 2026-03-30 09:00:00 +0200 CEST
	// prev: 2026-03-23 09:00:00 +0100 CET
	// key:  schedule:2026-03-30T07:00:00Z
	// schedule.cron: "CRON_TZ=Europe/Berlin 0 9 * * MON": a CRON_TZ= or TZ= prefix is not accepted; set schedule.timezone instead
}
