package handlers

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/redact"
)

// Roles a chat message may have.
var llmRoles = []string{"system", "user", "assistant", "tool"}

// LLMChatSchema is the JSON Schema (draft 2020-12) of an llm.chat payload.
// LLMChatArgs.Validate checks what it cannot express: that response_schema
// compiles and that timeout is a positive duration.
const LLMChatSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "llm.chat",
  "description": "One request to an OpenAI-compatible chat completions endpoint; its usage is recorded.",
  "type": "object",
  "additionalProperties": false,
  "required": ["model", "messages"],
  "properties": {
    "model": {
      "description": "A model name configured under llm.models.",
      "type": "string",
      "minLength": 1
    },
    "messages": {
      "description": "The conversation, oldest first.",
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["role", "content"],
        "properties": {
          "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
          "content": {"type": "string"}
        }
      }
    },
    "temperature": {
      "description": "Sampling temperature; default the provider's.",
      "type": "number",
      "minimum": 0,
      "maximum": 2
    },
    "max_tokens": {
      "description": "Most completion tokens; default the provider's.",
      "type": "integer",
      "minimum": 1
    },
    "response_schema": {
      "description": "A JSON Schema the reply must meet; the reply is then parsed as JSON.",
      "type": "object"
    },
    "timeout": {
      "description": "Request timeout as a Go duration, e.g. \"60s\"; default and maximum set by the worker.",
      "type": "string",
      "minLength": 1
    }
  }
}`

// LLMMessage is one message of a chat.
type LLMMessage struct {
	// Role is system, user, assistant or tool.
	Role string `json:"role"`
	// Content is the message text.
	Content string `json:"content"`
}

// LLMChatArgs is the payload of an llm.chat task.
type LLMChatArgs struct {
	// Model is a model name configured in LLMConfig.Models (not the
	// provider's model id). Required.
	Model string `json:"model"`
	// Messages is the conversation, oldest first. Required, non-empty.
	Messages []LLMMessage `json:"messages"`
	// Temperature is the sampling temperature, 0 to 2. Default (nil) the
	// provider's.
	Temperature *float64 `json:"temperature,omitempty"`
	// MaxTokens bounds the completion tokens. Default (0) the provider's.
	MaxTokens int `json:"max_tokens,omitempty"`
	// ResponseSchema is a JSON Schema (an object) the reply must meet. When
	// set, the provider is asked for structured output
	// (response_format json_schema, not in the provider's strict mode,
	// which takes only a subset of JSON Schema and answers 400 to the rest);
	// agentq checks the reply against the whole schema itself: it must
	// parse as JSON and meet the schema, else the attempt fails with a
	// *jobs.SchemaError (class schema, retried), and the step's output
	// carries the parsed value as "json". The schema must be one document:
	// a $ref may point only inside it.
	ResponseSchema json.RawMessage `json:"response_schema,omitempty"`
	// Timeout is the request timeout as a Go duration, e.g. "60s". Default
	// the worker's Config.Timeout; bounded by its Config.MaxTimeout.
	Timeout string `json:"timeout,omitempty"`
}

// Kind returns jobs.KindLLMChat.
func (LLMChatArgs) Kind() string { return jobs.KindLLMChat }

// Validate checks the payload beyond its schema; each error names the field.
// Whether the model is configured is checked when the step runs, since the
// enqueuer may not share the worker's configuration.
func (a LLMChatArgs) Validate() error {
	_, err := a.check()
	return err
}

// check validates a and returns its compiled response schema, nil when it
// asks for none.
func (a LLMChatArgs) check() (*jsonschema.Schema, error) {
	if strings.TrimSpace(a.Model) == "" {
		return nil, errors.New("model: is required")
	}
	if len(a.Messages) == 0 {
		return nil, errors.New("messages: at least one message is required")
	}
	for i, m := range a.Messages {
		if !slices.Contains(llmRoles, m.Role) {
			return nil, fmt.Errorf("messages[%d].role: %q is not one of %s", i, m.Role, strings.Join(llmRoles, ", "))
		}
	}
	if t := a.Temperature; t != nil && !(*t >= 0 && *t <= 2) {
		return nil, fmt.Errorf("temperature: must be between 0 and 2, got %v", *t)
	}
	if a.MaxTokens < 0 {
		return nil, fmt.Errorf("max_tokens: must be positive, got %d", a.MaxTokens)
	}
	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %q is not a duration (use e.g. \"60s\")", a.Timeout)
		}
		if d <= 0 {
			return nil, fmt.Errorf("timeout: must be positive, got %q", a.Timeout)
		}
	}
	if len(bytes.TrimSpace(a.ResponseSchema)) == 0 {
		return nil, nil
	}
	sch, err := compileResponseSchema(a.ResponseSchema)
	if err != nil {
		return nil, fmt.Errorf("response_schema: %w", err)
	}
	return sch, nil
}

// responseSchemaURL names a response schema for the compiler.
const responseSchemaURL = "agentq://llm.chat/response_schema.json"

// compileResponseSchema compiles a response schema. It loads nothing: a
// $ref to anything but the schema itself or the JSON Schema meta-schemas is
// refused, so a payload cannot make the worker read its files or the
// network.
func compileResponseSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %v", err)
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, errors.New("must be a JSON object (a JSON Schema)")
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(responseSchemaURL, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(responseSchemaURL)
	if err != nil {
		var sve *jsonschema.SchemaValidationError
		if errors.As(err, &sve) {
			return nil, errors.New(oneLine("is not a valid JSON Schema: "+firstViolation(sve.Err), maxExcerptBytes))
		}
		return nil, errors.New(oneLine(err.Error(), maxExcerptBytes))
	}
	return sch, nil
}

// noLoader refuses to load any schema resource.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("loading referenced schemas is not supported; keep the schema in one document")
}

// LLMChat runs llm.chat steps: one request to an OpenAI-compatible chat
// completions endpoint (POST {base_url}/chat/completions). The answer is
// classified like http.call's: 429 is rate limited and honours
// Retry-After, 408, 425 and 5xx are retryable, other statuses permanent, a
// network failure retryable and a timeout wraps context.DeadlineExceeded.
// A reply that is not a chat completion is retryable; one that fails the
// step's response_schema is a *jobs.SchemaError. Every reply carrying a
// usage block, failed ones too, is reported with Step.ReportUsage, priced
// by the model's configuration.
//
// The API key is read from the provider's environment variable when a
// step runs and sent as a bearer token; it never reaches an error string.
// Every request carries an Idempotency-Key header, the step's idempotency
// key or else its task id. It is safe for concurrent use.
type LLMChat struct {
	http *HTTPCall // transport, redactor and error helpers shared with http.call
	cfg  Config
	llm  LLMConfig
	// getenv reads the API key; tests replace it.
	getenv func(string) string
}

// NewLLMChat returns an LLMChat configured by cfg and cfg.LLM. Fields that
// are zero or out of range take their defaults; check cfg with
// Config.Validate and cfg.LLM.Validate first to refuse them instead.
func NewLLMChat(cfg Config) *LLMChat {
	h := NewHTTPCall(cfg)
	return &LLMChat{http: h, cfg: h.cfg, llm: cfg.LLM, getenv: os.Getenv}
}

// chatRequest is the body sent to the provider.
type chatRequest struct {
	Model          string          `json:"model"`
	Messages       []LLMMessage    `json:"messages"`
	Temperature    *float64        `json:"temperature,omitempty"`
	MaxTokens      int             `json:"max_tokens,omitempty"`
	ResponseFormat *responseFormat `json:"response_format,omitempty"`
}

type responseFormat struct {
	Type       string     `json:"type"`
	JSONSchema jsonSchema `json:"json_schema"`
}

type jsonSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict bool            `json:"strict"`
}

// LLMChatOutput is the output an llm.chat step records (Step.SetOutput);
// later steps of its run see it as .steps.<name>.output.
type LLMChatOutput struct {
	// Content is the reply's text.
	Content string `json:"content"`
	// JSON is the reply parsed as JSON; set only when the step gave a
	// response_schema.
	JSON any `json:"json,omitempty"`
	// Model is the model the provider says answered.
	Model string `json:"model"`
	// Usage is what the reply cost.
	Usage LLMChatUsage `json:"usage"`
	// FinishReason is why the model stopped, e.g. "stop" or "length".
	FinishReason string `json:"finish_reason"`
}

// LLMChatUsage is the usage part of LLMChatOutput.
type LLMChatUsage struct {
	TokensIn  int64   `json:"tokens_in"`
	TokensOut int64   `json:"tokens_out"`
	CostUSD   float64 `json:"cost_usd"`
}

// Handle sends the chat a describes to the provider of its model and
// records the reply as the step's output. See LLMChat for the outcomes.
func (h *LLMChat) Handle(ctx context.Context, s *jobs.Step, a LLMChatArgs) error {
	if s == nil {
		s = &jobs.Step{} // usage and output go nowhere
	}
	sch, err := a.check()
	if err != nil {
		return jobs.Permanent(fmt.Errorf("%s: %w", jobs.KindLLMChat, err))
	}
	m, ok := h.llm.Models[a.Model]
	if !ok {
		return jobs.Permanent(fmt.Errorf("%s: model %q is not configured (configured: %s)", jobs.KindLLMChat, a.Model, names(h.llm.Models)))
	}
	p, ok := h.llm.Providers[m.Provider]
	if !ok {
		return jobs.Permanent(fmt.Errorf("%s: model %q: provider %q is not configured (configured: %s)", jobs.KindLLMChat, a.Model, m.Provider, names(h.llm.Providers)))
	}
	endpoint, err := llmEndpoint(p.BaseURL)
	if err != nil {
		return jobs.Permanent(fmt.Errorf("%s: provider %q: base_url: %w", jobs.KindLLMChat, m.Provider, err))
	}
	var key string
	if p.APIKeyEnv != "" {
		if key = h.getenv(p.APIKeyEnv); key == "" {
			return jobs.Permanent(fmt.Errorf("%s: provider %q: environment variable %s holding the API key is not set or empty", jobs.KindLLMChat, m.Provider, p.APIKeyEnv))
		}
		if strings.IndexFunc(key, invalidHeaderValueRune) >= 0 {
			return jobs.Permanent(fmt.Errorf("%s: provider %q: environment variable %s holds an API key with a control character (a trailing newline?)", jobs.KindLLMChat, m.Provider, p.APIKeyEnv))
		}
	}
	call := &callError{op: fmt.Sprintf("%s %s: POST %s", jobs.KindLLMChat, a.Model, h.http.redact.URL(endpoint))}

	cr := chatRequest{Model: m.Model, Messages: a.Messages, Temperature: a.Temperature, MaxTokens: a.MaxTokens}
	if sch != nil {
		cr.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: jsonSchema{Name: "output", Schema: a.ResponseSchema}}
	}
	body, err := json.Marshal(cr)
	if err != nil {
		return jobs.Permanent(call.with("cannot encode the request: "+err.Error(), nil))
	}

	timeout := h.cfg.Timeout
	if a.Timeout != "" {
		d, _ := time.ParseDuration(a.Timeout) // checked by check
		timeout = min(d, h.cfg.MaxTimeout)
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return jobs.Permanent(call.with("cannot build the request", nil))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if k := idempotencyKey(s); k != "" {
		req.Header.Set(HeaderIdempotencyKey, k)
	}

	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return h.http.transportError(ctx, reqCtx, call, timeout, err)
	}
	defer resp.Body.Close()
	// One byte more than the limit tells a reply cut short from one that
	// fits exactly.
	data, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.MaxResponseBytes+1))
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if err != nil && ok2xx {
		return h.http.transportError(ctx, reqCtx, call, timeout, err)
	}
	tooLarge := int64(len(data)) > h.cfg.MaxResponseBytes
	if len(key) >= 8 {
		// A provider that quotes the key back ("Incorrect API key
		// provided: sk-..."): it never reaches an error, a log line, a
		// dead letter or an output.
		data = bytes.ReplaceAll(data, []byte(key), []byte(redact.Mask))
	}

	if !ok2xx {
		// The status decides the outcome; a body cut short only shortens
		// the excerpt.
		// An error answer may still carry usage (a provider that bills a
		// cut-off generation); it is reported before the outcome.
		if r, _ := parseChatReply(data); r != nil && r.Usage != nil {
			s.ReportUsage(h.usage(a.Model, m, r.Usage))
		}
		he := &jobs.HTTPError{Status: resp.StatusCode, Body: h.http.excerpt(data[:min(int64(len(data)), h.cfg.MaxResponseBytes)])}
		if d, ok := jobs.ParseRetryAfter(resp.Header.Get("Retry-After"), h.cfg.Now()); ok {
			he.RetryAfter = d
		}
		err := call.with(he.Error(), he)
		if resp.StatusCode < 400 || jobs.ClassifyHTTPStatus(resp.StatusCode) == jobs.ClassPermanent {
			return jobs.Permanent(err)
		}
		return err
	}
	if tooLarge {
		// The tokens were spent (and billed) all the same: report the
		// usage block if the part read holds one, and do not ask again for
		// a reply that will not fit either.
		if u, ok := usagePrefix(data); ok {
			s.ReportUsage(h.usage(a.Model, m, u))
		}
		return jobs.Permanent(call.with(fmt.Sprintf("reply larger than max_response_bytes (%d); raise http.max_response_bytes or ask for less (max_tokens)", h.cfg.MaxResponseBytes), nil))
	}
	r, perr := parseChatReply(data)
	var usage jobs.Usage
	if r != nil && r.Usage != nil {
		usage = h.usage(a.Model, m, r.Usage)
		s.ReportUsage(usage)
	}
	if perr != nil {
		return call.with("malformed reply: "+h.http.redact.Text(perr.Error()), nil)
	}
	choice, err := r.first()
	if err != nil {
		return call.with("malformed reply: "+h.http.redact.Text(err.Error()), nil)
	}
	out := LLMChatOutput{
		Content:      choice.content(),
		Model:        cmp.Or(r.Model, m.Model),
		Usage:        LLMChatUsage{TokensIn: usage.TokensIn, TokensOut: usage.TokensOut, CostUSD: usage.CostUSD},
		FinishReason: choice.FinishReason,
	}
	if sch != nil {
		v, err := checkReply(sch, out.Content)
		if err != nil {
			return call.with((&jobs.SchemaError{Err: err}).Error(), &jobs.SchemaError{Err: err})
		}
		out.JSON = v
	}
	if err := s.SetOutput(out); err != nil {
		return call.with(err.Error(), err)
	}
	return nil
}

// usage prices the tokens of a reply by model m, named name by the step.
func (h *LLMChat) usage(name string, m LLMModel, u *chatUsage) jobs.Usage {
	in, out := max(u.PromptTokens, 0), max(u.CompletionTokens, 0)
	return jobs.Usage{
		Model:     name,
		TokensIn:  in,
		TokensOut: out,
		CostUSD:   costUSD(in, out, m),
	}
}

// costUSD prices in prompt and out completion tokens by m's prices per
// million, rounded to 1e-12 USD so that float noise (4 × 0.15 is
// 0.6000000000000001) does not show in outputs and records.
func costUSD(in, out int64, m LLMModel) float64 {
	c := float64(in)*m.InputPerMTok/1e6 + float64(out)*m.OutputPerMTok/1e6
	if r := math.Round(c*1e12) / 1e12; !math.IsInf(r, 0) && !math.IsNaN(r) {
		return r
	}
	return c
}

// checkReply parses content as JSON and validates it against sch. The
// error names the first violation, its location and, masked, its message.
func checkReply(sch *jsonschema.Schema, content string) (any, error) {
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(content))
	if err != nil {
		return nil, fmt.Errorf("content is not JSON: %s", oneLine(defaultRedactor().Text(err.Error()), maxExcerptBytes))
	}
	if err := sch.Validate(v); err != nil {
		return nil, errors.New(oneLine(defaultRedactor().Text(firstViolation(err)), maxExcerptBytes))
	}
	return v, nil
}

// firstViolation names the first failing location of a jsonschema error
// and why, e.g. "at '/title': got number, want string": its first leaf,
// reached through the first cause of each combinator ('allOf' failed) and
// reference.
func firstViolation(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	for len(ve.Causes) > 0 && ve.Causes[0] != nil {
		ve = ve.Causes[0]
	}
	return ve.Error()
}

// oneLine returns s on one line, at most n bytes, cut at a rune.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// chatReply is the part of a chat completion llm.chat reads.
type chatReply struct {
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage"`
}

