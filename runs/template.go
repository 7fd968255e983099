package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"
)

// Bounds of one Render call.
const (
	// MaxRenderBytes bounds a rendered payload.
	MaxRenderBytes = 1 << 20
	// MaxRenderWork bounds the bytes the string-building functions of a
	// payload's templates produce, printed or assigned to a variable.
	MaxRenderWork = 4 * MaxRenderBytes
	// MaxRenderIterations bounds the iterations of all range loops of a
	// payload's templates together; a range over a map counts its keys
	// once more, for the sort that precedes its first iteration.
	MaxRenderIterations = 100_000
	// MaxPayloadDepth bounds the nesting of a payload template's objects
	// and arrays.
	MaxPayloadDepth = 100
)

// maxTemplatePrintfWidth bounds a printf width or precision: fmt applies a width to
// every element of a slice, so a wide verb over a long array would build a
// string of width times elements before any bound could see it.
const maxTemplatePrintfWidth = 256

// TemplateData builds the data Render gives templates: input and the
// steps' outputs are decoded with numbers kept as json.Number. Empty input
// is {}; an empty or null output is nil. Errors name what did not decode.
func TemplateData(runID string, input json.RawMessage, outputs map[string]json.RawMessage) (map[string]any, error) {
	in := any(map[string]any{})
	if len(bytes.TrimSpace(input)) > 0 {
		v, err := decodeUseNumber(input)
		if err != nil {
			return nil, fmt.Errorf("template data: input: %w", err)
		}
		in = v
	}
	steps := make(map[string]any, len(outputs))
	for name, out := range outputs {
		var v any
		if len(bytes.TrimSpace(out)) > 0 {
			var err error
			if v, err = decodeUseNumber(out); err != nil {
				return nil, fmt.Errorf("template data: output of step %q: %w", name, err)
			}
		}
		steps[name] = map[string]any{"output": v}
	}
	return map[string]any{"input": in, "run_id": runID, "steps": steps}, nil
}

func decodeUseNumber(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// Render renders the payload template tmpl of the step named step with
// data (see TemplateData). An empty tmpl renders {}. Errors read
// `step "<step>": payload<path>: <problem>`, the path being the string's
// place in the payload (.messages[0].content); a parse error reads
// "template line N: ...", an execution error "at <.input.x> (line:col):
// ...".
//
// tmpl is JSON. Every string value in it (object keys are not) that holds
// "{{" is a Go text/template; Render executes it and puts what it printed
// back as a JSON string, escaped (quotes, backslashes, control characters,
// U+2028 and U+2029; invalid UTF-8 becomes U+FFFD; HTML characters stay).
// Everything else (keys, numbers, booleans, null, strings without "{{")
// is copied as it is, in its order. The data a template sees:
//
//	.input                     the run's input, decoded JSON
//	.run_id                    the run's id
//	.steps.<name>.output       the output of an earlier step, decoded JSON
//
// A field that is not there is an error (missingkey=error), never an
// empty string: a template reading the output of a step that has none yet
// fails with `no output of step "research" yet`. An optional field is read
// with index, which gives nil for a missing key: {{with index .input
// "tone"}}...{{end}} or {{index .input "tone" | default "neutral"}}. A nil
// (JSON null, a missing index) prints as "<no value>", text/template's
// way: guard it with with, if or default.
//
// Numbers are json.Number, so they print as they were written (12345678,
// not 1.2345678e+07); compare them as strings (eq .input.n "3"). Objects
// and arrays print in Go's syntax (map[a:1]): print them with json.
//
// Functions, besides text/template's builtins:
//
//	json V       V as JSON text ({"a":1}); strings are quoted
//	trunc N V    V (a string, or else its JSON text) cut to at most N runes
//	default D V  V, or D when V is nil or ""
//
// {{define}}, {{template}} and {{block}} are refused. A literal "{{" in a
// payload string is written {{"{{"}}.
//
// Render is bounded in output, time and memory: the rendered payload may
// hold at most MaxRenderBytes, the payload at most MaxPayloadDepth levels
// of nesting, all range loops together at most MaxRenderIterations
// iterations, and the builtins that build strings (print, printf,
// println, html, js, urlquery, json, trunc) at most MaxRenderWork bytes;
// printf widths and precisions are at most 256 and '*' is refused. Going
// over a bound is an error naming it. Beyond that, the time one iteration
// takes is bounded by the size of data (eq over two long strings, say).
func Render(step string, tmpl json.RawMessage, data map[string]any) (json.RawMessage, error) {
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return json.RawMessage("{}"), nil
	}
	b := &renderBudget{}
	funcs := b.funcs()
	out := make([]byte, 0, len(tmpl)+len(tmpl)/2)
	err := walkPayloadJSON(tmpl, &out, func(path, src string) (string, error) {
		t, err := parsePayloadTemplate(src, funcs)
		if err != nil {
			return "", renderError(step, path, err.Error())
		}
		boundRanges(t.Tree.Root)
		room := MaxRenderBytes - len(out) - 2
		w := &renderWriter{room: room}
		if err := t.Execute(w, data); err != nil {
			return "", renderError(step, path, templateExecReason(err, data))
		}
		return w.buf.String(), nil
	})
	if err != nil {
		var pe *payloadError
		if errors.As(err, &pe) {
			return nil, renderError(step, pe.path, pe.reason)
		}
		return nil, err
	}
	if len(out) > MaxRenderBytes {
		return nil, renderError(step, "", errRenderTooLarge.Error())
	}
	return out, nil
}

