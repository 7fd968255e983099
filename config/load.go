package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// FileName is the config file looked for in Options.Dir when Options.File is empty.
const FileName = "agentq.yaml"

// Options says where Load finds each layer of the configuration.
type Options struct {
	// File is an explicit config file (--config); it must exist. Empty means look
	// for agentq.yaml in Dir, which may be absent.
	File string
	// Flags holds the command-line flags; it may be nil.
	Flags *pflag.FlagSet
	// FlagKeys maps flag names to config keys, e.g. "concurrency" -> "worker.concurrency".
	// Only flags the user set (Changed) override the other layers.
	FlagKeys map[string]string
	// Environ is the environment as "K=V" entries; nil means os.Environ(). Only
	// AGENTQ_* entries with non-empty values are read. One that is not a
	// setting is an error when it is a near miss of one (AGENTQ_REDIS_ULR),
	// else a warning (see Warn).
	Environ []string
	// Warn, if set, receives each problem that does not stop Load, as one line
	// that names the environment variable (never its value). Nil drops them.
	Warn func(msg string)
	// Dir is where agentq.yaml is looked for; empty means the current directory.
	Dir string
}

// layer is the source of a key's value, lowest precedence first.
type layer int

const (
	layerDefault layer = iota
	layerFile
	layerEnv
	layerFlag
)

// origin records where a key's winning value came from.
type origin struct {
	layer layer
	where string     // "agentq.yaml, line 3", "AGENTQ_RETRY_BASE", "--concurrency"; "" for defaults
	node  *yaml.Node // the value as written, when layer is layerFile
}

// loader holds the state of one Load.
type loader struct {
	v         *viper.Viper
	origins   map[string]origin
	file      string     // the config file read, "" if none
	workflows *yaml.Node // the file's workflows mapping, nil if none
	overrides *yaml.Node // the file's breakers.overrides mapping, nil if none
	providers *yaml.Node // the file's llm.providers mapping, nil if none
	models    *yaml.Node // the file's llm.models mapping, nil if none
	// runOrigins are the origins of run workflows' keys (Config.Origin).
	runOrigins map[string]string
}

// Load builds the effective configuration from, in increasing precedence, Default,
// the config file, AGENTQ_* environment variables and the flags the user set, and
// validates it. Errors name the key, the bad value (secrets masked) and its source;
// several problems are joined into one error.
func Load(opts Options) (Config, error) {
	path, data, err := readFile(opts.File, opts.Dir)
	if err != nil {
		return Config{}, err
	}
	return load(opts, path, data)
}

// load is Load with the config file already read: path names it in messages,
// and is "" when there is none.
func load(opts Options, path string, data []byte) (Config, error) {
	l := &loader{v: viper.New(), origins: map[string]origin{}, runOrigins: map[string]string{}}
	def := reflect.ValueOf(Default())
	for _, f := range fields {
		l.v.SetDefault(f.key, def.FieldByIndex(f.index).Interface())
	}
	if path != "" {
		if err := l.parseFile(path, data); err != nil {
			return Config{}, err
		}
	}
	envErrs := l.readEnv(opts.Environ, opts.Warn)
	if err := l.readFlags(opts.Flags, opts.FlagKeys); err != nil {
		return Config{}, err
	}
	cfg, failed, decodeErr := l.decode()
	// Validate what did decode too, so that one run reports every problem; keys
	// that failed to decode hold their defaults and are not reported twice.
	errs := envErrs
	if err := cfg.validate(l.source); err != nil {
		for _, e := range unwrapJoined(err) {
			if fe, ok := e.(*FieldError); !ok || !failed[fe.Key] {
				errs = append(errs, e)
			}
		}
	}
	if err := errors.Join(append(unwrapJoined(decodeErr), errs...)...); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// unwrapJoined returns the errors joined in err (nil for nil).
func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// source says where key's value came from, for error messages.
func (l *loader) source(key string) string {
	return l.origins[key].where
}

// MaxFileBytes is the largest config file Load reads (4 MiB): a config
// file is a few KiB, so more means a wrong path, such as /dev/zero, which
// would otherwise be read until memory runs out.
const MaxFileBytes = 4 << 20

// readFile reads the config file: explicit, which must exist, or agentq.yaml
// in dir, which may not. path is "" when there is no file. It refuses a
// directory and reads at most MaxFileBytes+1 bytes.
func readFile(explicit, dir string) (path string, data []byte, err error) {
	path = explicit
	if path == "" {
		path = filepath.Join(dir, FileName)
	}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && explicit == "":
		return "", nil, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, fmt.Errorf("config: config file %q does not exist", path)
	case err != nil:
		return "", nil, fmt.Errorf("config: read config file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return "", nil, fmt.Errorf("config: %s is a directory, not a config file", path)
	}
	data, err = io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("config: read config file: %w", err)
	case len(data) > MaxFileBytes:
		return "", nil, fmt.Errorf("config: %s is over %d MiB, the most agentq reads of a config file", path, MaxFileBytes>>20)
	}
	return path, data, nil
}

