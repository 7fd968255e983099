//go:build unix

package faults_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/binarytest"
	"github.com/agentq/agentq/internal/redistest"
)

// recoverWithin bounds the wait for a dead or frozen worker's tasks to come
// back: asynq's lease (30s) plus its recoverer (a 30s cutoff, run every
// minute) gives 60-120s; agentq's own sweeper, where present, shortens it.
const recoverWithin = 150 * time.Second

// redelivered returns, for the keys, how long after at their first request
// after at arrived at the tool, and whether every key had one.
func redelivered(tl *tool, keys map[string]bool, at time.Time) (first, last time.Duration, all bool) {
	got := map[string]time.Duration{}
	for _, r := range tl.requests() {
		if keys[r.key] && r.at.After(at) {
			if _, ok := got[r.key]; !ok {
				got[r.key] = r.at.Sub(at)
			}
		}
	}
	for _, d := range got {
		if first == 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	return first, last, len(got) == len(keys)
}

func keysLike(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// TestWorkerKill9 kills a worker with SIGKILL while it holds tasks at the
// tool; a replacement worker starts at once. The killed worker's tasks come
// back after asynq's lease expiry and run again: each ran twice at the
// tool, with the same Idempotency-Key both times.
func TestWorkerKill9(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	s := newScenario(t, "worker-kill9", srv.Addr)
	a := s.workerHoldingFive("kill9")
	a.Kill(t)
	faultAt := time.Now()
	atRisk := s.activeKeys() // only a ran: asynq's active set is what a held
	if len(atRisk) == 0 || len(atRisk) > 5 {
		t.Fatalf("active after the kill: %d tasks, want 1-5 (worker a's concurrency)", len(atRisk))
	}
	b := s.worker("b", "AGENTQ_WORKER_CONCURRENCY=5")
	tl := s.settle(recoverWithin + 30*time.Second)
	first, last, all := redelivered(s.tool, atRisk, faultAt)
	if !all {
		t.Errorf("not every task a held was run again")
	}
	alive(t, b)
	s.check(tl, atRisk, fmt.Sprintf("redelivered_after=%.0f-%.0fs same_idempotency_key=%v ledger_answered=%d",
		first.Seconds(), last.Seconds(), sameKeyEveryTime(s.tool), ledgerAnswered(b)))
}

// sameKeyEveryTime reports whether every request carried an
// Idempotency-Key (the task's key): what lets a tool apply a repeated
// delivery once.
func sameKeyEveryTime(tl *tool) bool {
	for _, r := range tl.requests() {
		if r.key == "" {
			return false
		}
	}
	return true
}

// TestWorkerStoppedPastLease freezes a worker with SIGSTOP while it holds
// tasks; a second worker runs the rest and, once the frozen worker's
// leases expire, its tasks too. Then the frozen worker is thawed: its
// handlers finish late. It must survive, and its late finishes must not
// undo or repeat what the second worker did.
func TestWorkerStoppedPastLease(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	s := newScenario(t, "worker-sigstop-past-lease", srv.Addr)
	a := s.workerHoldingFive("stop")
	a.Stop(t)
	faultAt := time.Now()
	attemptsBefore := attemptLines(a)
	atRisk := s.activeKeys()
	if len(atRisk) == 0 || len(atRisk) > 5 {
		a.Cont(t)
		t.Fatalf("active after the stop: %d tasks, want 1-5 (worker a's concurrency)", len(atRisk))
	}
	b := s.worker("b", "AGENTQ_WORKER_CONCURRENCY=5")
	deadline := time.Now().Add(recoverWithin)
	for {
		if _, _, all := redelivered(s.tool, atRisk, faultAt); all || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopped := time.Since(faultAt)
	a.Cont(t)
	first, last, all := redelivered(s.tool, atRisk, faultAt)
	if !all {
		t.Errorf("the frozen worker's tasks were not run by worker b within %v", recoverWithin)
	}
	tl := s.settle(60 * time.Second)
	// Wait for the thawed worker's late handlers to return (each logs one
	// attempt line), then count again.
	binarytest.WaitFor(t, 30*time.Second, "worker a's late handlers to return", func() bool {
		return attemptLines(a) >= attemptsBefore+len(atRisk)
	})
	tl2 := s.settle(30 * time.Second)
	if len(tl2.dup) != len(tl.dup) || tl2.dead != tl.dead {
		t.Errorf("the thawed worker changed the outcome: dup %d -> %d, dead %d -> %d", len(tl.dup), len(tl2.dup), tl.dead, tl2.dead)
	}
	alive(t, a)
	alive(t, b)
	s.check(tl2, atRisk, fmt.Sprintf("stopped=%.0fs redelivered_after=%.0f-%.0fs distinct_keys_with_effect=%d ledger_answered=%d",
		stopped.Seconds(), first.Seconds(), last.Seconds(), len(s.tool.effects()), ledgerAnswered(a, b)))
}

// TestRedisKill9AOF kills Redis (AOF, appendfsync everysec) with SIGKILL
// while a worker holds tasks and others are pending, and restarts it on
// the same port and directory after 2s. Nothing was enqueued in the last
// second before the kill, so no acknowledged enqueue may be lost; tasks
// finished in the last second may run again (their acknowledgement may not
// have reached the disk).
func TestRedisKill9AOF(t *testing.T) {
	t.Parallel()
	k := redistest.StartKillable(t)
	s := newScenario(t, "redis-kill9-aof", k.Addr)
	w := s.worker("w", "AGENTQ_WORKER_CONCURRENCY=10")
	var tasks []task
	for _, key := range keysLike("rkill", 200) {
		tasks = append(tasks, s.call(key, "/hold?ms=300"))
	}
	s.enqueue(tasks...)
	enqueuedAt := time.Now()
	binarytest.WaitFor(t, 60*time.Second, "some tasks done", func() bool {
		return len(s.tool.effects()) >= 20 && time.Since(enqueuedAt) > 1500*time.Millisecond
	})
	active := s.activeKeys()
	k.Kill()
	faultAt := time.Now()
	// AOF everysec may lose up to about a second of writes (two in the worst
	// case): tasks answered since then may have lost their acknowledgement.
	atRisk := union(active, s.tool.inFlight(), s.tool.answeredSince(faultAt.Add(-2*time.Second)))
	doneAtKill := len(s.tool.effects())
	time.Sleep(2 * time.Second) // Redis is down: this is the fault, not a wait for a result
	k.Restart(t)
	restartAt := time.Now()
	tl := s.settle(recoverWithin + 30*time.Second)
	var lastEffect time.Time
	for _, r := range s.tool.requests() {
		if r.status/100 == 2 && r.at.After(lastEffect) {
			lastEffect = r.at
		}
	}
	alive(t, w)
	s.check(tl, atRisk, fmt.Sprintf("done_at_kill=%d down=2s drained_after_restart=%.0fs idle_after_restart=%.0fs ledger_answered=%d enqueued_then_quiet=%.1fs",
		doneAtKill, lastEffect.Sub(restartAt).Seconds(), tl.settled.Sub(restartAt).Seconds(), ledgerAnswered(w), faultAt.Sub(enqueuedAt).Seconds()))
}

// TestRedisFrozen freezes Redis with SIGSTOP for 10s (longer than the 3s
// client read timeout) while a worker runs, tries an enqueue during the
// freeze and again after it, then thaws Redis. The worker must survive and
// go on; the enqueue during the freeze must fail rather than hang, and its
// retry after the thaw must leave the task enqueued. Dequeues the worker
// sent during the freeze run when Redis thaws, after the worker gave up on
// them: their tasks wait in active for asynq's lease recovery, which is
// counted and reported (stranded_in_active).
func TestRedisFrozen(t *testing.T) {
	t.Parallel()
	k := redistest.StartKillable(t)
	s := newScenario(t, "redis-sigstop-10s", k.Addr)
	w := s.worker("w", "AGENTQ_WORKER_CONCURRENCY=10")
	pid := w.PID()
	var tasks []task
	for _, key := range keysLike("rfreeze", 200) {
		tasks = append(tasks, s.call(key, "/hold?ms=300"))
	}
	s.enqueue(tasks...)
	binarytest.WaitFor(t, 60*time.Second, "some tasks done", func() bool { return len(s.tool.effects()) >= 20 })
	active := s.activeKeys()
	k.Stop(t)
	faultAt := time.Now()
	inFlight := s.tool.inFlight()

	lateKey := "rfreeze-during"
	lateTask := s.call(lateKey, "/ok")
	payload, _ := json.Marshal(lateTask.Payload)
	during := s.agentq("enqueue", "http.call", "--key", lateKey, "--json", "--payload", string(payload))
	if during.Code == 0 {
		t.Errorf("enqueue during the freeze: exit 0 (%s); want a failure", strings.TrimSpace(during.Stdout))
	}
	if rest := 10*time.Second - time.Since(faultAt); rest > 0 {
		time.Sleep(rest) // Redis stays frozen for 10s: the fault itself
	}
	k.Cont(t)
	thawAt := time.Now()
	stalled := thawAt.Sub(faultAt)
	after := s.agentq("enqueue", "http.call", "--key", lateKey, "--json", "--payload", string(payload))
	var res struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if after.Code != 0 || json.Unmarshal([]byte(after.Stdout), &res) != nil {
		t.Fatalf("enqueue retried after the thaw: exit %d, out %q, err %q", after.Code, after.Stdout, after.Stderr)
	}
	s.keys = append(s.keys, lateKey)
	atRisk := union(active, inFlight, s.tool.answeredSince(faultAt.Add(-time.Second)))
	var resumed time.Duration
	for _, r := range s.tool.requests() {
		if r.at.After(thawAt) && (resumed == 0 || r.at.Sub(thawAt) < resumed) {
			resumed = r.at.Sub(thawAt)
		}
	}
	tl := s.settle(recoverWithin + 30*time.Second)
	// A dequeue a worker sent during the freeze timed out on its side but
	// ran in Redis after the thaw: its task sat in active, held by nobody,
	// until asynq's lease recovery.
	first := map[string]time.Time{}
	for _, r := range s.tool.requests() {
		if _, ok := first[r.key]; !ok {
			first[r.key] = r.at
		}
	}
	stranded, strandedFor := 0, time.Duration(0)
	for _, at := range first {
		if d := at.Sub(thawAt); d > 20*time.Second {
			stranded++
			strandedFor = max(strandedFor, d)
		}
	}
	if during.Took > 10*time.Second {
		t.Errorf("enqueue during the freeze took %v; want it to fail within the client timeouts", during.Took)
	}
	if w.PID() != pid {
		t.Errorf("worker pid changed")
	}
	alive(t, w)
	s.check(tl, atRisk, fmt.Sprintf("frozen=%.0fs enqueue_during_freeze=exit%d/%.1fs retry_after_thaw_duplicate=%v first_call_after_thaw=%.2fs stranded_in_active=%d first_run_after_thaw=%.0fs idle_after_thaw=%.0fs ledger_answered=%d",
		stalled.Seconds(), during.Code, during.Took.Seconds(), res.Duplicate, resumed.Seconds(), stranded, strandedFor.Seconds(),
		tl.settled.Sub(thawAt).Seconds(), ledgerAnswered(w)))
	if during.Code != 0 {
		t.Logf("enqueue during the freeze said: %s", strings.TrimSpace(during.Stderr))
	}
}

// toolCase is one way a tool misbehaves: the tool path, whether the task
// must exhaust its attempts, its timeout, and how many requests the tool
// must see per task (atLeast: Go's transport replays a request carrying an
// Idempotency-Key on another pooled connection when a reused connection is
// closed without an answer, so one attempt may reach the tool more than
// once).
type toolCase struct {
	name, path string
	die        bool
	timeout    string
	calls      int
	atLeast    bool
}

// runToolCases enqueues perCase tasks per case on one worker, waits for
// them to settle and checks each case's calls and dead letters. Tasks that
// must die get two attempts.
func runToolCases(t *testing.T, name string, cases []toolCase) {
	srv := redistest.StartExclusive(t)
	s := newScenario(t, name, srv.Addr)
	w := s.worker("w", "AGENTQ_WORKER_CONCURRENCY=20")
	const perCase = 3
	two := 1 // max_retry 1: two attempts
	var tasks []task
	for _, c := range cases {
		for i := range perCase {
			tk := s.call(fmt.Sprintf("%s-%d", c.name, i), c.path)
			if c.timeout != "" {
				tk.Payload["timeout"] = c.timeout
			}
			if c.die {
				tk.MaxRetry = &two
				s.mustDie[tk.Key] = true
			}
			tasks = append(tasks, tk)
		}
	}
	s.enqueue(tasks...)
	tl := s.settle(60 * time.Second)

	byKey := map[string][]request{}
	for _, r := range s.tool.requests() {
		byKey[r.key] = append(byKey[r.key], r)
	}
	dead := s.deadLetters()
	maxCalls := map[string]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range perCase {
				key := fmt.Sprintf("%s-%d", c.name, i)
				rs := byKey[key]
				maxCalls[c.name] = max(maxCalls[c.name], len(rs))
				if len(rs) != c.calls && !(c.atLeast && len(rs) > c.calls) {
					t.Errorf("%s: %d calls at the tool, want %d", key, len(rs), c.calls)
				}
				if strings.HasPrefix(c.path, "/429") && len(rs) >= 2 {
					if gap := rs[1].at.Sub(rs[0].at); gap < time.Second {
						t.Errorf("%s: retried %v after a 429 with Retry-After: 1", key, gap)
					}
				}
				if c.die && dead[key].Attempts != 2 {
					t.Errorf("%s: dead letter %+v, want it with 2 attempts", key, dead[key])
				}
			}
		})
	}
	alive(t, w)
	var extra []string
	for _, c := range cases {
		if c.atLeast {
			extra = append(extra, fmt.Sprintf("%s_max_calls=%d", c.name, maxCalls[c.name]))
		}
	}
	s.check(tl, nil, fmt.Sprintf("cases=%d exhausted_in_dlq=%d/%d %s", len(cases), tl.dead, len(s.mustDie), strings.Join(extra, " ")))
}

