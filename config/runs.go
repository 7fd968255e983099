package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentq/agentq/queue"
)

// This file reads what agent runs add to a workflow (steps, caps, schedule)
// and the llm section, from the file's YAML nodes so that every value keeps
// its line.

// isRunKey reports whether rel, a key relative to workflows.<name>, belongs
// to runs: its origin is kept for Config.Origin.
func isRunKey(rel string) bool {
	return rel == "steps" || strings.HasPrefix(rel, "caps.") || strings.HasPrefix(rel, "schedule.")
}

// stepKeys are the keys of one step, with their kinds; payload is any YAML.
var stepKeys = []string{"name", "kind", "queue", "max_attempts", "retry_base", "retry_max", "timeout", "fallback", "payload"}

var stepKinds = map[string]kind{
	"name":         kindString,
	"kind":         kindString,
	"queue":        kindString,
	"max_attempts": kindInt,
	"retry_base":   kindDuration,
	"retry_max":    kindDuration,
	"timeout":      kindDuration,
	"fallback":     kindString,
}

// where is "agentq.yaml, line N" for node n.
func (l *loader) where(n *yaml.Node) string { return fmt.Sprintf("%s, line %d", l.file, n.Line) }

// decodeSteps reads workflows.<name>.steps, a list of step mappings; key
// is its dotted key.
func (l *loader) decodeSteps(n *yaml.Node, key string) ([]Step, []error) {
	if n.Kind != yaml.SequenceNode {
		return nil, []error{&FieldError{Key: key, Source: l.where(n),
			Reason: "must be a list of steps (each a mapping with name, kind and payload), got " + showValue(nodeValue(n), false)}}
	}
	var (
		out  []Step
		errs []error
	)
	for i, item := range n.Content {
		item = resolveAlias(item)
		skey := fmt.Sprintf("%s[%d]", key, i)
		l.runOrigins[skey] = l.where(item)
		var st Step
		if item.Kind != yaml.MappingNode {
			errs = append(errs, &FieldError{Key: skey, Source: l.where(item),
				Reason: "must be a mapping with name, kind and payload, got " + showValue(nodeValue(item), false)})
			out = append(out, st)
			continue
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], resolveAlias(item.Content[j+1])
			fkey := skey + "." + k.Value
			if !slices.Contains(stepKeys, k.Value) {
				errs = append(errs, unknownStepKey(fkey, k.Value, l.where(k)))
				continue
			}
			if isNull(v) {
				continue
			}
			l.runOrigins[fkey] = l.where(v)
			l.origins[fkey] = origin{layer: layerFile, where: l.where(v), node: v}
			if k.Value == "payload" {
				p, err := l.toJSON(v, fkey)
				if err != nil {
					errs = append(errs, err)
				}
				st.Payload = p
				continue
			}
			val, problem := convert(stepKinds[k.Value], nodeValue(v), v, false)
			if problem != "" {
				errs = append(errs, &FieldError{Key: fkey, Source: l.where(v), Reason: problem})
				continue
			}
			switch k.Value {
			case "name":
				st.Name = val.(string)
			case "kind":
				st.Kind = val.(string)
			case "queue":
				st.Queue = val.(string)
			case "max_attempts":
				st.MaxAttempts = val.(int)
			case "retry_base":
				st.RetryBase = val.(time.Duration)
			case "retry_max":
				st.RetryMax = val.(time.Duration)
			case "timeout":
				st.Timeout = val.(time.Duration)
			case "fallback":
				st.Fallback = val.(string)
			}
		}
		out = append(out, st)
	}
	return out, errs
}

// unknownStepKey reports a key a step does not have, suggesting a near one.
func unknownStepKey(key, name, where string) error {
	msg := fmt.Sprintf("config: unknown key %q in %s", key, where)
	if s := closest(name, stepKeys); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", key[:len(key)-len(name)]+s)
	}
	return fmt.Errorf("%s", msg)
}

// maxJSONBytes bounds the JSON one payload or input converts to: aliases
// can make a small file expand without bound.
const maxJSONBytes = MaxFileBytes