// ParseTemplates parses every template of the payload template tmpl of
// the step named step without executing it. Errors read like Render's;
// all of them are returned, joined.
func ParseTemplates(step string, tmpl json.RawMessage) error {
	var errs []error
	err := eachPayloadTemplate(tmpl, func(path string, _ *template.Template, err error) {
		if err != nil {
			errs = append(errs, renderError(step, path, err.Error()))
		}
	})
	if err != nil {
		var pe *payloadError
		if errors.As(err, &pe) {
			err = renderError(step, pe.path, pe.reason)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// eachPayloadTemplate parses each template of tmpl and hands it, or why it did
// not parse, to fn with its path. The error is the payload's JSON's.
func eachPayloadTemplate(tmpl json.RawMessage, fn func(path string, t *template.Template, err error)) error {
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return nil
	}
	funcs := (&renderBudget{}).funcs()
	return walkPayloadJSON(tmpl, nil, func(path, src string) (string, error) {
		t, err := parsePayloadTemplate(src, funcs)
		fn(path, t, err)
		return src, nil
	})
}

func renderError(step, path, reason string) error {
	return fmt.Errorf("step %q: payload%s: %s", step, path, reason)
}

// payloadError is a problem of the payload template's JSON at path.
type payloadError struct{ path, reason string }

func (e *payloadError) Error() string { return "payload" + e.path + ": " + e.reason }

type payloadFrame struct {
	obj bool   // an object, else an array
	n   int    // values written so far
	key string // the key of the value being read (objects)
	// wantKey: the next token of an object is a key.
	wantKey bool
}

// walkPayloadJSON reads the JSON value tmpl token by token and calls render
// for each string value holding "{{" with its path; when out is not nil it
// writes the value to it, each such string replaced by what render
// returned. It stops at the first error of render or of the JSON
// (*payloadError), and when out outgrows MaxRenderBytes.
func walkPayloadJSON(tmpl []byte, out *[]byte, render func(path, src string) (string, error)) error {
	dec := json.NewDecoder(bytes.NewReader(tmpl))
	dec.UseNumber()
	var (
		stack []payloadFrame
		done  bool
	)
	write := out != nil
	if !write {
		out = new([]byte)
	}
	path := func() string {
		var sb strings.Builder
		for _, f := range stack {
			if f.obj {
				appendPayloadKeyPath(&sb, f.key)
			} else {
				sb.WriteByte('[')
				sb.WriteString(strconv.Itoa(f.n))
				sb.WriteByte(']')
			}
		}
		return sb.String()
	}
	// startValue writes the comma before an array element.
	startValue := func() {
		if n := len(stack); n > 0 && !stack[n-1].obj && stack[n-1].n > 0 && write {
			*out = append(*out, ',')
		}
	}
	// endValue checks the size, then counts the value in its container.
	endValue := func() error {
		if write && len(*out) > MaxRenderBytes {
			return &payloadError{path: path(), reason: errRenderTooLarge.Error()}
		}
		if n := len(stack); n > 0 {
			stack[n-1].n++
			if stack[n-1].obj {
				stack[n-1].wantKey = true
			}
		} else {
			done = true
		}
		return nil
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return &payloadError{path: path(), reason: "invalid JSON: unexpected end"}
			}
			return nil
		}
		if err != nil {
			return &payloadError{path: path(), reason: payloadJSONReason(err)}
		}
		if done {
			return &payloadError{reason: "invalid JSON: more than one value"}
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].obj && stack[top].wantKey {
			switch k := tok.(type) {
			case string:
				if write {
					if stack[top].n > 0 {
						*out = append(*out, ',')
					}
					*out = appendJSONString(*out, k)
					*out = append(*out, ':')
				}
				stack[top].key = k
				stack[top].wantKey = false
			case json.Delim: // '}': Token only lets a key or the end through
				stack = stack[:top]
				if write {
					*out = append(*out, '}')
				}
				if err := endValue(); err != nil {
					return err
				}
			}
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= MaxPayloadDepth {
					return &payloadError{path: path(), reason: fmt.Sprintf("nested deeper than %d levels", MaxPayloadDepth)}
				}
				startValue()
				stack = append(stack, payloadFrame{obj: v == '{', wantKey: v == '{'})
				if write {
					*out = append(*out, byte(v))
				}
			case ']':
				stack = stack[:top]
				if write {
					*out = append(*out, ']')
				}
				if err := endValue(); err != nil {
					return err
				}
			}
		case string:
			startValue()
			if strings.Contains(v, "{{") {
				s, err := render(path(), v)
				if err != nil {
					return err
				}
				v = s
			}
			if write {
				*out = appendJSONString(*out, v)
			}
			if err := endValue(); err != nil {
				return err
			}
		case json.Number:
			startValue()
			if write {
				*out = append(*out, v...)
			}
			if err := endValue(); err != nil {
				return err
			}
		case bool:
			startValue()
			if write {
				*out = strconv.AppendBool(*out, v)
			}
			if err := endValue(); err != nil {
				return err
			}
		case nil:
			startValue()
			if write {
				*out = append(*out, "null"...)
			}
			if err := endValue(); err != nil {
				return err
			}
		}
	}
}

func payloadJSONReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d: %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "invalid JSON: unexpected end"
	}
	return "invalid JSON: " + err.Error()
}

// appendPayloadKeyPath writes the path segment of an object key: .key when the
// key is a template-safe name, else ["key"].
func appendPayloadKeyPath(sb *strings.Builder, key string) {
	if templateSafeName(key) {
		sb.WriteByte('.')
		sb.WriteString(key)
		return
	}
	sb.WriteByte('[')
	sb.WriteString(strconv.Quote(key))
	sb.WriteByte(']')
}

// templateSafeName reports whether s is [A-Za-z_][A-Za-z0-9_]*.
func templateSafeName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped;
// HTML characters are left as they are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var (
	errRenderTooLarge = fmt.Errorf("rendered payload is larger than %d bytes (the limit)", MaxRenderBytes)
	errRenderTooMuch  = fmt.Errorf("template functions built more than %d bytes (the limit)", MaxRenderWork)
	errRenderTooLong  = fmt.Errorf("range loops ran more than %d iterations (the limit)", MaxRenderIterations)
)

// renderWriter keeps what a template prints, up to room bytes.
type renderWriter struct {
	buf  strings.Builder
	room int
}

func (w *renderWriter) Write(p []byte) (int, error) {
	if len(p) > w.room-w.buf.Len() {
		return 0, errRenderTooLarge
	}
	return w.buf.Write(p)
}

