package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/jobs"
)

// now fires at once: retries are decided by the test, not by waiting.
func now(time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	c <- time.Time{}
	return c
}

func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestDeliversAndRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &m)
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
		got <- m
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w, err := New(Config{URL: srv.URL + "/hook/s3cret", After: now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Send(map[string]string{"event": "dead_letter", "id": "1"}) {
		t.Fatal("Send refused")
	}
	m := <-got
	if m["id"] != "1" || calls.Load() != 3 {
		t.Fatalf("delivered %v after %d calls", m, calls.Load())
	}
	w.Close(context.Background())
	if counter(t, reg, "agentq_alerts_sent_total", "") != 1 {
		t.Fatal("sent not counted")
	}
}

func TestNeverBlocksAndCountsDrops(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	reg := prometheus.NewRegistry()
	logs := &logbuf.Buffer{}
	log := zerolog.New(logs)
	w, err := New(Config{URL: srv.URL + "/hook?token=s3cret", QueueSize: 2, After: now, Registerer: reg, Logger: &log, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// The webhook hangs: the first alert is in flight, two wait, the rest
	// are dropped, and no Send waits for the webhook.
	sent := 0
	for range 10 {
		if w.Send(map[string]int{"n": 1}) {
			sent++
		}
	}
	if sent < 2 || sent > 3 {
		t.Fatalf("%d of 10 alerts queued with a queue of 2", sent)
	}
	if got := counter(t, reg, "agentq_alerts_dropped_total", "queue_full"); got != float64(10-sent) {
		t.Fatalf("dropped{queue_full} = %v, want %d", got, 10-sent)
	}
	if out := logs.String(); !strings.Contains(out, "alert dropped") || strings.Contains(out, "s3cret") {
		t.Fatalf("logs = %s", out)
	}
}

func TestRefusedAlertIsNotRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w, err := New(Config{URL: srv.URL, After: now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.Send("x")
	w.Close(context.Background()) // waits for the queued alert
	if calls.Load() != 1 || counter(t, reg, "agentq_alerts_dropped_total", "failed") != 1 {
		t.Fatalf("calls %d, dropped{failed} %v", calls.Load(), counter(t, reg, "agentq_alerts_dropped_total", "failed"))
	}
	if w.Send("y") {
		t.Fatal("Send after Close accepted")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {URL: "ftp://x"}, {URL: "/relative"}, {URL: "http://x", QueueSize: -1}, {URL: "http://x", Retry: jobs.RetryPolicy{Base: time.Minute}}, {URL: "http://x", Retry: jobs.RetryPolicy{MaxAttempts: -1}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func TestRetriesFollowTheRetryPolicy(t *testing.T) {
	t.Parallel()
	// The webhook answers 503 with Retry-After 7s, 429 with Retry-After one
	// hour (above Max), 503 with none, then 200.
	answers := []struct {
		status     int
		retryAfter string
	}{{503, "7"}, {429, "3600"}, {503, ""}, {200, ""}}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[min(int(calls.Add(1))-1, len(answers)-1)]
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var waits []time.Duration
	after := func(d time.Duration) <-chan time.Time {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return now(d)
	}
	reg := prometheus.NewRegistry()
	// randN at its top: every jitter is at its widest.
	w, err := New(Config{URL: srv.URL, After: after, RandN: func(n int64) int64 { return n - 1 }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.Send("x")
	w.Close(context.Background())
	want := []time.Duration{
		7*time.Second + 1750*time.Millisecond,  // Retry-After 7s is the floor, plus a quarter
		30*time.Second - 7500*time.Millisecond, // an hour is capped at Max (30s), jittered below it
		4 * time.Second,                        // no Retry-After: backoff, third try: up to 1s * 2^2
	}
	mu.Lock()
	defer mu.Unlock()
	if calls.Load() != 4 || counter(t, reg, "agentq_alerts_sent_total", "") != 1 {
		t.Fatalf("%d calls, sent %v", calls.Load(), counter(t, reg, "agentq_alerts_sent_total", ""))
	}
	if len(waits) != len(want) {
		t.Fatalf("waits = %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("wait %d = %v, want %v (all: %v)", i, waits[i], want[i], waits)
		}
	}
}

func TestRetriesStopAtMaxAttempts(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w, err := New(Config{URL: srv.URL, After: now, Retry: jobs.RetryPolicy{MaxAttempts: 3}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.Send("x")
	w.Close(context.Background())
	if calls.Load() != 3 || counter(t, reg, "agentq_alerts_dropped_total", "failed") != 1 {
		t.Fatalf("calls %d, dropped{failed} %v; want 3 tries then a drop", calls.Load(), counter(t, reg, "agentq_alerts_dropped_total", "failed"))
	}
}
