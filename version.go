package agentq

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// ModulePath is agentq's Go module path.
const ModulePath = "github.com/agentq/agentq"

// Release builds set these with the linker, e.g.
//
//	go build -ldflags "-X github.com/agentq/agentq.version=v1.2.0 -X github.com/agentq/agentq.commit=$(git rev-parse HEAD) -X github.com/agentq/agentq.commitTime=$(git show -s --format=%cI HEAD)" ./cmd/agentq
//
// as the Dockerfile does from its VERSION, COMMIT and COMMIT_TIME build
// arguments (TestDockerfileLinkerFlags builds with its flags). Each one set
// (not empty) overrides what the build info says.
var (
	version    string
	commit     string
	commitTime string // RFC 3339
)

// VersionInfo says which agentq a program runs: what Version returns and
// `agentq version --json` prints.
type VersionInfo struct {
	// Version is agentq's module version: a tag (v1.2.0), a pseudo-version
	// for an untagged commit, or "(devel)" for a build without version
	// information.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from; empty when
	// unknown (go run, a build without .git and without -X, or agentq
	// built as a dependency of another module).
	Commit string `json:"commit"`
	// CommitTime is that revision's commit time; zero when unknown. In
	// JSON it is RFC 3339, or "" when unknown.
	CommitTime time.Time `json:"commit_time"`
	// Modified reports a build from a work tree with uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built the program.
	GoVersion string `json:"go_version"`
}

// MarshalJSON writes every key, unknown ones empty: commit and commit_time
// are "" when unknown (not left out, not 0001-01-01), so that
// `agentq version --json | jq -r .commit` prints a line either way.
func (v VersionInfo) MarshalJSON() ([]byte, error) {
	ct := ""
	if !v.CommitTime.IsZero() {
		ct = v.CommitTime.Format(time.RFC3339Nano)
	}
	return json.Marshal(struct {
		Version    string `json:"version"`
		Commit     string `json:"commit"`
		CommitTime string `json:"commit_time"`
		Modified   bool   `json:"modified"`
		GoVersion  string `json:"go_version"`
	}{v.Version, v.Commit, ct, v.Modified, v.GoVersion})
}

// UnmarshalJSON reads what MarshalJSON writes: a commit_time of "" is the
// zero time.
func (v *VersionInfo) UnmarshalJSON(data []byte) error {
	var j struct {
		Version    string `json:"version"`
		Commit     string `json:"commit"`
		CommitTime string `json:"commit_time"`
		Modified   bool   `json:"modified"`
		GoVersion  string `json:"go_version"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	var t time.Time
	if j.CommitTime != "" {
		var err error
		if t, err = time.Parse(time.RFC3339, j.CommitTime); err != nil {
			return fmt.Errorf("agentq: version commit_time %q is not RFC 3339: %w", j.CommitTime, err)
		}
	}
	*v = VersionInfo{Version: j.Version, Commit: j.Commit, CommitTime: t, Modified: j.Modified, GoVersion: j.GoVersion}
	return nil
}

// String is the one-line form `agentq --version` prints:
// "v1.2.0 (commit 0123456789ab, 2026-12-01T09:00:00Z, modified; go1.26.0)".
func (v VersionInfo) String() string {
	var parts []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		parts = append(parts, "commit "+c)
	}
	if !v.CommitTime.IsZero() {
		parts = append(parts, v.CommitTime.UTC().Format(time.RFC3339))
	}
	if v.Modified {
		parts = append(parts, "modified")
	}
	s := v.Version + " ("
	if len(parts) > 0 {
		s += strings.Join(parts, ", ") + "; "
	}
	return s + v.GoVersion + ")"
}

// Version returns the version of agentq this program was built with, read
// from the build information Go embeds (debug.ReadBuildInfo), each field
// overridden by the value a release build sets with -ldflags -X. The
// commit fields describe the main module, so they are left empty when
// agentq is a dependency of another program.
func Version() VersionInfo {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(bi, version, commit, commitTime)
}

// versionFrom is Version with its inputs given.
func versionFrom(bi *debug.BuildInfo, ldVersion, ldCommit, ldTime string) VersionInfo {
	v := VersionInfo{Version: "(devel)", GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		mod := &bi.Main
		if mod.Path != ModulePath {
			mod = nil
			for _, d := range bi.Deps {
				if d.Path == ModulePath {
					mod = d
					if d.Replace != nil && d.Replace.Version != "" {
						mod = d.Replace
					}
					break
				}
			}
		}
		if mod != nil && mod.Version != "" {
			v.Version = mod.Version
		}
		if bi.Main.Path == ModulePath {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					v.Commit = s.Value
				case "vcs.time":
					v.CommitTime, _ = time.Parse(time.RFC3339, s.Value)
				case "vcs.modified":
					v.Modified = s.Value == "true"
				}
			}
		}
	}
	if ldVersion != "" {
		v.Version = ldVersion
	}
	if ldCommit != "" {
		v.Commit = ldCommit
	}
	if ldTime != "" {
		if t, err := time.Parse(time.RFC3339, ldTime); err == nil {
			v.CommitTime = t
		}
	}
	return v
}