type chatChoice struct {
	Message struct {
		Content *string `json:"content"`
		Refusal *string `json:"refusal"`
	} `json:"message"`
	FinishReason string `json:"finish_reason"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// parseChatReply decodes a chat completion. Each field is decoded on its
// own: when data is a JSON object, r is not nil and carries the usage block
// if that decoded, even when err reports another field malformed, so that
// the usage of a reply refused for its shape is still reported. A reply
// without choices is not an error here (see first).
// usageRE finds a flat "usage" object in a reply too large to parse whole.
var usageRE = regexp.MustCompile(`"usage"\s*:\s*(\{[^{}]{0,1000}\})`)

// usagePrefix returns the usage block found in data, a reply cut short.
func usagePrefix(data []byte) (*chatUsage, bool) {
	m := usageRE.FindSubmatch(data)
	if m == nil {
		return nil, false
	}
	var u chatUsage
	if json.Unmarshal(m[1], &u) != nil {
		return nil, false
	}
	return &u, true
}

func parseChatReply(data []byte) (r *chatReply, err error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("empty body")
	}
	if data[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not JSON: %s at byte %d", se.Error(), se.Offset)
		}
		return nil, fmt.Errorf("not JSON: %s", err.Error())
	}
	r = &chatReply{}
	if raw, ok := top["usage"]; ok && string(raw) != "null" {
		var u chatUsage
		if err := json.Unmarshal(raw, &u); err != nil {
			return r, fmt.Errorf("usage: %s", fieldError(err))
		}
		r.Usage = &u
	}
	if raw, ok := top["model"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &r.Model); err != nil {
			return r, fmt.Errorf("model: %s", fieldError(err))
		}
	}
	if raw, ok := top["choices"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &r.Choices); err != nil {
			return r, fmt.Errorf("choices: %s", fieldError(err))
		}
	}
	return r, nil
}

// fieldError says why a field did not decode, without quoting its value.
func fieldError(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	want := "another type"
	switch te.Type.Kind() {
	case reflect.Slice:
		want = "an array"
	case reflect.Struct, reflect.Map:
		want = "an object"
	case reflect.String:
		want = "a string"
	case reflect.Int, reflect.Int64:
		want = "an integer"
	case reflect.Pointer:
		if te.Type.Elem().Kind() == reflect.String {
			want = "a string or null"
		}
	}
	if te.Field != "" {
		return fmt.Sprintf("%s: a JSON %s where %s belongs", te.Field, te.Value, want)
	}
	return fmt.Sprintf("a JSON %s where %s belongs", te.Value, want)
}

// first returns the reply's first choice, refusing a reply without one or
// whose first choice has no content.
func (r *chatReply) first() (*chatChoice, error) {
	if len(r.Choices) == 0 {
		return nil, errors.New("no choices")
	}
	c := &r.Choices[0]
	if c.Message.Content == nil {
		if c.Message.Refusal != nil && *c.Message.Refusal != "" {
			return nil, fmt.Errorf("the model refused: %s", oneLine(*c.Message.Refusal, maxExcerptBytes))
		}
		return nil, errors.New("choices[0].message.content is missing or null")
	}
	return c, nil
}

func (c *chatChoice) content() string {
	if c.Message.Content == nil {
		return ""
	}
	return *c.Message.Content
}
