package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// WriteYAML writes the effective configuration, secrets masked, as YAML with the
// same keys a config file uses; durations are written as "1s", "10m". The output
// loads back with Load. Workflow fields left to inherit are omitted.
func (c Config) WriteYAML(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(toNode(reflect.ValueOf(c.Masked()), false)); err != nil {
		return fmt.Errorf("config: write yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("config: write yaml: %w", err)
	}
	return nil
}

// WriteJSON writes the same document as WriteYAML, as indented JSON.
func (c Config) WriteJSON(w io.Writer) error {
	var compact, out bytes.Buffer
	if err := writeJSONNode(&compact, toNode(reflect.ValueOf(c.Masked()), false)); err != nil {
		return fmt.Errorf("config: write json: %w", err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return fmt.Errorf("config: write json: %w", err)
	}
	out.WriteByte('\n')
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("config: write json: %w", err)
	}
	return nil
}

// toNode builds the YAML node of v, keyed by mapstructure tags, keeping field
// order. omitZero drops zero fields (used inside workflows, where zero inherits).
func toNode(v reflect.Value, omitZero bool) *yaml.Node {
	if v.Type() == durationType {
		return scalarNode("!!str", formatDuration(time.Duration(v.Int())))
	}
	if v.Type() == rawJSONType {
		return jsonToNode(v.Bytes())
	}
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range v.NumField() {
			fv := v.Field(i)
			if !v.Type().Field(i).IsExported() || (omitZero && fv.IsZero()) {
				continue
			}
			n.Content = append(n.Content, scalarNode("!!str", v.Type().Field(i).Tag.Get("mapstructure")), toNode(fv, omitZero))
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.String(), b.String()) })
		for _, k := range keys {
			n.Content = append(n.Content, scalarNode("!!str", k.String()), toNode(v.MapIndex(k), omitsZero(v.Type())))
		}
		if len(keys) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			n.Content = append(n.Content, toNode(v.Index(i), omitZero))
		}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.String:
		return scalarNode("!!str", v.String())
	case reflect.Bool:
		return scalarNode("!!bool", strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int64:
		return scalarNode("!!int", strconv.FormatInt(v.Int(), 10))
	case reflect.Float64:
		f := formatFloat(v.Float())
		if !strings.ContainsAny(f, ".eEnN") {
			f += ".0" // 45.0: a plain 45 would print as "!!float 45"
		}
		return scalarNode("!!float", f)
	}
	panic(fmt.Sprintf("config: cannot write a %s", v.Type()))
}

// omitsZero reports whether the values of a map of type t leave out zero
// fields: they inherit, or are not set.
func omitsZero(t reflect.Type) bool {
	return t == workflowsType || t == overridesType || t == providersType || t == modelsType
}

var rawJSONType = reflect.TypeFor[json.RawMessage]()

func scalarNode(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// writeJSONNode writes a node built by toNode as compact JSON.
func writeJSONNode(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONString(b, n.Content[i].Value); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeJSONNode(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONNode(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			return writeJSONString(b, n.Value)
		}
		b.WriteString(n.Value) // !!bool, !!int and !!float values are valid JSON as they are
	default:
		return fmt.Errorf("unexpected node kind %d", n.Kind)
	}
	return nil
}

// writeJSONString writes s as a JSON string, leaving <, > and & readable.
func writeJSONString(b *bytes.Buffer, s string) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode appends a newline
	return nil
}