// toJSON converts a YAML value (a step's payload, a schedule's input) to
// JSON, keeping the order of mapping keys. Mapping keys must be strings;
// numbers must be finite. It records the origin of every value under key.
func (l *loader) toJSON(n *yaml.Node, key string) (json.RawMessage, error) {
	c := &jsonConv{l: l}
	if err := c.write(n, key, 0, false); err != nil {
		return nil, err
	}
	return json.RawMessage(c.buf.Bytes()), nil
}

type jsonConv struct {
	l   *loader
	buf bytes.Buffer
}

func (c *jsonConv) fail(n *yaml.Node, key, reason string) error {
	return &FieldError{Key: key, Source: c.l.where(n), Reason: reason}
}

// write writes n as JSON. depth bounds nesting; aliased is set inside an
// alias, whose values record no origins (an alias repeats them).
func (c *jsonConv) write(n *yaml.Node, key string, depth int, aliased bool) error {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return c.fail(n, key, "is an alias to nothing")
		}
		return c.write(n.Alias, key, depth, true)
	}
	if depth > queue.MaxPayloadDepth {
		return c.fail(n, key, fmt.Sprintf("nests deeper than %d levels", queue.MaxPayloadDepth))
	}
	if c.buf.Len() > maxJSONBytes {
		return c.fail(n, key, fmt.Sprintf("is over %d MiB as JSON", maxJSONBytes>>20))
	}
	if !aliased {
		c.l.runOrigins[key] = c.l.where(n)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return c.fail(n, key, "is not a single value")
		}
		return c.write(n.Content[0], key, depth, aliased)
	case yaml.MappingNode:
		c.buf.WriteByte('{')
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				what := k.Value
				if k.Kind != yaml.ScalarNode {
					what = "a " + shape(nodeValue(k))
				}
				return c.fail(k, key, fmt.Sprintf("has the key %s, which is not a string: JSON keys are strings (quote it: \"%s\")", what, k.Value))
			}
			if seen[k.Value] {
				return c.fail(k, key, fmt.Sprintf("has the key %q twice", k.Value))
			}
			seen[k.Value] = true
			if i > 0 {
				c.buf.WriteByte(',')
			}
			if err := writeJSONString(&c.buf, k.Value); err != nil {
				return c.fail(k, key, "has a key that is not text")
			}
			c.buf.WriteByte(':')
			if err := c.write(n.Content[i+1], key+"."+k.Value, depth+1, aliased); err != nil {
				return err
			}
		}
		c.buf.WriteByte('}')
	case yaml.SequenceNode:
		c.buf.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				c.buf.WriteByte(',')
			}
			if err := c.write(e, fmt.Sprintf("%s[%d]", key, i), depth+1, aliased); err != nil {
				return err
			}
		}
		c.buf.WriteByte(']')
	case yaml.ScalarNode:
		return c.scalar(n, key)
	default:
		return c.fail(n, key, "is not a YAML value JSON can hold")
	}
	return nil
}

// scalar writes one YAML scalar as JSON.
func (c *jsonConv) scalar(n *yaml.Node, key string) error {
	switch n.ShortTag() {
	case "!!null":
		c.buf.WriteString("null")
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return c.fail(n, key, fmt.Sprintf("%q is not true or false", n.Value))
		}
		c.buf.WriteString(strconv.FormatBool(b))
		return nil
	case "!!int":
		var v any
		if err := n.Decode(&v); err == nil {
			switch x := v.(type) {
			case int:
				c.buf.WriteString(strconv.FormatInt(int64(x), 10))
				return nil
			case int64:
				c.buf.WriteString(strconv.FormatInt(x, 10))
				return nil
			case uint64:
				c.buf.WriteString(strconv.FormatUint(x, 10))
				return nil
			}
		}
		return c.fail(n, key, fmt.Sprintf("%s is not a whole number JSON can hold", n.Value))
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return c.fail(n, key, fmt.Sprintf("%s is not a finite number: JSON has no NaN or infinity (quote it for text)", n.Value))
		}
		if f == 0 {
			f = 0 // -0 is 0 in JSON, and prints back as 0
		}
		b, _ := json.Marshal(f)
		c.buf.Write(b)
		return nil
	case "!!str", "!!timestamp", "!!binary":
		// Timestamps and binary stay the text written.
		if err := writeJSONString(&c.buf, n.Value); err != nil {
			return c.fail(n, key, "is not text")
		}
		return nil
	case "!!merge":
		return c.fail(n, key, "uses a YAML merge key (<<), which a payload cannot: write the keys out")
	}
	return c.fail(n, key, fmt.Sprintf("has the tag %s, which JSON cannot hold", n.Tag))
}

