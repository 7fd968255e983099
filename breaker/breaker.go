// Package breaker owns agentq's circuit breakers: one per dependency (the
// host of an http.call's URL, or a name a handler gives to Do), shared by
// every worker through Redis. A breaker opens after a number of consecutive
// failures or a failure rate over a window; while it is open its calls are
// snoozed (jobs.Snooze: rescheduled without spending an attempt or the
// error budget); after a cool-down exactly one call, the probe, goes
// through (a Redis lock), and its result closes or re-opens the breaker.
//
// The hot path stays cheap: each process caches a breaker's state for
// LocalTTL (250ms), so a closed breaker costs at most one Redis read per
// LocalTTL, not one per call; a failure is one script call; a success
// writes only when the local view holds consecutive failures to clear, and
// success counts (for the failure rate) are flushed once a second.
package breaker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/jobs"
)

// Defaults.
const (
	// FailuresDefault is the number of consecutive failures that opens a
	// breaker.
	FailuresDefault = 5
	// FailureRateDefault is the share of failed calls that opens a breaker.
	FailureRateDefault = 0.5
	// RateWindowDefault is the window the failure rate is measured over.
	RateWindowDefault = time.Minute
	// MinCallsDefault is the number of calls in the window below which the
	// failure rate does not open a breaker.
	MinCallsDefault = 10
	// CooldownDefault is how long a breaker stays open before a probe.
	CooldownDefault = 30 * time.Second
	// LocalTTLDefault is how long a process trusts its cached view of a
	// breaker.
	LocalTTLDefault = 250 * time.Millisecond
	// ProbeTimeoutDefault bounds the probe lock: a prober that dies frees
	// the probe after it.
	ProbeTimeoutDefault = 5 * time.Minute
	// ProbeWaitDefault is how long a call is snoozed while another call
	// probes.
	ProbeWaitDefault = 2 * time.Second
	// FlushIntervalDefault is how often success counts go to Redis.
	FlushIntervalDefault = time.Second
)

// State is a breaker's state.
type State string

// States.
const (
	// Closed lets calls through.
	Closed State = "closed"
	// HalfOpen lets one probe through; other calls are snoozed.
	HalfOpen State = "half_open"
	// Open snoozes every call until the next probe.
	Open State = "open"
)

// Value is the state as a number for metrics: 0 closed, 1 half-open, 2 open.
func (s State) Value() float64 {
	switch s {
	case HalfOpen:
		return 1
	case Open:
		return 2
	}
	return 0
}

// Settings are the thresholds of a breaker.
type Settings struct {
	// Failures is the number of consecutive failures that opens the
	// breaker. Default FailuresDefault (5).
	Failures int
	// FailureRate is the share of failed calls in RateWindow, in (0, 1],
	// that opens the breaker. Default FailureRateDefault (0.5).
	FailureRate float64
	// RateWindow is the window FailureRate is measured over.
	// Default RateWindowDefault (1m).
	RateWindow time.Duration
	// MinCalls is the number of calls in RateWindow below which FailureRate
	// does not open the breaker. Default MinCallsDefault (10).
	MinCalls int
	// Cooldown is how long the breaker stays open before a probe.
	// Default CooldownDefault (30s).
	Cooldown time.Duration
}

// merge returns s with zero fields taken from fallback.
func (s Settings) merge(fallback Settings) Settings {
	return Settings{
		Failures:    cmp.Or(s.Failures, fallback.Failures),
		FailureRate: cmp.Or(s.FailureRate, fallback.FailureRate),
		RateWindow:  cmp.Or(s.RateWindow, fallback.RateWindow),
		MinCalls:    cmp.Or(s.MinCalls, fallback.MinCalls),
		Cooldown:    cmp.Or(s.Cooldown, fallback.Cooldown),
	}
}

