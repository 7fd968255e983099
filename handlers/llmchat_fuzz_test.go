package handlers

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// FuzzLLMChatReply feeds llm.chat any reply a provider can give: any
// status and body, with a response_schema asked for or not. The handler
// must classify it without panicking; the API key never reaches the error;
// usage reported is never negative; output is recorded exactly on success
// and is valid JSON.
func FuzzLLMChatReply(f *testing.F) {
	f.Add(200, []byte(`{"model":"x","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`), false)
	f.Add(200, []byte(`{"choices":[{"message":{"content":"{\"title\":\"t\"}"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`), true)
	f.Add(200, []byte(`{"choices":[{"message":{"content":"{\"title\":5}"}}]}`), true)
	f.Add(200, []byte(`{"choices":[{"message":{"content":"not json"}}]}`), true)
	f.Add(200, []byte(`{"choices":[],"usage":{"prompt_tokens":-1,"completion_tokens":9223372036854775807}}`), false)
	f.Add(200, []byte(`{"choices":{"message":1},"usage":{"prompt_tokens":1e99}}`), false)
	f.Add(200, []byte(`{"choices":[{"message":{"content":null,"refusal":"no"}}]}`), false)
	f.Add(200, []byte(`{"choices":[null],"usage":null,"model":null}`), false)
	f.Add(200, []byte(`{"a":1}{"b":2}`), false)
	f.Add(200, []byte("\xff\xfe{"), false)
	f.Add(200, []byte(strings.Repeat("[", 20000)), true)
	f.Add(429, []byte(`{"error":{"message":"slow down"}}`), false)
	f.Add(500, []byte(`{"error":"x","usage":{"prompt_tokens":10,"completion_tokens":2}}`), false)
	f.Add(401, []byte(`Authorization: Bearer sk-fuzzK3yV4lue0123456789`), false)
	f.Add(302, []byte(``), false)

	const key = "sk-fuzzK3yV4lue0123456789"
	schema := json.RawMessage(`{"type":"object","required":["title"],"properties":{"title":{"type":"string"}}}`)
	f.Fuzz(func(t *testing.T, code int, body []byte, withSchema bool) {
		if bytes.Contains(body, []byte(key)) && code >= 200 && code <= 299 {
			// A 2xx reply's content is the model's answer, not masked; a
			// provider quoting the key there is not the handler's leak.
			t.Skip()
		}
		if code < 200 || code > 599 {
			code = 200 + (code%400+400)%400
		}
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})}
		chat := NewLLMChat(Config{Client: client, MaxResponseBytes: 1 << 16, LLM: LLMConfig{
			Providers: map[string]LLMProvider{"p": {BaseURL: "https://llm.example/v1", APIKeyEnv: "K"}},
			Models:    map[string]LLMModel{"m": {Provider: "p", Model: "x", InputPerMTok: 1, OutputPerMTok: 1}},
		}})
		chat.getenv = fakeEnv(map[string]string{"K": key})
		a := chatArgs("m", "hi")
		if withSchema {
			a.ResponseSchema = schema
		}
		s := llmStep()
		err := chat.Handle(t.Context(), s, a)
		_ = jobs.Classify(err)
		if err != nil && strings.Contains(err.Error(), key) {
			t.Fatalf("error leaks the key: %q", err)
		}
		if u := s.Usage(); u.TokensIn < 0 || u.TokensOut < 0 || u.CostUSD < 0 {
			t.Fatalf("negative usage %+v", u)
		}
		if (err == nil) != (s.Output() != nil) {
			t.Fatalf("err %v with output %s: want output exactly on success", err, s.Output())
		}
		if s.Output() != nil && !json.Valid(s.Output()) {
			t.Fatalf("output is not JSON: %q", s.Output())
		}
	})
}

// FuzzParseChatReply feeds the reply parser any bytes: it returns in
// bounded time without panicking, and a reply it accepts whole has no
// negative usage once priced.
func FuzzParseChatReply(f *testing.F) {
	f.Add([]byte(`{"model":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`))
	f.Add([]byte(`{"choices":[{"message":{"content":null}}]}`))
	f.Add([]byte(`{"usage":{"prompt_tokens":"1"}}`))
	f.Add([]byte(`  {"choices":null}  `))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Add([]byte("{\"model\":\"\xff\"}"))
	chat := NewLLMChat(Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseChatReply(data)
		if r == nil {
			if err == nil {
				t.Fatal("nil reply without an error")
			}
			return
		}
		if r.Usage != nil {
			if u := chat.usage("m", LLMModel{InputPerMTok: 1, OutputPerMTok: 1}, r.Usage); u.TokensIn < 0 || u.TokensOut < 0 {
				t.Fatalf("negative usage %+v", u)
			}
		}
		if err == nil {
			if c, err := r.first(); err == nil {
				_ = c.content()
			}
		}
	})
}

// FuzzLLMChatPayload feeds the registry any llm.chat payload: validation
// (the schema, the typed decode and Validate, which compiles any
// response_schema) never panics, and a payload it accepts validates again.
func FuzzLLMChatPayload(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_schema":{"$ref":"#"}}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_schema":{"$ref":"file:///etc/passwd"}}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_schema":{"pattern":"("}}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1e308,"timeout":"-1s"}`))
	reg := queue.NewRegistry()
	if err := Register(reg, Config{}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		args, err := reg.Validate(jobs.KindLLMChat, payload)
		if err != nil {
			return
		}
		if err := args.(LLMChatArgs).Validate(); err != nil {
			t.Fatalf("accepted payload %q fails Validate: %v", payload, err)
		}
	})
}
