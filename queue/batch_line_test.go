package queue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// nested returns a payload object whose "a" member nests depth-1 arrays, so
// that the payload's depth is depth.
func nested(depth int) string {
	return `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

func TestParseBatchLineRejects(t *testing.T) {
	t.Parallel()
	const task = `{"kind":"k","payload":{"n":1}}`
	tests := []struct {
		name, line, want string
	}{
		{"two objects", task + task, "more than one JSON value on the line: the second starts at byte offset 30 (a batch line is one task object"},
		{"two objects with space", task + " \t" + task, "second starts at byte offset 32"},
		{"object then number", task + " 5", "more than one JSON value"},
		{"trailing garbage", task + "x", "trailing data after the JSON object at byte offset 30"},
		{"trailing garbage after CR", task + "\r;", "trailing data after the JSON object at byte offset 31"},
		{"offset counts leading space", "  " + task + "}", "trailing data after the JSON object at byte offset 32"},
		{"trailing NUL", task + "\x00", "NUL byte at byte offset 30"},
		{"NUL inside a string", `{"kind":"k` + "\x00" + `","payload":{}}`, "NUL byte at byte offset 10"},
		{"UTF-16 text", "{\x00\"\x00k\x00", "UTF-16"},
		{"invalid UTF-8 in the payload", `{"kind":"k","payload":{"s":"` + "\xff" + `"}}`, "invalid UTF-8 at byte offset 28"},
		{"invalid UTF-8 in the kind", "{\"kind\":\"\xc3\",\"payload\":{}}", "invalid UTF-8 at byte offset 9"},
		{"BOM on a line", "\xef\xbb\xbf" + task, "byte order mark"},
		{"duplicate kind", `{"kind":"a","kind":"b","payload":{}}`, `duplicate key "kind" in object at /`},
		{"duplicate payload", `{"kind":"a","payload":{"n":1},"payload":{"n":2}}`, `duplicate key "payload" in object at /`},
		{"duplicate key in the payload", `{"kind":"a","payload":{"h":{"X":1,"X":2}}}`, `duplicate key "X" in object at /payload/h`},
		{"field spelled in another case", `{"kind":"a","payload":{},"Payload":{}}`, `unknown field "Payload"`},
		{"kind in capitals", `{"KIND":"a","payload":{}}`, `unknown field "KIND"`},
		{"typo", `{"kind":"a","payload":{},"tiemout":"1s"}`, `unknown field "tiemout"`},
		{"array", `[1]`, "a batch line is one JSON object (a task), got array"},
		{"string", `"task"`, "got string"},
		{"payload too deep", `{"kind":"k","payload":` + nested(MaxPayloadDepth+1) + `}`, "nest deeper than 128 levels below the task object at byte offset"},
		{"cut short", `{"kind":"k","payload":{`, "ends before its value is complete"},
		{"pretty-printed", `{`, "ends before its value is complete"},
		{"syntax error", `{"kind" "k"}`, "not a valid task line: invalid character"},
		{"blank", " \r\t", "blank"},
		{"kind not a string", `{"kind":5,"payload":{}}`, "not a valid task line"},
		{"long duration is shortened", `{"kind":"k","payload":{},"in":"` + strings.Repeat("x", 5000) + `"}`, `"in": "xxx`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, _, _, err := ParseBatchLine([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseBatchLine(%q) = kind %q, err %v; want an error with %q", tc.line, kind, err, tc.want)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestParseBatchLineAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line, payload string
	}{
		{"CRLF", `{"kind":"k","payload":{"n":1}}` + "\r", `{"n":1}`},
		{"spaces and tabs around", " \t{\"kind\":\"k\",\"payload\":[1]}\t ", `[1]`},
		{"escaped lone surrogate", `{"kind":"k","payload":{"s":"\ud800"}}`, `{"s":"\ud800"}`},
		{"escaped NUL", `{"kind":"k","payload":{"s":"\u0000"}}`, `{"s":"\u0000"}`},
		{"payload at the depth limit", `{"kind":"k","payload":` + nested(MaxPayloadDepth) + `}`, nested(MaxPayloadDepth)},
		{"same key at different levels", `{"kind":"k","payload":{"kind":"x","payload":{"kind":1}}}`, `{"kind":"x","payload":{"kind":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, payload, _, err := ParseBatchLine([]byte(tc.line))
			if err != nil || kind != "k" || string(payload) != tc.payload {
				t.Fatalf("ParseBatchLine(%q) = %q, %s, %v", tc.line, kind, payload, err)
			}
		})
	}
}

type readLineResult struct {
	n       int
	line    string
	tooLong bool
}

func readAllLines(t testing.TB, r io.Reader, bufSize, max int) ([]readLineResult, error) {
	t.Helper()
	br := &batchReader{br: bufio.NewReaderSize(r, bufSize), max: max}
	var out []readLineResult
	for {
		n, line, long, err := br.next(context.Background())
		if err != nil {
			return out, err
		}
		out = append(out, readLineResult{n, string(line), long})
	}
}

func TestBatchReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []readLineResult
	}{
		{"empty", "", nil},
		{"no final newline", "a\nb", []readLineResult{{1, "a", false}, {2, "b", false}}},
		{"blank lines keep their numbers", "\n \r\n\ta\n\n\nb\n\n", []readLineResult{{3, "\ta", false}, {6, "b", false}}},
		{"CRLF", "a\r\nb\r\n", []readLineResult{{1, "a\r", false}, {2, "b\r", false}}},
		{"BOM on the first line is dropped", "\xef\xbb\xbfa\n\xef\xbb\xbfb\n", []readLineResult{{1, "a", false}, {2, "\xef\xbb\xbfb", false}}},
		{"BOM alone", "\xef\xbb\xbf\nb", []readLineResult{{2, "b", false}}},
		{"CR only is one line", "a\rb\rc", []readLineResult{{1, "a\rb\rc", false}}},
		{"line at the limit", "12345678\n123456789\n12345678", []readLineResult{{1, "12345678", false}, {2, "", true}, {3, "12345678", false}}},
		{"long last line", "123456789", []readLineResult{{1, "", true}}},
		{"long line across buffer fills", strings.Repeat("x", 100) + "\nok", []readLineResult{{1, "", true}, {2, "ok", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAllLines(t, strings.NewReader(tc.in), 16, 8)
			if err != io.EOF {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("lines = %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("line %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestBatchReaderReadErrorDropsThePartialLine(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	got, err := readAllLines(t, &failingReader{r: strings.NewReader("a\nb"), err: boom}, 16, 8)
	if !errors.Is(err, boom) || len(got) != 1 || got[0].line != "a" {
		t.Fatalf("lines %+v, err %v", got, err)
	}
}

// TestEnqueueBatchDefect2 is the regression test of issue 7's defect 2: a
// line holding two task objects was counted as one enqueue and the second
// was lost; trailing data was ignored.
func TestEnqueueBatchDefect2(t *testing.T) {
	t.Parallel()
	b := setup(t, ClientConfig{})
	in := "\xef\xbb\xbf" + `{"kind":"test.echo","payload":{"n":1}}` + "\r\n" + // 1: BOM and CRLF are fine
		`{"kind":"test.echo","payload":{"n":2}}{"kind":"test.echo","payload":{"n":3}}` + "\r\n" + // 2
		`{"kind":"test.echo","payload":{"n":4}} trailing` + "\n" + // 3
		`{"kind":"test.echo","payload":{"n":5}}` + "\x00\n" + // 4
		`{"kind":"test.echo","payload":{"n":6,"n":7}}` + "\n" + // 5
		`{"kind":"test.echo","payload":{"n":8,"mode":"` + "\xff" + `"}}` + "\n" + // 6
		"\n" +
		`{"kind":"test.echo","payload":{"n":9}}` // 8
	sum, err := b.client.EnqueueBatch(context.Background(), strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		text string
	}{
		{2, "more than one JSON value on the line"},
		{3, "trailing data after the JSON object at byte offset 39"},
		{4, "NUL byte at byte offset 38"},
		{5, `duplicate key "n" in object at /payload`},
		{6, "invalid UTF-8 at byte offset 45"},
	}
	if sum.Lines != 7 || sum.Enqueued != 2 || len(sum.Rejected) != len(want) {
		t.Fatalf("summary = %+v", sum)
	}
	for i, w := range want {
		if r := sum.Rejected[i]; r.Line != w.line || !strings.Contains(r.Error, w.text) {
			t.Errorf("rejection %d = %+v, want line %d with %q", i, r, w.line, w.text)
		}
	}
	if got := queueSize(t, b, "default"); got != 2 {
		t.Fatalf("default queue holds %d tasks, want 2", got)
	}
}

// FuzzParseBatchLine: no panic; an accepted line re-encoded from what was
// parsed parses to the same kind, payload and options; an accepted line
// twice on one line is refused; every rejection says why, briefly.
func FuzzParseBatchLine(f *testing.F) {
	for _, s := range []string{
		`{"kind":"http.call","payload":{"url":"https://example.com"},"key":"k","queue":"q","workflow":"w","run_id":"r","max_retry":3,"timeout":"30s","in":"1m","retry_base":"1s","retry_max":"1h","replay_of":"id"}`,
		`{"kind":"k","payload":{"n":1}}{"kind":"k","payload":{"n":2}}`,
		`{"kind":"k","payload":{"n":1}} x`,
		"{\"kind\":\"k\",\"payload\":{}}\x00",
		"{\"kind\":\"k\",\"payload\":{\"s\":\"\xff\"}}",
		`{"kind":"k","kind":"j","payload":{}}`,
		`{"kind":"k","payload":{"a":{"b":1,"b":2}}}`,
		`{"kind":"k","payload":{},"Payload":{}}`,
		`{"kind":"k","payload":"\ud800"}`,
		"\xef\xbb\xbf{\"kind\":\"k\",\"payload\":{}}",
		" {\"kind\":\"k\",\"payload\":[]}\r",
		`{"kind":"k","payload":` + nested(MaxPayloadDepth+1) + `}`,
		`{"kind":"k","payload":{},"in":"-1.5h","max_retry":0}`,
		`[1]`, `{`, ``, `{"kind":"k","payload":{}} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		kind, payload, o, err := ParseBatchLine(line)
		if err != nil {
			if msg := err.Error(); msg == "" || len(msg) > 600 || !utf8.ValidString(msg) {
				t.Fatalf("rejection message %q", msg)
			}
			return
		}
		if !utf8.Valid(line) || bytes.IndexByte(line, 0) >= 0 || !json.Valid(payload) {
			t.Fatalf("accepted %q", line)
		}
		for _, sep := range []string{"", " ", "\t"} {
			twice := append(append(append([]byte{}, trimJSONSpace(line)...), sep...), trimJSONSpace(line)...)
			if _, _, _, err := ParseBatchLine(twice); err == nil || !strings.Contains(err.Error(), "more than one JSON value") {
				t.Fatalf("a line holding %q twice gave %v", line, err)
			}
		}
		re := reencode(t, kind, payload, o)
		kind2, payload2, o2, err := ParseBatchLine(re)
		if err != nil {
			t.Fatalf("re-encoded %q as %q: %v", line, re, err)
		}
		var c1, c2 bytes.Buffer
		if err := json.Compact(&c1, payload); err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&c2, payload2); err != nil {
			t.Fatal(err)
		}
		if kind2 != kind || c1.String() != c2.String() || o2 != o {
			t.Fatalf("round trip of %q via %q: %q %s %+v, then %q %s %+v", line, re, kind, payload, o, kind2, payload2, o2)
		}
	})
}

func reencode(t *testing.T, kind string, payload []byte, o EnqueueOptions) []byte {
	t.Helper()
	bl := BatchLine{Kind: kind, Payload: payload, Key: o.Key, Queue: o.Queue, Workflow: o.Workflow, RunID: o.RunID, ReplayOf: o.ReplayOf}
	if o.MaxAttempts > 0 {
		n := o.MaxAttempts - 1
		bl.MaxRetry = &n
	}
	dur := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	bl.Timeout, bl.In, bl.RetryBase, bl.RetryMax = dur(o.Timeout), dur(o.In), dur(o.RetryBase), dur(o.RetryMax)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(bl); err != nil {
		t.Fatalf("encode %+v: %v", bl, err)
	}
	return buf.Bytes()
}

// FuzzBatchLines runs the batch's line splitting and line parsing over any
// input, as EnqueueBatch does before Redis: every non-blank line comes out
// once, with its number, and a rejection names a line that exists.
func FuzzBatchLines(f *testing.F) {
	f.Add([]byte("{\"kind\":\"k\",\"payload\":{}}\n\n{\"kind\":\"k\",\"payload\":{}}{}\r\n x\n"))
	f.Add([]byte("\xef\xbb\xbf{\"kind\":\"k\",\"payload\":{}}\r\n\xef\xbb\xbf{}\n"))
	f.Add([]byte(strings.Repeat("x", 40) + "\n\n\x00\n{\"kind\":\"k\",\"payload\":{\"a\":1,\"a\":2}}"))
	f.Add([]byte("a\rb\r\n\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 32
		got, err := readAllLines(t, bytes.NewReader(in), 16, max)
		if err != io.EOF {
			t.Fatalf("err = %v", err)
		}
		// The reference: split at LF, drop one BOM at the start.
		var want []readLineResult
		for i, l := range strings.Split(string(in), "\n") {
			if i == 0 && len(l) <= max {
				l = strings.TrimPrefix(l, UTF8BOM)
			}
			switch {
			case len(l) > max:
				want = append(want, readLineResult{i + 1, "", true})
			case len(trimJSONSpace([]byte(l))) > 0:
				want = append(want, readLineResult{i + 1, l, false})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%q: lines %+v, want %+v", in, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: line %d = %+v, want %+v", in, i, got[i], want[i])
			}
			if got[i].tooLong {
				continue
			}
			if _, _, _, err := ParseBatchLine([]byte(got[i].line)); err != nil && err.Error() == "" {
				t.Fatalf("line %d rejected without a reason", got[i].n)
			}
		}
	})
}
