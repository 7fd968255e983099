package queue

import (
	"context"
	"testing"

	"github.com/agentq/agentq/jobs"
)

func TestIsEmptyObject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want bool
	}{
		{"bare", `{}`, true},
		{"spaces", " { \n} ", true},
		{"field", `{"a":1}`, false},
		{"array", `[]`, false},
		{"open only", `{`, false},
		{"two objects", `{}{}`, false},
		{"empty", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isEmptyObject([]byte(tc.raw)); got != tc.want {
				t.Fatalf("isEmptyObject(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

// TestEmptyObjectSchemaVerdict: an empty object skips the validator only
// when the schema accepts it; a schema that requires a field still refuses.
func TestEmptyObjectSchemaVerdict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, schema string
		wantErr      bool
	}{
		{"accepts {}", `{"type":"object"}`, false},
		{"requires a field", `{"type":"object","required":["url"]}`, true},
		{"min properties", `{"type":"object","minProperties":1}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := NewRegistry()
			if err := Register(reg, tc.schema, func(context.Context, *jobs.Step, emptyKindArgs) error { return nil }); err != nil {
				t.Fatal(err)
			}
			_, err := reg.Validate(emptyKindArgs{}.Kind(), []byte(` {} `))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate({}) = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

type emptyKindArgs struct {
	URL string `json:"url,omitempty"`
}

func (emptyKindArgs) Kind() string { return "test.empty" }
