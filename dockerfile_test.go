package agentq_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentq/agentq/internal/binarytest"
	"go.yaml.in/yaml/v3"
)

// TestDockerfileLinkerFlags builds agentq with the -ldflags of the
// Dockerfile's go build line, its build arguments (${VERSION}, ...) given
// values, and checks that `agentq version --json` reports them: a -X name
// that is no variable of version.go is silently ignored by the linker, so
// only a build shows it. It also checks that every argument the line uses
// is declared (ARG) and that docker-compose.yml passes each of them.
// There is no Docker engine here: the rest of the Dockerfile is not run.
func TestDockerfileLinkerFlags(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	var build string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "ARG" {
			declared = append(declared, strings.SplitN(f[1], "=", 2)[0])
		}
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, " go build ") {
			build = line
			break
		}
	}
	m := regexp.MustCompile(`-ldflags="([^"]*)"`).FindStringSubmatch(build)
	if m == nil {
		t.Fatalf("no go build line with -ldflags=\"...\" in the Dockerfile (found %q)", build)
	}
	ldflags := m[1]
	values := map[string]string{
		"VERSION":     "v9.8.7-3-gabcdef0",
		"COMMIT":      "0123456789abcdef0123456789abcdef01234567",
		"COMMIT_TIME": "2026-12-01T09:00:00+01:00",
	}
	var used []string
	ldflags = regexp.MustCompile(`\$\{?([A-Z_]+)\}?`).ReplaceAllStringFunc(ldflags, func(s string) string {
		name := strings.Trim(s, "${}")
		used = append(used, name)
		v, ok := values[name]
		if !ok {
			t.Errorf("the go build line uses $%s, which this test gives no value", name)
		}
		if !slices.Contains(declared, name) {
			t.Errorf("the go build line uses $%s, but no ARG before it declares it", name)
		}
		return v
	})
	for name := range values {
		if !slices.Contains(used, name) {
			t.Errorf("the go build line does not pass $%s to the linker", name)
		}
	}

	compose, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Agentq struct {
			Build struct {
				Args map[string]string `yaml:"args"`
			} `yaml:"build"`
		} `yaml:"x-agentq"`
	}
	if err := yaml.Unmarshal(compose, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range used {
		if want := "${" + name + ":-}"; c.Agentq.Build.Args[name] != want {
			t.Errorf("docker-compose.yml: x-agentq build.args %s = %q, want %q", name, c.Agentq.Build.Args[name], want)
		}
	}

	// The same flags but -trimpath and CGO_ENABLED=0, which would make
	// this test recompile every package: only the link step runs again.
	bin := filepath.Join(t.TempDir(), "agentq")
	if b, err := exec.Command(binarytest.GoTool(), "build", "-ldflags", ldflags, "-o", bin, "./cmd/agentq").CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, b)
	}
	cmd := exec.Command(bin, "version", "--json")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agentq version --json: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("agentq version --json: %v: %s", err, out)
	}
	want := map[string]any{"version": values["VERSION"], "commit": values["COMMIT"], "commit_time": values["COMMIT_TIME"]}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("built with the Dockerfile's -ldflags, version --json has %s %v, want %q (does the -X name a variable of version.go?)", k, got[k], v)
		}
	}
}
