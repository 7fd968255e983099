package agentq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// SummarizeArgs is the payload of the summarize kind.
type SummarizeArgs struct {
	DocURL string `json:"doc_url"`
}

// Kind names the handler that runs SummarizeArgs.
func (SummarizeArgs) Kind() string { return "summarize" }

func Example() {
	// Ctrl-C and SIGTERM end ctx: the worker finishes its steps and stops.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// agentq.yaml and AGENTQ_* variables, as the agentq command reads them.
	cfg, err := config.Load(config.Options{})
	if err != nil {
		log.Fatal(err)
	}
	rt, err := agentq.New(cfg, agentq.Options{
		Register: func(reg *queue.Registry) error {
			return queue.Register(reg, `{"type":"object","required":["doc_url"]}`,
				func(ctx context.Context, s *jobs.Step, a SummarizeArgs) error {
					if !strings.HasPrefix(a.DocURL, "https://") {
						return jobs.Permanent(errors.New("doc_url must be https")) // dead-lettered at once
					}
					fmt.Println("summarizing", a.DocURL, "attempt", s.Attempt)
					stop() // this example stops after one step
					return nil
				})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()

	// The payload is validated before it reaches Redis; a second enqueue
	// with the same key (and queue) within enqueue.dedupe_window is a
	// duplicate. The key names this run, so that running the program again
	// enqueues afresh.
	key := "summarize/report/" + time.Now().UTC().Format("20060102T150405.000000000")
	for range 2 {
		res, err := rt.Client().EnqueueArgs(ctx, SummarizeArgs{DocURL: "https://example.com/report"},
			queue.EnqueueOptions{Key: key})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("enqueued, duplicate:", res.Duplicate)
	}

	// The worker runs each step through dead-letter capture, metrics, error
	// budgets, the idempotency ledger and circuit breakers, until ctx ends.
	w, err := rt.NewWorker(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// enqueued, duplicate: false
	// enqueued, duplicate: true
	// summarizing https://example.com/report attempt 1
}