func (s Settings) validate() error {
	switch {
	case s.Failures < 1:
		return fmt.Errorf("failures must be at least 1, got %d", s.Failures)
	case s.FailureRate <= 0 || s.FailureRate > 1:
		return fmt.Errorf("failure_rate must be above 0 and at most 1, got %v", s.FailureRate)
	case s.RateWindow < time.Second:
		return fmt.Errorf("rate_window must be at least 1s, got %v", s.RateWindow)
	case s.MinCalls < 1:
		return fmt.Errorf("min_calls must be at least 1, got %d", s.MinCalls)
	case s.Cooldown <= 0:
		return fmt.Errorf("cooldown must be positive, got %v", s.Cooldown)
	}
	return nil
}

// bucket is the length of a rate bucket: a tenth of the window, in whole
// seconds, at least 1s.
func (s Settings) bucket() int64 { return max(1, int64(s.RateWindow/time.Second)/10) }

// ttl is how long an idle breaker's state is kept.
func (s Settings) ttl() time.Duration { return max(time.Hour, 2*s.Cooldown, 2*s.RateWindow) }

// Config configures a Set.
type Config struct {
	// Default is the settings of every breaker; zero fields take the
	// package defaults.
	Default Settings
	// Overrides are settings by breaker name; zero fields take Default's.
	// Default none.
	Overrides map[string]Settings
	// LocalTTL is how long a process trusts its cached view of a breaker.
	// Default LocalTTLDefault (250ms).
	LocalTTL time.Duration
	// ProbeTimeout bounds the probe lock. Default ProbeTimeoutDefault (5m).
	ProbeTimeout time.Duration
	// ProbeWait is the snooze of a call while another call probes.
	// Default ProbeWaitDefault (2s).
	ProbeWait time.Duration
	// FlushInterval is how often Run sends success counts to Redis.
	// Default FlushIntervalDefault (1s).
	FlushInterval time.Duration
	// RandN returns a uniform value in [0, n). It adds up to ProbeWait of
	// jitter to every snooze, so that the calls an open breaker held back do
	// not all wake at the same instant. Default math/rand/v2's Int64N.
	RandN func(n int64) int64
	// IsFailure reports whether a call's error counts against its
	// dependency. Default: retryable, rate-limited and timeout errors do;
	// nil, permanent errors (the dependency answered), panics, snoozes and
	// context cancellation do not.
	IsFailure func(err error) bool
	// Logger receives state changes this process caused and Redis errors.
	// Default: no logging.
	Logger *zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Default = c.Default.merge(Settings{
		Failures: FailuresDefault, FailureRate: FailureRateDefault, RateWindow: RateWindowDefault,
		MinCalls: MinCallsDefault, Cooldown: CooldownDefault,
	})
	ov := make(map[string]Settings, len(c.Overrides))
	for name, s := range c.Overrides {
		ov[name] = s.merge(c.Default)
	}
	c.Overrides = ov
	c.LocalTTL = cmp.Or(c.LocalTTL, LocalTTLDefault)
	c.ProbeTimeout = cmp.Or(c.ProbeTimeout, ProbeTimeoutDefault)
	c.ProbeWait = cmp.Or(c.ProbeWait, ProbeWaitDefault)
	c.FlushInterval = cmp.Or(c.FlushInterval, FlushIntervalDefault)
	if c.IsFailure == nil {
		c.IsFailure = IsFailure
	}
	if c.RandN == nil {
		c.RandN = mrand.Int64N
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if err := c.Default.validate(); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(c.Overrides)) {
		if err := c.Overrides[name].validate(); err != nil {
			return fmt.Errorf("overrides.%s: %w", name, err)
		}
	}
	for name, d := range map[string]time.Duration{"local_ttl": c.LocalTTL, "probe_timeout": c.ProbeTimeout, "probe_wait": c.ProbeWait, "flush_interval": c.FlushInterval} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	return nil
}

// IsFailure is the default Config.IsFailure: an error counts against a
// dependency when it is retryable, rate limited or a timeout, and is not a
// cancellation of the caller's context.
func IsFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	switch jobs.Classify(err) {
	case jobs.ClassRetryable, jobs.ClassRateLimited, jobs.ClassTimeout:
		return true
	}
	return false
}

