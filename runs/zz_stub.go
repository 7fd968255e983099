package runs

// TEMPORARY: signatures of the workflow validation for the helpers that
// wire it while it is written; deleted at merge.

import (
	"encoding/json"

	"github.com/agentq/agentq/jobs"
)

// FieldError is a workflow validation problem at Path (relative to the workflow).
type FieldError struct{ Path, Reason string }

func (e *FieldError) Error() string                                { return e.Path + ": " + e.Reason }
func (w Workflow) Validate(knownKind func(kind string) bool) error { return nil }
func (w Workflow) Plan() []jobs.StepDef                            { return w.Steps }
func ParseTemplates(step string, tmpl json.RawMessage) error       { return nil }