// TestToolMisbehaves runs tasks against a tool answering 429 with
// Retry-After, 503, hanging, and sending garbage: a binary body with 200
// and 500, a closed connection, a response that is not HTTP. Tasks whose
// tool recovers succeed; tasks whose tool never does exhaust their attempts
// and are all in the dead-letter store; the worker survives all of it.
func TestToolMisbehaves(t *testing.T) {
	t.Parallel()
	runToolCases(t, "tool-429-503-hang-garbage", []toolCase{
		{name: "429-once", path: "/429?n=1&after=1", calls: 2},
		{name: "429-always", path: "/429?after=1", die: true, calls: 2},
		{name: "503-twice", path: "/503?n=2", calls: 3},
		{name: "503-always", path: "/503", die: true, calls: 2},
		// hang-once's timeout is generous: its second call answers at
		// once, but on a loaded machine a 1s timeout can cut that answer
		// after the tool has sent it, and the third call is then a real,
		// explained repeat rather than the fault this case is about.
		{name: "hang-once", path: "/hang?n=1", timeout: "4s", calls: 2},
		{name: "hang-always", path: "/hang", timeout: "1s", die: true, calls: 2},
		{name: "garbage-200", path: "/garbage?as=body200", calls: 1},
		{name: "garbage-500-once", path: "/garbage?n=1&as=body500", calls: 2},
		{name: "garbage-500-always", path: "/garbage?as=body500", die: true, calls: 2},
		{name: "close-once", path: "/garbage?n=1&as=close", calls: 2},
		{name: "close-always", path: "/garbage?as=close", die: true, calls: 2, atLeast: true},
		{name: "badproto-once", path: "/garbage?n=1&as=badproto", calls: 2},
		{name: "badproto-always", path: "/garbage?as=badproto", die: true, calls: 2},
	})
}

