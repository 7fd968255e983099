package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileBounded: a config file path that is not a config file
// (/dev/zero, a huge file, a directory) is refused at once, naming the path,
// instead of being read until memory runs out (issue 7, new-user trial).
func TestConfigFileBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	// A valid YAML comment just over the limit: only its size is wrong.
	body := "#" + strings.Repeat("x", MaxFileBytes) + "\n"
	if err := os.WriteFile(big, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	atLimit := filepath.Join(dir, "limit.yaml")
	if err := os.WriteFile(atLimit, []byte("#"+strings.Repeat("x", MaxFileBytes-2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(subdir, 0o700); err != nil {
		t.Fatal(err)
	}
	implicitDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(implicitDir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		file, dir string
		want      string // "" means Load succeeds
	}{
		{name: "endless device", file: "/dev/zero", want: "config: /dev/zero is over 4 MiB"},
		{name: "file over the limit", file: big, want: "config: " + big + " is over 4 MiB"},
		{name: "file at the limit", file: atLimit},
		{name: "explicit directory", file: subdir, want: "config: " + subdir + " is a directory, not a config file"},
		{name: "agentq.yaml is a directory", dir: implicitDir, want: "config: " + filepath.Join(implicitDir, FileName) + " is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.file == "/dev/zero" {
				if _, err := os.Stat("/dev/zero"); err != nil {
					t.Skip("no /dev/zero here")
				}
			}
			_, err := Load(Options{File: tc.file, Dir: tc.dir, Environ: []string{}})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
