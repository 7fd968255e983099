package runs

// PLACEHOLDER: a minimal Render so that the run engine compiles and its
// tests run; the template helper's runs/template.go replaces this file at
// merge.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"text/template"
)

// Render renders a step's payload template: every JSON string value of
// tmpl is executed as a Go text/template over data ({"input": ...,
// "run_id": ..., "steps": {name: {"output": ...}}}), and the result is the
// JSON of the rendered value. Errors name the step and the JSON path.
func Render(step string, tmpl json.RawMessage, data map[string]any) (json.RawMessage, error) {
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	dec := json.NewDecoder(bytes.NewReader(tmpl))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("step %q: payload template is not JSON: %w", step, err)
	}
	out, err := renderValue(step, "$", v, data)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("step %q: rendered payload: %w", step, err)
	}
	return b, nil
}

func renderValue(step, path string, v any, data map[string]any) (any, error) {
	switch v := v.(type) {
	case string:
		t, err := template.New(path).Option("missingkey=error").Parse(v)
		if err != nil {
			return nil, fmt.Errorf("step %q: template at %s: %w", step, path, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("step %q: template at %s: %w", step, path, err)
		}
		return b.String(), nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			r, err := renderValue(step, path+"."+k, e, data)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			r, err := renderValue(step, path+"["+strconv.Itoa(i)+"]", e, data)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}
