package queue

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Dequeue loops. One asynq server takes work with one serial loop: take a
// concurrency slot, one dequeue round trip, hand the task to a goroutine.
// However large its concurrency, a server takes at most one task per round
// trip plus that loop's own CPU time, so with cheap tasks the loop, not the
// handlers, bounds throughput (two servers in one process gave 1.7x one).
// A worker therefore runs WorkerConfig.Loops asynq servers on the same
// client, the same handler chain and the same queues, with Concurrency
// split between them.
//
// asynqmon shows each loop as a server of its own: same host, same pid,
// same queues, each with its share of the concurrency (the shares sum to
// Concurrency). The worker's "dequeue loops started" log line names the
// loops and their shares.
//
// Each asynq server also runs background work: a heartbeat (every 5s; it
// also renews the leases of the tasks that server runs, so every loop needs
// it), a cancellation subscriber (one pub/sub connection each), a forwarder
// (due retries and scheduled tasks), a janitor (expired completed tasks)
// and a recoverer (every minute, fixed by asynq). The extra loops run the
// forwarder and janitor extraLoopSlowdown times less often than the first:
// the first does the work, the others are a backstop should it stall.

// Loop defaults.
const (
	// loopsDefaultMax caps the default number of loops: past a handful, the
	// single-threaded Redis, not the loops, bounds throughput, and each loop
	// holds a pub/sub connection and heartbeats.
	loopsDefaultMax = 8
	// LoopsMax is the most dequeue loops a worker runs; more workers scale
	// further.
	LoopsMax = 64
	// extraLoopSlowdown is how much less often loops after the first look
	// for work when idle and run asynq's forwarder and janitor.
	extraLoopSlowdown = 10
	// asynqJanitorIntervalDefault is asynq's default janitor interval.
	asynqJanitorIntervalDefault = 8 * time.Second
)

// LoopsDefault is the default number of dequeue loops for a worker of the
// given concurrency: twice GOMAXPROCS, at least 2, at most 8 and at most
// concurrency (each loop needs a slot). A loop spends most of its time
// waiting on its dequeue round trip, so two per CPU keep the CPUs busy (on
// 2 vCPUs, agentq bench: 4 loops 1.26x one raw asynq server against 3
// loops about 1.05x; raw asynq itself peaked at 4 servers).
func LoopsDefault(concurrency int) int {
	return max(1, min(concurrency, max(2, 2*runtime.GOMAXPROCS(0)), loopsDefaultMax))
}

// loopsWithDefaults fills in Loops.
func (c WorkerConfig) loopsWithDefaults() WorkerConfig {
	if c.Loops == 0 {
		c.Loops = LoopsDefault(c.Concurrency)
	}
	if c.CompletionFold == "" {
		c.CompletionFold = CompletionFoldAuto
	}
	return c
}

// validateLoops checks Loops and CompletionFold.
func (c WorkerConfig) validateLoops() error {
	if c.Loops < 1 {
		return fmt.Errorf("loops must be at least 1, got %d", c.Loops)
	}
	if c.Loops > LoopsMax {
		return fmt.Errorf("loops must be at most %d (each is an asynq server with its own connections and pollers), got %d", LoopsMax, c.Loops)
	}
	if c.Loops > c.Concurrency {
		return fmt.Errorf("loops must not exceed concurrency (%d): each loop needs at least one slot, got %d", c.Concurrency, c.Loops)
	}
	if c.CompletionFold != CompletionFoldAuto && c.CompletionFold != CompletionFoldOff {
		return fmt.Errorf("completion_fold must be %q or %q, got %q", CompletionFoldAuto, CompletionFoldOff, c.CompletionFold)
	}
	return nil
}

// splitConcurrency splits concurrency c over n loops (1 <= n <= c): the
// shares sum to c and differ by at most one, larger first.
func splitConcurrency(c, n int) []int {
	shares := make([]int, n)
	for i := range shares {
		shares[i] = c / n
		if i < c%n {
			shares[i]++
		}
	}
	return shares
}

// newServers builds one asynq server per loop on rdb.
func (w *Worker) newServers(rdb redis.UniversalClient) []*asynq.Server {
	cfg := w.cfg
	shares := splitConcurrency(cfg.Concurrency, cfg.Loops)
	srvs := make([]*asynq.Server, len(shares))
	for i, n := range shares {
		ac := asynq.Config{
			Concurrency:              n,
			Queues:                   cfg.Queues,
			StrictPriority:           cfg.StrictPriority,
			TaskCheckInterval:        cfg.PollInterval,
			DelayedTaskCheckInterval: cfg.DelayedCheckInterval,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			RetryDelayFunc:           w.asynqRetryDelay,
			IsFailure:                isFailure,
			ErrorHandler:             asynq.ErrorHandlerFunc(w.backstop),
			Logger:                   asynqLogger{l: w.log.With().Str("component", "asynq").Int("loop", i).Logger()},
			LogLevel:                 asynqLevel(w.log.GetLevel()),
		}
		if i > 0 {
			// Idle, the extra loops look for work 10 times less often, so
			// an idle worker costs about one loop's polls, not loops'.
			ac.TaskCheckInterval *= extraLoopSlowdown
			ac.DelayedTaskCheckInterval *= extraLoopSlowdown
			ac.JanitorInterval = asynqJanitorIntervalDefault * extraLoopSlowdown
		}
		srvs[i] = asynq.NewServerFromRedisClient(rdb, ac)
	}
	return srvs
}

// startServers starts every loop; if one fails, it shuts down the ones
// started.
func (w *Worker) startServers() error {
	h := asynq.HandlerFunc(w.ProcessTask)
	for i, srv := range w.srvs {
		if err := srv.Start(h); err != nil {
			shutdownAll(w.srvs[:i])
			return fmt.Errorf("start worker loop %d of %d: %w", i+1, len(w.srvs), err)
		}
	}
	shares := splitConcurrency(w.cfg.Concurrency, len(w.srvs))
	w.log.Info().Int("loops", len(w.srvs)).Ints("loop_concurrency", shares).Int("concurrency", w.cfg.Concurrency).
		Str("completion_fold", w.complete.state()).
		Msg("dequeue loops started: asynqmon shows each loop as a server with this host and pid")
	return nil
}

// shutdownAll shuts the servers down in parallel, so the whole shutdown
// takes one ShutdownTimeout at most, not one per loop.
func shutdownAll(srvs []*asynq.Server) {
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Shutdown()
		}()
	}
	wg.Wait()
}
