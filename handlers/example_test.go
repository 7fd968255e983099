package handlers_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// SummarizeArgs is a Go user's own task kind: a typed payload with a Kind.
type SummarizeArgs struct {
	Text     string `json:"text"`
	MaxWords int    `json:"max_words,omitempty"`
}

// Kind names the task kind.
func (SummarizeArgs) Kind() string { return "summarize" }

// Validate checks what the schema cannot; it runs at enqueue.
func (a SummarizeArgs) Validate() error {
	if strings.TrimSpace(a.Text) == "" {
		return fmt.Errorf("text: must not be blank")
	}
	return nil
}

const summarizeSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["text"],
  "properties": {
    "text": {"type": "string"},
    "max_words": {"type": "integer", "minimum": 1}
  }
}`

// summarize stands in for a call to a model. It returns jobs' outcome
// errors: a permanent failure for input no retry can fix.
func summarize(ctx context.Context, s *jobs.Step, a SummarizeArgs) error {
	words := strings.Fields(a.Text)
	if a.MaxWords > 0 && len(words) > a.MaxWords {
		words = words[:a.MaxWords]
	}
	fmt.Printf("step %s summary: %s\n", s.TaskID, strings.Join(words, " "))
	return nil
}

// ExampleRegister registers the built-in kinds and a typed kind of the
// user's own in one registry, validates payloads as an enqueue would, and
// runs a step as a worker would.
func ExampleRegister() {
	reg := queue.NewRegistry()
	if err := handlers.Register(reg, handlers.Config{}); err != nil {
		panic(err)
	}
	if err := queue.Register(reg, summarizeSchema, summarize); err != nil {
		panic(err)
	}
	fmt.Println("kinds:", reg.Kinds())

	// Payloads are refused before they reach Redis.
	_, err := reg.Validate("summarize", []byte(`{"text":"   "}`))
	fmt.Println(err)
	_, err = reg.Validate(jobs.KindHTTPCall, []byte(`{"url":"ftp://files.example.com/?token=abc"}`))
	fmt.Println(err)

	// The worker dispatches a step to its typed handler.
	err = reg.Handler().ProcessStep(context.Background(), &jobs.Step{
		TaskID:  "t-1",
		Kind:    "summarize",
		Payload: []byte(`{"text":"agents retry tools until they answer","max_words":3}`),
	})
	fmt.Println("error:", err)
	// Output:
	// kinds: [http.call llm.chat noop summarize]
	// invalid payload for "summarize": text: must not be blank
	// invalid payload for "http.call": url: must be an absolute http or https URL, got "ftp://files.example.com/?token=****"
	// step t-1 summary: agents retry tools
	// error: <nil>
}
