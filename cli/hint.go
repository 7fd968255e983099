package cli

import (
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/agentq/agentq"
)

// program returns the words that start this program again: Main.Name, or
// for a binary that `go run` built in a temporary directory (gone when it
// exits, and not on PATH) `go run` and its main package relative to the
// module, as in `go run ./cmd/agentq`, which works from the module's root.
func (m *Main) program(args []string, buildInfo func() (*debug.BuildInfo, bool)) []string {
	if m.Name == "" && len(args) > 0 {
		exe := filepath.ToSlash(args[0])
		if strings.Contains(exe, "/go-build") && filepath.Base(filepath.Dir(exe)) == "exe" {
			if bi, ok := buildInfo(); ok && bi.Path != "" {
				if rel, ok := strings.CutPrefix(bi.Path, bi.Main.Path); ok && bi.Main.Path != "" {
					return []string{"go", "run", "." + rel}
				}
				return []string{"go", "run", bi.Path}
			}
		}
	}
	return []string{m.name()}
}

// shellQuote returns s as one POSIX shell word (agentq.ShellQuote).
func shellQuote(s string) string { return agentq.ShellQuote(s) }
