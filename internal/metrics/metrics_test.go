package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// scrape GETs the handler's metrics through an httptest server.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", Path, resp.StatusCode, body)
	}
	return string(body)
}

// wantLines checks that every line appears in a scrape.
func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("scrape lacks %q", l)
		}
	}
}

func TestStepMetricsScraped(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Unix(1, 0)
	steps := []struct {
		kind, wf string
		res      jobs.Result
	}{
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeSuccess, Started: started, Duration: 500 * time.Millisecond}},
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeRetry, Class: jobs.ClassRetryable, Started: started, Duration: 15625 * time.Microsecond}},
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassRetryable, Started: started, Duration: 15625 * time.Microsecond}},
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeDead, Class: jobs.ClassPermanent, Started: started, Duration: 15625 * time.Microsecond}},
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeSnooze, Class: jobs.ClassSnooze, Started: started, Duration: time.Hour}}, // not timed
		// asynq's own timeout: a failure, but the worker did not time it.
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeRetry, Class: jobs.ClassTimeout, Duration: time.Hour}},
		// Abandoned: asynq decided it (above, for its timeout); not counted.
		{"http.call", "w", jobs.Result{Outcome: jobs.OutcomeAbandoned, Class: jobs.ClassAbandoned, Started: started, Duration: 15625 * time.Microsecond}},
		{"noop", "", jobs.Result{Outcome: jobs.OutcomeSuccess, Started: started, Duration: time.Millisecond}},
	}
	for _, st := range steps {
		s := &jobs.Step{Kind: st.kind, Workflow: st.wf}
		m.Observer().Observe(context.Background(), s, &st.res)
	}
	out := scrape(t, Handler(reg))
	wantLines(t, out,
		`agentq_attempts_total{kind="http.call",workflow="w"} 6`,
		`agentq_successes_total{kind="http.call",workflow="w"} 1`,
		`agentq_failures_total{class="retryable",kind="http.call",workflow="w"} 2`,
		`agentq_failures_total{class="permanent",kind="http.call",workflow="w"} 1`,
		`agentq_failures_total{class="timeout",kind="http.call",workflow="w"} 1`,
		`agentq_retries_total{kind="http.call",workflow="w"} 2`,
		`agentq_dead_letters_total{kind="http.call",workflow="w"} 2`,
		`agentq_snoozes_total{kind="http.call",workflow="w"} 1`,
		`agentq_step_duration_seconds_count{kind="http.call",workflow="w"} 4`,
		`agentq_step_duration_seconds_sum{kind="http.call",workflow="w"} 0.546875`,
		`agentq_step_duration_seconds_bucket{kind="http.call",workflow="w",le="0.025"} 3`,
		`agentq_step_duration_seconds_bucket{kind="http.call",workflow="w",le="0.25"} 3`,
		`agentq_step_duration_seconds_bucket{kind="http.call",workflow="w",le="0.5"} 4`,
		`agentq_attempts_total{kind="noop",workflow=""} 1`,
		`agentq_successes_total{kind="noop",workflow=""} 1`,
	)
	if strings.Contains(out, `agentq_snoozes_total{kind="noop"`) {
		t.Error("a counter has a series that never happened")
	}
	// Registering twice on one registry is an error, not a silent no-op.
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Error("second New on one registry succeeded")
	}
}

func TestStateGauges(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	err := RegisterState(reg, StateConfig{
		Budgets: func(context.Context) ([]budget.Status, error) {
			return []budget.Status{{Workflow: "publish", RemainingRatio: -0.5, BurnRateLong: 1.5, BurnRateShort: 12}}, nil
		},
		Breakers: func(context.Context) ([]breaker.Status, error) {
			return []breaker.Status{{Name: "api.example.com", State: breaker.Open}, {Name: "db", State: breaker.HalfOpen}, {Name: "ok", State: breaker.Closed}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, scrape(t, Handler(reg)),
		`agentq_budget_remaining{workflow="publish"} -0.5`,
		`agentq_budget_burn_rate{window="long",workflow="publish"} 1.5`,
		`agentq_budget_burn_rate{window="short",workflow="publish"} 12`,
		`agentq_breaker_state{name="api.example.com"} 2`,
		`agentq_breaker_state{name="db"} 1`,
		`agentq_breaker_state{name="ok"} 0`,
	)

	// A source that fails does not take the others down.
	reg = prometheus.NewRegistry()
	_ = RegisterState(reg, StateConfig{
		Budgets: func(context.Context) ([]budget.Status, error) { return nil, errors.New("redis down") },
		Breakers: func(context.Context) ([]breaker.Status, error) {
			return []breaker.Status{{Name: "x", State: breaker.Open}}, nil
		},
	})
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `agentq_breaker_state{name="x"} 2`) {
		t.Errorf("a failing budget source hid the breaker gauge:\n%s", body)
	}
}

func TestServer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	m.Observer().Observe(context.Background(), &jobs.Step{Kind: "noop", Attempt: 1, MaxAttempts: 1},
		&jobs.Result{Outcome: jobs.OutcomeSuccess, Started: time.Unix(1, 0), Duration: time.Millisecond})
	s, err := Listen("127.0.0.1:0", Handler(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, err := http.Get("http://" + s.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `agentq_successes_total{kind="noop",workflow=""} 1`) {
		t.Errorf("served metrics:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(s.Addr().String()+"x", Handler(reg)); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
}

func TestRegisterHeld(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	n := 0
	if err := RegisterHeld(reg, func() int { return n }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{0, 3} {
		n = want
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || mfs[0].GetName() != "agentq_handlers_held" || int(mfs[0].GetMetric()[0].GetGauge().GetValue()) != want {
			t.Fatalf("gathered %v, want agentq_handlers_held %d", mfs, want)
		}
	}
	if err := RegisterHeld(reg, func() int { return 0 }); err == nil {
		t.Fatal("a second registration on one registry succeeded")
	}
}