// TestToolPoisonousAnswer runs tasks against a tool whose 500 answer holds
// a URL that does not parse (http://a/%zz), as in issue 7: the worker must
// mask it, retry, dead-letter the task that never recovers, and survive.
func TestToolPoisonousAnswer(t *testing.T) {
	t.Parallel()
	runToolCases(t, "tool-poisonous-500", []toolCase{
		{name: "poison-500-once", path: "/garbage?n=1&as=poison500", calls: 2},
		{name: "poison-500-always", path: "/garbage?as=poison500", die: true, calls: 2},
	})
}

// TestSameKeyHundredClients runs 100 `agentq enqueue` processes at once
// with the same key: exactly one enqueues, 99 report the duplicate with the
// same task id, and the tool sees one call.
func TestSameKeyHundredClients(t *testing.T) {
	t.Parallel()
	srv := redistest.StartExclusive(t)
	s := newScenario(t, "same-key-100-clients", srv.Addr)
	const clients = 100
	key := "same-key"
	payload, _ := json.Marshal(s.call(key, "/ok").Payload)
	results := make([]binarytest.Result, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			<-start
			results[i] = s.agentq("enqueue", "http.call", "--key", key, "--json", "--payload", string(payload))
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	s.keys = append(s.keys, key)
	ids := map[string]int{}
	fresh, dups := 0, 0
	for i, r := range results {
		var res struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		}
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &res) != nil {
			t.Errorf("client %d: exit %d, out %q, err %q", i, r.Code, r.Stdout, r.Stderr)
			continue
		}
		ids[res.ID]++
		if res.Duplicate {
			dups++
		} else {
			fresh++
		}
	}
	if fresh != 1 || dups != clients-1 || len(ids) != 1 {
		t.Errorf("%d enqueued, %d duplicates, %d distinct ids; want 1, %d, 1", fresh, dups, len(ids), clients-1)
	}
	w := s.worker("w")
	tl := s.settle(30 * time.Second)
	if n := len(s.tool.requests()); n != 1 {
		t.Errorf("the tool was called %d times, want once", n)
	}
	alive(t, w)
	s.check(tl, nil, fmt.Sprintf("clients=%d enqueued=%d duplicates=%d enqueue_wall=%.1fs", clients, fresh, dups, took.Seconds()))
}

// attemptLines counts the attempt lines a worker has logged so far.
func attemptLines(p *binarytest.Proc) int {
	n := 0
	for _, l := range p.Lines() {
		if strings.Contains(l, `"message":"attempt"`) {
			n++
		}
	}
	return n
}

// workerHoldingFive starts worker a (concurrency 5), enqueues 40 calls that
// the tool holds for 800ms, and returns once a has finished some and holds
// five: the moment a worker fault hits five tasks in flight.
func (s *scenario) workerHoldingFive(prefix string) *binarytest.Proc {
	a := s.worker("a", "AGENTQ_WORKER_CONCURRENCY=5")
	var tasks []task
	for _, k := range keysLike(prefix, 40) {
		tasks = append(tasks, s.call(k, "/hold?ms=800"))
	}
	s.enqueue(tasks...)
	binarytest.WaitFor(s.t, 60*time.Second, "worker a to finish some tasks and hold 5", func() bool {
		return len(s.tool.effects()) >= 10 && len(s.tool.inFlight()) == 5
	})
	return a
}
