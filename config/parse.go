package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentq/agentq/jobs"
)

// convert turns raw, a key's winning value, into the Go value its kind needs. raw is
// a typed default, a YAML-decoded value from the file, or a string from the
// environment or a flag. node is the value's YAML node when it came from the file.
// On failure it returns the reason, naming the value (masked when secret).
func convert(k kind, raw any, node *yaml.Node, secret bool) (any, string) {
	if node != nil && node.Kind == yaml.ScalarNode && isNull(node) {
		raw = nil
	}
	show := showValue(raw, secret)
	if _, isString := raw.(string); node != nil && node.Kind == yaml.ScalarNode && !isString && !secret {
		show = node.Value // as written: 10.0, not 10
	}
	switch k {
	case kindString:
		switch x := raw.(type) {
		case nil:
			return "", ""
		case string:
			return x, ""
		}
		if node != nil && node.Kind == yaml.ScalarNode {
			return node.Value, "" // keep the text as written: "0123", not 83
		}
		if isScalar(raw) {
			return fmt.Sprint(raw), ""
		}
		return nil, "must be a single value, got a " + shape(raw)

	case kindBool:
		switch x := raw.(type) {
		case nil:
			return false, ""
		case bool:
			return x, ""
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
				return b, ""
			}
		}
		return nil, show + " is not true or false"

	case kindInt, kindInt64:
		n, ok := toInt64(raw)
		if !ok {
			return nil, show + " is not a whole number"
		}
		if k == kindInt64 {
			return n, ""
		}
		if n < math.MinInt || n > math.MaxInt {
			return nil, show + " is out of range"
		}
		return int(n), ""

	case kindDuration:
		switch x := raw.(type) {
		case nil:
			return time.Duration(0), ""
		case time.Duration:
			return x, ""
		case string:
			s := strings.TrimSpace(x)
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				return nil, fmt.Sprintf("%s is not a duration: add a unit, e.g. %q", show, s+"s")
			}
			d, err := jobs.ParseDuration(s)
			var de *jobs.DurationError
			if errors.As(err, &de) {
				return nil, show + " is not a duration: " + de.Reason
			}
			return d, ""
		case int, int64, uint64, float64:
			return nil, fmt.Sprintf("%s is not a duration: add a unit, e.g. %q", show, fmt.Sprint(x)+"s")
		}
		return nil, show + " is not a duration"

	case kindFloat:
		switch x := raw.(type) {
		case nil:
			return float64(0), ""
		case float64:
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				return x, ""
			}
		case int:
			return float64(x), ""
		case int64:
			return float64(x), ""
		case uint64:
			return float64(x), ""
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f, ""
			}
		}
		return nil, show + " is not a number"

	case kindList:
		switch x := raw.(type) {
		case nil:
			return []string(nil), ""
		case []string:
			if len(x) == 0 {
				return []string(nil), ""
			}
			return slices.Clone(x), ""
		case string:
			return splitList(x), ""
		case []any:
			var out []string
			for _, e := range x {
				if !isScalar(e) || e == nil {
					return nil, "must be a list of strings, got a " + shape(e) + " in the list"
				}
				out = append(out, fmt.Sprint(e))
			}
			return out, ""
		}
		return nil, show + " is not a list (write a YAML list, or a comma-separated string)"

	case kindQueues:
		if node != nil && node.Kind == yaml.MappingNode {
			return queuesFromNode(node) // from the node: viper lower-cases map keys
		}
		switch x := raw.(type) {
		case nil:
			return map[string]int(nil), ""
		case map[string]int:
			return maps.Clone(x), ""
		case string:
			return parseQueues(x)
		case []string: // a string-slice flag: --queues a=2 --queues b=1
			return parseQueues(strings.Join(x, ","))
		}
		return nil, show + ` is not a map of queue names to priorities (write "critical=6,default=1" or a YAML mapping)`
	}
	panic(fmt.Sprintf("config: unknown kind %d", k))
}

// parseQueues parses "q1=6,q2=1". Names and priorities are checked by Validate.
func parseQueues(s string) (any, string) {
	out := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, prio, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Sprintf("%q is not name=priority (write e.g. \"critical=6,default=1\")", part)
		}
		name, prio = strings.TrimSpace(name), strings.TrimSpace(prio)
		p, err := strconv.Atoi(prio)
		if err != nil {
			return nil, fmt.Sprintf("priority %q of queue %q is not a whole number", prio, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Sprintf("queue %q is listed twice", name)
		}
		out[name] = p
	}
	return out, ""
}

// queuesFromNode reads a YAML mapping of queue names to priorities, keeping the
// names' case.
func queuesFromNode(m *yaml.Node) (any, string) {
	out := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		name := m.Content[i].Value
		raw := nodeValue(m.Content[i+1])
		p, ok := toInt64(raw)
		if !ok || p < math.MinInt32 || p > math.MaxInt32 {
			return nil, fmt.Sprintf("priority %s of queue %q is not a whole number", showValue(raw, false), name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Sprintf("queue %q is listed twice", name)
		}
		out[name] = int(p)
	}
	return out, ""
}

// toInt64 accepts whole numbers from YAML and decimal strings.
func toInt64(raw any) (int64, bool) {
	switch x := raw.(type) {
	case nil:
		return 0, true
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		return int64(x), x <= math.MaxInt64
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// splitList splits a comma-separated list, trimming spaces and dropping empty items.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// nodeValue decodes a YAML node into a plain Go value.
func nodeValue(n *yaml.Node) any {
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	return v
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, int, int64, uint64, float64:
		return true
	}
	return false
}

// shape names the kind of a non-scalar value for messages.
func shape(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case map[string]any, map[any]any:
		return "mapping"
	case nil:
		return "null"
	}
	return "value"
}

// showValue formats a value for an error message; secrets are never shown.
func showValue(v any, secret bool) string {
	switch {
	case secret:
		return `"` + mask + `"`
	case v == nil:
		return "null"
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// formatDuration prints d the way people write it: 10m, not 10m0s.
func formatDuration(d time.Duration) string { return jobs.FormatDuration(d) }

// formatFloat prints f the shortest way that reads back the same: 0.99, 0.5, 1e-05.
func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
