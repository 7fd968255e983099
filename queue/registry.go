package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentq/agentq/jobs"
)

// ErrUnknownKind is returned for a task kind no handler is registered for.
var ErrUnknownKind = errors.New("unknown task kind")

// ValidationError says why a payload was refused. It is permanent: the same
// payload can never pass.
type ValidationError struct {
	// Kind is the task kind the payload was given for.
	Kind string
	// Reason says what is wrong, in words that name the field.
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid payload for %q: %s", e.Kind, e.Reason)
}

type kindEntry struct {
	name   string
	schema *jsonschema.Schema
	// emptyValid is the schema's verdict on an empty object, decided once.
	emptyValid bool
	decode     func(raw []byte) (any, error)
	handle     func(ctx context.Context, s *jobs.Step, args any) error
}

// Registry maps task kinds to their schema, typed payload and handler. The
// client uses it to refuse bad input before Redis; the worker uses it to
// dispatch. It is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]*kindEntry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds: map[string]*kindEntry{}} }

// Register adds the kind of A with its JSON schema (empty for none) and its
// handler. A payload is accepted when it is valid JSON in valid UTF-8 with
// no duplicate object key and no deeper nesting than MaxPayloadDepth, passes
// the schema, decodes into A with no unknown fields and, if A implements
// jobs.Validator, validates. Registering a kind twice or an invalid schema is an error.
func Register[A jobs.Args](r *Registry, schema string, fn func(ctx context.Context, s *jobs.Step, args A) error) error {
	var zero A
	name := zero.Kind()
	if strings.TrimSpace(name) == "" {
		return errors.New("register: kind name is empty")
	}
	if fn == nil {
		return fmt.Errorf("register %q: handler is nil", name)
	}
	e := &kindEntry{name: name}
	if schema != "" {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
		if err != nil {
			return fmt.Errorf("register %q: schema is not JSON: %w", name, err)
		}
		c := jsonschema.NewCompiler()
		url := "agentq://kinds/" + name + ".json"
		if err := c.AddResource(url, doc); err != nil {
			return fmt.Errorf("register %q: schema: %w", name, err)
		}
		if e.schema, err = c.Compile(url); err != nil {
			return fmt.Errorf("register %q: schema: %w", name, err)
		}
		// The schema's verdict on {} never changes: decided once here, an
		// empty object payload skips the validator.
		e.emptyValid = e.schema.Validate(map[string]any{}) == nil
	}
	// An empty object decodes into a struct as its zero value: skip the
	// decoder (and the stack it grows on every attempt's fresh goroutine).
	emptyIsZero := reflect.TypeFor[A]().Kind() == reflect.Struct
	e.decode = func(raw []byte) (any, error) {
		var a A
		if !emptyIsZero || !isEmptyObject(raw) {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return nil, err
			}
			if dec.More() {
				return nil, errors.New("payload holds more than one JSON value")
			}
		}
		if v, ok := any(a).(jobs.Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		} else if v, ok := any(&a).(jobs.Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	e.handle = func(ctx context.Context, s *jobs.Step, args any) error {
		return fn(ctx, s, args.(A))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[name]; dup {
		return fmt.Errorf("register %q: kind is already registered", name)
	}
	r.kinds[name] = e
	return nil
}

// isEmptyObject reports whether raw is "{}", spaces allowed.
func isEmptyObject(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return false
	}
	return len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// Kinds returns the registered kind names, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *Registry) lookup(kind string) (*kindEntry, error) {
	r.mu.RLock()
	e := r.kinds[kind]
	r.mu.RUnlock()
	if e == nil {
		known := r.Kinds()
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownKind, kind, strings.Join(known, ", "))
	}
	return e, nil
}

// Validate checks payload for kind and returns the decoded typed payload. It
// returns ErrUnknownKind for an unregistered kind and a *ValidationError for
// a payload that is not UTF-8 JSON, repeats a key in an object, nests deeper
// than MaxPayloadDepth, fails the schema or fails the type's checks.
func (r *Registry) Validate(kind string, payload []byte) (any, error) {
	e, err := r.lookup(kind)
	if err != nil {
		return nil, err
	}
	return e.validate(payload, false)
}

// validate checks payload; checked says its UTF-8, syntax, depth and keys
// were checked already (a batch line's payload, checked with its line).
func (e *kindEntry) validate(payload []byte, checked bool) (any, error) {
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil, &ValidationError{Kind: e.name, Reason: "payload is empty (give a JSON value, e.g. {})"}
	}
	// UTF-8, syntax, depth and duplicate keys: what the schema and the
	// typed decode cannot see (both take the last of duplicate keys and
	// turn invalid UTF-8 into U+FFFD), checked here once, at enqueue.
	if !checked {
		if reason := checkJSON(payload); reason != "" {
			return nil, &ValidationError{Kind: e.name, Reason: reason}
		}
	}
	if e.schema != nil && !(e.emptyValid && isEmptyObject(payload)) {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
		if err != nil {
			return nil, &ValidationError{Kind: e.name, Reason: "payload is not valid JSON: " + err.Error()}
		}
		if err := e.schema.Validate(inst); err != nil {
			return nil, &ValidationError{Kind: e.name, Reason: schemaReason(err)}
		}
	}
	args, err := e.decode(payload)
	if err != nil {
		return nil, &ValidationError{Kind: e.name, Reason: err.Error()}
	}
	return args, nil
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// schemaReason flattens a jsonschema validation error into one line that
// names each failing location.
func schemaReason(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "schema violation: " + err.Error()
	}
	var parts []string
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		msg := u.Error.String()
		if msg == "" || strings.HasPrefix(msg, "validation failed") {
			continue
		}
		loc := u.InstanceLocation
		if loc == "" {
			loc = "/"
		}
		parts = append(parts, fmt.Sprintf("at %s: %s", loc, msg))
	}
	if len(parts) == 0 {
		return "schema violation: " + strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return "schema violation " + strings.Join(parts, "; ")
}

// Handler returns the innermost handler: it decodes the step's payload into
// its typed form and calls the kind's handler. An unknown kind or a payload
// that does not decode is a permanent failure. The JSON schema was checked
// at enqueue; here only the typed decode and the type's own Validate run,
// which is what the handler relies on, without paying for the schema on
// every attempt.
func (r *Registry) Handler() jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, s *jobs.Step) error {
		r.mu.RLock()
		e := r.kinds[s.Kind]
		r.mu.RUnlock()
		if e == nil {
			_, err := r.lookup(s.Kind)
			return jobs.Permanent(&missingKindError{err})
		}
		args, err := e.decode(s.Payload)
		if err != nil {
			return jobs.Permanent(&ValidationError{Kind: e.name, Reason: err.Error()})
		}
		return e.handle(ctx, s, args)
	})
}

// missingKindError is Handler's failure for a step whose kind the registry
// lacks, told apart from a handler's own error that wraps ErrUnknownKind
// (an enqueue of another kind it made).
type missingKindError struct{ err error }

func (e *missingKindError) Error() string { return e.err.Error() }
func (e *missingKindError) Unwrap() error { return e.err }
