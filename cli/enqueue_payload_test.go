package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/redistest"
)

// TestEnqueuePayloadRefusedInProcess is issue 7's defect 3 through the CLI,
// and --payload reading on hostile input. No Redis is reachable for the
// refusals: each must come before connecting. The cases that pass enqueue
// into a real Redis.
func TestEnqueuePayloadRefusedInProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := write("big.json", `{"url":"https://a.example/","body":"`+strings.Repeat("x", 2000)+`"}`)
	bom := write("bom.json", "\xef\xbb\xbf{}")
	env := []string{"AGENTQ_REDIS_URL=redis://127.0.0.1:1/0", "AGENTQ_ENQUEUE_MAX_PAYLOAD_BYTES=1024"}
	srv := redistest.Start(t)
	redisEnv := []string{"AGENTQ_REDIS_URL=" + srv.URL, "AGENTQ_ENQUEUE_MAX_PAYLOAD_BYTES=1024"}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
		redis bool // run against a real Redis: the payload passes
	}{
		{name: "invalid UTF-8", args: []string{"enqueue", "http.call", "--payload", "{\"url\":\"https://a.example/\xff\"}"},
			code: ExitUsage, want: "invalid UTF-8 at byte offset 26"},
		{name: "duplicate key", args: []string{"enqueue", "http.call", "--payload", `{"url":"https://a.example/","url":"https://b.example/"}`},
			code: ExitUsage, want: `duplicate key "url" in object at /`},
		{name: "duplicate header from stdin", stdin: `{"url":"https://a.example/","headers":{"A":"1","A":"2"}}`, args: []string{"enqueue", "http.call", "--payload", "-"},
			code: ExitUsage, want: `duplicate key "A" in object at /headers`},
		{name: "too deep", args: []string{"enqueue", "noop", "--payload", strings.Repeat("[", 129) + strings.Repeat("]", 129)},
			code: ExitUsage, want: "nest deeper than 128 levels"},
		{name: "two objects", args: []string{"enqueue", "noop", "--payload", `{}{}`}, code: ExitUsage, want: "not valid JSON"},
		{name: "directory", args: []string{"enqueue", "noop", "--payload", "@" + dir}, code: ExitUsage, want: "is a directory"},
		{name: "endless file", args: []string{"enqueue", "noop", "--payload", "@/dev/zero"}, code: ExitUsage, want: "over the limit of 1024 bytes (enqueue.max_payload_bytes); stopped reading after 1025"},
		{name: "file over the limit", args: []string{"enqueue", "http.call", "--payload", "@" + big}, code: ExitUsage, want: "over the limit of 1024 bytes"},
		{name: "stdin over the limit", stdin: strings.Repeat(" ", 1025), args: []string{"enqueue", "noop", "--payload", "-"}, code: ExitUsage, want: "--payload -: over the limit of 1024 bytes"},
		{name: "stdin at the limit passes", stdin: "{}" + strings.Repeat(" ", 1022), args: []string{"enqueue", "noop", "--payload", "-"}, code: ExitOK, redis: true},
		{name: "BOM in a file is dropped", args: []string{"enqueue", "noop", "--payload", "@" + bom}, code: ExitOK, redis: true},
		{name: "BOM inline is refused", args: []string{"enqueue", "noop", "--payload", "\xef\xbb\xbf{}"}, code: ExitUsage, want: "byte order mark"},
		{name: "escaped lone surrogate passes", args: []string{"enqueue", "http.call", "--payload", `{"url":"https://a.example/","body":"\ud800"}`}, code: ExitOK, redis: true},
		{name: "batch directory", args: []string{"enqueue", "--batch", dir}, code: ExitUsage, want: "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			e := env
			if tc.redis {
				e = redisEnv
			}
			r := run(t, e, tc.stdin, tc.args...)
			if tc.redis && (r.code != ExitOK || len(strings.TrimSpace(r.out)) == 0) {
				t.Fatalf("exit %d stdout %q stderr %q, want a task id", r.code, r.out, r.err)
			}
			if r.code != tc.code || !strings.Contains(r.err, tc.want) {
				t.Fatalf("exit %d stderr %q, want exit %d and %q", r.code, r.err, tc.code, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// TestEnqueueBatchDefect2InProcess is issue 7's defect 2 through the CLI: a
// line with two task objects is rejected with its line number, the other
// lines are enqueued, and the exit code says the batch was partial.
func TestEnqueueBatchDefect2InProcess(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := []string{"AGENTQ_REDIS_URL=" + srv.URL}
	batch := "\xef\xbb\xbf" + `{"kind":"noop","payload":{}}` + "\r\n" +
		`{"kind":"noop","payload":{},"key":"a"}{"kind":"noop","payload":{},"key":"b"}` + "\r\n" +
		`{"kind":"noop","payload":{}}` + "\x00\n" +
		`{"kind":"noop","kind":"http.call","payload":{}}` + "\n" +
		"{\"kind\":\"http.call\",\"payload\":{\"url\":\"https://a.example/\xff\"}}\n" +
		`{"kind":"noop","payload":{}} // comment` + "\n" +
		`{"kind":"noop","payload":{}}`

	r := run(t, env, batch, "enqueue", "--batch", "-", "--json")
	if r.code != ExitPartial {
		t.Fatalf("exit %d, want %d (partial); stderr %q", r.code, ExitPartial, r.err)
	}
	var sum struct {
		Lines, Enqueued, Duplicates int
		Rejected                    []struct {
			Line  int
			Error string
		}
	}
	if err := json.Unmarshal([]byte(lastLine(r.out)), &sum); err != nil {
		t.Fatalf("summary %q: %v", r.out, err)
	}
	want := []struct {
		line int
		text string
	}{
		{2, "more than one JSON value on the line: the second starts at byte offset 38"},
		{3, "NUL byte at byte offset 28"},
		{4, `duplicate key "kind" in object at /`},
		{5, "invalid UTF-8 at byte offset 56"},
		{6, "trailing data after the JSON object at byte offset 29"},
	}
	if sum.Lines != 7 || sum.Enqueued != 2 || sum.Duplicates != 0 || len(sum.Rejected) != len(want) {
		t.Fatalf("summary = %+v", sum)
	}
	for i, w := range want {
		if rj := sum.Rejected[i]; rj.Line != w.line || !strings.Contains(rj.Error, w.text) {
			t.Errorf("rejection %d = %+v, want line %d with %q", i, rj, w.line, w.text)
		}
	}

	// The text summary names the line too.
	r = run(t, env, `{"kind":"noop","payload":{}}{"kind":"noop","payload":{}}`+"\n", "enqueue", "--batch", "-")
	if r.code != ExitPartial || !strings.Contains(r.out, "lines: 1  enqueued: 0  duplicates: 0  rejected: 1") ||
		!strings.Contains(r.out, "line 1: more than one JSON value on the line") {
		t.Fatalf("exit %d out %q", r.code, r.out)
	}
}
