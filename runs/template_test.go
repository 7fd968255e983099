package runs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// renderTestData is the data of a run "run-1" with input {"topic":..,"n":..}
// whose step "research" has output {"content":..}.
func renderTestData(t testing.TB) map[string]any {
	t.Helper()
	data, err := TemplateData("run-1",
		json.RawMessage(`{"topic":"queues","n":12345678,"big":12345678901234567890,"f":1.50,"arr":["a","b"],"nothing":null,"quote":"say \"hi\"\n\tdone <&>"}`),
		map[string]json.RawMessage{"research": json.RawMessage(`{"content":"notes","score":0.5}`), "empty": nil})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRender(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tmpl string
		data map[string]any // nil: renderTestData
		want string
	}{
		{
			name: "empty is an empty object",
			tmpl: " \n",
			want: `{}`,
		},
		{
			name: "nested objects and arrays",
			tmpl: `{"model":"small","messages":[{"role":"system","content":"run {{.run_id}}"},{"role":"user","content":"Write about {{.input.topic}} using {{.steps.research.output.content}}"}],"meta":{"tags":["{{index .input.arr 1}}",["{{.input.topic}}"]]}}`,
			want: `{"model":"small","messages":[{"role":"system","content":"run run-1"},{"role":"user","content":"Write about queues using notes"}],"meta":{"tags":["b",["queues"]]}}`,
		},
		{
			name: "non-string values and keys untouched, order kept",
			tmpl: `{ "z" : 1.50, "a":true,"m":false, "{{.input.topic}}": null, "e":1e400, "neg":-0, "s":"plain }} text", "arr":[ ], "obj":{ } }`,
			want: `{"z":1.50,"a":true,"m":false,"{{.input.topic}}":null,"e":1e400,"neg":-0,"s":"plain }} text","arr":[],"obj":{}}`,
		},
		{
			name: "duplicate keys are copied",
			tmpl: `{"a":"1","a":"{{.input.topic}}"}`,
			want: `{"a":"1","a":"queues"}`,
		},
		{
			name: "numbers print as written",
			tmpl: `{"a":"{{.input.n}} {{.input.big}} {{.input.f}} {{.steps.research.output.score}}"}`,
			want: `{"a":"12345678 12345678901234567890 1.50 0.5"}`,
		},
		{
			name: "rendered text is escaped",
			tmpl: `{"a":"<{{.input.quote}}>"}`,
			want: `{"a":"<say \"hi\"\n\tdone <&>>"}`,
		},
		{
			name: "control characters, invalid UTF-8 and line separators",
			tmpl: `{"a":"{{.input.s}}"}`,
			data: map[string]any{"input": map[string]any{"s": "a\x01b\xffc\u2028d\x7fé\\"}},
			want: `{"a":"a\u0001b\ufffdc\u2028d` + "\x7f" + `é\\"}`,
		},
		{
			name: "escapes in the template are decoded and written anew",
			tmpl: `{"a\u0041":"\u00e9\/{{.input.topic}}\n","b":"\u00e9\/"}`,
			want: `{"aA":"é/queues\n","b":"é/"}`,
		},
		{
			name: "json function",
			tmpl: `{"a":"{{json .input.arr}}","b":"{{json .steps.research.output}}","c":"{{json .input.topic}}","d":"{{json .input.nothing}}","e":"{{json .input.big}}"}`,
			want: `{"a":"[\"a\",\"b\"]","b":"{\"content\":\"notes\",\"score\":0.5}","c":"\"queues\"","d":"null","e":"12345678901234567890"}`,
		},
		{
			name: "json keeps HTML characters",
			tmpl: `{"a":"{{json .input.quote}}"}`,
			want: `{"a":"\"say \\\"hi\\\"\\n\\tdone <&>\""}`,
		},
		{
			name: "trunc counts runes",
			tmpl: `{"a":"{{trunc 2 \"héllo\"}}|{{.input.topic | trunc 100}}|{{trunc 0 .input.topic}}|{{trunc 4 .input.arr}}"}`,
			want: `{"a":"hé|queues||[\"a\""}`,
		},
		{
			name: "default and index for optional fields",
			tmpl: `{"a":"{{index .input \"tone\" | default \"plain\"}}","b":"{{.input.nothing | default \"none\"}}","c":"{{with index .input \"tone\"}}{{.}}{{else}}no tone{{end}}","d":"{{.input.topic | default \"x\"}}"}`,
			want: `{"a":"plain","b":"none","c":"no tone","d":"queues"}`,
		},
		{
			name: "range and conditionals",
			tmpl: `{"a":"{{range $i, $e := .input.arr}}{{if $i}},{{end}}{{$e}}{{end}}","b":"{{if eq .input.n \"12345678\"}}yes{{end}}"}`,
			want: `{"a":"a,b","b":"yes"}`,
		},
		{
			name: "range over a map in key order, else for null and empty",
			tmpl: `{"a":"{{range $k, $v := .steps.research.output}}{{$k}}={{$v}};{{end}}","b":"{{range .input.nothing}}x{{else}}none{{end}}","c":"{{range $i := 3}}{{$i}}{{end}}{{range 0}}x{{else}}zero{{end}}"}`,
			want: `{"a":"content=notes;score=0.5;","b":"none","c":"012zero"}`,
		},
		{
			name: "a literal {{ is written as an action",
			tmpl: `{"a":"{{\"{{\"}}x}}"}`,
			want: `{"a":"{{x}}"}`,
		},
		{
			name: "top-level string and array",
			tmpl: `["{{.run_id}}", 1]`,
			want: `["run-1",1]`,
		},
		{
			name: "step with empty output is present",
			tmpl: `{"a":"{{.steps.empty.output | default \"-\"}}"}`,
			want: `{"a":"-"}`,
		},
		{
			name: "null prints as no value",
			tmpl: `{"a":"{{.input.nothing}}"}`,
			want: `{"a":"<no value>"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := tc.data
			if data == nil {
				data = renderTestData(t)
			}
			got, err := Render("draft", json.RawMessage(tc.tmpl), data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Render\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("Render gave invalid JSON %s", got)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tmpl string
		data map[string]any // nil: renderTestData
		want string         // the whole error text, or its start when it ends in "…"
	}{
		{
			name: "step without output yet",
			tmpl: `{"messages":[{"role":"user","content":"{{.steps.research.output.content}} {{.steps.outline.output.content}}"}]}`,
			want: `step "draft": payload.messages[0].content: no output of step "outline" yet`,
		},
		{
			name: "step without output, read from $",
			tmpl: `{"a":"{{range .input.arr}}{{$.steps.outline.output}}{{end}}"}`,
			want: `step "draft": payload.a: no output of step "outline" yet`,
		},
		{
			name: "missing input field",
			tmpl: `{"messages":[{"content":"{{.input.nope}}"}]}`,
			want: `step "draft": payload.messages[0].content: at <.input.nope> (1:8): map has no entry for key "nope"`,
		},
		{
			name: "missing field of an output",
			tmpl: `{"a":"{{.steps.research.output.research}}"}`,
			want: `step "draft": payload.a: at <.steps.research.output.research> (1:8): map has no entry for key "research"`,
		},
		{
			name: "path of an odd key",
			tmpl: `{"a b":{"c\"d":["x","{{.input.nope}}"]}}`,
			want: `step "draft": payload["a b"]["c\"d"][1]: at <.input.nope>…`,
		},
		{
			name: "field of a string",
			tmpl: `{"a":"{{.input.topic.x}}"}`,
			want: `step "draft": payload.a: at <.input.topic.x> (1:8): can't evaluate field x in type interface {}`,
		},
		{
			name: "unclosed action",
			tmpl: `{"a":"{{.input.topic"}`,
			want: `step "draft": payload.a: template line 1: unclosed action`,
		},
		{
			name: "unknown function",
			tmpl: `{"a":["ok","{{upper .input.topic}}"]}`,
			want: `step "draft": payload.a[1]: template line 1: function "upper" not defined`,
		},
		{
			name: "define refused",
			tmpl: `{"a":"{{define \"x\"}}hi{{end}}"}`,
			want: `step "draft": payload.a: {{define}} and {{block}} are not supported in payload templates`,
		},
		{
			name: "template refused",
			tmpl: `{"a":"{{template \"x\"}}"}`,
			want: `step "draft": payload.a: {{template}} and {{block}} are not supported in payload templates`,
		},
		{
			name: "block refused",
			tmpl: `{"a":"{{block \"x\" .}}hi{{end}}"}`,
			want: `step "draft": payload.a: {{define}} and {{block}} are not supported in payload templates`,
		},
		{
			name: "negative trunc",
			tmpl: `{"a":"{{trunc -1 .input.topic}}"}`,
			want: `step "draft": payload.a: at <trunc -1 .input.topic> (1:2): error calling trunc: trunc: negative length -1`,
		},
		{
			name: "wide printf",
			tmpl: `{"a":"{{printf \"%0999d\" 1}}"}`,
			want: `step "draft": payload.a: at <printf "%0999d" 1> (1:2): error calling printf: width or precision 0999 is above 256`,
		},
		{
			name: "printf star width",
			tmpl: `{"a":"{{printf \"%*d\" 5 1}}"}`,
			want: `step "draft": payload.a: at <printf "%*d" 5 1> (1:2): error calling printf: '*' widths are not supported`,
		},
		{
			name: "expansion over the output cap",
			tmpl: `{"a":"{{range 90000}}0123456789abcdef{{end}}"}`,
			want: `step "draft": payload.a: rendered payload is larger than 1048576 bytes (the limit)`,
		},
		{
			name: "escaping over the output cap",
			tmpl: `{"a":"{{range 80000}}` + strings.Repeat(`\u0001`, 4) + `{{end}}"}`,
			want: `step "draft": payload.a: rendered payload is larger than 1048576 bytes (the limit)`,
		},
		{
			name: "static payload over the output cap",
			tmpl: `{"a":"` + strings.Repeat("x", MaxRenderBytes) + `"}`,
			want: `step "draft": payload.a: rendered payload is larger than 1048576 bytes (the limit)`,
		},
		{
			name: "range iterations capped",
			tmpl: `{"a":"{{range 1000}}{{range 1000}}{{end}}{{end}}"}`,
			want: `step "draft": payload.a: range loops ran more than 100000 iterations (the limit)`,
		},
		{
			name: "range over a map counts its keys",
			tmpl: `{"a":"{{range 200}}{{range $.input.m}}{{break}}{{end}}{{end}}"}`,
			data: func() map[string]any {
				m := map[string]any{}
				for i := range 1000 {
					m[strconv.Itoa(i)] = i
				}
				return map[string]any{"input": map[string]any{"m": m}}
			}(),
			want: `step "draft": payload.a: range loops ran more than 100000 iterations (the limit)`,
		},
		{
			name: "function work capped",
			tmpl: `{"a":"{{range 30000}}{{$x := printf \"%0200d\" 0}}{{end}}"}`,
			want: `step "draft": payload.a: template functions built more than 4194304 bytes (the limit)`,
		},
		{
			name: "invalid JSON",
			tmpl: `{"a":}`,
			want: `step "draft": payload.a: invalid JSON at offset 5: invalid character '}' looking for beginning of value`,
		},
		{
			name: "truncated JSON",
			tmpl: `{"a":["x"`,
			want: `step "draft": payload.a[1]: invalid JSON: unexpected end`,
		},
		{
			name: "two values",
			tmpl: `{} {}`,
			want: `step "draft": payload: invalid JSON: more than one value`,
		},
		{
			name: "too deep",
			tmpl: strings.Repeat("[", MaxPayloadDepth+1) + strings.Repeat("]", MaxPayloadDepth+1),
			want: `step "draft": payload` + strings.Repeat("[0]", MaxPayloadDepth) + `: nested deeper than 100 levels`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := tc.data
			if data == nil {
				data = renderTestData(t)
			}
			got, err := Render("draft", json.RawMessage(tc.tmpl), data)
			if err == nil {
				t.Fatalf("Render = %.100s, want error %q", got, tc.want)
			}
			if got != nil {
				t.Errorf("Render gave %.100s with its error", got)
			}
			if prefix, ok := strings.CutSuffix(tc.want, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error\n got %s\nwant %s...", err, prefix)
				}
			} else if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

// TestRenderDeepestAllowed: MaxPayloadDepth levels render.
func TestRenderDeepestAllowed(t *testing.T) {
	t.Parallel()
	tmpl := strings.Repeat("[", MaxPayloadDepth) + `"{{.run_id}}"` + strings.Repeat("]", MaxPayloadDepth)
	got, err := Render("s", json.RawMessage(tmpl), renderTestData(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(tmpl, "{{.run_id}}", "run-1", 1); string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestRenderConcurrent: renders share nothing (the range counter and the
// function renderBudget are per call).
func TestRenderConcurrent(t *testing.T) {
	t.Parallel()
	tmpl := json.RawMessage(`{"a":"{{range 60000}}{{end}}{{.input.topic}}"}`)
	data := renderTestData(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := Render("s", tmpl, data)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("Render: %v", err)
		}
	}
}

func TestTemplateData(t *testing.T) {
	t.Parallel()
	data, err := TemplateData("r", nil, map[string]json.RawMessage{"a": json.RawMessage(`{"x":1}`), "b": json.RawMessage(" ")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"input":  map[string]any{},
		"run_id": "r",
		"steps": map[string]any{
			"a": map[string]any{"output": map[string]any{"x": json.Number("1")}},
			"b": map[string]any{"output": nil},
		},
	}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("TemplateData = %#v, want %#v", data, want)
	}
	for _, tc := range []struct {
		name    string
		input   string
		outputs map[string]json.RawMessage
		want    string
	}{
		{"bad input", `{`, nil, "template data: input: unexpected EOF"},
		{"two inputs", `{} 1`, nil, "template data: input: more than one JSON value"},
		{"bad output", `{}`, map[string]json.RawMessage{"s1": json.RawMessage(`[`)}, `template data: output of step "s1": unexpected EOF`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TemplateData("r", json.RawMessage(tc.input), tc.outputs)
			if err == nil || err.Error() != tc.want {
				t.Errorf("TemplateData error = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestParseTemplates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tmpl string
		want string
	}{
		{"empty", ``, ``},
		{"valid, missing data does not matter", `{"a":"{{.steps.nope.output.x}}","b":["{{json .input | trunc 5}}"]}`, ``},
		{"plain strings", `{"a":"}} {"}`, ``},
		{
			"every error, joined",
			`{"a":"{{.x","b":[1,"{{nofunc}}"],"c":"{{define \"d\"}}{{end}}"}`,
			"step \"s\": payload.a: template line 1: unclosed action\n" +
				"step \"s\": payload.b[1]: template line 1: function \"nofunc\" not defined\n" +
				"step \"s\": payload.c: {{define}} and {{block}} are not supported in payload templates",
		},
		{"invalid JSON after an error", `{"a":"{{.x","b":}`, "step \"s\": payload.a: template line 1: unclosed action\nstep \"s\": payload.b: invalid JSON at offset 16: invalid character '}' looking for beginning of value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ParseTemplates("s", json.RawMessage(tc.tmpl))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("ParseTemplates error\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestTemplateStepRefs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"field chains", `{{.steps.a.output}} {{.steps.b}} {{.steps.a.output.x}}`, []string{"a", "b"}},
		{"dollar inside range and with", `{{range .input.x}}{{$.steps.c.output}}{{end}}{{with .input}}{{$.steps.d}}{{end}}`, []string{"c", "d"}},
		{"dot rebound by range and with", `{{range .input.x}}{{.steps.e}}{{end}}{{with .input}}{{.steps.f}}{{end}}`, nil},
		{"else keeps dot", `{{with .input.x}}{{else}}{{.steps.g}}{{end}}{{range .input.x}}{{else}}{{.steps.h}}{{end}}`, []string{"g", "h"}},
		{"pipes, if and arguments", `{{if .steps.i}}{{json .steps.j.output | trunc 3}}{{end}}{{range .steps.k.output}}{{end}}{{(.steps.l).output}}`, []string{"i", "j", "k", "l"}},
		{"not steps", `{{.input.steps.m}} {{.steps}} {{index .steps "n"}}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm, err := parsePayloadTemplate(tc.src, (&renderBudget{}).funcs())
			if err != nil {
				t.Fatal(err)
			}
			if got := templateStepRefs(tm); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("templateStepRefs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "\x00\x1f\"\\/", "\xff\xfe", "é\u2028\u2029😀", "<>&", strings.Repeat("\xe2\x82", 3)} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: %v", s, b, err)
		}
		// Each byte of invalid UTF-8 becomes one U+FFFD, as strings.Map
		// reads it.
		if want := strings.Map(func(r rune) rune { return r }, s); back != want {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, back, want)
		}
	}
}

// hasTemplateString reports whether a string value (not a key) of the decoded
// JSON v holds "{{".
func hasTemplateString(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "{{")
	case []any:
		for _, e := range v {
			if hasTemplateString(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if hasTemplateString(e) {
				return true
			}
		}
	}
	return false
}

// FuzzRender: any template over any data renders to valid JSON within
// MaxRenderBytes or fails with an error naming step and payload, never a
// panic; a template without templates renders to the same JSON value.
func FuzzRender(f *testing.F) {
	for _, s := range []struct{ tmpl, input, output string }{
		{`{"messages":[{"role":"user","content":"Write about {{.input.topic}} from {{.steps.research.output.content}}"}]}`, `{"topic":"queues"}`, `{"content":"notes"}`},
		{`{"a":"{{json .input}}","b":[1.50,true,null,1e400],"c":{"d":"{{.run_id}}"}}`, `{"x":[1,2,{"y":null}]}`, ``},
		{`{"a":"{{range $i, $e := .input.arr}}{{$i}}={{$e}};{{end}}"}`, `{"arr":["a","b\u0000",3]}`, `null`},
		{`{"a":"{{.steps.nope.output}}"}`, `{}`, `{}`},
		{`{"a":"{{trunc 3 .steps.research.output}}|{{index .input \"k\" | default \"d\"}}"}`, `{"k":""}`, `"\u00e9\u00e9\u00e9\u00e9"`},
		{`{"a":"{{printf \"%5v|%q\" .input .input}}"}`, `[1,2,3]`, `1`},
		{`{"a":"{{range 200000}}{{end}}"}`, `{}`, ``},
		{`{"a":"{{range .input}}{{range $.input}}x{{end}}{{end}}"}`, `[1,2,3,4,5,6,7,8,9]`, ``},
		{`{"a":"{{define \"x\"}}{{end}}{{template \"x\"}}"}`, `{}`, ``},
		{`{"a\"b":["\u007b\u007b.run_id}}", "{{"]}`, `{}`, ``},
		{`["\ud800", "\xff{{.run_id}}\u2028"]`, `"\xff"`, ``},
		{`{"a":"{{html .input}}{{js .input}}{{urlquery .input}}{{println .input}}{{print 1 2}}"}`, `"<a&b>"`, ``},
		{`[[[[[[[[[[["{{.input}}"]]]]]]]]]]]`, `1`, ``},
		{`{} []`, ``, ``},
		{`"{{.input.a.b.c}}"`, `{"a":{"b":{}}}`, ``},
	} {
		f.Add([]byte(s.tmpl), []byte(s.input), []byte(s.output))
	}
	f.Fuzz(func(t *testing.T, tmpl, input, output []byte) {
		data, err := TemplateData("run-1", input, map[string]json.RawMessage{"research": output})
		if err != nil {
			if data, err = TemplateData("run-1", nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		out, err := Render("s", tmpl, data)
		if err != nil {
			if out != nil {
				t.Fatalf("Render returned %q with its error %v", out, err)
			}
			if !strings.HasPrefix(err.Error(), `step "s": payload`) {
				t.Fatalf("error %q does not name step and payload", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Render(%q) = %q: invalid JSON", tmpl, out)
		}
		if len(out) > MaxRenderBytes {
			t.Fatalf("Render gave %d bytes, over MaxRenderBytes", len(out))
		}
		if len(bytes.TrimSpace(tmpl)) == 0 {
			if string(out) != "{}" {
				t.Fatalf("empty template rendered %q", out)
			}
			return
		}
		if !json.Valid(tmpl) {
			t.Fatalf("Render accepted invalid JSON %q", tmpl)
		}
		in, err := decodeUseNumber(tmpl)
		if err != nil {
			t.Fatalf("template %q decodes with error %v", tmpl, err)
		}
		if !hasTemplateString(in) {
			got, err := decodeUseNumber(out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, in) {
				t.Fatalf("Render(%q) = %q, changed a template without templates", tmpl, out)
			}
		}
	})
}

// FuzzParseTemplates: any template string, and any payload, parses or
// fails with an error naming step and payload, never a panic; a payload
// whose templates parse renders without a parse error.
func FuzzParseTemplates(f *testing.F) {
	for _, s := range []string{
		`{{.input.topic}}`, `{{.input.topic`, `{{define "x"}}{{end}}`, `{{block "b" .}}{{end}}`,
		`{{template "x"}}`, `{{range .steps}}{{break}}{{end}}`, `{{if}}`, `{{nofunc}}`, `{{json}}`,
		`{{/* c */}}`, `{{- .run_id -}}`, `{{$x := 1}}{{$x = 2}}{{$x}}`, `{{(((((1)))))}}`,
		`{{with $.steps.a}}{{.output}}{{else with .input}}{{.}}{{end}}`, `{{printf "%[1]*d" 1 2}}`,
		`{{range $i := 5}}{{$i}}{{end}}`, "{{\"\xff\"}}", `{{.steps.a.b.c.d.e.f}}`, `{{`, `}}{{`,
	} {
		f.Add(s, []byte(`{"a":["x",{"b":"`+strings.ReplaceAll(s, `"`, `\"`)+`"}]}`))
	}
	f.Fuzz(func(t *testing.T, src string, raw []byte) {
		payload, err := json.Marshal(map[string]any{"a": src})
		if err != nil {
			t.Fatal(err)
		}
		perr := ParseTemplates("s", payload)
		if perr != nil && !strings.HasPrefix(perr.Error(), `step "s": payload.a: `) {
			t.Fatalf("ParseTemplates error %q does not name step and path", perr)
		}
		_, rerr := Render("s", payload, renderTestData(t))
		if perr != nil && rerr == nil {
			t.Fatalf("ParseTemplates refused %q (%v) but Render accepted it", src, perr)
		}
		if perr == nil && rerr != nil && strings.Contains(rerr.Error(), ": template line ") {
			t.Fatalf("ParseTemplates accepted %q but Render failed to parse it: %v", src, rerr)
		}
		if err := ParseTemplates("s", raw); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, `step "s": payload`) {
					t.Fatalf("ParseTemplates(%q) error line %q does not name step and payload", raw, line)
				}
			}
		}
	})
}

func ExampleRender() {
	data, err := TemplateData("run-7",
		json.RawMessage(`{"topic":"job queues","words":300}`),
		map[string]json.RawMessage{"research": json.RawMessage(`{"content":"Redis \"lists\"\nand streams"}`)})
	if err != nil {
		panic(err)
	}
	payload, err := Render("draft", json.RawMessage(`{
		"model": "small",
		"max_tokens": 800,
		"messages": [{"role": "user", "content": "Write {{.input.words}} words on {{.input.topic}} from: {{.steps.research.output.content}}"}]
	}`), data)
	fmt.Println(string(payload), err)

	_, err = Render("publish", json.RawMessage(`{"body": "{{.steps.draft.output.content}}"}`), data)
	fmt.Println(err)
	// Output:
	// {"model":"small","max_tokens":800,"messages":[{"role":"user","content":"Write 300 words on job queues from: Redis \"lists\"\nand streams"}]} <nil>
	// step "publish": payload.body: no output of step "draft" yet
}
