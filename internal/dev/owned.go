package dev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/breaker"
	"github.com/agentq/agentq/budget"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/ledger"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// Owned names what `agentq dev` alone uses on a configured (maybe shared)
// Redis, so that its cleanup removes those keys and nothing another process
// may use: its queue (a queue of its own), the runs it started, the
// idempotency keys it enqueued with, the breakers of its own servers'
// hosts and the budgets of its own workflows. Every key it owns is built
// by the key builders of the package that writes it.
//
// Shared keys (the dead-letter counter, index and live set, the runs
// index, the breaker names, asynq's queue and server sets, locks) are
// never owned: dev removes its members from the shared sets instead.
type Owned struct {
	mu        sync.Mutex
	queue     string
	runs      []string
	keys      []string
	breakers  []string
	workflows []string
}

// NewOwned returns what dev owns when it keeps to queue q, a queue no
// other process uses.
func NewOwned(q string) *Owned { return &Owned{queue: q} }

// Queue returns dev's own queue.
func (o *Owned) Queue() string {
	if o == nil {
		return ""
	}
	return o.queue
}

// AddRun records a run dev started, and the idempotency keys of its steps.
func (o *Owned) AddRun(id string, steps ...string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runs = appendNew(o.runs, id)
	for _, s := range steps {
		o.keys = appendNew(o.keys, runs.StepKey(id, s))
	}
}

// AddKeys records idempotency keys dev enqueued with.
func (o *Owned) AddKeys(keys ...string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		o.keys = appendNew(o.keys, k)
	}
}

// AddBreakers records breaker names (hosts) only dev's servers answer on.
func (o *Owned) AddBreakers(names ...string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range names {
		o.breakers = appendNew(o.breakers, strings.ToLower(n))
	}
}

// AddWorkflows records workflows only dev runs.
func (o *Owned) AddWorkflows(names ...string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range names {
		o.workflows = appendNew(o.workflows, n)
	}
}

// Runs returns the runs dev started.
func (o *Owned) Runs() []string {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.runs)
}

// Breakers returns the breaker names dev owns.
func (o *Owned) Breakers() []string {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.breakers)
}

// Owns reports whether key is dev's by name: a key of its queue (asynq's
// and agentq's, and the dead-letter store's per-task keys of it), of one of
// its runs, the ledger entry of one of its idempotency keys, a key of one
// of its breakers or of one of its workflows' budgets.
func (o *Owned) Owns(key string) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var prefixes []string
	if o.queue != "" {
		prefixes = queue.QueueKeyPrefixes(o.queue)
		// The dead-letter store's per-task keys end in the queue's name and
		// a task id; dev's task ids have no ":", so that a queue named
		// like dev's with more after a ":" is not dev's.
		for _, p := range dlq.QueueKeyPrefixes(o.queue) {
			if id, ok := strings.CutPrefix(key, p); ok && id != "" && !strings.Contains(id, ":") {
				return true
			}
		}
	}
	for _, w := range o.workflows {
		prefixes = append(prefixes, budget.WorkflowKeyPrefix(w))
	}
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	var exact []string
	for _, id := range o.runs {
		exact = append(exact, runs.RunKeys(id)...)
	}
	for _, k := range o.keys {
		exact = append(exact, ledger.EntryKey(k))
	}
	for _, b := range o.breakers {
		exact = append(exact, breaker.BreakerKeys(b)...)
	}
	return slices.Contains(exact, key)
}

func appendNew(s []string, v string) []string {
	if v == "" || slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// Cleanup removes, after dev's worker stopped, what dev left on a
// configured Redis: first its dead letters (those of its queue since it
// started), through the dead-letter store, which removes them from the
// shared index and live set too; then the keys it both created and owns,
// and its members of the shared sets (Created.Remove). Shared keys stay.
func Cleanup(ctx context.Context, rdb redis.UniversalClient, dead *dlq.Store, created *Created, own *Owned, since time.Time) (Removed, error) {
	var errs []error
	recs, err := dead.List(ctx, dlq.Filter{Queue: own.Queue(), Since: since})
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if err == nil && len(ids) > 0 {
		_, err = dead.Purge(ctx, ids...)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("purge the demo's dead letters: %w", err))
	}
	rm, err := created.Remove(ctx, rdb, own)
	return rm, errors.Join(append(errs, err)...)
}

// BreakerName returns the name of the breaker of calls to URL u, as the
// breaker package names it: its host (and port).
func BreakerName(u string) string {
	b, _ := json.Marshal(map[string]string{"url": u})
	return breaker.Host(b)
}
