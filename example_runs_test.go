package agentq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// ShoutArgs is the payload of the shout kind.
type ShoutArgs struct {
	Text string `json:"text"`
}

// Kind names the handler that runs ShoutArgs.
func (ShoutArgs) Kind() string { return "shout" }

func Example_runs() {
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	cfg, err := config.Load(config.Options{})
	if err != nil {
		log.Fatal(err)
	}
	rt, err := agentq.New(cfg, agentq.Options{
		Register: func(reg *queue.Registry) error {
			return queue.Register(reg, `{"type":"object","required":["text"]}`,
				func(ctx context.Context, s *jobs.Step, a ShoutArgs) error {
					// What a model call would report: tokens and their cost.
					s.ReportUsage(jobs.Usage{Model: "shouter", TokensIn: 10, TokensOut: 5, CostUSD: 0.001})
					return s.SetOutput(map[string]string{"text": strings.ToUpper(a.Text)})
				})
		},
		// A workflow in code; the same can live in agentq.yaml.
		Workflows: map[string]runs.Workflow{
			"shout_twice": {
				Caps: runs.Caps{MaxCostUSD: 0.01},
				Steps: []jobs.StepDef{
					{Name: "first", Kind: "shout", Payload: json.RawMessage(`{"text":"{{ .input.text }}"}`)},
					{Name: "second", Kind: "shout", Payload: json.RawMessage(`{"text":"{{ .steps.first.output.text }}, again"}`)},
				},
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	engine, err := rt.Runs()
	if err != nil {
		log.Fatal(err)
	}
	started, err := engine.Start(ctx, "shout_twice", json.RawMessage(`{"text":"hello"}`), runs.StartOptions{})
	if err != nil {
		log.Fatal(err)
	}

	// The worker runs each step as a queued task; this example stops it
	// once the run has ended.
	w, err := rt.NewWorker(ctx)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		defer stop()
		for ctx.Err() == nil {
			if run, err := engine.Get(ctx, started.RunID); err == nil && run.Status.Terminal() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}

	run, err := engine.Get(context.Background(), started.RunID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("run", run.Status, "after", run.Attempts, "attempts, tokens", run.TokensIn+run.TokensOut, "cost $", run.CostUSD)
	for _, s := range run.Steps {
		fmt.Println(s.Name, s.Status, string(s.Output))
	}
	// Output:
	// run succeeded after 2 attempts, tokens 30 cost $ 0.002
	// first succeeded {"text":"HELLO"}
	// second succeeded {"text":"HELLO, AGAIN"}
}