// parseFile reads the config file's data into viper, after checking that it
// holds only known keys. It records which keys the file sets, and where.
func (l *loader) parseFile(path string, data []byte) error {
	l.file = path

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil // empty, or comments only
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config: %s: the top level must be a mapping of keys, like \"worker:\"", path)
	}
	if errs := l.walk(root, ""); len(errs) > 0 {
		return errors.Join(errs...)
	}
	l.v.SetConfigType("yaml")
	if err := l.v.ReadConfig(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// walk checks the keys of mapping m, whose keys start with prefix, recording the
// origin of each value set. Unknown keys are errors.
func (l *loader) walk(m *yaml.Node, prefix string) []error {
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		key := prefix + k.Value
		where := fmt.Sprintf("%s, line %d", l.file, k.Line)
		switch {
		case strings.Contains(k.Value, "."):
			errs = append(errs, fmt.Errorf("config: key %q in %s: nest the keys instead of joining them with dots", key, where))
		case key == workflowsKey:
			if !isNull(v) {
				l.workflows = v
				l.origins[workflowsKey] = origin{layer: layerFile, where: where, node: v}
			}
		case key == overridesKey:
			if !isNull(v) {
				l.overrides = v
				l.origins[overridesKey] = origin{layer: layerFile, where: where, node: v}
			}
		case key == providersKey, key == modelsKey:
			if !isNull(v) {
				if key == providersKey {
					l.providers = v
				} else {
					l.models = v
				}
				l.origins[key] = origin{layer: layerFile, where: where, node: v}
			}
		case isKey(key):
			if !isNull(v) {
				l.origins[key] = origin{layer: layerFile, where: where, node: v}
			}
		case sections[key]:
			switch {
			case isNull(v):
			case v.Kind == yaml.MappingNode:
				errs = append(errs, l.walk(v, key+".")...)
			default:
				errs = append(errs, &FieldError{Key: key, Source: where, Reason: "must be a mapping of keys, got " + showValue(nodeValue(v), false)})
			}
		default:
			errs = append(errs, unknownKey(key, where))
		}
	}
	return errs
}

// unknownKey reports a key the config does not have, suggesting a near one.
func unknownKey(key, where string) error {
	msg := fmt.Sprintf("config: unknown key %q in %s", key, where)
	if s := suggest(key); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return errors.New(msg)
}

