package queue

import (
	"context"

	"github.com/agentq/agentq/jobs"
	"testing"
)

// BenchmarkEnqueuePrepare measures what an enqueue costs before Redis:
// validation and building what is sent.
func BenchmarkEnqueuePrepare(b *testing.B) {
	reg := NewRegistry()
	if err := Register(reg, echoSchema, nil_echo); err != nil {
		b.Fatal(err)
	}
	c, err := NewClient(nil, reg, ClientConfig{})
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"n":1,"mode":"fast"}`)
	for _, bc := range []struct {
		name string
		o    EnqueueOptions
	}{
		{"plain", EnqueueOptions{}},
		{"keyed", EnqueueOptions{Key: "order-42", RunID: "run-1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.prepare("test.echo", payload, bc.o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func nil_echo(context.Context, *jobs.Step, echoArgs) error { return nil }