// renderBudget counts what one Render's templates do: range iterations and the
// bytes the string-building functions produce.
type renderBudget struct {
	iterations int
	work       int
}

func (b *renderBudget) charge(n int) error {
	b.work += n
	if b.work > MaxRenderWork {
		return errRenderTooMuch
	}
	return nil
}

// rangeTickFunc and rangeSizeFunc are the functions boundRanges puts in every
// range: the first counts an iteration, the second a map's keys.
const (
	rangeTickFunc = "_range_tick"
	rangeSizeFunc = "_range_size"
)

func (b *renderBudget) funcs() template.FuncMap {
	str := func(f func(args ...any) string) func(args ...any) (string, error) {
		return func(args ...any) (string, error) {
			s := f(args...)
			return s, b.charge(len(s))
		}
	}
	return template.FuncMap{
		rangeTickFunc: func() (string, error) {
			b.iterations++
			if b.iterations > MaxRenderIterations {
				return "", errRenderTooLong
			}
			return "", nil
		},
		rangeSizeFunc: func(v any) (any, error) {
			if rv := reflect.ValueOf(v); rv.Kind() == reflect.Map {
				b.iterations += rv.Len()
				if b.iterations > MaxRenderIterations {
					return nil, errRenderTooLong
				}
			}
			return v, nil
		},
		"json": func(v any) (string, error) {
			s, err := templateJSON(v)
			if err != nil {
				return "", err
			}
			return s, b.charge(len(s))
		},
		"trunc": func(n int, v any) (string, error) {
			if n < 0 {
				return "", fmt.Errorf("trunc: negative length %d", n)
			}
			s, ok := v.(string)
			if !ok {
				var err error
				if s, err = templateJSON(v); err != nil {
					return "", err
				}
			}
			for i := range s {
				if n == 0 {
					s = s[:i]
					break
				}
				n--
			}
			return s, b.charge(len(s))
		},
		"default": func(def, v any) any {
			if v == nil || v == "" {
				return def
			}
			return v
		},
		"printf": func(format string, args ...any) (string, error) {
			if err := checkPrintfFormat(format); err != nil {
				return "", err
			}
			s := fmt.Sprintf(format, args...)
			return s, b.charge(len(s))
		},
		"print":    str(fmt.Sprint),
		"println":  str(fmt.Sprintln),
		"html":     str(template.HTMLEscaper),
		"js":       str(template.JSEscaper),
		"urlquery": str(template.URLQueryEscaper),
	}
}

func templateJSON(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// checkPrintfFormat refuses printf formats whose widths or precisions could
// build a string far larger than the bounds: above maxTemplatePrintfWidth, or
// taken from an argument ('*').
func checkPrintfFormat(format string) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
	directive:
		for i++; i < len(format); i++ {
			c := format[i]
			switch {
			case c == '*':
				return errors.New("'*' widths are not supported")
			case '0' <= c && c <= '9':
				j := i
				for j < len(format) && '0' <= format[j] && format[j] <= '9' {
					j++
				}
				if n, err := strconv.Atoi(format[i:j]); err != nil || n > maxTemplatePrintfWidth {
					return fmt.Errorf("width or precision %s is above %d", format[i:j], maxTemplatePrintfWidth)
				}
				i = j - 1
			case strings.IndexByte("+-# .[]", c) >= 0:
			default: // the verb, or the second % of %%
				break directive
			}
		}
	}
	return nil
}