// jitter spreads snoozed calls over up to ProbeWait.
func (s *Set) jitter() time.Duration {
	return time.Duration(s.cfg.RandN(int64(s.cfg.ProbeWait)))
}

// OpenError is returned for a call a breaker did not let through. It
// unwraps to a jobs.Snooze, so the step is rescheduled after Delay without
// spending an attempt.
type OpenError struct {
	// Name is the breaker's name.
	Name string
	// State is open, or half-open while another call probes.
	State State
	// Delay is how long the call is snoozed.
	Delay time.Duration
}

func (e *OpenError) Error() string {
	if e.State == HalfOpen {
		return fmt.Sprintf("breaker %q is half-open and another call is probing: snoozed for %v", e.Name, e.Delay)
	}
	return fmt.Sprintf("breaker %q is open: snoozed for %v until its next probe", e.Name, e.Delay)
}

// Unwrap returns the snooze, for jobs.Classify and the queue.
func (e *OpenError) Unwrap() error { return jobs.Snooze(e.Delay) }

// Set holds the breakers of one process. It is safe for concurrent use.
type Set struct {
	rdb redis.UniversalClient
	cfg Config
	log zerolog.Logger

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is one breaker as this process sees it.
type entry struct {
	name string
	s    Settings

	mu         sync.Mutex
	view       view
	successes  int64 // not yet flushed
	registered bool  // its name is in namesKey
}

// view is a cached breaker state.
type view struct {
	state     State
	consec    int64
	nextProbe time.Time
	fetched   time.Time
}

// New returns a Set on rdb. The caller keeps ownership of rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Set, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("breakers: %w", err)
	}
	return &Set{rdb: rdb, cfg: cfg, log: cfg.Logger.With().Str("component", "breaker").Logger(), entries: map[string]*entry{}}, nil
}

// Settings returns the settings of the named breaker.
func (s *Set) Settings(name string) Settings {
	if o, ok := s.cfg.Overrides[name]; ok {
		return o
	}
	return s.cfg.Default
}

func (s *Set) entry(name string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[name]
	if e == nil {
		e = &entry{name: name, s: s.Settings(name)}
		s.entries[name] = e
	}
	return e
}

// Do runs fn through the named breaker. A closed breaker calls fn and
// records its outcome; an open one returns an *OpenError (a snooze) until
// its next probe; the first call after the cool-down probes. If Redis
// cannot be reached the breaker lets the call through.
func (s *Set) Do(ctx context.Context, name string, fn func(context.Context) error) error {
	e := s.entry(name)
	v, err := s.current(ctx, e)
	if err != nil {
		// Let the call through as if closed, and record its outcome: a
		// call whose short deadline also cut the state read is still a
		// failure or a success of the tool.
		s.log.Warn().Err(err).Str("breaker", name).Msg("breaker state unknown; letting the call through")
		v = view{state: Closed}
	}
	now := s.cfg.Now()
	if v.state != Closed {
		if now.Before(v.nextProbe) {
			return &OpenError{Name: name, State: v.state, Delay: v.nextProbe.Sub(now) + s.jitter()}
		}
		token, err := s.tryProbe(ctx, e, now)
		switch {
		case err != nil:
			s.log.Warn().Err(err).Str("breaker", name).Msg("breaker probe lock failed; letting the call through")
			return fn(ctx)
		case token == "":
			return &OpenError{Name: name, State: HalfOpen, Delay: s.cfg.ProbeWait + s.jitter()}
		}
		return s.probe(ctx, e, token, fn)
	}
	callErr := fn(ctx)
	// A call that ran out of time ended ctx too: the outcome is recorded
	// all the same, or a tool that hangs would never open its breaker.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if s.cfg.IsFailure(callErr) {
		s.recordFailure(rctx, e)
	} else {
		s.recordSuccess(rctx, e)
	}
	return callErr
}

