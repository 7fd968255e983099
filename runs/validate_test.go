package runs

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
)

func testKnownKinds(kind string) bool {
	return kind == jobs.KindLLMChat || kind == jobs.KindHTTPCall || kind == jobs.KindNoop
}

// testWorkflow is research -> draft (fallback draft_short) -> publish.
func testWorkflow() Workflow {
	return Workflow{
		Name:  "blog",
		Queue: "agents",
		Caps:  Caps{MaxCostUSD: 2, MaxTokens: 100000, MaxDuration: time.Hour, MaxSteps: 10, MaxAttempts: 20},
		Steps: []jobs.StepDef{
			{Name: "research", Kind: "llm.chat", Payload: []byte(`{"messages":[{"role":"user","content":"Research {{.input.topic}}"}]}`)},
			{Name: "draft", Kind: "llm.chat", Fallback: "draft_short", MaxAttempts: 3, RetryBase: time.Second, RetryMax: time.Minute, Timeout: time.Minute,
				Payload: []byte(`{"messages":[{"role":"user","content":"Draft from {{.steps.research.output.content}}"}]}`)},
			{Name: "draft_short", Kind: "llm.chat", Queue: "cheap",
				Payload: []byte(`{"messages":[{"role":"user","content":"Short draft of {{.input.topic}} from {{.steps.research.output.content}}"}]}`)},
			{Name: "publish", Kind: "http.call",
				Payload: []byte(`{"url":"https://example.test/posts","body":"{{with index .steps \"draft\"}}{{.output.content}}{{else}}{{.steps.draft_short.output.content}}{{end}}"}`)},
		},
		Schedule: &Schedule{Cron: "0 9 * * MON", Input: []byte(`{"topic":"queues"}`)},
	}
}

// unjoinFieldErrors unpacks Validate's joined error.
func unjoinFieldErrors(t *testing.T, err error) []FieldError {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("Validate joined %T %v, want *FieldError", e, e)
		}
		out = append(out, *fe)
	}
	return out
}

