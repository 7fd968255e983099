package agentq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/jobs"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/runs"
)

// runWorkflows merges the config file's run workflows with those defined
// in code and checks that every step's kind (fallbacks are steps) is
// registered: Go programs register their own kinds, so the config package
// cannot. A code-defined workflow is also checked with package runs' rules
// (config.Load checked the file's). Problems of the file's workflows name
// the key and the line that sets it.
func runWorkflows(cfg config.Config, code map[string]runs.Workflow, reg *queue.Registry) (map[string]runs.Workflow, error) {
	kinds := reg.Kinds()
	known := func(k string) bool { return slices.Contains(kinds, k) }
	var errs []error
	checkKinds := func(name string, w runs.Workflow, key func(i int) (string, string)) {
		for i, s := range w.Steps {
			if known(s.Kind) {
				continue
			}
			k, src := key(i)
			errs = append(errs, &config.FieldError{Key: k, Source: src,
				Reason: fmt.Sprintf("unknown kind %q of step %q (registered kinds: %s)", s.Kind, s.Name, strings.Join(kinds, ", "))})
		}
		// An llm.chat step's model must be one under llm.models.
		models := cfg.LLM.Handlers().Models
		for i, s := range w.Steps {
			if s.Kind != jobs.KindLLMChat {
				continue
			}
			var p struct {
				Model string `json:"model"`
			}
			if json.Unmarshal(s.Payload, &p) != nil || p.Model == "" || strings.Contains(p.Model, "{{") {
				continue
			}
			if _, ok := models[p.Model]; !ok {
				k, src := key(i)
				k = strings.TrimSuffix(k, ".kind") + ".payload.model"
				if src != "" {
					src = cfg.Origin(k)
				}
				errs = append(errs, &config.FieldError{Key: k, Source: src,
					Reason: fmt.Sprintf("step %q: model %q is not under llm.models (configured: %s)", s.Name, p.Model, strings.Join(slices.Sorted(maps.Keys(models)), ", "))})
			}
		}
		// A payload without templates is what the step will send: check it
		// against its kind's schema now rather than at the step.
		for i, s := range w.Steps {
			if !known(s.Kind) || bytes.Contains(s.Payload, []byte("{{")) {
				continue
			}
			payload := s.Payload
			if len(bytes.TrimSpace(payload)) == 0 {
				payload = []byte("{}")
			}
			if _, err := reg.Validate(s.Kind, payload); err != nil {
				k, src := key(i)
				k = strings.TrimSuffix(k, ".kind") + ".payload"
				if src != "" {
					src = cfg.Origin(k)
				}
				errs = append(errs, &config.FieldError{Key: k, Source: src,
					Reason: fmt.Sprintf("step %q: %v", s.Name, err)})
			}
		}
	}
	out := cfg.RunWorkflows()
	for _, name := range slices.Sorted(maps.Keys(out)) {
		checkKinds(name, out[name], func(i int) (string, string) {
			key := fmt.Sprintf("workflows.%s.steps[%d].kind", name, i)
			return key, cfg.Origin(key)
		})
	}
	for _, name := range slices.Sorted(maps.Keys(code)) {
		w := code[name]
		if strings.TrimSpace(name) == "" || len(name) > queue.MaxKeyBytes || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			errs = append(errs, fmt.Errorf("agentq: Options.Workflows has a workflow named %q: a name must be non-blank UTF-8 without control characters, at most %d bytes", name, queue.MaxKeyBytes))
			continue
		}
		if _, ok := cfg.Workflows[name]; ok {
			errs = append(errs, fmt.Errorf("agentq: workflow %q is defined in Options.Workflows and in the config file (workflows.%s): define it once", name, name))
			continue
		}
		if w.Name == "" {
			w.Name = name
		}
		if w.Name != name {
			errs = append(errs, fmt.Errorf("agentq: Options.Workflows[%q] is named %q: use one name", name, w.Name))
			continue
		}
		n := len(errs)
		// Kinds are checked as for the file's workflows, the rest with
		// package runs' rules.
		checkKinds(name, w, func(i int) (string, string) {
			return fmt.Sprintf("Options.Workflows[%q].steps[%d].kind", name, i), ""
		})
		for _, e := range flattenErrors(w.Validate(func(string) bool { return true })) {
			var fe *runs.FieldError
			if errors.As(e, &fe) {
				key := fmt.Sprintf("Options.Workflows[%q]", name)
				if fe.Path != "" {
					key += "." + fe.Path
				}
				errs = append(errs, &config.FieldError{Key: key, Reason: fe.Reason})
			} else {
				errs = append(errs, fmt.Errorf("agentq: Options.Workflows[%q]: %w", name, e))
			}
		}
		if len(errs) > n {
			continue
		}
		if out == nil {
			out = map[string]runs.Workflow{}
		}
		out[name] = w
	}
	return out, errors.Join(errs...)
}

// flattenErrors returns the errors joined in err, however deeply.
func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flattenErrors(e)...)
	}
	return out
}

// Runs returns the run engine, built on first use and shared by every
// caller (commands, the worker, a Go program): it starts, reads, lists and
// cancels runs of the run workflows, the config file's and
// Options.Workflows.
func (r *Runtime) Runs() (*runs.Runs, error) {
	r.runsOnce.Do(func() {
		r.runs, r.runsErr = runs.New(r.rdb, r.client, queue.NewInspector(r.rdb), r.runsConfig())
		if r.runsErr != nil {
			r.runsErr = &ConfigError{r.runsErr}
		}
	})
	return r.runs, r.runsErr
}

// Workflows returns the run workflows by name: the config file's and
// Options.Workflows. The map is a copy.
func (r *Runtime) Workflows() map[string]runs.Workflow { return maps.Clone(r.runWfs) }

// NextTicks returns, for each scheduled run workflow, its next tick after
// now, in the schedule's time zone. A schedule whose next tick cannot be
// computed is left out.
func (r *Runtime) NextTicks(now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for name, w := range r.runWfs {
		if w.Schedule == nil {
			continue
		}
		t, err := w.Schedule.Next(now)
		if err != nil || t.IsZero() {
			continue
		}
		if loc, err := time.LoadLocation(w.Schedule.Timezone); err == nil {
			t = t.In(loc) // "" is UTC
		}
		out[name] = t
	}
	return out
}

// scheduled reports whether a run workflow has a schedule.
func (r *Runtime) scheduled() bool {
	for _, w := range r.runWfs {
		if w.Schedule != nil {
			return true
		}
	}
	return false
}
