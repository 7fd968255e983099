package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
)

// MaxStepNameBytes bounds a step's name.
const MaxStepNameBytes = 128

// FieldError is one problem of a workflow definition: the field, by its
// path in the workflow ("steps[1].fallback",
// "steps[0].payload.messages[0].content", "caps.max_cost_usd"), and what
// is wrong with it.
type FieldError struct {
	Path   string
	Reason string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Reason }

// Validate checks the workflow and returns every problem found, each a
// *FieldError, joined with errors.Join in the order of the fields (queue,
// caps, steps one by one, the plan, schedule); nil when it is valid.
// knownKind reports whether a worker has a handler for a kind; nil
// accepts every non-empty kind.
//
// Rules: there is at least one step, and at least one that is no other
// step's fallback. A step's name is unique, at most MaxStepNameBytes, and a
// template-safe name, [A-Za-z_][A-Za-z0-9_]*, since templates read it as
// .steps.<name>. Its kind is known. Its fallback names another step, and
// following fallbacks never comes back to a step; several steps may share
// one fallback. Its payload is empty or a JSON object whose templates parse
// and read only .steps.X of steps that run before it (a fallback: before
// the earliest step it may replace; steps added at run time are read with
// index .steps "x", which is not checked). Retry fields and timeout are not
// negative, retry_max not below retry_base. Queue names follow
// queue.ValidQueueName. Caps pass Caps.Check. A schedule has a cron
// expression (its syntax is the scheduler's to check) and JSON input.
func (w Workflow) Validate(knownKind func(kind string) bool) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
	}

	if w.Queue != "" {
		if err := queue.ValidQueueName(w.Queue); err != nil {
			add("queue", "%v", err)
		}
	}
	for _, fe := range w.Caps.problems() {
		add("caps."+fe.Path, "%s", fe.Reason)
	}

	if len(w.Steps) == 0 {
		add("steps", "no steps: a workflow needs at least one")
	}
	index := make(map[string]int, len(w.Steps)) // name -> first step of that name
	for i, s := range w.Steps {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
	}
	cycles := fallbackCycles(w.Steps, index)
	pos := w.readPositions(index)

	for i, s := range w.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		switch {
		case s.Name == "":
			add(p+".name", "is empty")
		case len(s.Name) > MaxStepNameBytes:
			add(p+".name", "is longer than %d bytes", MaxStepNameBytes)
		case !templateSafeName(s.Name):
			add(p+".name", "%q is not a template-safe name: use letters, digits and '_', not starting with a digit (templates read it as .steps.<name>)", s.Name)
		case index[s.Name] != i:
			add(p+".name", "duplicate name %q (also steps[%d])", s.Name, index[s.Name])
		}
		switch {
		case strings.TrimSpace(s.Kind) == "":
			add(p+".kind", "is empty")
		case knownKind != nil && !knownKind(s.Kind):
			add(p+".kind", "unknown kind %q: no handler is registered for it", s.Kind)
		}
		if s.Queue != "" {
			if err := queue.ValidQueueName(s.Queue); err != nil {
				add(p+".queue", "%v", err)
			}
		}
		if s.Fallback != "" {
			if _, ok := index[s.Fallback]; !ok {
				add(p+".fallback", "no step is named %q", s.Fallback)
			} else if s.Fallback == s.Name {
				add(p+".fallback", "is the step itself")
			} else if cyc, ok := cycles[i]; ok {
				add(p+".fallback", "fallback cycle %s", strings.Join(cyc, " -> "))
			}
		}
		// A step sharing its name with an earlier one is not checked for
		// the steps it reads: its place is the earlier one's.
		errs = append(errs, checkPayloadTemplate(p+".payload", s, index[s.Name] == i, index, pos)...)
		if s.MaxAttempts < 0 {
			add(p+".max_attempts", "must not be negative, got %d", s.MaxAttempts)
		}
		if s.RetryBase < 0 {
			add(p+".retry_base", "must not be negative, got %v", s.RetryBase)
		}
		if s.RetryMax < 0 {
			add(p+".retry_max", "must not be negative, got %v", s.RetryMax)
		} else if s.RetryMax > 0 && s.RetryBase > s.RetryMax {
			add(p+".retry_max", "%v is below retry_base (%v)", s.RetryMax, s.RetryBase)
		}
		if s.Timeout < 0 {
			add(p+".timeout", "must not be negative, got %v", s.Timeout)
		}
	}
	if len(w.Steps) > 0 && len(w.Plan()) == 0 {
		add("steps", "every step is another step's fallback: no step runs first")
	}

	if sc := w.Schedule; sc != nil {
		if err := sc.Validate(); err != nil {
			// Schedule.Validate names the field: "schedule.cron: ...".
			path, reason, ok := strings.Cut(err.Error(), ": ")
			if !ok || !strings.HasPrefix(path, "schedule.") {
				path, reason = "schedule", err.Error()
			}
			add(path, "%s", reason)
		}
	}
	return errors.Join(errs...)
}

