package cli

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/queue"
)

// commandLine is the start of a command a user can paste to run this
// program against what this process uses, for hints such as the
// dead-letter replay command: the program's name (Main.Name), then
// --config when one was given and --redis-url when Redis is not the
// default, each word shell-quoted. A password in the URL is printed as
// **** and must be filled in (or given as AGENTQ_REDIS_PASSWORD); a
// password set apart from the URL (redis.password) is never printed and
// applies as usual when the command runs.
func (a *app) commandLine() string {
	words := a.m.program(os.Args, debug.ReadBuildInfo)
	if a.configFile != "" {
		f := a.configFile
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		words = append(words, "--config", f)
	}
	// With Redis Cluster the URL carries only credentials and TLS; the
	// seed addresses come from the config, so --config is what is needed.
	if u := a.cfg.Redis.URL; u != "" && u != config.DefaultRedisURL && len(a.cfg.Redis.ClusterAddrs) == 0 {
		words = append(words, "--redis-url", queue.MaskURL(u))
	}
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

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

// shellQuote returns s as one POSIX shell word: unchanged when it holds
// only characters no shell treats specially, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("@%+=:,./_-", r):
		default:
			safe = false
		}
		if !safe {
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