// suggest returns the known key closest to key, if it is close enough to be a typo.
func suggest(key string) string {
	var candidates []string
	if rest, ok := strings.CutPrefix(key, workflowsKey+"."); ok {
		// workflows.<name>.<key>: the name is the user's, so offer that workflow's keys.
		if name, _, ok := strings.Cut(rest, "."); ok {
			for _, k := range workflowKeys {
				candidates = append(candidates, workflowsKey+"."+name+"."+k)
			}
		}
	} else if rest, ok := strings.CutPrefix(key, providersKey+"."); ok {
		if i := strings.LastIndex(rest, "."); i >= 0 {
			for _, f := range providerFields {
				candidates = append(candidates, providersKey+"."+rest[:i]+"."+f.key)
			}
		}
	} else if rest, ok := strings.CutPrefix(key, modelsKey+"."); ok {
		if i := strings.LastIndex(rest, "."); i >= 0 {
			for _, f := range modelFields {
				candidates = append(candidates, modelsKey+"."+rest[:i]+"."+f.key)
			}
		}
	} else if rest, ok := strings.CutPrefix(key, overridesKey+"."); ok {
		// breakers.overrides.<name>.<key>: dependency names hold dots, so the
		// key is the last part.
		if i := strings.LastIndex(rest, "."); i >= 0 {
			for _, f := range overrideFields {
				candidates = append(candidates, overridesKey+"."+rest[:i]+"."+f.key)
			}
		}
	} else {
		for _, f := range fields {
			candidates = append(candidates, f.key)
		}
		candidates = append(candidates, slices.Collect(maps.Keys(sections))...)
		candidates = append(candidates, workflowsKey, overridesKey, providersKey, modelsKey)
	}
	return closest(key, candidates)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// readEnv sets every key whose AGENTQ_* variable is set and non-empty, and
// checks the AGENTQ_* variables that are not settings (checkEnv): it returns
// the near misses and passes the other warnings to warn. It reads environ
// only, so tests do not depend on the process environment.
func (l *loader) readEnv(environ []string, warn func(string)) []error {
	if environ == nil {
		environ = os.Environ()
	}
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v // a later entry wins, as with exec.Cmd.Env
		}
	}
	for _, f := range fields {
		name := envName(f.key)
		if val := env[name]; val != "" {
			l.v.Set(f.key, val)
			l.origins[f.key] = origin{layer: layerEnv, where: name}
		}
	}
	warnings, errs := checkEnv(env)
	if warn != nil {
		for _, w := range warnings {
			warn(w)
		}
	}
	return errs
}

// readFlags sets the key of every mapped flag the user set.
func (l *loader) readFlags(flags *pflag.FlagSet, keys map[string]string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(keys)) {
		key := keys[name]
		if !isKey(key) {
			errs = append(errs, fmt.Errorf("config: flag --%s is mapped to unknown key %q", name, key))
			continue
		}
		if flags == nil {
			continue
		}
		fl := flags.Lookup(name)
		if fl == nil {
			errs = append(errs, fmt.Errorf("config: flag --%s is mapped to key %q but is not defined", name, key))
			continue
		}
		if !fl.Changed {
			continue
		}
		l.v.Set(key, flagValue(fl))
		l.origins[key] = origin{layer: layerFlag, where: "--" + name}
	}
	return errors.Join(errs...)
}

// flagValue returns a flag's value as a string, or a []string for slice flags.
func flagValue(fl *pflag.Flag) any {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	s := fl.Value.String()
	if t := fl.Value.Type(); strings.HasPrefix(t, "stringTo") {
		s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]") // "[a=1,b=2]" -> "a=1,b=2"
	}
	return s
}

