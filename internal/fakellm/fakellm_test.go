package fakellm

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Start("", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

type reply struct {
	Model   string
	Choices []struct {
		Message struct {
			Role    string
			Content string
		}
		FinishReason string `json:"finish_reason"`
	}
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	}
	Error *struct{ Message, Type string }
}

// post sends body to the server's chat completions endpoint with headers
// given as name, value pairs.
func post(t *testing.T, url, body string, headers ...string) (*http.Response, reply) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("reply %q: %v", data, err)
	}
	return resp, r
}

const chat = `{"model":"gpt-fake","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]}`

func TestReply(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || !strings.HasSuffix(s.URL, "/v1") {
		t.Errorf("URL = %q, want a loopback /v1 root", s.URL)
	}
	resp, r := post(t, s.URL, chat, "Idempotency-Key", "k1", "Authorization", "Bearer x")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	msgs := []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hello there world"}}
	if len(r.Choices) != 1 || r.Choices[0].Message.Content != "reply to: hello there world" || r.Choices[0].FinishReason != "stop" ||
		r.Choices[0].Message.Role != "assistant" || r.Model != "gpt-fake" {
		t.Errorf("reply = %+v", r)
	}
	if got, want := r.Usage.PromptTokens, PromptTokens(msgs); got != want || want != 7 {
		t.Errorf("prompt_tokens = %d, want %d (= 7: 5 words and 2 messages)", got, want)
	}
	if got, want := r.Usage.CompletionTokens, CompletionTokens(Reply(msgs)); got != want || want != 5 {
		t.Errorf("completion_tokens = %d, want %d (= 5 words)", got, want)
	}
	// The same request gets the same reply.
	if _, again := post(t, s.URL, chat); again.Choices[0].Message.Content != r.Choices[0].Message.Content {
		t.Errorf("replies differ: %q then %q", r.Choices[0].Message.Content, again.Choices[0].Message.Content)
	}
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("Requests = %d, want 2", len(reqs))
	}
	if r := reqs[0]; r.Model != "gpt-fake" || r.IdempotencyKey != "k1" || !r.Authorized || r.Status != 200 ||
		r.Path != "/v1/chat/completions" || string(r.Body) != chat {
		t.Errorf("Requests[0] = %+v", r)
	}
	if reqs[1].Authorized {
		t.Error("a request without Authorization counted as authorized")
	}
}

func TestReplyCutsLongMessages(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 300)
	if got := Reply([]Message{{Role: "user", Content: long}}); len(got) > len("reply to: ")+200 || !strings.HasSuffix(got, "é") {
		t.Errorf("Reply = %d bytes %q, want at most 200 bytes of the message, cut at a rune", len(got), got)
	}
	if got := Reply([]Message{{Role: "system", Content: "x"}}); got != "reply to: " {
		t.Errorf("Reply without a user message = %q", got)
	}
}