// current returns the cached view of e, reading Redis when it is older
// than LocalTTL.
func (s *Set) current(ctx context.Context, e *entry) (view, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := s.cfg.Now()
	if !e.view.fetched.IsZero() && now.Sub(e.view.fetched) < s.cfg.LocalTTL && !now.Before(e.view.fetched) {
		return e.view, nil
	}
	vals, err := s.rdb.HMGet(ctx, stateKey(e.name), stateField, consecField, nextProbeField).Result()
	if err != nil {
		return view{}, fmt.Errorf("read breaker %q: %w", e.name, err)
	}
	v := view{state: Closed, fetched: now}
	if st, ok := vals[0].(string); ok && st != "" {
		v.state = State(st)
	}
	if c, ok := vals[1].(string); ok {
		v.consec, _ = strconv.ParseInt(c, 10, 64)
	}
	if np, ok := vals[2].(string); ok {
		v.nextProbe = msTime(np)
	}
	// A local probe wait (set when another process probes) outlives a read
	// that cannot see it.
	if e.view.state == HalfOpen && v.state != Closed && e.view.nextProbe.After(v.nextProbe) {
		v.nextProbe = e.view.nextProbe
	}
	e.view = v
	return v, nil
}

func msTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// tryProbe takes the probe lock; it returns the lock's token, or "" when
// another call probes.
func (s *Set) tryProbe(ctx context.Context, e *entry, now time.Time) (string, error) {
	var raw [12]byte
	_, _ = rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	res, err := probeScript.Run(ctx, s.rdb, []string{stateKey(e.name), probeKey(e.name)},
		now.UnixMilli(), token, s.cfg.ProbeTimeout.Milliseconds()).Slice()
	if err != nil {
		return "", fmt.Errorf("probe breaker %q: %w", e.name, err)
	}
	got := toInt(res[0]) == 1
	e.mu.Lock()
	defer e.mu.Unlock()
	if !got {
		// Another call probes: snooze this process's calls without asking
		// Redis again until the wait is over.
		e.view = view{state: HalfOpen, consec: e.view.consec, nextProbe: now.Add(s.cfg.ProbeWait), fetched: now}
		if st := State(toString(res[1])); st == Closed {
			e.view = view{state: Closed, fetched: now}
		}
		return "", nil
	}
	e.view = view{state: HalfOpen, consec: e.view.consec, nextProbe: now.Add(s.cfg.ProbeWait), fetched: now}
	return token, nil
}