// parsePayloadTemplate parses src with funcs, refusing what payload templates may
// not use. Its error is the reason alone, without step or path.
func parsePayloadTemplate(src string, funcs template.FuncMap) (*template.Template, error) {
	// The root's name is one no {{define}} in a payload can give (a NUL),
	// so a define cannot replace the root unnoticed: it shows as a second
	// template.
	t, err := template.New(rootTemplate).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, errors.New(templateParseReason(err))
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("{{define}} and {{block}} are not supported in payload templates")
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return nil, errors.New("template is empty")
	}
	var bad error
	walkTemplateNodes(t.Tree.Root, true, func(n parse.Node, _ bool) {
		if _, ok := n.(*parse.TemplateNode); ok && bad == nil {
			bad = errors.New("{{template}} and {{block}} are not supported in payload templates")
		}
	})
	if bad != nil {
		return nil, bad
	}
	return t, nil
}

// rootTemplate names a payload string's template.
const rootTemplate = "\x00"

var templateParseLineRE = regexp.MustCompile(`^template: \x00:(\d+): (?s:(.*))$`)

func templateParseReason(err error) string {
	msg := err.Error()
	if m := templateParseLineRE.FindStringSubmatch(msg); m != nil {
		return "template line " + m[1] + ": " + m[2]
	}
	return strings.TrimPrefix(msg, "template: ")
}

var (
	templateExecRE    = regexp.MustCompile(`^template: \x00:(\d+):(\d+): executing "\\x00" at <(?s:(.*?))>: (?s:(.*))$`)
	templateNoEntryRE = regexp.MustCompile(`^map has no entry for key "((?:[^"\\]|\\.)*)"$`)
)

// templateExecReason says why a template's execution failed, without step or
// path; a missing step output reads `no output of step "x" yet`.
func templateExecReason(err error, data map[string]any) string {
	for _, limit := range []error{errRenderTooLarge, errRenderTooMuch, errRenderTooLong} {
		if errors.Is(err, limit) {
			return limit.Error()
		}
	}
	var ee template.ExecError
	if !errors.As(err, &ee) {
		return err.Error()
	}
	msg := ee.Err.Error()
	m := templateExecRE.FindStringSubmatch(msg)
	if m == nil {
		return strings.TrimPrefix(msg, "template: ")
	}
	line, col, at, what := m[1], m[2], m[3], m[4]
	if k := templateNoEntryRE.FindStringSubmatch(what); k != nil {
		key, uerr := strconv.Unquote(`"` + k[1] + `"`)
		if uerr == nil {
			if name, ok := stepOfChain(at); ok && key == name && !hasStepOutput(data, name) {
				return fmt.Sprintf("no output of step %q yet", name)
			}
		}
	}
	return fmt.Sprintf("at <%s> (%s:%s): %s", at, line, col, what)
}

// stepOfChain returns X of a field chain .steps.X... or $.steps.X....
func stepOfChain(at string) (string, bool) {
	rest, ok := strings.CutPrefix(at, ".steps.")
	if !ok {
		if rest, ok = strings.CutPrefix(at, "$.steps."); !ok {
			return "", false
		}
	}
	name, _, _ := strings.Cut(rest, ".")
	return name, templateSafeName(name)
}

func hasStepOutput(data map[string]any, name string) bool {
	steps, ok := data["steps"].(map[string]any)
	if !ok {
		return false
	}
	_, ok = steps[name]
	return ok
}

// rangeTickNode is the action {{_range_tick}} boundRanges puts first in every
// range body, so the renderBudget counts each iteration; rangeSizeCmd the command
// "| _range_size" it puts last in every range pipeline, so the renderBudget
// counts a map's keys, which range sorts before its first iteration.
var rangeTickNode, rangeSizeCmd = func() (parse.Node, *parse.CommandNode) {
	t := template.Must(template.New("tick").Funcs(template.FuncMap{
		rangeTickFunc: func() string { return "" },
		rangeSizeFunc: func(v any) any { return v },
	}).Parse("{{" + rangeTickFunc + "}}{{. | " + rangeSizeFunc + "}}"))
	size := t.Tree.Root.Nodes[1].(*parse.ActionNode).Pipe.Cmds[1]
	return t.Tree.Root.Nodes[0], size
}()

