package dlq

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentq/agentq/queue"
)

func TestReplayLifecycleThroughTheWorker(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	b.failing.Store(true)
	b.startWorker(t)
	orig := b.enqueue(t, "flip", queue.EnqueueOptions{Key: "pay-42", RunID: "run-r"})
	waitFor(t, 10*time.Second, "the first death", func() bool { return b.taskState(t, orig) == queue.TaskArchived })
	recs, _ := b.store.List(ctx, Filter{})
	if len(recs) != 1 || recs[0].Attempts != 3 {
		t.Fatalf("records = %+v", recs)
	}
	id := recs[0].ID

	// Replay while the tool is still broken: a fresh task with the whole
	// budget, lineage and the same key; it dies; its attempts are appended.
	rep, err := b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil || rep.TaskID != orig+"-r1" || !rep.ArchiveDeleted {
		t.Fatalf("Replay = %+v, %v", rep, err)
	}
	if b.taskState(t, orig) != gone {
		t.Fatal("archived original still in asynq after replay")
	}
	waitFor(t, 10*time.Second, "the replay to die", func() bool { return b.get(t, id).Status == StatusDead })
	r := b.get(t, id)
	if r.Attempts != 6 || r.ArchivedTask != rep.TaskID || r.Replays != 1 || r.Key != "pay-42" {
		t.Fatalf("dead again: %+v", r)
	}
	for i, want := range []int{1, 2, 3, 1, 2, 3} {
		if r.History[i].Attempt != want {
			t.Fatalf("history attempt numbers = %+v; the replay did not get the whole budget", r.History)
		}
	}
	if v, _ := b.replayOf.Load(rep.TaskID); v != id {
		t.Fatalf("replay task saw ReplayOf %v, want %s", v, id)
	}
	info, err := b.insp.GetTaskInfo("default", rep.TaskID)
	if err != nil || info.MaxRetry != 3 || info.Headers["agentq-idempotency-key"] != "pay-42" || info.Headers["agentq-replay-of"] != id {
		t.Fatalf("replay task = %+v, %v", info, err)
	}

	// Fixed: the next replay succeeds and resolves the record.
	b.failing.Store(false)
	rep, err = b.store.Replay(ctx, id, ReplayOptions{})
	if err != nil || rep.TaskID != orig+"-r2" || !rep.ArchiveDeleted {
		t.Fatalf("second Replay = %+v, %v", rep, err)
	}
	waitFor(t, 10*time.Second, "the record to resolve", func() bool { return b.get(t, id).Status == StatusResolved })
	if n, _ := b.store.Count(ctx); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
	var re *NotReplayableError
	if _, err := b.store.Replay(ctx, id, ReplayOptions{}); !errors.As(err, &re) || re.Status != StatusResolved {
		t.Fatalf("replay of a resolved record: %v", err)
	}
}

func TestConcurrentReplaysEnqueueOneTask(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "c"})
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      []Replayed
		refused int
	)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rep, err := b.store.Replay(ctx, id, ReplayOptions{})
			mu.Lock()
			defer mu.Unlock()
			var re *NotReplayableError
			switch {
			case err == nil:
				ok = append(ok, rep)
			case errors.As(err, &re):
				refused++
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(ok) != 1 || refused != n-1 {
		t.Fatalf("%d replays succeeded, %d refused; want exactly one", len(ok), refused)
	}
	pending, err := b.insp.ListPendingTasks("default")
	if err != nil || len(pending) != 1 || pending[0].ID != "c-r1" {
		t.Fatalf("pending = %v, %v; want one task c-r1", pending, err)
	}
}

func TestRefusedReplayChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	check := func(kind string, payload []byte, o queue.EnqueueOptions) error {
		return queue.Check(b.reg, queue.ClientConfig{}, kind, payload, o)
	}
	withCheck, err := New(b.rdb, Config{Client: b.client, Check: check, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	id := b.deadDirect(t, Death{TaskID: "p"})
	before := b.get(t, id)
	for name, s := range map[string]*Store{"checked first": withCheck, "refused by enqueue": b.store} {
		_, err := s.Replay(ctx, id, ReplayOptions{Payload: []byte(`{"mode":"nope"}`)})
		var ie *InvalidReplayError
		if !errors.As(err, &ie) {
			t.Fatalf("%s: err = %v, want InvalidReplayError", name, err)
		}
		after := b.get(t, id)
		if after.Status != StatusDead || after.Replays != before.Replays || after.ReplayTask != "" {
			t.Fatalf("%s: record changed: %+v", name, after)
		}
	}
	if n := b.pending(t); n != 0 {
		t.Fatalf("%d tasks enqueued by refused replays", n)
	}
	// A valid edited payload goes through, and the next id follows on.
	rep, err := withCheck.Replay(ctx, id, ReplayOptions{Payload: []byte(`{"mode":"ok"}`)})
	if err != nil || rep.TaskID != "p-r1" {
		t.Fatalf("Replay = %+v, %v", rep, err)
	}
	info, _ := b.insp.GetTaskInfo("default", "p-r1")
	if string(info.Payload) != `{"mode":"ok"}` {
		t.Fatalf("replayed payload = %s", info.Payload)
	}
}

func TestReplayDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "d"})
	before := b.get(t, id)
	rep, err := b.store.Replay(ctx, id, ReplayOptions{DryRun: true})
	if err != nil || !rep.DryRun || rep.TaskID != "d-r1" {
		t.Fatalf("dry run = %+v, %v", rep, err)
	}
	after := b.get(t, id)
	if after.Status != before.Status || after.Replays != 0 || b.pending(t) != 0 {
		t.Fatalf("dry run changed something: %+v, %d pending", after, b.pending(t))
	}
	if _, err := b.store.Replay(ctx, "404", ReplayOptions{}); !errors.Is(err, ErrNotFound) || err.Error() != `no dead letter with id "404"` {
		t.Fatalf("unknown id: %v", err)
	}
}