// Plan returns the steps that run in order: every step but those named as
// another step's fallback, which run only in that role.
func (w Workflow) Plan() []jobs.StepDef {
	fallback := make(map[string]bool, len(w.Steps))
	for _, s := range w.Steps {
		if s.Fallback != "" {
			fallback[s.Fallback] = true
		}
	}
	plan := make([]jobs.StepDef, 0, len(w.Steps))
	for _, s := range w.Steps {
		if !fallback[s.Name] {
			plan = append(plan, s)
		}
	}
	return plan
}

// Step returns the step named name (the first, if a broken workflow has
// two).
func (w Workflow) Step(name string) (jobs.StepDef, bool) {
	for _, s := range w.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return jobs.StepDef{}, false
}

// fallbackCycles finds the cycles of following fallbacks (a step naming
// itself aside) and returns each cycle under the index of its first step:
// the names around it from that step, the first repeated at the end.
func fallbackCycles(steps []jobs.StepDef, index map[string]int) map[int][]string {
	const (
		unseen = iota
		onPath
		done
	)
	next := func(j int) (int, bool) {
		n, ok := index[steps[j].Fallback]
		return n, ok && steps[j].Fallback != "" && n != j
	}
	state := make([]int, len(steps))
	cycles := map[int][]string{}
	for i := range steps {
		var path []int
		for j := i; state[j] == unseen; {
			state[j] = onPath
			path = append(path, j)
			n, ok := next(j)
			if !ok {
				break
			}
			if state[n] == onPath {
				cyc := path[slices.Index(path, n):]
				at := slices.Index(cyc, slices.Min(cyc))
				names := make([]string, 0, len(cyc)+1)
				for k := range len(cyc) + 1 {
					names = append(names, steps[cyc[(at+k)%len(cyc)]].Name)
				}
				cycles[cyc[at]] = names
				break
			}
			j = n
		}
		for _, v := range path {
			state[v] = done
		}
	}
	return cycles
}

// readPositions gives each step the plan position before which the steps it
// may read ran: a plan step its own; a fallback the smallest of the plan
// steps whose fallback chain reaches it (it must be right in every role).
// A fallback no plan step reaches has none.
func (w Workflow) readPositions(index map[string]int) map[string]int {
	pos := make(map[string]int, len(w.Steps))
	for p, s := range w.Plan() {
		if _, ok := pos[s.Name]; !ok {
			pos[s.Name] = p
		}
	}
	for p, s := range w.Plan() {
		seen := map[string]bool{s.Name: true}
		for name := s.Fallback; name != "" && !seen[name]; {
			seen[name] = true
			i, ok := index[name]
			if !ok {
				break
			}
			if q, ok := pos[name]; !ok || p < q {
				pos[name] = p
			}
			name = w.Steps[i].Fallback
		}
	}
	return pos
}

// checkPayloadTemplate checks a step's payload template: a JSON object whose
// templates parse and read only steps that run before the step.
func checkPayloadTemplate(path string, s jobs.StepDef, checkRefs bool, index map[string]int, pos map[string]int) []error {
	payload := bytes.TrimSpace(s.Payload)
	if len(payload) == 0 {
		return nil
	}
	if payload[0] != '{' && json.Valid(payload) {
		return []error{&FieldError{Path: path, Reason: "must be a JSON object, got " + jsonKindName(payload[0])}}
	}
	var errs []error
	err := eachPayloadTemplate(payload, func(p string, t *template.Template, err error) {
		if err != nil {
			errs = append(errs, &FieldError{Path: path + p, Reason: err.Error()})
			return
		}
		for _, root := range templateUnknownRoots(t) {
			errs = append(errs, &FieldError{Path: path + p, Reason: fmt.Sprintf("reads .%s, but a payload template sees only .input, .run_id and .steps", root)})
		}
		if !checkRefs {
			return
		}
		for _, ref := range templateStepRefs(t) {
			if reason := stepRefProblem(s.Name, ref, index, pos); reason != "" {
				errs = append(errs, &FieldError{Path: path + p, Reason: reason})
			}
		}
	})
	if err != nil {
		fe := &FieldError{Path: path, Reason: err.Error()}
		var pe *payloadError
		if errors.As(err, &pe) {
			fe = &FieldError{Path: path + pe.path, Reason: pe.reason}
		}
		errs = append(errs, fe)
	}
	if len(errs) == 0 && payload[0] != '{' {
		errs = append(errs, &FieldError{Path: path, Reason: "must be a JSON object"})
	}
	return errs
}

// stepRefProblem says what is wrong with step self reading .steps.ref, or "".
func stepRefProblem(self, ref string, index map[string]int, pos map[string]int) string {
	if _, ok := index[ref]; !ok {
		return fmt.Sprintf("reads .steps.%s, but the workflow has no step %q", ref, ref)
	}
	if ref == self {
		return fmt.Sprintf("reads .steps.%s, its own output, which it cannot have yet", ref)
	}
	p, ok := pos[self]
	q, ok2 := pos[ref]
	if ok && ok2 && q >= p {
		return fmt.Sprintf("reads .steps.%s, but step %q does not run before this one", ref, ref)
	}
	return ""
}

func jsonKindName(c byte) string {
	switch c {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