// boundRanges makes every range of the tree count against the renderBudget:
// rangeTickNode first in its body, rangeSizeCmd last in its pipeline.
func boundRanges(root *parse.ListNode) {
	walkTemplateNodes(root, true, func(n parse.Node, _ bool) {
		r, ok := n.(*parse.RangeNode)
		if !ok || r.List == nil || r.Pipe == nil {
			return
		}
		r.List.Nodes = append([]parse.Node{rangeTickNode}, r.List.Nodes...)
		r.Pipe.Cmds = append(r.Pipe.Cmds, rangeSizeCmd)
	})
}

// walkTemplateNodes calls fn for every node under n, depth first, telling it
// whether dot there is still the template's data (not rebound by an
// enclosing range or with body).
func walkTemplateNodes(n parse.Node, rootDot bool, fn func(n parse.Node, rootDot bool)) {
	if n == nil {
		return
	}
	fn(n, rootDot)
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkTemplateNodes(c, rootDot, fn)
		}
	case *parse.ActionNode:
		walkTemplatePipe(n.Pipe, rootDot, fn)
	case *parse.PipeNode:
		walkTemplatePipe(n, rootDot, fn)
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkTemplateNodes(a, rootDot, fn)
		}
	case *parse.ChainNode:
		walkTemplateNodes(n.Node, rootDot, fn)
	case *parse.IfNode:
		walkTemplateBranch(&n.BranchNode, rootDot, rootDot, fn)
	case *parse.RangeNode:
		walkTemplateBranch(&n.BranchNode, false, rootDot, fn)
	case *parse.WithNode:
		walkTemplateBranch(&n.BranchNode, false, rootDot, fn)
	case *parse.TemplateNode:
		walkTemplatePipe(n.Pipe, rootDot, fn)
	}
}

func walkTemplatePipe(p *parse.PipeNode, rootDot bool, fn func(parse.Node, bool)) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		walkTemplateNodes(c, rootDot, fn)
	}
}

func walkTemplateBranch(b *parse.BranchNode, bodyDot, elseDot bool, fn func(parse.Node, bool)) {
	walkTemplatePipe(b.Pipe, elseDot, fn)
	if b.List != nil {
		walkTemplateNodes(b.List, bodyDot, fn)
	}
	if b.ElseList != nil {
		walkTemplateNodes(b.ElseList, elseDot, fn)
	}
}

// templateStepRefs returns the steps t reads as .steps.X (where dot is the
// template's data) or $.steps.X, in order of appearance, each once.
// templateUnknownRoots returns the fields a template reads from the root
// of its data that the data has not (only input, run_id and steps).
func templateUnknownRoots(t *template.Template) []string {
	var out []string
	seen := map[string]bool{}
	walkTemplateNodes(t.Tree.Root, true, func(n parse.Node, rootDot bool) {
		var name string
		switch n := n.(type) {
		case *parse.FieldNode:
			if rootDot && len(n.Ident) >= 1 {
				name = n.Ident[0]
			}
		case *parse.VariableNode:
			if len(n.Ident) >= 2 && n.Ident[0] == "$" {
				name = n.Ident[1]
			}
		}
		switch name {
		case "", "input", "run_id", "steps":
			return
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	})
	return out
}

func templateStepRefs(t *template.Template) []string {
	var refs []string
	seen := map[string]bool{}
	walkTemplateNodes(t.Tree.Root, true, func(n parse.Node, rootDot bool) {
		var name string
		switch n := n.(type) {
		case *parse.FieldNode:
			if rootDot && len(n.Ident) >= 2 && n.Ident[0] == "steps" {
				name = n.Ident[1]
			}
		case *parse.VariableNode:
			if len(n.Ident) >= 3 && n.Ident[0] == "$" && n.Ident[1] == "steps" {
				name = n.Ident[2]
			}
		}
		if name != "" && !seen[name] {
			seen[name] = true
			refs = append(refs, name)
		}
	})
	return refs
}
