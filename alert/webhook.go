// Package alert owns agentq's outbound alerts: a webhook sender that POSTs
// JSON from a bounded in-memory queue, retries with backoff, and never
// blocks the caller. An alert that cannot be queued or delivered is dropped,
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
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/internal/promreg"
)

// Config defaults.
const (
	// QueueSizeDefault is how many alerts wait for delivery at most.
	QueueSizeDefault = 256
	// MaxAttemptsDefault is how often one alert is tried.
	MaxAttemptsDefault = 5
	// BackoffDefault is the delay before the first retry; it doubles.
	BackoffDefault = time.Second
	// MaxBackoffDefault caps the delay between tries.
	MaxBackoffDefault = 30 * time.Second
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
	// MaxAttempts is how often one alert is tried before it is dropped.
	// Default MaxAttemptsDefault (5).
	MaxAttempts int
	// Backoff is the delay before the first retry; it doubles up to
	// MaxBackoff. Defaults BackoffDefault (1s) and MaxBackoffDefault (30s).
	Backoff, MaxBackoff time.Duration
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
}

func (c Config) withDefaults() Config {
	c.QueueSize = cmp.Or(c.QueueSize, QueueSizeDefault)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, MaxAttemptsDefault)
	c.Backoff = cmp.Or(c.Backoff, BackoffDefault)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, MaxBackoffDefault)
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
	case c.MaxAttempts < 1:
		return fmt.Errorf("max_attempts must be at least 1, got %d", c.MaxAttempts)
	case c.Backoff <= 0 || c.MaxBackoff < c.Backoff:
		return fmt.Errorf("backoff (%v) must be positive and not above max_backoff (%v)", c.Backoff, c.MaxBackoff)
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

// deliver tries one alert up to MaxAttempts times. 2xx is delivered; 429,
// 5xx and network errors are retried; any other status is refused.
func (w *Webhook) deliver(b []byte) {
	delay := w.cfg.Backoff
	var last string
	for attempt := 1; attempt <= w.cfg.MaxAttempts; attempt++ {
		retry, why := w.post(b)
		if why == "" {
			w.sent.Inc()
			return
		}
		last = why
		if !retry {
			break
		}
		if attempt == w.cfg.MaxAttempts {
			break
		}
		select {
		case <-w.cfg.After(delay):
		case <-w.stop:
			w.drop("shutdown", "shutting down during retries; last error: "+last)
			return
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
	w.drop("failed", "delivery failed: "+last)
}

func (w *Webhook) post(b []byte) (retry bool, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(b))
	if err != nil {
		return false, "bad request"
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
		return true, "POST to " + w.host + ": " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, ""
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Sprintf("POST to %s: %s", w.host, resp.Status)
	}
	return false, fmt.Sprintf("POST to %s refused: %s", w.host, resp.Status)
}