// decode converts each key's winning value into a Config. A key that fails keeps
// its default and is returned in failed.
func (l *loader) decode() (cfg Config, failed map[string]bool, err error) {
	cfg = Default()
	failed = map[string]bool{}
	rv := reflect.ValueOf(&cfg).Elem()
	var errs []error
	for _, f := range fields {
		o := l.origins[f.key]
		var node *yaml.Node
		if o.layer == layerFile {
			node = o.node
		}
		val, problem := convert(f.kind, l.v.Get(f.key), node, secretKeys[f.key])
		if problem != "" {
			errs = append(errs, &FieldError{Key: f.key, Source: o.where, Reason: problem})
			failed[f.key] = true
			continue
		}
		rv.FieldByIndex(f.index).Set(reflect.ValueOf(val))
	}
	wfs, werrs := l.decodeWorkflows()
	cfg.Workflows = wfs
	ovs, oerrs := l.decodeOverrides()
	cfg.Breakers.Overrides = ovs
	werrs = append(werrs, oerrs...)
	var perrs, merrs []error
	cfg.LLM.Providers, perrs = decodeNamed[LLMProvider](l, l.providers, providersKey, providerFields)
	cfg.LLM.Models, merrs = decodeNamed[LLMModel](l, l.models, modelsKey, modelFields)
	werrs = append(append(werrs, perrs...), merrs...)
	if len(l.runOrigins) > 0 {
		cfg.origins = l.runOrigins
	}
	for _, e := range werrs {
		if fe, ok := e.(*FieldError); ok {
			failed[fe.Key] = true
		}
	}
	errs = append(errs, werrs...)
	return cfg, failed, errors.Join(errs...)
}

// workflowKey returns the key of the named workflow, showing an empty name as "".
func workflowKey(name string) string {
	if name == "" {
		name = `""`
	}
	return workflowsKey + "." + name
}

// workflowKeys are the keys of one workflow, relative to workflows.<name>.
var workflowKeys = []string{"queue", "retry.base", "retry.max", "retry.max_attempts",
	"budget.slo", "budget.window", "budget.min_events", "budget.on_exhausted",
	"caps.max_cost_usd", "caps.max_tokens", "caps.max_duration", "caps.max_steps", "caps.max_attempts",
	"schedule.cron", "schedule.timezone", "schedule.input", "steps"}

// workflowSections are the mappings inside a workflow.
var workflowSections = []string{"retry", "budget", "caps", "schedule"}

// workflowKinds gives the kind of each of workflowKeys.
var workflowKinds = map[string]kind{
	"queue":               kindString,
	"retry.base":          kindDuration,
	"retry.max":           kindDuration,
	"retry.max_attempts":  kindInt,
	"budget.slo":          kindFloat,
	"budget.window":       kindDuration,
	"budget.min_events":   kindInt,
	"budget.on_exhausted": kindString,
	"caps.max_cost_usd":   kindFloat,
	"caps.max_tokens":     kindInt64,
	"caps.max_duration":   kindDuration,
	"caps.max_steps":      kindInt,
	"caps.max_attempts":   kindInt,
	"schedule.cron":       kindString,
	"schedule.timezone":   kindString,
}

