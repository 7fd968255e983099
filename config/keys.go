package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// kind is how a key's value is parsed.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindInt64
	kindDuration
	kindFloat  // float64
	kindList   // []string; comma-separated in the environment and flags
	kindQueues // map[string]int; "q1=6,q2=1" in the environment and flags
)

// field is one settable key of Config.
type field struct {
	key   string // dotted snake_case, e.g. "worker.poll_interval"
	index []int  // reflect field index path into Config
	kind  kind
}

// Keys that are secrets: their values are never printed, in output or in errors.
// URL-valued keys are masked instead (see maskURL).
var secretKeys = map[string]bool{
	"redis.password":                true,
	"dashboard.basic_auth_password": true,
	"dashboard.bearer_token":        true,
}

// workflowsKey is the file-only key holding per-workflow settings.
const workflowsKey = "workflows"

// overridesKey is the file-only key holding per-dependency breaker settings.
const overridesKey = "breakers.overrides"

// providersKey and modelsKey are the file-only keys naming llm.chat's
// providers and models.
const (
	llmKey       = "llm"
	providersKey = "llm.providers"
	modelsKey    = "llm.models"
)

// fields lists every key but workflows, derived from the mapstructure tags of Config so
// that a new field is a new key (file, environment and flags) without more code.
var fields = collectFields(reflect.TypeFor[Config](), "", nil)

// fieldByKey indexes fields by key.
var fieldByKey = func() map[string]field {
	m := make(map[string]field, len(fields))
	for _, f := range fields {
		m[f.key] = f
	}
	return m
}()

// sections holds every key prefix that names a group of keys ("redis", "redis.tls").
var sections = func() map[string]bool {
	m := map[string]bool{llmKey: true} // llm holds file-only keys only
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		for i := 1; i < len(parts); i++ {
			m[strings.Join(parts[:i], ".")] = true
		}
	}
	return m
}()

var (
	durationType  = reflect.TypeFor[time.Duration]()
	stringsType   = reflect.TypeFor[[]string]()
	queuesType    = reflect.TypeFor[map[string]int]()
	workflowsType = reflect.TypeFor[map[string]Workflow]()
	overridesType = reflect.TypeFor[map[string]Breaker]()
	providersType = reflect.TypeFor[map[string]LLMProvider]()
	modelsType    = reflect.TypeFor[map[string]LLMModel]()
)

func collectFields(t reflect.Type, prefix string, index []int) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Tag.Get("mapstructure")
		if name == "" {
			panic(fmt.Sprintf("config: field %s.%s has no mapstructure tag", t.Name(), sf.Name))
		}
		f := field{key: prefix + name, index: append(slices.Clone(index), i)}
		switch {
		case sf.Type == workflowsType:
			continue // file-only, decoded by decodeWorkflows
		case sf.Type == overridesType:
			continue // file-only, decoded by decodeOverrides
		case sf.Type == providersType, sf.Type == modelsType:
			continue // file-only, decoded by decodeLLM
		case sf.Type == durationType:
			f.kind = kindDuration
		case sf.Type == stringsType:
			f.kind = kindList
		case sf.Type == queuesType:
			f.kind = kindQueues
		case sf.Type.Kind() == reflect.String:
			f.kind = kindString
		case sf.Type.Kind() == reflect.Bool:
			f.kind = kindBool
		case sf.Type.Kind() == reflect.Int:
			f.kind = kindInt
		case sf.Type.Kind() == reflect.Int64:
			f.kind = kindInt64
		case sf.Type.Kind() == reflect.Float64:
			f.kind = kindFloat
		case sf.Type.Kind() == reflect.Struct:
			out = append(out, collectFields(sf.Type, f.key+".", f.index)...)
			continue
		default:
			panic(fmt.Sprintf("config: field %s.%s has unsupported type %s", t.Name(), sf.Name, sf.Type))
		}
		out = append(out, f)
	}
	return out
}

// envName returns the environment variable that sets key: "retry.base" -> "AGENTQ_RETRY_BASE".
func envName(key string) string {
	return "AGENTQ_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// isKey reports whether key is one of fields.
func isKey(key string) bool {
	_, ok := fieldByKey[key]
	return ok
}