// jsonToNode is the YAML node of a JSON value, keeping the order of object
// keys, for WriteYAML and WriteJSON.
func jsonToNode(raw json.RawMessage) *yaml.Node {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := jsonNode(dec, 0)
	if err != nil {
		// Not JSON (a Config built in code): show it as text.
		return scalarNode("!!str", string(raw))
	}
	return n
}

func jsonNode(dec *json.Decoder, depth int) (*yaml.Node, error) {
	if depth > queue.MaxPayloadDepth+1 {
		return nil, fmt.Errorf("too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("key is not a string")
				}
				v, err := jsonNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, scalarNode("!!str", k), v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if len(n.Content) == 0 {
				n.Style = yaml.FlowStyle
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode}
			for dec.More() {
				v, err := jsonNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if len(n.Content) == 0 {
				n.Style = yaml.FlowStyle
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return scalarNode("!!str", t), nil
	case json.Number:
		s := string(t)
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return scalarNode("!!int", s), nil
		}
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return scalarNode("!!int", s), nil
		}
		return scalarNode("!!float", s), nil
	case bool:
		return scalarNode("!!bool", strconv.FormatBool(t)), nil
	case nil:
		return scalarNode("!!null", "null"), nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// providerFields and modelFields are the keys of one llm.providers and one
// llm.models entry.
var (
	providerFields = collectFields(reflect.TypeFor[LLMProvider](), "", nil)
	modelFields    = collectFields(reflect.TypeFor[LLMModel](), "", nil)
)

// decodeNamed reads a file-only mapping of names to settings (llm.providers,
// llm.models) from the node, not viper: names hold dots and viper splits
// keys at dots.
func decodeNamed[T any](l *loader, m *yaml.Node, mapKey string, fs []field) (map[string]T, []error) {
	if m == nil {
		return nil, nil
	}
	if m.Kind != yaml.MappingNode {
		return nil, []error{&FieldError{Key: mapKey, Source: l.source(mapKey),
			Reason: "must be a mapping of names to settings, got " + showValue(nodeValue(m), false)}}
	}
	out := make(map[string]T, len(m.Content)/2)
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		name := k.Value
		if name == "" {
			name = `""`
		}
		prefix := mapKey + "." + name
		where := l.where(k)
		l.origins[prefix] = origin{layer: layerFile, where: where}
		if _, dup := out[k.Value]; dup {
			errs = append(errs, &FieldError{Key: prefix, Source: where, Reason: "is defined twice"})
			continue
		}
		var t T
		switch {
		case isNull(v):
		case v.Kind != yaml.MappingNode:
			errs = append(errs, &FieldError{Key: prefix, Source: where, Reason: "must be a mapping of keys, got " + showValue(nodeValue(v), false)})
		default:
			rv := reflect.ValueOf(&t).Elem()
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], resolveAlias(v.Content[j+1])
				key := prefix + "." + fk.Value
				idx := slices.IndexFunc(fs, func(f field) bool { return f.key == fk.Value })
				if idx < 0 {
					errs = append(errs, unknownKey(key, l.where(fk)))
					continue
				}
				if isNull(fv) {
					continue
				}
				f := fs[idx]
				l.origins[key] = origin{layer: layerFile, where: l.where(fv), node: fv}
				val, problem := convert(f.kind, nodeValue(fv), fv, false)
				if problem != "" {
					errs = append(errs, &FieldError{Key: key, Source: l.where(fv), Reason: problem})
					continue
				}
				rv.FieldByIndex(f.index).Set(reflect.ValueOf(val))
			}
		}
		out[k.Value] = t
	}
	if len(out) == 0 {
		out = nil
	}
	return out, errs
}
