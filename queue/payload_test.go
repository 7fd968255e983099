package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentq/agentq/handlers"
	"github.com/agentq/agentq/internal/redistest"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// typicalHTTPCall is a typical http.call payload of about 200 bytes.
const typicalHTTPCall = `{"method":"POST","url":"https://api.example.com/v1/orders/12345/notify",` +
	`"headers":{"Content-Type":"application/json","X-Request-Source":"agentq"},` +
	`"body":{"order_id":12345,"status":"shipped","notify":true},"timeout":"10s"}`

func builtinRegistry(tb testing.TB) *queue.Registry {
	tb.Helper()
	reg := queue.NewRegistry()
	if err := handlers.Register(reg, handlers.Config{}); err != nil {
		tb.Fatal(err)
	}
	return reg
}

func deepBody(depth int) string {
	return `{"url":"https://a.example/","body":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// payloadCases are issue 7's defect 3 (invalid UTF-8 and duplicate keys
// were accepted) and its neighbours, for http.call.
var payloadCases = []struct {
	name, payload string
	want          string // substring of the error; "" for accepted
}{
	{name: "typical", payload: typicalHTTPCall},
	{name: "escaped lone surrogate in the body", payload: `{"url":"https://a.example/","body":"\ud800"}`},
	{name: "body at the depth limit", payload: deepBody(queue.MaxPayloadDepth - 1)},
	{name: "same header name in two objects", payload: `{"url":"https://a.example/","headers":{"A":"1"},"body":{"headers":{"A":"1"}}}`},

	{name: "invalid UTF-8 in the url", payload: "{\"url\":\"https://a.example/\xff\"}", want: "invalid UTF-8 at byte offset 26"},
	{name: "invalid UTF-8 in the body", payload: "{\"url\":\"https://a.example/\",\"body\":\"caf\xe9\"}", want: "invalid UTF-8 at byte offset 39"},
	{name: "duplicate url", payload: `{"url":"https://a.example/","url":"https://b.example/"}`, want: `duplicate key "url" in object at /`},
	{name: "duplicate header", payload: `{"url":"https://a.example/","headers":{"X-A":"1","X-A":"2"}}`, want: `duplicate key "X-A" in object at /headers`},
	{name: "duplicate key deep in the body", payload: `{"url":"https://a.example/","body":{"items":[{"id":1},{"id":2,"id":3}]}}`, want: `duplicate key "id" in object at /body/items/1`},
	{name: "duplicate via an escape", payload: `{"url":"https://a.example/","\u0075rl":"https://b.example/"}`, want: `duplicate key "url"`},
	{name: "body too deep", payload: deepBody(queue.MaxPayloadDepth), want: "nest deeper than 128 levels"},
	{name: "BOM", payload: "\xef\xbb\xbf" + typicalHTTPCall, want: "byte order mark"},
	{name: "two objects", payload: typicalHTTPCall + typicalHTTPCall, want: "not valid JSON"},
	{name: "trailing NUL", payload: typicalHTTPCall + "\x00", want: "not valid JSON"},
}

func TestValidatePayload(t *testing.T) {
	t.Parallel()
	reg := builtinRegistry(t)
	for _, tc := range payloadCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reg.Validate(jobs.KindHTTPCall, []byte(tc.payload))
			check(t, err, tc.want)
			// queue.Check is what the CLI runs before it connects.
			check(t, queue.Check(reg, queue.ClientConfig{}, jobs.KindHTTPCall, []byte(tc.payload), queue.EnqueueOptions{}), tc.want)
		})
	}
}

func check(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var ve *queue.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `invalid payload for "http.call"`) {
		t.Fatalf("err = %v, want a ValidationError with %q", err, want)
	}
}

// TestEnqueueRefusesDefect3 goes through Client.Enqueue against Redis: a
// refused payload writes nothing.
func TestEnqueueRefusesDefect3(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := queue.NewClient(rdb, builtinRegistry(t), queue.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range payloadCases {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Enqueue(ctx, jobs.KindHTTPCall, []byte(tc.payload), queue.EnqueueOptions{Key: "k-" + tc.name})
			check(t, err, tc.want)
		})
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("refused payloads wrote %d keys", n)
	}
	if _, err := c.Enqueue(ctx, jobs.KindHTTPCall, []byte(typicalHTTPCall), queue.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
}

// problems walks b, valid JSON, with json.Decoder.Token and reports whether
// an object repeats a key and how deep arrays and objects nest.
func problems(t *testing.T, b []byte) (dup bool, depth int) {
	t.Helper()
	type level struct {
		obj       bool
		expectKey bool
		seen      map[string]bool
	}
	var st []*level
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return dup, depth
		}
		if err != nil {
			t.Fatalf("token walk of accepted %q: %v", b, err)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			st = st[:len(st)-1]
			continue
		}
		if len(st) > 0 && st[len(st)-1].obj {
			top := st[len(st)-1]
			if top.expectKey {
				s := tok.(string)
				dup = dup || top.seen[s]
				top.seen[s], top.expectKey = true, false
				continue
			}
			top.expectKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			st = append(st, &level{obj: d == '{', expectKey: d == '{', seen: map[string]bool{}})
			depth = max(depth, len(st))
		}
	}
}

// FuzzValidatePayload: validation of a built-in kind's payload never
// panics; what it accepts is UTF-8, valid JSON, with no repeated key and no
// deeper nesting than MaxPayloadDepth; what it refuses is a ValidationError
// with a reason.
func FuzzValidatePayload(f *testing.F) {
	for _, tc := range payloadCases {
		f.Add(uint8(0), []byte(tc.payload))
	}
	for _, s := range []string{`{}`, `{"a":1}`, `{"":1,"":2}`, "\"\xed\xa0\x80\"", `null`, ``, ` `, `{"a":{"a":{"a":1,"a":1}}}`} {
		f.Add(uint8(1), []byte(s))
	}
	reg := builtinRegistry(f)
	kinds := reg.Kinds()
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		kind := kinds[int(which)%len(kinds)]
		_, err := reg.Validate(kind, payload)
		if err != nil {
			var ve *queue.ValidationError
			if !errors.As(err, &ve) || ve.Reason == "" || ve.Kind != kind {
				t.Fatalf("Validate(%s, %q) = %#v, want a ValidationError with a reason", kind, payload, err)
			}
			return
		}
		if !utf8.Valid(payload) || !json.Valid(payload) {
			t.Fatalf("accepted %q", payload)
		}
		if dup, depth := problems(t, payload); dup || depth > queue.MaxPayloadDepth {
			t.Fatalf("accepted %q: duplicate key %v, depth %d", payload, dup, depth)
		}
	})
}

// BenchmarkValidateHTTPCall measures what every enqueue of a typical
// http.call payload pays for validation.
func BenchmarkValidateHTTPCall(b *testing.B) {
	reg := builtinRegistry(b)
	p := []byte(typicalHTTPCall)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Validate(jobs.KindHTTPCall, p); err != nil {
			b.Fatal(err)
		}
	}
}
