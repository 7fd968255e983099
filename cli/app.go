package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/dashboard"
	"github.com/agentq/agentq/internal/logging"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// app is the wiring of one command: the effective config turned into the
// components' own Config structs.
type app struct {
	cfg config.Config
	log zerolog.Logger
	reg *queue.Registry
	m   *Main
	// configFile is the --config given, for the commands agentq prints.
	configFile string
	// prom is the process's metrics registry: every component registers
	// here (nothing registers globally), and /metrics serves it.
	prom   *prometheus.Registry
	rel    *reliability // set by startReliability in worker processes
	guards *guards      // set by startGuards in worker processes
}

func (m *Main) newApp(cfg config.Config, logTo io.Writer) (*app, error) {
	log, err := logging.New(logTo, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, reg: queue.NewRegistry(), m: m, prom: newPromRegistry()}
	if err := handlers.Register(a.reg, a.handlersConfig()); err != nil {
		return nil, err
	}
	if m.Register != nil {
		if err := m.Register(a.reg); err != nil {
			return nil, fmt.Errorf("register custom kinds: %w", err)
		}
	}
	return a, nil
}

// newPromRegistry is a process's own metrics registry with the Go runtime
// and process collectors that prometheus.DefaultRegisterer would hold.
func newPromRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

func (a *app) handlersConfig() handlers.Config {
	return handlers.Config{
		Timeout:          a.cfg.HTTP.Timeout,
		MaxResponseBytes: a.cfg.HTTP.MaxResponseBytes,
		RedactHeaders:    a.cfg.HTTP.RedactHeaders,
		RedactFields:     a.cfg.HTTP.RedactFields,
	}
}

func (a *app) redisConfig() queue.RedisConfig {
	r := a.cfg.Redis
	return queue.RedisConfig{
		URL: r.URL, Username: r.Username, Password: r.Password, ClusterAddrs: r.ClusterAddrs,
		TLSEnabled: r.TLS.Enabled, CAFile: r.TLS.CAFile, CertFile: r.TLS.CertFile, KeyFile: r.TLS.KeyFile,
		ServerName: r.TLS.ServerName, InsecureSkipVerify: r.TLS.InsecureSkipVerify,
		DialTimeout: r.DialTimeout, ReadTimeout: r.ReadTimeout, WriteTimeout: r.WriteTimeout, PoolSize: r.PoolSize,
	}
}

// connect pings Redis and fails with a clear, password-free message.
func (a *app) connect(ctx context.Context) (redis.UniversalClient, error) {
	return a.redisConfig().Connect(ctx, 5*time.Second)
}

// connectWait is connect for the long-running commands (worker, dashboard):
// while Redis does not answer it waits and tries again with capped backoff,
// logging each try, so that a supervisor restarting Redis and agentq
// together sees no restart storm. A config that no retry fixes (a bad URL,
// wrong credentials, an unknown database) fails at once as a usage error.
// When ctx ends first, ok is false and err nil: the caller just stops.
func (a *app) connectWait(ctx context.Context) (rdb redis.UniversalClient, ok bool, err error) {
	log := a.log
	rdb, err = a.redisConfig().ConnectWait(ctx, queue.WaitConfig{Logger: &log})
	var ce *queue.ConnectError
	switch {
	case err == nil:
		return rdb, true, nil
	case errors.As(err, &ce) && ce.Permanent:
		return nil, false, usageError{err}
	case ctx.Err() != nil:
		a.log.Info().Msg("stopped before Redis answered")
		return nil, false, nil
	}
	return nil, false, err
}

func retryPolicy(r config.Retry) jobs.RetryPolicy {
	return jobs.RetryPolicy{MaxAttempts: r.MaxAttempts, Base: r.Base, Max: r.Max}
}

func (a *app) workflows() map[string]queue.Workflow {
	out := make(map[string]queue.Workflow, len(a.cfg.Workflows))
	for name, wf := range a.cfg.Workflows {
		out[name] = queue.Workflow{Queue: wf.Queue, Retry: retryPolicy(wf.Retry)}
	}
	return out
}

func (a *app) clientConfig() queue.ClientConfig {
	return queue.ClientConfig{
		DedupeWindow:    a.cfg.Enqueue.DedupeWindow,
		MaxPayloadBytes: a.cfg.Enqueue.MaxPayloadBytes,
		Queue:           a.cfg.Enqueue.Queue,
		Retry:           retryPolicy(a.cfg.Retry),
		Workflows:       a.workflows(),
	}
}

func (a *app) client(rdb redis.UniversalClient) (*queue.Client, error) {
	cc := a.clientConfig()
	cc.Admit = a.admit(rdb)
	return queue.NewClient(rdb, a.reg, cc)
}

func (a *app) workerConfig() queue.WorkerConfig {
	w := a.cfg.Worker
	// With the default queue list, a worker also serves enqueue.queue and
	// every workflow's queue (priority 1); an explicit worker.queues is
	// taken as given, so dedicated workers stay dedicated.
	queues := maps.Clone(w.Queues)
	if maps.Equal(queues, config.Default().Worker.Queues) {
		queues[a.cfg.Enqueue.Queue] = max(queues[a.cfg.Enqueue.Queue], 1)
		for _, wf := range a.cfg.Workflows {
			if wf.Queue != "" && queues[wf.Queue] == 0 {
				queues[wf.Queue] = 1
			}
		}
	}
	log := a.log
	return queue.WorkerConfig{
		Concurrency:          w.Concurrency,
		Queues:               queues,
		StrictPriority:       w.StrictPriority,
		PollInterval:         w.PollInterval,
		DelayedCheckInterval: w.DelayedCheckInterval,
		ShutdownTimeout:      w.ShutdownTimeout,
		Retry:                retryPolicy(a.cfg.Retry),
		Workflows:            a.workflows(),
		Logger:               &log,
		Middleware:           a.middleware(),
		Redact:               redact.New(a.cfg.HTTP.RedactHeaders, a.cfg.HTTP.RedactFields).Text,
		Recover:              w.Recover(),
	}
}

// startWorkerSide starts what a worker process runs beside the worker (the
// dead-letter store, ledger and alerts, then budgets, breakers and metrics)
// so that workerConfig puts their middleware in the chain. Call stop after
// the worker has stopped: guards first, then the dead-letter side.
func (a *app) startWorkerSide(ctx context.Context, rdb redis.UniversalClient) (stop func(), err error) {
	rel, err := a.startReliability(ctx, rdb)
	if err != nil {
		return nil, err
	}
	g, err := a.startGuards(ctx, rdb)
	if err != nil {
		rel.close()
		return nil, err
	}
	return func() { g.close(); rel.close() }, nil
}

func (a *app) dashboardConfig() dashboard.Config {
	d := a.cfg.Dashboard
	return dashboard.Config{
		Addr: d.Addr, ReadOnly: d.ReadOnly,
		BasicAuthUser: d.BasicAuthUser, BasicAuthPassword: d.BasicAuthPassword, BearerToken: d.BearerToken,
		RedactHeaders: a.cfg.HTTP.RedactHeaders, RedactFields: a.cfg.HTTP.RedactFields,
	}
}