func TestValidateValid(t *testing.T) {
	t.Parallel()
	if err := testWorkflow().Validate(testKnownKinds); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	w := Workflow{Steps: []jobs.StepDef{{Name: "only", Kind: "anything"}}}
	if err := w.Validate(nil); err != nil {
		t.Fatalf("Validate with nil knownKind: %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	type fe = FieldError
	cases := []struct {
		name   string
		change func(w *Workflow)
		want   []fe // Reason is the whole reason
	}{
		{
			name:   "no steps",
			change: func(w *Workflow) { w.Steps = nil },
			want:   []fe{{"steps", "no steps: a workflow needs at least one"}},
		},
		{
			name:   "empty name",
			change: func(w *Workflow) { w.Steps[3].Name = "" },
			want:   []fe{{"steps[3].name", "is empty"}},
		},
		{
			name:   "long name",
			change: func(w *Workflow) { w.Steps[3].Name = strings.Repeat("p", 129) },
			want:   []fe{{"steps[3].name", "is longer than 128 bytes"}},
		},
		{
			name:   "name not template-safe",
			change: func(w *Workflow) { w.Steps[3].Name = "pub-lish" },
			want:   []fe{{"steps[3].name", `"pub-lish" is not a template-safe name: use letters, digits and '_', not starting with a digit (templates read it as .steps.<name>)`}},
		},
		{
			name:   "name starting with a digit",
			change: func(w *Workflow) { w.Steps[3].Name = "1publish" },
			want:   []fe{{"steps[3].name", `"1publish" is not a template-safe name: use letters, digits and '_', not starting with a digit (templates read it as .steps.<name>)`}},
		},
		{
			name:   "duplicate name",
			change: func(w *Workflow) { w.Steps[3].Name = "research" },
			want:   []fe{{"steps[3].name", `duplicate name "research" (also steps[0])`}},
		},
		{
			name:   "empty kind",
			change: func(w *Workflow) { w.Steps[0].Kind = " " },
			want:   []fe{{"steps[0].kind", "is empty"}},
		},
		{
			name:   "unknown kind",
			change: func(w *Workflow) { w.Steps[0].Kind = "llm.chatt" },
			want:   []fe{{"steps[0].kind", `unknown kind "llm.chatt": no handler is registered for it`}},
		},
		{
			name:   "fallback names no step",
			change: func(w *Workflow) { w.Steps[1].Fallback = "draft_shorter" },
			want:   []fe{{"steps[1].fallback", `no step is named "draft_shorter"`}},
		},
		{
			name:   "fallback to itself",
			change: func(w *Workflow) { w.Steps[0].Fallback = "research" },
			want:   []fe{{"steps[0].fallback", "is the step itself"}},
		},
		{
			name: "fallback cycle",
			change: func(w *Workflow) {
				w.Steps[2].Fallback = "extra"
				w.Steps = append(w.Steps, jobs.StepDef{Name: "extra", Kind: "noop", Fallback: "draft_short"})
			},
			want: []fe{{"steps[2].fallback", "fallback cycle draft_short -> extra -> draft_short"}},
		},
		{
			name: "every step a fallback",
			change: func(w *Workflow) {
				w.Steps = []jobs.StepDef{{Name: "a", Kind: "noop", Fallback: "b"}, {Name: "b", Kind: "noop", Fallback: "a"}}
			},
			want: []fe{
				{"steps[0].fallback", "fallback cycle a -> b -> a"},
				{"steps", "every step is another step's fallback: no step runs first"},
			},
		},
		{
			name:   "payload not an object",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(` ["{{.input.topic}}"]`) },
			want:   []fe{{"steps[0].payload", "must be a JSON object, got an array"}},
		},
		{
			name:   "payload null",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(`null`) },
			want:   []fe{{"steps[0].payload", "must be a JSON object, got null"}},
		},
		{
			name:   "payload empty",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(" ") },
		},
		{
			name:   "payload invalid JSON",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(`{"messages":[}`) },
			want:   []fe{{"steps[0].payload.messages[0]", "invalid JSON at offset 13: invalid character '}' looking for beginning of value"}},
		},
		{
			name: "template does not parse",
			change: func(w *Workflow) {
				w.Steps[0].Payload = []byte(`{"messages":[{"content":"{{.input.topic"}],"x":"{{upper 1}}"}`)
			},
			want: []fe{
				{"steps[0].payload.messages[0].content", "template line 1: unclosed action"},
				{"steps[0].payload.x", `template line 1: function "upper" not defined`},
			},
		},
		{
			name:   "template reads an unknown step",
			change: func(w *Workflow) { w.Steps[1].Payload = []byte(`{"c":"{{.steps.reserch.output.content}}"}`) },
			want:   []fe{{"steps[1].payload.c", `reads .steps.reserch, but the workflow has no step "reserch"`}},
		},
		{
			name:   "template reads a later step",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(`{"c":"{{$.steps.publish.output}}"}`) },
			want:   []fe{{"steps[0].payload.c", `reads .steps.publish, but step "publish" does not run before this one`}},
		},
		{
			name:   "template reads its own output",
			change: func(w *Workflow) { w.Steps[0].Payload = []byte(`{"c":"{{.steps.research.output}}"}`) },
			want:   []fe{{"steps[0].payload.c", `reads .steps.research, its own output, which it cannot have yet`}},
		},
		{
			name:   "fallback reads the step it replaces",
			change: func(w *Workflow) { w.Steps[2].Payload = []byte(`{"c":"{{.steps.draft.output}}"}`) },
			want:   []fe{{"steps[2].payload.c", `reads .steps.draft, but step "draft" does not run before this one`}},
		},
		{
			name: "shared fallback must suit its earliest role",
			change: func(w *Workflow) {
				w.Steps[0].Fallback = "draft_short" // also replaces research, before which nothing ran
			},
			want: []fe{{"steps[2].payload.messages[0].content", `reads .steps.research, but step "research" does not run before this one`}},
		},
		{
			name: "a later step may read a fallback of an earlier one",
			change: func(w *Workflow) {
				w.Steps[3].Payload = []byte(`{"c":"{{.steps.draft_short.output}}{{.steps.draft.output}}"}`)
			},
		},
		{
			name: "retry fields and timeout",
			change: func(w *Workflow) {
				w.Steps[1].MaxAttempts = -1
				w.Steps[1].RetryBase = -time.Second
				w.Steps[1].RetryMax = -time.Second
				w.Steps[1].Timeout = -time.Second
			},
			want: []fe{
				{"steps[1].max_attempts", "must not be negative, got -1"},
				{"steps[1].retry_base", "must not be negative, got -1s"},
				{"steps[1].retry_max", "must not be negative, got -1s"},
				{"steps[1].timeout", "must not be negative, got -1s"},
			},
		},
		{
			name:   "retry_max below retry_base",
			change: func(w *Workflow) { w.Steps[1].RetryMax = time.Millisecond },
			want:   []fe{{"steps[1].retry_max", "1ms is below retry_base (1s)"}},
		},
		{
			name: "queues",
			change: func(w *Workflow) {
				w.Queue = "a b"
				w.Steps[2].Queue = "{x}"
			},
			want: []fe{
				{"queue", `queue name "a b" may not contain spaces, ':', '{' or '}'`},
				{"steps[2].queue", `queue name "{x}" may not contain spaces, ':', '{' or '}'`},
			},
		},
		{
			name:   "queue with a control character",
			change: func(w *Workflow) { w.Queue = "a\x00" },
			want:   []fe{{"queue", "queue name contains the control character U+0000 at byte offset 1"}},
		},
		{
			name: "caps",
			change: func(w *Workflow) {
				w.Caps = Caps{MaxCostUSD: -0.5, MaxTokens: -1, MaxDuration: -time.Minute, MaxSteps: -2, MaxAttempts: -3}
			},
			want: []fe{
				{"caps.max_cost_usd", "must be a finite, non-negative number of US dollars (0 for no cap), got -0.5"},
				{"caps.max_tokens", "must not be negative, got -1"},
				{"caps.max_duration", "must not be negative, got -1m0s"},
				{"caps.max_steps", "must not be negative, got -2"},
				{"caps.max_attempts", "must not be negative, got -3"},
			},
		},
		{
			name:   "cost cap NaN",
			change: func(w *Workflow) { w.Caps.MaxCostUSD = math.NaN() },
			want:   []fe{{"caps.max_cost_usd", "must be a finite, non-negative number of US dollars (0 for no cap), got NaN"}},
		},
		{
			name:   "cost cap infinite",
			change: func(w *Workflow) { w.Caps.MaxCostUSD = math.Inf(1) },
			want:   []fe{{"caps.max_cost_usd", "must be a finite, non-negative number of US dollars (0 for no cap), got +Inf"}},
		},
		{
			name:   "schedule",
			change: func(w *Workflow) { w.Schedule = &Schedule{Cron: " ", Input: []byte(`{"topic":`)} },
			want: []fe{
				{"schedule.cron", "empty; give five fields (\"0 9 * * MON\") or a descriptor (@daily, @every 1h)"},
			},
		},
		{
			name: "many problems, in field order",
			change: func(w *Workflow) {
				w.Queue = "q:1"
				w.Steps[0].Kind = "nope"
				w.Steps[0].Payload = []byte(`{"a":"{{.steps.publish.output}}"}`)
				w.Steps[3].Name = "draft"
				w.Schedule.Cron = ""
			},
			want: []fe{
				{"queue", `queue name "q:1" may not contain spaces, ':', '{' or '}'`},
				{"steps[0].kind", `unknown kind "nope": no handler is registered for it`},
				{"steps[0].payload.a", `reads .steps.publish, but the workflow has no step "publish"`},
				{"steps[3].name", `duplicate name "draft" (also steps[1])`},
				{"schedule.cron", "empty; give five fields (\"0 9 * * MON\") or a descriptor (@daily, @every 1h)"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := testWorkflow()
			tc.change(&w)
			err := w.Validate(testKnownKinds)
			got := unjoinFieldErrors(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Validate:\n got %q\nwant %q", got, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), tc.want[0].Path+": "+tc.want[0].Reason) {
				t.Errorf("error text %q does not start with its first field error", err)
			}
		})
	}
}