func TestStructuredOutput(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	schema := `{"type":"object","required":["title","score","tags","ok","kind","nested"],"properties":{
		"title":{"type":"string"},"score":{"type":"integer","minimum":3},"tags":{"type":"array","items":{"type":"string"},"minItems":2},
		"ok":{"type":"boolean"},"kind":{"enum":["a","b"]},"nested":{"type":"object","properties":{"x":{"type":["null","number"]}}},
		"opt":{"anyOf":[{"type":"string"},{"type":"null"}]}}}`
	body := `{"model":"gpt-fake","messages":[{"role":"user","content":"rate it"}],
		"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":` + schema + `,"strict":true}}}`
	_, r := post(t, s.URL, body)
	content := r.Choices[0].Message.Content
	var v struct {
		Title  string
		Score  float64
		Tags   []string
		OK     bool
		Kind   string
		Nested struct{ X float64 }
		Opt    string
	}
	dec := json.NewDecoder(strings.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("content %q: %v", content, err)
	}
	if v.Title != "reply to: rate it" || v.Score != 3 || len(v.Tags) != 2 || !v.OK || v.Kind != "a" || v.Nested.X != 1 || v.Opt == "" {
		t.Errorf("content = %s", content)
	}
	if r.Usage.CompletionTokens != CompletionTokens(content) {
		t.Errorf("completion_tokens = %d, want the words of the JSON content, %d", r.Usage.CompletionTokens, CompletionTokens(content))
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	schemaReq := func(model, schema string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"x"}],` +
			`"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":` + schema + `}}}`
	}
	tests := []struct {
		name        string
		body        string
		wantStatus  int
		wantContent string
		retryAfter  string
	}{
		{name: "always-503", body: `{"model":"always-503","messages":[{"role":"user","content":"x"}]}`, wantStatus: 503},
		{name: "status-400", body: `{"model":"status-400","messages":[{"role":"user","content":"x"}]}`, wantStatus: 400},
		{name: "status-429", body: `{"model":"status-429","messages":[{"role":"user","content":"x"}]}`, wantStatus: 429, retryAfter: "1"},
		{name: "status out of range is a model", body: `{"model":"status-200","messages":[{"role":"user","content":"x"}]}`, wantStatus: 200,
			wantContent: "reply to: x"},
		{name: "bad-json with required properties", body: schemaReq("bad-json", `{"type":"object","required":["a"]}`),
			wantStatus: 200, wantContent: "{}"},
		{name: "bad-json without", body: schemaReq("bad-json", `{"type":"object"}`), wantStatus: 200, wantContent: "this is not JSON"},
		{name: "bad-json without a schema", body: `{"model":"bad-json","messages":[{"role":"user","content":"x"}]}`,
			wantStatus: 200, wantContent: "reply to: x"},
		{name: "not JSON", body: `{`, wantStatus: 400},
		{name: "no model", body: `{"messages":[{"role":"user","content":"x"}]}`, wantStatus: 400},
		{name: "no messages", body: `{"model":"m","messages":[]}`, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, r := post(t, s.URL, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if tt.wantStatus != 200 {
				if r.Error == nil || r.Error.Message == "" {
					t.Errorf("error reply without an error message: %+v", r)
				}
				return
			}
			if got := r.Choices[0].Message.Content; got != tt.wantContent {
				t.Errorf("content = %q, want %q", got, tt.wantContent)
			}
		})
	}
}

func TestFailFirst429(t *testing.T) {
	t.Parallel()
	s := start(t, Options{FailFirst429: 2})
	var got []int
	for _, key := range []string{"a", "b", "a", "a", "b", "b", "", "", ""} {
		resp, _ := post(t, s.URL, chat, "Idempotency-Key", key)
		got = append(got, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("429 without Retry-After: 1")
		}
	}
	want := []int{429, 429, 429, 200, 429, 200, 429, 429, 200}
	if !equal(got, want) {
		t.Errorf("statuses = %v, want %v (two 429s per key)", got, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	s := start(t, Options{APIKey: "sk-right"})
	for _, tt := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer sk-wrong", 401}, {"sk-right", 401}, {"Bearer sk-right", 200}} {
		if resp, _ := post(t, s.URL, chat, "Authorization", tt.auth); resp.StatusCode != tt.want {
			t.Errorf("Authorization %q: status %d, want %d", tt.auth, resp.StatusCode, tt.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	root := strings.TrimSuffix(s.URL, "/v1")
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/chat/completions", 200},
		{http.MethodPost, "/v1/chat/completions", 200},
		{http.MethodPost, "/v1/completions", 404},
		{http.MethodGet, "/v1/chat/completions", 405},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tt.method, root+tt.path, strings.NewReader(chat))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", MaxRequestBytes) + `"}]}`
	resp, err := http.Post(s.URL+"/chat/completions", "application/json", bytes.NewReader([]byte(big)))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over 1 MiB: status %d, want 413", resp.StatusCode)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:80", "nonsense"} {
		if s, err := Start(addr, Options{}); err == nil {
			_ = s.Close()
			t.Errorf("Start(%q) succeeded, want a refusal", addr)
		}
	}
	if _, err := Start("", Options{FailFirst429: -1}); err == nil {
		t.Error("Start with FailFirst429 -1 succeeded")
	}
}

func TestCloseStops(t *testing.T) {
	t.Parallel()
	s, err := Start("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if resp, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(chat)); err == nil {
		_ = resp.Body.Close()
		t.Error("a closed server answered")
	}
}

func TestExample(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		schema string
		want   string
	}{
		{`{"const":5}`, `5`},
		{`{"type":"array","maxItems":0,"items":{"type":"string"}}`, `[]`},
		{`{"type":"null"}`, `null`},
		{`{"examples":["e"]}`, `"e"`},
		{`{"$ref":"#/$defs/x"}`, `"t"`},
		{`{"properties":{"a":{"type":"number"}}}`, `{"a":1}`},
		{`"not a schema"`, `"t"`},
	} {
		var schema any
		if err := json.Unmarshal([]byte(tt.schema), &schema); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(example(schema, "t", 0))
		if string(got) != tt.want {
			t.Errorf("example(%s) = %s, want %s", tt.schema, got, tt.want)
		}
	}
	// Deep nesting stops at maxDepth with text.
	deep := `{"type":"string"}`
	for range 100 {
		deep = `{"type":"array","items":` + deep + `}`
	}
	var schema any
	if err := json.Unmarshal([]byte(deep), &schema); err != nil {
		t.Fatal(err)
	}
	if got, err := json.Marshal(example(schema, "t", 0)); err != nil || strings.Count(string(got), "[") != maxDepth+1 {
		t.Errorf("deep example = %s (%v), want %d nested arrays", got, err, maxDepth+1)
	}
}

// FuzzServe feeds the fake any request body: it answers without panicking,
// always with a JSON body.
func FuzzServe(f *testing.F) {
	f.Add([]byte(chat))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"array","minItems":1e300,"items":{"type":["null"]}}}}}`))
	f.Add([]byte(`{"model":"bad-json","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":[]}}}`))
	f.Add([]byte(`{"model":"status-99999999999999999999","messages":[{}]}`))
	f.Add([]byte(`{"model":"m","messages":null}`))
	s := &Server{failed: map[string]int{}}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body)))
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("status %d: reply is not JSON: %q", w.Code, w.Body.Bytes())
		}
	})
}

func TestExampleBounded(t *testing.T) {
	t.Parallel()
	wide := `{"type":"string"}`
	for range 20 {
		wide = `{"type":"array","minItems":8,"items":` + wide + `}`
	}
	var schema any
	if err := json.Unmarshal([]byte(wide), &schema); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(example(schema, "t", 0))
	if err != nil || strings.Count(string(got), `"t"`) > maxValues {
		t.Errorf("example of 8^20 items made %d strings (%v), want at most %d", strings.Count(string(got), `"t"`), err, maxValues)
	}
}