// probe runs fn as the breaker's probe and closes or re-opens the breaker
// with its result.
func (s *Set) probe(ctx context.Context, e *entry, token string, fn func(context.Context) error) error {
	callErr := fn(ctx)
	// Only an answer closes the breaker: success, or a permanent error (the
	// dependency is up and said no). A canceled, abandoned, panicking or
	// snoozed probe proved nothing, so the breaker stays open for another
	// cooldown.
	good := callErr == nil || (!s.cfg.IsFailure(callErr) && jobs.Classify(callErr) == jobs.ClassPermanent)
	now := s.cfg.Now()
	flag := "0"
	if good {
		flag = "1"
	}
	// The result is recorded even when the call's context ended.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res, err := probeResultScript.Run(rctx, s.rdb, []string{stateKey(e.name), probeKey(e.name)},
		token, flag, now.UnixMilli(), e.s.Cooldown.Milliseconds(), e.s.ttl().Milliseconds()).Slice()
	if err != nil {
		s.log.Error().Err(err).Str("breaker", e.name).Msg("breaker probe result not recorded; the probe lock frees it after probe_timeout")
		return callErr
	}
	st, next := State(toString(res[1])), time.UnixMilli(toInt(res[2]))
	e.mu.Lock()
	e.view = view{state: st, nextProbe: next, fetched: now}
	if st == Closed {
		e.successes = 0
	}
	e.mu.Unlock()
	if toInt(res[0]) == 1 {
		if good {
			s.log.Info().Str("breaker", e.name).Msg("breaker closed: the probe succeeded")
		} else {
			s.log.Warn().Str("breaker", e.name).Time("next_probe", next).Str("error", errString(callErr)).
				Msg("breaker re-opened: the probe failed")
		}
	}
	return callErr
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recordFailure adds a failure in one round trip and opens the breaker if
// it reached a threshold.
func (s *Set) recordFailure(ctx context.Context, e *entry) {
	now := s.cfg.Now()
	b := e.s.bucket()
	start := now.Unix() - now.Unix()%b
	windowStart := start - (int64(e.s.RateWindow/time.Second)/b-1)*b
	keys := []string{stateKey(e.name)}
	args := []any{now.UnixMilli(), start, windowStart, e.s.Failures, e.s.FailureRate, e.s.MinCalls,
		e.s.Cooldown.Milliseconds(), e.s.ttl().Milliseconds()}
	e.mu.Lock()
	register := !e.registered
	e.mu.Unlock()
	var res []any
	var err error
	if register {
		pipe := s.rdb.Pipeline()
		cmd := failureScript.Eval(ctx, pipe, keys, args...)
		pipe.SAdd(ctx, namesKey(), e.name)
		_, _ = pipe.Exec(ctx)
		res, err = cmd.Slice()
	} else {
		res, err = failureScript.Run(ctx, s.rdb, keys, args...).Slice()
	}
	if err != nil {
		s.log.Warn().Err(err).Str("breaker", e.name).Msg("breaker failure not recorded")
		return
	}
	st, consec, next := State(toString(res[0])), toInt(res[1]), time.UnixMilli(toInt(res[2]))
	e.mu.Lock()
	e.registered = true
	e.view = view{state: st, consec: consec, nextProbe: next, fetched: now}
	e.mu.Unlock()
	if toInt(res[5]) == 1 {
		calls, fails := toInt(res[3]), toInt(res[4])
		s.log.Warn().Str("breaker", e.name).Int64("consecutive_failures", consec).Int64("calls", calls).
			Int64("failures", fails).Time("next_probe", next).
			Msg(fmt.Sprintf("breaker %q opened after %d consecutive failures (%d of %d calls failed in the last %v); calls are snoozed until %s",
				e.name, consec, fails, calls, jobs.FormatDuration(e.s.RateWindow), next.UTC().Format(time.RFC3339)))
	}
}

// recordSuccess counts a success for the next flush, and clears the
// consecutive failures when the local view holds some.
func (s *Set) recordSuccess(ctx context.Context, e *entry) {
	e.mu.Lock()
	e.successes++
	clearConsec := e.view.consec > 0
	e.view.consec = 0
	e.mu.Unlock()
	if clearConsec {
		if err := s.rdb.HSet(ctx, stateKey(e.name), consecField, 0).Err(); err != nil {
			s.log.Warn().Err(err).Str("breaker", e.name).Msg("breaker success not recorded")
		}
	}
}

// Flush sends the success counts to Redis in one pipeline.
func (s *Set) Flush(ctx context.Context) error {
	s.mu.Lock()
	entries := slices.Collect(maps.Values(s.entries))
	s.mu.Unlock()
	now := s.cfg.Now()
	type sent struct {
		e *entry
		n int64
	}
	var batch []sent
	pipe := s.rdb.Pipeline()
	for _, e := range entries {
		e.mu.Lock()
		n := e.successes
		e.successes = 0
		e.mu.Unlock()
		if n == 0 {
			continue
		}
		b := e.s.bucket()
		start := now.Unix() - now.Unix()%b
		pipe.HIncrBy(ctx, stateKey(e.name), "c:"+strconv.FormatInt(start, 10), n)
		pipe.PExpire(ctx, stateKey(e.name), e.s.ttl())
		batch = append(batch, sent{e, n})
	}
	if len(batch) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		for _, b := range batch {
			b.e.mu.Lock()
			b.e.successes += b.n
			b.e.mu.Unlock()
		}
		return fmt.Errorf("flush breaker successes: %w", err)
	}
	return nil
}

// Run flushes success counts every FlushInterval until ctx is done, then
// once more.
func (s *Set) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.Flush(fctx); err != nil {
				s.log.Warn().Err(err).Msg("final flush of breaker successes failed")
			}
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("breaker successes not flushed; sending them again next time")
			}
		}
	}
}

