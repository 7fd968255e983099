package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// checkCommandLine parses args (without the program) with the real
// command tree: the command must exist and take every flag and argument
// given.
func checkCommandLine(args []string) error {
	root := (&Main{Stdout: io.Discard, Stderr: io.Discard}).rootCommand()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd == root {
		return errors.New("names no command")
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	return cmd.ValidateArgs(cmd.Flags().Args())
}

func TestCheckCommandLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		ok   bool
	}{
		{"health", []string{"health", "--config", "/etc/agentq/agentq.yaml", "--worker", "--timeout", "4s"}, true},
		{"dashboard", []string{"dashboard", "--config", "x.yaml", "--addr", "0.0.0.0:8080"}, true},
		{"misspelled flag", []string{"health", "--wroker"}, false},
		{"bad duration", []string{"health", "--timeout", "4"}, false},
		{"unknown command", []string{"healthz"}, false},
		{"extra argument", []string{"health", "now"}, false},
		{"no command", []string{"--config", "x.yaml"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := checkCommandLine(tc.args); (err == nil) != tc.ok {
				t.Fatalf("checkCommandLine(%q) = %v, want ok %v", tc.args, err, tc.ok)
			}
		})
	}
}

// agentqCommands finds the agentq command lines in YAML documents: the
// args of containers and the exec probes running /usr/local/bin/agentq
// (Kubernetes), the commands and CMD healthchecks of services built from
// the Dockerfile (compose).
func agentqCommands(t *testing.T, data []byte) [][]string {
	t.Helper()
	var out [][]string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		walkYAML(doc, func(key string, v any, parent map[string]any) {
			list, ok := stringList(v)
			if !ok || len(list) == 0 {
				return
			}
			switch key {
			case "command", "test":
				if list[0] == "CMD" {
					list = list[1:]
				}
				if len(list) > 0 && list[0] == "/usr/local/bin/agentq" {
					out = append(out, list[1:])
				} else if key == "command" && isAgentqService(parent) {
					out = append(out, list)
				}
			case "args":
				out = append(out, list)
			}
		})
	}
}

// isAgentqService reports a compose service running agentq's image.
func isAgentqService(m map[string]any) bool {
	return m["image"] == "agentq:local" || m["<<"] != nil
}

func walkYAML(v any, fn func(key string, v any, parent map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			fn(k, c, x)
			walkYAML(c, fn)
		}
	case []any:
		for _, c := range x {
			walkYAML(c, fn)
		}
	}
}

func stringList(v any) ([]string, bool) {
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

// TestDeployCommandsAreReal parses every agentq command line of the compose
// file and the Kubernetes manifests (their healthchecks and probes
// included) with the real command tree, so that a renamed command or flag
// breaks this test rather than a deployment.
func TestDeployCommandsAreReal(t *testing.T) {
	t.Parallel()
	files := []string{"../docker-compose.yml"}
	err := filepath.WalkDir("../deploy/kubernetes", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	health := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range agentqCommands(t, data) {
			if err := checkCommandLine(args); err != nil {
				t.Errorf("%s: agentq %s: %v", f, strings.Join(args, " "), err)
			}
			if args[0] == "health" {
				health++
			}
		}
	}
	// compose: worker, dashboard; Kubernetes: worker (startup and
	// readiness), dashboard (readiness). Liveness probes do not run agentq
	// health: it needs Redis.
	if health != 5 {
		t.Errorf("found %d agentq health command lines, want 5", health)
	}
}

// TestDeployConfigMapMatchesSample: the ConfigMap's agentq.yaml is
// deploy/agentq.yaml, which TestDeploySampleConfig loads.
func TestDeployConfigMapMatchesSample(t *testing.T) {
	t.Parallel()
	sample, err := os.ReadFile("../deploy/agentq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["agentq.yaml"]; got != string(sample) {
		t.Errorf("configmap.yaml's agentq.yaml differs from deploy/agentq.yaml: copy it again")
	}
}