func TestPlanAndStep(t *testing.T) {
	t.Parallel()
	w := testWorkflow()
	var names []string
	for _, s := range w.Plan() {
		names = append(names, s.Name)
	}
	if want := []string{"research", "draft", "publish"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Plan = %q, want %q", names, want)
	}
	s, ok := w.Step("draft_short")
	if !ok || s.Queue != "cheap" {
		t.Errorf("Step(draft_short) = %+v, %v", s, ok)
	}
	if _, ok := w.Step("nope"); ok {
		t.Error("Step(nope) found a step")
	}
	if plan := (Workflow{}).Plan(); len(plan) != 0 {
		t.Errorf("empty workflow's Plan = %v", plan)
	}
}

// FuzzValidate: any workflow decoded from JSON validates without a panic,
// every problem a *FieldError with a path and a reason.
func FuzzValidate(f *testing.F) {
	valid, err := json.Marshal(testWorkflow())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	for _, s := range []string{
		`{}`, `{"steps":[]}`, `{"steps":[{"name":"a","kind":"noop","fallback":"a"}]}`,
		`{"steps":[{"name":"a","kind":"noop","fallback":"b"},{"name":"b","kind":"noop","fallback":"c"},{"name":"c","kind":"noop","fallback":"b"}]}`,
		`{"steps":[{"name":"a","kind":"noop","payload":{"x":"{{.steps.b.output}}{{.steps.a}}{{.steps.z}}"}},{"name":"b","kind":"noop","fallback":"a"}]}`,
		`{"steps":[{"name":"a","kind":"noop","payload":[1]},{"name":"a","kind":"","payload":"{{"}],"caps":{"max_cost_usd":-1},"queue":"a:b","schedule":{"cron":""}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var w Workflow
		if json.Unmarshal(b, &w) != nil {
			return
		}
		_ = w.Plan()
		err := w.Validate(testKnownKinds)
		if err == nil {
			if len(w.Plan()) == 0 {
				t.Fatalf("valid workflow %s has an empty plan", b)
			}
			return
		}
		for _, fe := range unjoinFieldErrors(t, err) {
			if fe.Path == "" || fe.Reason == "" {
				t.Fatalf("field error %+v lacks path or reason", fe)
			}
		}
	})
}

// TestValidateTemplateRoots: a template reads only .input, .run_id and
// .steps; another root (a typo such as .inputs) is refused at load.
func TestValidateTemplateRoots(t *testing.T) {
	t.Parallel()
	w := Workflow{Steps: []jobs.StepDef{{Name: "a", Kind: "noop", Payload: []byte(`{"x":"{{ .inputs.topic }}","y":"{{ $.run }}"}`)}}}
	err := w.Validate(nil)
	if err == nil || !strings.Contains(err.Error(), "reads .inputs") || !strings.Contains(err.Error(), "reads .run,") {
		t.Fatalf("Validate = %v, want both unknown roots named", err)
	}
	w.Steps[0].Payload = []byte(`{"x":"{{ .input.topic }} {{ .run_id }}"}`)
	if err := w.Validate(nil); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	w.Steps[0].Payload = []byte(`{"x":"{{ define \"t\" }}y{{ end }}"}`)
	if err := w.Validate(nil); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Validate = %v, want {{define}} refused", err)
	}
}

// TestCapsCheck: Caps.Check is the one rule for caps, a workflow's and a
// run's: zero is no cap, a negative cap or a cost cap that is not a finite
// number is refused, each problem a *FieldError naming the cap.
func TestCapsCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		caps  Caps
		paths []string
	}{
		{"none", Caps{}, nil},
		{"every cap", Caps{MaxCostUSD: 0.01, MaxTokens: 1, MaxDuration: time.Second, MaxSteps: 1, MaxAttempts: 1}, nil},
		{"negative cost", Caps{MaxCostUSD: -0.01}, []string{"max_cost_usd"}},
		{"infinite cost", Caps{MaxCostUSD: math.Inf(1)}, []string{"max_cost_usd"}},
		{"NaN cost", Caps{MaxCostUSD: math.NaN()}, []string{"max_cost_usd"}},
		{"every negative", Caps{MaxCostUSD: -1, MaxTokens: -1, MaxDuration: -1, MaxSteps: -1, MaxAttempts: -1},
			[]string{"max_cost_usd", "max_tokens", "max_duration", "max_steps", "max_attempts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.caps.Check()
			var paths []string
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *FieldError", e)
					}
					paths = append(paths, fe.Path)
				}
			} else if err != nil {
				t.Fatalf("Check = %v, not joined field errors", err)
			}
			if !slices.Equal(paths, tc.paths) {
				t.Fatalf("Check = %v; want problems with %q", err, tc.paths)
			}
		})
	}
}