// Status is a breaker as Redis holds it.
type Status struct {
	// Name is the breaker's name.
	Name string
	// State is closed, half_open or open.
	State State
	// ConsecutiveFailures counts failures since the last success.
	ConsecutiveFailures int64
	// Calls and Failures count calls in the rate window (successes flushed
	// up to FlushInterval late).
	Calls, Failures int64
	// FailureRate is Failures / Calls; 0 with no calls.
	FailureRate float64
	// OpenedAt is when the breaker last opened; zero when closed.
	OpenedAt time.Time
	// NextProbe is when an open breaker lets its next probe through; zero
	// when closed.
	NextProbe time.Time
	// Settings are its thresholds.
	Settings Settings
}

// List returns every breaker that recorded a failure and has not expired,
// sorted by name. It only reads Redis, and forgets expired names.
func (s *Set) List(ctx context.Context) ([]Status, error) {
	names, err := s.rdb.SMembers(ctx, namesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list breakers: %w", err)
	}
	slices.Sort(names)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, stateKey(n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list breakers: %w", err)
		}
	}
	now := s.cfg.Now()
	var out []Status
	var gone []any
	for i, n := range names {
		h := cmds[i].Val()
		if len(h) == 0 {
			gone = append(gone, n)
			continue
		}
		out = append(out, s.statusOf(n, h, now))
	}
	if len(gone) > 0 {
		_ = s.rdb.SRem(ctx, namesKey(), gone...).Err()
	}
	return out, nil
}

func (s *Set) statusOf(name string, h map[string]string, now time.Time) Status {
	set := s.Settings(name)
	st := Status{Name: name, State: Closed, Settings: set}
	if v := h[stateField]; v != "" {
		st.State = State(v)
	}
	st.ConsecutiveFailures, _ = strconv.ParseInt(h[consecField], 10, 64)
	if st.State != Closed {
		st.OpenedAt = msTime(h[openedField])
		st.NextProbe = msTime(h[nextProbeField])
	}
	b := set.bucket()
	from := now.Unix() - now.Unix()%b - (int64(set.RateWindow/time.Second)/b-1)*b
	for f, v := range h {
		p, rest, ok := strings.Cut(f, ":")
		if !ok || (p != "c" && p != "f") {
			continue
		}
		start, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || start < from {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if p == "c" {
			st.Calls += n
		} else {
			st.Failures += n
		}
	}
	if st.Calls > 0 {
		st.FailureRate = float64(st.Failures) / float64(st.Calls)
	}
	return st
}

// Middleware puts the Set in the step's context, for Do, and runs every
// http.call step through the breaker named by its URL's host (host:port as
// written, lower-cased).
func (s *Set) Middleware() jobs.Middleware {
	return func(next jobs.Handler) jobs.Handler {
		return jobs.HandlerFunc(func(ctx context.Context, st *jobs.Step) error {
			ctx = context.WithValue(ctx, setKey{}, s)
			if st.Kind == jobs.KindHTTPCall {
				if name := Host(st.Payload); name != "" {
					return s.Do(ctx, name, func(ctx context.Context) error { return next.ProcessStep(ctx, st) })
				}
			}
			return next.ProcessStep(ctx, st)
		})
	}
}

type setKey struct{}

// Do runs fn through the breaker called name, using the Set the worker's
// middleware put in ctx; without one it just calls fn. A handler that
// calls a dependency other than through http.call wraps the call in it:
//
//	err := breaker.Do(ctx, "llm-api", func(ctx context.Context) error { return callLLM(ctx) })
//
// and returns err: an *OpenError reschedules the step without spending an
// attempt.
func Do(ctx context.Context, name string, fn func(context.Context) error) error {
	if s, ok := ctx.Value(setKey{}).(*Set); ok && s != nil {
		return s.Do(ctx, name, fn)
	}
	return fn(ctx)
}

// Host returns the breaker name of an http.call payload: the host (and
// port, if given) of its URL, lower-cased; "" when the payload has no
// usable URL.
func Host(payload []byte) string {
	var p struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.URL == "" {
		return ""
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}
