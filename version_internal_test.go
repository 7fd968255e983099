package agentq

import (
	"encoding/json"
	"runtime/debug"
	"testing"
	"time"
)

func TestVersionFrom(t *testing.T) {
	t.Parallel()
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-01T09:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name                 string
		bi                   *debug.BuildInfo
		ldVer, ldCommit, ldT string
		want                 VersionInfo
		str                  string
	}{
		{name: "no build info", want: VersionInfo{Version: "(devel)"}},
		{name: "agentq built from its repository",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: ModulePath, Version: "v0.0.0-20261201090000-0123456789ab+dirty"}, Settings: vcs},
			want: VersionInfo{Version: "v0.0.0-20261201090000-0123456789ab+dirty", Commit: "0123456789abcdef0123", CommitTime: at, Modified: true, GoVersion: "go1.26.0"},
			str:  "v0.0.0-20261201090000-0123456789ab+dirty (commit 0123456789ab, 2026-12-01T09:00:00Z, modified; go1.26.0)"},
		{name: "agentq as a dependency: its version, not the program's commit",
			bi: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "example.com/mybot", Version: "v3.0.0"}, Settings: vcs,
				Deps: []*debug.Module{{Path: "golang.org/x/sync", Version: "v0.1.0"}, {Path: ModulePath, Version: "v1.4.0"}}},
			want: VersionInfo{Version: "v1.4.0", GoVersion: "go1.26.0"}, str: "v1.4.0 (go1.26.0)"},
		{name: "a replaced dependency",
			bi: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "example.com/mybot"},
				Deps: []*debug.Module{{Path: ModulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v1.4.1"}}}},
			want: VersionInfo{Version: "v1.4.1", GoVersion: "go1.26.0"}},
		{name: "linker flags win",
			bi:    &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: ModulePath, Version: "(devel)"}, Settings: vcs},
			ldVer: "v2.0.0", ldCommit: "feedface", ldT: "2027-01-02T03:04:05Z",
			want: VersionInfo{Version: "v2.0.0", Commit: "feedface", CommitTime: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC), Modified: true, GoVersion: "go1.26.0"},
			str:  "v2.0.0 (commit feedface, 2027-01-02T03:04:05Z, modified; go1.26.0)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := versionFrom(tc.bi, tc.ldVer, tc.ldCommit, tc.ldT)
			if tc.bi == nil {
				tc.want.GoVersion = got.GoVersion // the running toolchain's
			}
			if got != tc.want {
				t.Fatalf("versionFrom = %+v\nwant %+v", got, tc.want)
			}
			if tc.str != "" && got.String() != tc.str {
				t.Fatalf("String() = %q, want %q", got.String(), tc.str)
			}
		})
	}
}

// TestVersionInfoJSON: `agentq version --json` always has every key, the
// unknown ones empty, so `jq -r .commit` prints a line and not null.
func TestVersionInfoJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    VersionInfo
		want string
	}{
		{name: "nothing known", v: VersionInfo{Version: "(devel)", GoVersion: "go1.26.0"},
			want: `{"version":"(devel)","commit":"","commit_time":"","modified":false,"go_version":"go1.26.0"}`},
		{name: "a release build", v: VersionInfo{Version: "v1.2.0", Commit: "feedface", CommitTime: time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)), Modified: true, GoVersion: "go1.26.0"},
			want: `{"version":"v1.2.0","commit":"feedface","commit_time":"2027-01-02T03:04:05+01:00","modified":true,"go_version":"go1.26.0"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("json.Marshal = %s\nwant %s", got, tc.want)
			}
			var back VersionInfo
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if !back.CommitTime.Equal(tc.v.CommitTime) {
				t.Fatalf("read back commit time %v, want %v", back.CommitTime, tc.v.CommitTime)
			}
			back.CommitTime = tc.v.CommitTime
			if back != tc.v {
				t.Fatalf("read back %+v\nwant %+v", back, tc.v)
			}
		})
	}
}

// FuzzVersionInfoJSON: reading any `agentq version --json` output either
// fails or gives a VersionInfo that writes and reads back the same.
func FuzzVersionInfoJSON(f *testing.F) {
	f.Add(`{"version":"(devel)","commit":"","commit_time":"","modified":false,"go_version":"go1.26.0"}`)
	f.Fuzz(func(t *testing.T, in string) {
		var v VersionInfo
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%+v): %v", v, err)
		}
		var back VersionInfo
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("reading back %s: %v", out, err)
		}
		if !back.CommitTime.Equal(v.CommitTime) {
			t.Fatalf("commit time %v read back as %v (%s)", v.CommitTime, back.CommitTime, out)
		}
		back.CommitTime = v.CommitTime
		if back != v {
			t.Fatalf("%+v read back as %+v", v, back)
		}
	})
}
