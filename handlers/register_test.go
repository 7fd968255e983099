package handlers

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	reg := queue.NewRegistry()
	if err := Register(reg, Config{}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got, want := strings.Join(reg.Kinds(), ","), "http.call,llm.chat,noop"; got != want {
		t.Fatalf("Kinds = %s, want %s", got, want)
	}
	if err := Register(reg, Config{}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second Register = %v, want an already registered error", err)
	}
	if err := Register(queue.NewRegistry(), Config{MaxResponseBytes: -1}); err == nil ||
		!strings.Contains(err.Error(), "max_response_bytes") {
		t.Errorf("Register with a bad config = %v, want an error naming max_response_bytes", err)
	}

	tests := []struct {
		name    string
		kind    string
		payload string
		want    []string // substrings of the error; nil for valid
	}{
		{name: "valid call", kind: jobs.KindHTTPCall,
			payload: `{"method":"POST","url":"https://example.com","headers":{"A":"b"},"body":{"x":[1]},"timeout":"5s","expect_status":[201]}`},
		{name: "url not a string", kind: jobs.KindHTTPCall, payload: `{"url": 5}`, want: []string{"/url", "string"}},
		{name: "unknown field", kind: jobs.KindHTTPCall, payload: `{"url":"https://example.com","retries":3}`,
			want: []string{"retries"}},
		{name: "missing url", kind: jobs.KindHTTPCall, payload: `{}`, want: []string{"url"}},
		{name: "method not in enum", kind: jobs.KindHTTPCall, payload: `{"url":"https://example.com","method":"FOO"}`,
			want: []string{"/method"}},
		{name: "header not a string", kind: jobs.KindHTTPCall, payload: `{"url":"https://example.com","headers":{"A":1}}`,
			want: []string{"/headers/A"}},
		{name: "status out of range", kind: jobs.KindHTTPCall, payload: `{"url":"https://example.com","expect_status":[99]}`,
			want: []string{"/expect_status/0"}},
		{name: "Validate runs after the schema", kind: jobs.KindHTTPCall, payload: `{"url":"ftp://x?token=t0psecret"}`,
			want: []string{`url: must be an absolute http or https URL, got "ftp://x?token=****"`}},
		{name: "Validate names the timeout", kind: jobs.KindHTTPCall, payload: `{"url":"https://example.com","timeout":"abc"}`,
			want: []string{`timeout: "abc" is not a duration`}},
		{name: "valid noop", kind: jobs.KindNoop, payload: `{}`},
		{name: "noop with a field", kind: jobs.KindNoop, payload: `{"x":1}`, want: []string{"x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args, err := reg.Validate(tt.kind, []byte(tt.payload))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if a, ok := args.(jobs.Args); !ok || a.Kind() != tt.kind {
					t.Fatalf("Validate returned %T, want the typed payload of %s", args, tt.kind)
				}
				return
			}
			var ve *queue.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *queue.ValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "t0psecret") {
				t.Errorf("Validate leaks a secret: %q", err)
			}
		})
	}
}

func TestNoop(t *testing.T) {
	t.Parallel()
	reg := queue.NewRegistry()
	if err := Register(reg, Config{}); err != nil {
		t.Fatal(err)
	}
	err := reg.Handler().ProcessStep(t.Context(), &jobs.Step{Kind: jobs.KindNoop, Payload: []byte(`{}`)})
	if err != nil {
		t.Fatalf("noop = %v, want nil", err)
	}
	err = reg.Handler().ProcessStep(t.Context(), &jobs.Step{Kind: jobs.KindHTTPCall, Payload: []byte(`{"url":5}`)})
	if got := jobs.Classify(err); got != jobs.ClassPermanent {
		t.Errorf("http.call with a bad payload: Classify = %q, want permanent (err: %v)", got, err)
	}
}
