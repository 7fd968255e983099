package agentq_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeFromGoIsTheExample keeps the README's "From Go" program and
// Example (example_test.go) the same code, so the README compiles and runs
// as written: they differ only in the package clause, the function's name
// and the example's Output comment.
func TestReadmeFromGoIsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	block, ok := goBlock(string(readme), "### From Go\n")
	if !ok {
		t.Fatal(`README.md has no "### From Go" section with a go block`)
	}
	want := asProgram(string(example), "Example")
	if block != want {
		t.Fatalf("README's From Go program differs from example_test.go as a program:\n%s", firstDiff(block, want))
	}

	// The same for "### A run from Go" and Example_runs.
	example, err = os.ReadFile("example_runs_test.go")
	if err != nil {
		t.Fatal(err)
	}
	block, ok = goBlock(string(readme), "### A run from Go\n")
	if !ok {
		t.Fatal(`README.md has no "### A run from Go" section with a go block`)
	}
	want = asProgram(string(example), "Example_runs")
	if block != want {
		t.Fatalf("README's run program differs from example_runs_test.go as a program:\n%s", firstDiff(block, want))
	}
}

// goBlock returns the first ```go block after heading.
func goBlock(doc, heading string) (string, bool) {
	_, rest, ok := strings.Cut(doc, heading)
	if !ok {
		return "", false
	}
	_, rest, ok = strings.Cut(rest, "```go\n")
	if !ok {
		return "", false
	}
	block, _, ok := strings.Cut(rest, "```\n")
	return block, ok
}

// asProgram turns the example file into the program a reader copies:
// package main, func main, no Output comment.
func asProgram(src, name string) string {
	var b strings.Builder
	inOutput := false
	for line := range strings.Lines(src) {
		switch {
		case strings.HasPrefix(line, "package "):
			line = "package main\n"
		case line == "func "+name+"() {\n":
			line = "func main() {\n"
		case line == "\t// Output:\n":
			inOutput = true
			continue
		case inOutput && strings.HasPrefix(line, "\t//"):
			continue
		}
		inOutput = false
		b.WriteString(line)
	}
	return b.String()
}

// firstDiff names the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n README: " + gl + "\n example: " + wl
		}
	}
	return "(same lines)"
}