func (b *bundle) pending(t *testing.T) int {
	t.Helper()
	n, err := b.rdb.LLen(context.Background(), "asynq:{default}:pending").Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestReplayRefusesWhileTheOriginalIsLiveAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	id := b.deadDirect(t, Death{TaskID: "live", RunID: "r"})
	// The archived original was run again from asynqmon: it is pending.
	if _, err := b.client.Enqueue(ctx, "test.step", []byte(`{"mode":"ok"}`), queue.EnqueueOptions{TaskID: "live"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.store.Replay(ctx, id, ReplayOptions{})
	var ae *ActiveOriginalError
	if !errors.As(err, &ae) || ae.State != "pending" {
		t.Fatalf("Replay = %v, want ActiveOriginalError(pending)", err)
	}
	if r := b.get(t, id); r.Status != StatusDead || r.Replays != 0 {
		t.Fatalf("record after refused replay: status %s replays %d, want dead and 0", r.Status, r.Replays)
	}
	if _, err := b.insp.GetTaskInfo("default", "live-r1"); err == nil {
		t.Fatal("a replay task was enqueued")
	}
}

func TestReplayManyThrottlesAndReportsEachID(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	var ids []string
	for _, task := range []string{"m1", "m2", "m3", "m4"} {
		ids = append(ids, b.deadDirect(t, Death{TaskID: task}))
	}
	ids = append(ids[:2], append([]string{"404"}, ids[2:]...)...)
	progress := 0
	const perSecond = 20
	start := time.Now()
	out, err := b.store.ReplayMany(ctx, ids, ReplayOptions{}, ReplayManyOptions{Rate: perSecond, InFlight: 2, Progress: func() { progress++ }})
	elapsed := time.Since(start)
	if err != nil || len(out) != len(ids) || progress != len(ids) {
		t.Fatalf("ReplayMany = %d outcomes, %d progress calls, %v", len(out), progress, err)
	}
	for i, o := range out {
		if o.ID != ids[i] {
			t.Fatalf("outcome %d is for %s, want %s: out of order", i, o.ID, ids[i])
		}
		if ids[i] == "404" {
			if !errors.Is(o.Err, ErrNotFound) {
				t.Fatalf("unknown id: %v", o.Err)
			}
			continue
		}
		if o.Err != nil || o.Replayed.TaskID == "" || b.get(t, ids[i]).Status != StatusReplayed {
			t.Fatalf("replay of %s = %+v, %v", ids[i], o.Replayed, o.Err)
		}
	}
	// Five replays started at 20/s, the first at once: four waits of 50ms.
	if least := time.Duration(len(ids)-1) * time.Second / perSecond; elapsed < least-5*time.Millisecond {
		t.Fatalf("%d replays at %d/s took %v, below %v: not throttled", len(ids), perSecond, elapsed, least)
	}
	if n := b.pending(t); n != 4 {
		t.Fatalf("%d replay tasks pending, want 4", n)
	}
}

func TestReplayManyStopsWithItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	id := b.deadDirect(t, Death{TaskID: "c1"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, err := b.store.ReplayMany(ctx, []string{id, id}, ReplayOptions{}, ReplayManyOptions{Rate: 1})
	if err != nil || len(out) != 2 || !errors.Is(out[0].Err, context.Canceled) || !errors.Is(out[1].Err, context.Canceled) {
		t.Fatalf("ReplayMany after cancel = %+v, %v", out, err)
	}
	if st := b.get(t, id).Status; st != StatusDead {
		t.Fatalf("record is %s after a cancelled replay", st)
	}
}

func TestReplayManyRefusesBadOptions(t *testing.T) {
	t.Parallel()
	s := &Store{}
	for _, tc := range []struct {
		name string
		m    ReplayManyOptions
		want string
	}{
		{"negative rate", ReplayManyOptions{Rate: -1}, "rate must be a finite, non-negative number"},
		{"NaN rate", ReplayManyOptions{Rate: math.NaN()}, "got NaN"},
		{"infinite rate", ReplayManyOptions{Rate: math.Inf(1)}, "got +Inf"},
		{"negative in flight", ReplayManyOptions{InFlight: -1}, "in_flight must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ReplayMany(context.Background(), []string{"1"}, ReplayOptions{}, tc.m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
