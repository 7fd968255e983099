package agentq_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/queue"
)

// TestWorkerMetricsServeQueueGauges: a worker's worker.metrics_addr serves
// the queue depth gauges, read from Redis when scraped.
func TestWorkerMetricsServeQueueGauges(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := config.Default()
	cfg.Redis.URL = srv.URL
	cfg.Log.Level = "error"
	cfg.Worker.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	ctx := context.Background()
	for i := range 3 {
		if _, err := rt.Client().Enqueue(ctx, "noop", []byte(`{}`), queue.EnqueueOptions{Queue: "backlog", Key: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Built, not started: it serves metrics but takes no task.
	w, err := rt.NewWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	resp, err := http.Get("http://" + cfg.Worker.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`agentq_queue_depth{queue="backlog",state="pending"} 3`,
		`agentq_queue_paused{queue="backlog"} 0`,
		`agentq_dlq_records 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("worker metrics lack %q", want)
		}
	}
	if !strings.Contains(string(body), `agentq_queue_oldest_pending_seconds{queue="backlog"} `) {
		t.Errorf("worker metrics lack the oldest pending age")
	}
}
