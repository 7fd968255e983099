package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	manyKeys := func(n int, dup string) string {
		var sb strings.Builder
		sb.WriteString("{")
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString(`"k` + strconv.Itoa(i) + `":1`)
		}
		if dup != "" {
			sb.WriteString(`,"` + dup + `":2`)
		}
		sb.WriteString("}")
		return sb.String()
	}
	tests := []struct {
		name    string
		payload string
		want    string // substring of the reason; "" for accepted
	}{
		{name: "object", payload: `{"url":"http://a/","headers":{"A":"b"}}`},
		{name: "scalar", payload: `5`},
		{name: "same key in sibling objects", payload: `{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}]}`},
		{name: "key equal to a value", payload: `{"a":"b","b":"a"}`},
		{name: "escaped quote in key", payload: `{"a\"":1,"a":2,"a\\":3}`},
		{name: "escaped lone surrogate is valid JSON", payload: `{"body":"\ud800"}`},
		{name: "escaped NUL", payload: `{"a":"\u0000"}`},
		{name: "non-ASCII", payload: `{"name":"Zoë ✓ 🎉"}`},
		{name: "depth at the limit", payload: deep(MaxPayloadDepth)},
		{name: "many keys", payload: manyKeys(1000, "")},

		{name: "invalid UTF-8 in a string", payload: "{\"url\":\"http://a/\xff\"}", want: "invalid UTF-8 at byte offset 17"},
		{name: "truncated UTF-8", payload: "\"\xe2\x9c\"", want: "invalid UTF-8 at byte offset 1"},
		{name: "UTF-16 surrogate encoded in UTF-8", payload: "\"\xed\xa0\x80\"", want: "invalid UTF-8 at byte offset 1"},
		{name: "overlong encoding", payload: "\"\xc0\xaf\"", want: "invalid UTF-8 at byte offset 1"},
		{name: "BOM", payload: "\xef\xbb\xbf{}", want: "byte order mark"},
		{name: "duplicate key at the top", payload: `{"url":"a","url":"b"}`, want: `duplicate key "url" in object at /`},
		{name: "duplicate key nested", payload: `{"url":"a","headers":{"X":"1","X":"2"}}`, want: `duplicate key "X" in object at /headers`},
		{name: "duplicate key in an array element", payload: `{"a":[{},{"k":1,"k":1}]}`, want: `duplicate key "k" in object at /a/1`},
		{name: "duplicate key spelled with an escape", payload: `{"a":1,"\u0061":2}`, want: `duplicate key "a"`},
		{name: "duplicate key after a map is built", payload: manyKeys(100, "k42"), want: `duplicate key "k42"`},
		{name: "pointer escapes", payload: `{"a/b~":{"x":1,"x":2}}`, want: `at /a~1b~0`},
		{name: "duplicate empty key", payload: `{"":1,"":2}`, want: `duplicate key ""`},
		{name: "too deep", payload: deep(MaxPayloadDepth + 1), want: "deeper than 128 levels at byte offset 128"},
		{name: "two values", payload: `{}{}`, want: "not valid JSON"},
		{name: "trailing garbage", payload: `{"a":1}x`, want: "not valid JSON"},
		{name: "raw NUL", payload: "{\"a\":\"\x00\"}", want: "not valid JSON"},
		{name: "far too deep", payload: deep(20000), want: "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkJSON([]byte(tc.payload))
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("checkJSON = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckJSONShortensLongKeys(t *testing.T) {
	t.Parallel()
	k := strings.Repeat("é", 1000)
	got := checkJSON([]byte(`{"` + k + `":{"` + k + `":1,"` + k + `":1}}`))
	if !strings.Contains(got, "duplicate key") || len(got) > 400 || !utf8.ValidString(got) {
		t.Fatalf("reason (%d bytes) = %q", len(got), got)
	}
}

// refProblem is what a straightforward json.Decoder.Token walk finds: the
// reference the fast checker is compared with.
type refProblem struct {
	what      int
	key, path string
}

func refCheck(b []byte, maxDepth int) (refProblem, error) {
	type rframe struct {
		obj       bool
		next      int
		cur       string
		seen      map[string]bool
		expectKey bool
	}
	var st []*rframe
	pointer := func() string {
		var sb strings.Builder
		for _, f := range st[:len(st)-1] {
			sb.WriteByte('/')
			if f.obj {
				sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(f.cur))
			} else {
				sb.WriteString(strconv.Itoa(f.next - 1))
			}
		}
		return sb.String()
	}
	// valueStarts moves the parent past one member or element.
	valueStarts := func() {
		if len(st) == 0 {
			return
		}
		p := st[len(st)-1]
		if p.obj {
			p.expectKey = true
		} else {
			p.next++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // valid JSON numbers past float64's range (1E1000) are tokens too
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return refProblem{}, nil
		}
		if err != nil {
			return refProblem{}, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			st = st[:len(st)-1]
			continue
		}
		if s, ok := tok.(string); ok && len(st) > 0 && st[len(st)-1].obj && st[len(st)-1].expectKey {
			f := st[len(st)-1]
			f.expectKey = false
			f.cur = s
			if f.seen[s] {
				return refProblem{what: problemDuplicate, key: s, path: pointer()}, nil
			}
			f.seen[s] = true
			continue
		}
		valueStarts()
		if d, ok := tok.(json.Delim); ok {
			if len(st) == maxDepth {
				return refProblem{what: problemDepth}, nil
			}
			st = append(st, &rframe{obj: d == '{', seen: map[string]bool{}, expectKey: d == '{'})
		}
	}
}

// FuzzCheckStructure compares the byte-level checker with the
// json.Decoder.Token reference on valid JSON, and checks that checkJSON
// never passes text that is not valid UTF-8 JSON.
func FuzzCheckStructure(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `[[[[[]]]]]`, `{"a\"":1,"a\\":1,"a":1}`,
		`{"\u0061":1,"a":2}`, `{"\ud800":1,"\ud801":2}`, `{"a/b~":{"x":1,"x":1}}`, `"\\"`, `{"k":"\\\"}"}`,
		`[{"a":1},{"a":1},[{"a":1,"b":{"a":1}}]]`, "{\"a\":\"\xff\"}", `{"a":1}{"a":1}`,
		strings.Repeat(`{"a":`, 130) + "1" + strings.Repeat("}", 130),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		reason := checkJSON(b)
		if reason == "" && (!json.Valid(b) || !utf8.Valid(b)) {
			t.Fatalf("accepted %q", b)
		}
		if !json.Valid(b) || !utf8.Valid(b) || bytes.HasPrefix(b, []byte(UTF8BOM)) {
			return
		}
		const depth = 8
		got := checkStructure(b, depth)
		want, err := refCheck(b, depth)
		if err != nil {
			t.Fatalf("reference failed on valid JSON %q: %v", b, err)
		}
		switch {
		case got == nil && want.what == 0:
		case got == nil || got.what != want.what:
			t.Fatalf("checkStructure(%q) = %+v, reference %+v", b, got, want)
		case got.what == problemDuplicate && (got.key != want.key || got.path != want.path):
			t.Fatalf("checkStructure(%q) = %+v, reference %+v", b, got, want)
		}
	})
}

func BenchmarkCheckJSON(b *testing.B) {
	p := []byte(`{"method":"POST","url":"https://api.example.com/v1/orders/12345/notify",` +
		`"headers":{"Content-Type":"application/json","X-Request-Source":"agentq"},` +
		`"body":{"order_id":12345,"status":"shipped","notify":true},"timeout":"10s"}`)
	b.Run("checkJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := checkJSON(p); r != "" {
				b.Fatal(r)
			}
		}
	})
	b.Run("token-reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := refCheck(p, MaxPayloadDepth); err != nil {
				b.Fatal(err)
			}
		}
	})
}
