package queue

import (
	"context"
	"slices"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/agentq/agentq/internal/redistest"
)

// inspectBundle is a Redis with asynq's own client and inspector beside
// ours: asynq decides the truth the Inspector must report.
type inspectBundle struct {
	in    *Inspector
	ac    *asynq.Client
	asynq *asynq.Inspector
}

func setupInspect(t *testing.T) inspectBundle {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	return inspectBundle{in: NewInspector(rdb), ac: asynq.NewClientFromRedisClient(rdb), asynq: asynq.NewInspectorFromRedisClient(rdb)}
}

// archived enqueues a task in q with id and archives it, as asynqmon does.
func (b inspectBundle) archived(t *testing.T, q, id string) {
	t.Helper()
	task := asynq.NewTaskWithHeaders("test.kind", []byte(`{"n":1}`), map[string]string{"x-run": "r1"})
	if _, err := b.ac.Enqueue(task, asynq.Queue(q), asynq.TaskID(id), asynq.MaxRetry(3)); err != nil {
		t.Fatal(err)
	}
	if err := b.asynq.ArchiveTask(q, id); err != nil {
		t.Fatal(err)
	}
}

func TestInspectorTaskAndState(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	ctx := context.Background()
	b.archived(t, "qa", "t1")
	if _, err := b.ac.Enqueue(asynq.NewTask("test.kind", nil), asynq.Queue("qa"), asynq.TaskID("t2")); err != nil {
		t.Fatal(err)
	}
	info, err := b.in.Task(ctx, "qa", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != TaskArchived || info.Kind != "test.kind" || string(info.Payload) != `{"n":1}` ||
		info.Headers["x-run"] != "r1" || info.MaxRetry != 3 || info.LeaseExpired || info.Queue != "qa" || info.ID != "t1" {
		t.Fatalf("Task = %+v", info)
	}
	for _, tc := range []struct {
		name, q, id string
		want        TaskState
	}{
		{"archived", "qa", "t1", TaskArchived},
		{"pending", "qa", "t2", TaskPending},
		{"unknown task", "qa", "nope", TaskGone},
		{"unknown queue", "qz", "t1", TaskGone},
		{"empty id", "qa", "", TaskGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.in.State(ctx, tc.q, tc.id)
			if err != nil || got != tc.want {
				t.Fatalf("State(%q, %q) = %v, %v; want %v", tc.q, tc.id, got, err, tc.want)
			}
		})
	}
	qs, err := b.in.Queues(ctx)
	if err != nil || !slices.Contains(qs, "qa") {
		t.Fatalf("Queues = %v, %v", qs, err)
	}
}

func TestInspectorArchive(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	ctx := context.Background()
	want := []string{"a1", "a2", "a3", "a4", "a5"}
	for _, id := range want {
		b.archived(t, "qb", id)
	}
	var got []string
	pages := 0
	err := b.in.EachArchived(ctx, "qb", 2, func(ids []string) error {
		pages++
		got = append(got, ids...)
		return nil
	})
	slices.Sort(got)
	got = slices.Compact(got)
	if err != nil || !slices.Equal(got, want) || pages < 1 {
		t.Fatalf("EachArchived = %v in %d pages, %v; want %v", got, pages, err, want)
	}
	if err := b.in.EachArchived(ctx, "empty", 2, func([]string) error { t.Fatal("called for an empty archive"); return nil }); err != nil {
		t.Fatal(err)
	}
	in, err := b.in.InArchive(ctx, []TaskRef{{"qb", "a1"}, {"qb", "nope"}, {"qz", "a1"}, {"qb", "a5"}})
	if err != nil || !slices.Equal(in, []bool{true, false, false, true}) {
		t.Fatalf("InArchive = %v, %v", in, err)
	}
	if n, err := b.in.ArchiveSize(ctx, "qb"); err != nil || n != 5 {
		t.Fatalf("ArchiveSize = %d, %v", n, err)
	}
	if trims, err := b.in.ArchiveTrims(ctx, "qb"); err != nil || trims {
		t.Fatalf("ArchiveTrims of 5 tasks = %v, %v", trims, err)
	}
	// Deleting reports what it did, and a second delete is no error.
	for _, want := range []bool{true, false} {
		if del, err := b.in.DeleteTask(ctx, "qb", "a1"); err != nil || del != want {
			t.Fatalf("DeleteTask = %v, %v; want %v", del, err, want)
		}
	}
	if state, _ := b.in.State(ctx, "qb", "a1"); state != TaskGone {
		t.Fatalf("deleted task is %v", state)
	}
}