// decodeWorkflows reads the file's workflows mapping. It is read from the node, not
// viper, because viper lower-cases keys and splits them at dots, and workflow names
// may hold either.
func (l *loader) decodeWorkflows() (map[string]Workflow, []error) {
	if l.workflows == nil {
		return nil, nil
	}
	m := l.workflows
	if m.Kind != yaml.MappingNode {
		return nil, []error{&FieldError{Key: workflowsKey, Source: l.source(workflowsKey),
			Reason: "must be a mapping of workflow names to their settings"}}
	}
	out := make(map[string]Workflow, len(m.Content)/2)
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		prefix := workflowKey(k.Value)
		l.origins[prefix] = origin{layer: layerFile, where: fmt.Sprintf("%s, line %d", l.file, k.Line)}
		if _, dup := out[k.Value]; dup {
			errs = append(errs, &FieldError{Key: prefix, Source: l.source(prefix), Reason: "is defined twice"})
			continue
		}
		var w Workflow
		set := func(rel string, vn *yaml.Node) {
			key := prefix + "." + rel
			where := fmt.Sprintf("%s, line %d", l.file, vn.Line)
			l.origins[key] = origin{layer: layerFile, where: where, node: vn}
			if isRunKey(rel) {
				l.runOrigins[key] = where
			}
			switch rel {
			case "steps":
				var serrs []error
				w.Steps, serrs = l.decodeSteps(vn, key)
				errs = append(errs, serrs...)
				return
			case "schedule.input":
				in, err := l.toJSON(vn, key)
				if err != nil {
					errs = append(errs, err)
				}
				w.Schedule.Input = in
				return
			}
			val, problem := convert(workflowKinds[rel], nodeValue(vn), vn, false)
			if problem != "" {
				errs = append(errs, &FieldError{Key: key, Source: where, Reason: problem})
				return
			}
			switch rel {
			case "queue":
				w.Queue = val.(string)
			case "retry.base":
				w.Retry.Base = val.(time.Duration)
			case "retry.max":
				w.Retry.Max = val.(time.Duration)
			case "retry.max_attempts":
				w.Retry.MaxAttempts = val.(int)
			case "budget.slo":
				w.Budget.SLO = val.(float64)
			case "budget.window":
				w.Budget.Window = val.(time.Duration)
			case "budget.min_events":
				w.Budget.MinEvents = val.(int)
			case "budget.on_exhausted":
				w.Budget.OnExhausted = val.(string)
			case "caps.max_cost_usd":
				w.Caps.MaxCostUSD = val.(float64)
			case "caps.max_tokens":
				w.Caps.MaxTokens = val.(int64)
			case "caps.max_duration":
				w.Caps.MaxDuration = val.(time.Duration)
			case "caps.max_steps":
				w.Caps.MaxSteps = val.(int)
			case "caps.max_attempts":
				w.Caps.MaxAttempts = val.(int)
			case "schedule.cron":
				w.Schedule.Cron = val.(string)
			case "schedule.timezone":
				w.Schedule.Timezone = val.(string)
			}
		}
		errs = append(errs, l.walkWorkflow(v, prefix, "", set)...)
		if w.IsRun() || w.Caps != (Caps{}) || !isZeroSchedule(w.Schedule) {
			l.runOrigins[prefix] = l.source(prefix)
		}
		out[k.Value] = w
	}
	if len(out) == 0 {
		out = nil // "workflows: {}" is the same as none
	}
	return out, errs
}

// walkWorkflow checks the keys of one workflow's mapping m (or its retry or budget
// mapping, when rel is "retry." or "budget."), calling set for each value.
func (l *loader) walkWorkflow(m *yaml.Node, prefix, rel string, set func(rel string, v *yaml.Node)) []error {
	if isNull(m) {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		key := prefix + "." + strings.TrimSuffix(rel, ".")
		if rel == "" {
			key = prefix
		}
		return []error{&FieldError{Key: key, Source: fmt.Sprintf("%s, line %d", l.file, m.Line),
			Reason: "must be a mapping of keys, got " + showValue(nodeValue(m), false)}}
	}
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		r := rel + k.Value
		switch {
		case rel == "" && slices.Contains(workflowSections, r):
			if isRunKey(r + ".") {
				l.runOrigins[prefix+"."+r] = fmt.Sprintf("%s, line %d", l.file, k.Line)
			}
			errs = append(errs, l.walkWorkflow(v, prefix, r+".", set)...)
		case slices.Contains(workflowKeys, r):
			if !isNull(v) {
				set(r, v)
			}
		default:
			errs = append(errs, unknownKey(prefix+"."+r, fmt.Sprintf("%s, line %d", l.file, k.Line)))
		}
	}
	return errs
}

// overrideFields are the keys of one breakers.overrides entry, relative to
// breakers.overrides.<name>.
var overrideFields = collectFields(reflect.TypeFor[Breaker](), "", nil)

// decodeOverrides reads the file's breakers.overrides mapping from the node, not
// viper: dependency names hold dots and viper splits keys at dots.
func (l *loader) decodeOverrides() (map[string]Breaker, []error) {
	return decodeNamed[Breaker](l, l.overrides, overridesKey, overrideFields)
}
