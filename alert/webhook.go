// Package alert owns agentq's outbound alerts: a webhook sender that POSTs
// JSON from a bounded in-memory queue, retries with jobs.RetryPolicy's
// backoff (honouring Retry-After), and never blocks the caller. An alert that cannot be queued or delivered is dropped,
// counted and logged, never silently lost.
package alert

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/promreg"
	"github.com/agentq/agentq/jobs"
)

// Config defaults.
const (
	// QueueSizeDefault is how many alerts wait for delivery at most.
	QueueSizeDefault = 256
	// MaxAttemptsDefault is how often one alert is tried.
	MaxAttemptsDefault = 5
	// RetryBaseDefault is the backoff's base delay: the first retry waits
	// up to it, each further one up to twice as long.
	RetryBaseDefault = time.Second
	// RetryMaxDefault caps one delay between tries, a Retry-After included.
	RetryMaxDefault = 30 * time.Second
	// TimeoutDefault bounds one POST.
	TimeoutDefault = 10 * time.Second
)

// Config configures a Webhook.
type Config struct {
	// URL is the http(s) endpoint alerts are POSTed to. Required.
	URL string
	// QueueSize bounds the alerts waiting for delivery; more are dropped.
	// Default QueueSizeDefault (256).
	QueueSize int
	// Retry is how often one alert is tried before it is dropped, and how
	// far apart: the delays are jobs.RetryPolicy.Delay's (full-jitter
	// exponential backoff; a 429 or 5xx's Retry-After is the floor of the
	// next delay, capped at Max). Zero fields take the defaults:
	// MaxAttemptsDefault (5), RetryBaseDefault (1s), RetryMaxDefault (30s).
	Retry jobs.RetryPolicy
	// Timeout bounds one POST. Default TimeoutDefault (10s).
	Timeout time.Duration
	// Client sends the POSTs. Default a client with Timeout.
	Client *http.Client
	// Logger receives one line per dropped alert. Default: no logging.
	Logger *zerolog.Logger
	// Registerer receives the sender's metrics. Default nil: none.
	Registerer prometheus.Registerer
	// After waits between tries; tests inject it. Default time.After.
	After func(d time.Duration) <-chan time.Time
	// RandN returns a uniform int64 in [0, n); it decides the jitter.
	// Default math/rand/v2's Int64N.
	RandN func(n int64) int64
	// Now reads the clock for an HTTP-date Retry-After. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.QueueSize = cmp.Or(c.QueueSize, QueueSizeDefault)
	c.Retry = c.Retry.Merge(jobs.RetryPolicy{MaxAttempts: MaxAttemptsDefault, Base: RetryBaseDefault, Max: RetryMaxDefault})
	c.Timeout = cmp.Or(c.Timeout, TimeoutDefault)
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.Timeout}
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.RandN == nil {
		c.RandN = rand.Int64N
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("url must be an absolute http:// or https:// URL")
	case c.QueueSize < 1:
		return fmt.Errorf("queue_size must be at least 1, got %d", c.QueueSize)
	}
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	return nil
}

// Webhook posts alerts as JSON to one URL in the background. It is safe for
// concurrent use.
type Webhook struct {
	cfg  Config
	host string // the URL's host, the only part logged: the rest may hold a token
	log  zerolog.Logger
	q    chan []byte

	mu     sync.RWMutex
	closed bool
	stop   chan struct{}
	done   chan struct{}

	sent    prometheus.Counter
	dropped *prometheus.CounterVec
}

// New starts a Webhook.
func New(cfg Config) (*Webhook, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	u, _ := url.Parse(cfg.URL)
	w := &Webhook{
		cfg: cfg, host: u.Host, log: cfg.Logger.With().Str("component", "alerts").Logger(),
		q: make(chan []byte, cfg.QueueSize), stop: make(chan struct{}), done: make(chan struct{}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentq_alerts_sent_total", Help: "Alerts delivered to the webhook.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentq_alerts_dropped_total",
			Help: "Alerts not delivered, by reason: queue_full, failed (retries spent or refused), shutdown.",
		}, []string{"reason"}),
	}
	if r := cfg.Registerer; r != nil {
		var err error
		if w.sent, err = promreg.Register(r, w.sent); err != nil {
			return nil, err
		}
		if w.dropped, err = promreg.Register(r, w.dropped); err != nil {
			return nil, err
		}
	}
	go w.run()
	return w, nil
}

// Send queues v (marshalled as JSON) for delivery and returns at once. It
// returns false when the alert was dropped: the queue is full, v does not
// marshal, or the webhook is closed.
func (w *Webhook) Send(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		w.drop("failed", "alert does not marshal: "+err.Error())
		return false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop("shutdown", "webhook is closed")
		return false
	}
	select {
	case w.q <- b:
		return true
	default:
		w.drop("queue_full", fmt.Sprintf("%d alerts are waiting for delivery", cap(w.q)))
		return false
	}
}

func (w *Webhook) drop(reason, why string) {
	w.dropped.WithLabelValues(reason).Inc()
	w.log.Warn().Str("reason", reason).Str("webhook_host", w.host).Msg("alert dropped: " + why)
}

// Close stops taking alerts and tries to deliver the queued ones until ctx
// ends; what is left then is dropped and counted.
func (w *Webhook) Close(ctx context.Context) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.q)
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		close(w.stop)
		<-w.done
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for b := range w.q {
		select {
		case <-w.stop:
			w.drop("shutdown", "shutting down before delivery")
			continue
		default:
		}
		w.deliver(b)
	}
}

// deliver tries one alert up to Retry.MaxAttempts times. 2xx is delivered;
// 429, 5xx and network errors are retried after Retry.Delay; any other
// status is refused.
func (w *Webhook) deliver(b []byte) {
	var last error
	for attempt := 1; attempt <= w.cfg.Retry.MaxAttempts; attempt++ {
		retry, err := w.post(b)
		if err == nil {
			w.sent.Inc()
			return
		}
		last = err
		if !retry || attempt == w.cfg.Retry.MaxAttempts {
			break
		}
		select {
		case <-w.cfg.After(w.cfg.Retry.Delay(attempt-1, err, w.cfg.RandN)):
		case <-w.stop:
			w.drop("shutdown", "shutting down during retries; last error: "+last.Error())
			return
		}
	}
	w.drop("failed", "delivery failed: "+last.Error())
}

// post sends one alert. It returns nil when delivered, else the error (a
// jobs.RetryAfter when the webhook asked for a delay) and whether a retry
// may help. Errors name the URL's host only: the rest may hold a token.
func (w *Webhook) post(b []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(b))
	if err != nil {
		return false, errors.New("bad request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentq")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		// The error text names the URL, which may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, errors.New("POST to " + w.host + ": " + err.Error())
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		err := fmt.Errorf("POST to %s: %s", w.host, resp.Status)
		if d, ok := jobs.ParseRetryAfter(resp.Header.Get("Retry-After"), w.cfg.Now()); ok {
			err = jobs.RetryAfter(d, err)
		}
		return true, err
	}
	return false, fmt.Errorf("POST to %s refused: %s", w.host, resp.Status)
}