func TestInspectorPause(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	ctx := context.Background()
	if _, err := b.ac.Enqueue(asynq.NewTask("test.kind", nil), asynq.Queue("qp")); err != nil {
		t.Fatal(err)
	}
	asynqPaused := func() bool {
		t.Helper()
		qi, err := b.asynq.GetQueueInfo("qp")
		if err != nil {
			t.Fatal(err)
		}
		return qi.Paused
	}
	steps := []struct {
		name        string
		do          func(context.Context, string) (bool, error)
		wantChanged bool
		wantPaused  bool
	}{
		{"pause", b.in.Pause, true, true},
		{"pause again", b.in.Pause, false, true},
		{"unpause", b.in.Unpause, true, false},
		{"unpause again", b.in.Unpause, false, false},
	}
	for _, s := range steps {
		changed, err := s.do(ctx, "qp")
		if err != nil || changed != s.wantChanged {
			t.Fatalf("%s = %v, %v; want %v", s.name, changed, err, s.wantChanged)
		}
		// asynq itself must see what the Inspector did.
		if asynqPaused() != s.wantPaused {
			t.Fatalf("after %s asynq says paused=%v", s.name, !s.wantPaused)
		}
		got, err := b.in.Paused(ctx, "qp", "other")
		if err != nil || !slices.Equal(got, []bool{s.wantPaused, false}) {
			t.Fatalf("after %s Paused = %v, %v", s.name, got, err)
		}
	}
	// A pause made by asynq (asynqmon) is seen too.
	if err := b.asynq.PauseQueue("qp"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.in.Paused(ctx, "qp"); err != nil || !got[0] {
		t.Fatalf("asynq's pause not seen: %v, %v", got, err)
	}
	if _, err := b.in.Pause(ctx, ""); err == nil {
		t.Fatal("pause of an empty queue name accepted")
	}
}

func TestTaskStateString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    TaskState
		want string
	}{
		{TaskGone, "gone"}, {TaskActive, "active"}, {TaskPending, "pending"}, {TaskScheduled, "scheduled"},
		{TaskRetry, "retry"}, {TaskArchived, "archived"}, {TaskCompleted, "completed"},
		{TaskAggregating, "aggregating"}, {TaskState(99), "unknown(99)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Fatalf("String = %q", got)
			}
		})
	}
	// Every asynq state maps to ours by name.
	for _, s := range []asynq.TaskState{asynq.TaskStateActive, asynq.TaskStatePending, asynq.TaskStateScheduled,
		asynq.TaskStateRetry, asynq.TaskStateArchived, asynq.TaskStateCompleted, asynq.TaskStateAggregating} {
		if got := taskStateOf(s).String(); got != s.String() {
			t.Errorf("asynq %v maps to %v", s, got)
		}
	}
}

func TestInspectorForgetQueue(t *testing.T) {
	t.Parallel()
	b := setupInspect(t)
	ctx := context.Background()
	for _, q := range []string{"qf", "kept"} {
		if _, err := b.ac.Enqueue(asynq.NewTask("test.kind", nil), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name        string
		q           string
		wantChanged bool
	}{
		{"forget", "qf", true},
		{"forget again", "qf", false},
		{"never listed", "nosuch", false},
	}
	for _, s := range steps {
		changed, err := b.in.ForgetQueue(ctx, s.q)
		if err != nil || changed != s.wantChanged {
			t.Fatalf("%s = %v, %v; want %v", s.name, changed, err, s.wantChanged)
		}
		// asynq itself must no longer list it, and still list the other.
		qs, err := b.asynq.Queues()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(qs, []string{"kept"}) {
			t.Fatalf("after %s asynq lists %q; want only kept", s.name, qs)
		}
	}
	if _, err := b.in.ForgetQueue(ctx, ""); err == nil {
		t.Fatal("forgetting an empty queue name accepted")
	}
}
