package queue

import (
	"context"
	"testing"

	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
)

func TestQueueForAndTaskIDForKey(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	reg := NewRegistry()
	if err := Register(reg, "", func(context.Context, *jobs.Step, noopArgs) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(rdb, reg, ClientConfig{Queue: "dflt",
		Workflows: map[string]Workflow{"wf": {Queue: "wfq"}, "plain": {}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    EnqueueOptions
		want string
	}{
		{"default", EnqueueOptions{}, "dflt"},
		{"workflow queue", EnqueueOptions{Workflow: "wf"}, "wfq"},
		{"workflow without queue", EnqueueOptions{Workflow: "plain"}, "dflt"},
		{"explicit queue wins", EnqueueOptions{Workflow: "wf", Queue: "own"}, "own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.QueueFor(tc.o); got != tc.want {
				t.Fatalf("QueueFor = %q, want %q", got, tc.want)
			}
		})
	}
	res, err := c.Enqueue(context.Background(), noopArgs{}.Kind(), []byte(`{}`), EnqueueOptions{Workflow: "wf", Key: "r_1/a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := TaskIDForKey("wfq", "r_1/a"); res.ID != want || res.Queue != "wfq" {
		t.Fatalf("enqueued %s in %s, TaskIDForKey says %s in wfq", res.ID, res.Queue, want)
	}
	if TaskIDForKey("other", "r_1/a") == res.ID {
		t.Fatal("the task id does not depend on the queue")
	}
}
