package agentq_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// TestComposeRedisPassword runs docker-compose.yml's Redis start script (as
// compose hands it to the container's sh, $$ read as $) with a shim
// redis-server that adds a unix socket of the test's, and checks that
// Redis takes exactly the password, whatever characters it holds. It
// starts redis-server itself (not internal/redistest): the script under
// test is what starts it.
func TestComposeRedisPassword(t *testing.T) {
	t.Parallel()
	real, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server on PATH")
	}
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	cmd := compose.Services["redis"].Command
	if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
		t.Fatalf("redis command = %q, want sh -c SCRIPT", cmd)
	}
	script := strings.ReplaceAll(cmd[2], "$$", "$")

	cases := []struct{ name, password string }{
		{"hex", "0123456789abcdef0123456789abcdef"},
		{"space", "two words"},
		{"double quote", `a"b`},
		{"single quote", "a'b"},
		{"backslash", `a\b\x41`},
		{"hash", "a #b"},
		{"dollar", "a$HOME$(id)`id`"},
		{"newline", "a\nrequirepass other"},
		{"utf-8", "pässwörd ✓"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, err := os.MkdirTemp("", "aqc") // short: a unix socket path has a length limit
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			sock := filepath.Join(dir, "r.sock")
			shim := "#!/bin/sh\nexec " + real + ` "$@" --port 0 --unixsocket ` + sock +
				" --dir " + dir + " --appendonly no --save ''\n"
			if err := os.WriteFile(filepath.Join(dir, "redis-server"), []byte(shim), 0o755); err != nil {
				t.Fatal(err)
			}
			sh := exec.Command("sh", "-c", script)
			sh.Env = []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "REDIS_PASSWORD=" + tc.password}
			sh.Dir = dir
			var out strings.Builder
			sh.Stdout, sh.Stderr = &out, &out
			if err := sh.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- sh.Wait() }()
			t.Cleanup(func() {
				_ = sh.Process.Kill()
				<-done
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ping := func(password string) error {
				c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, Password: password, MaxRetries: -1})
				defer c.Close()
				return c.Ping(ctx).Err()
			}
			// Wait for the socket: Redis started, or the script failed.
			for {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				select {
				case err := <-done:
					done <- err
					t.Fatalf("redis did not start: %v\n%s", err, out.String())
				case <-ctx.Done():
					t.Fatalf("redis did not start in time:\n%s", out.String())
				case <-time.After(10 * time.Millisecond):
				}
			}
			if err := ping(tc.password); err != nil {
				t.Errorf("PING with the password: %v", err)
			}
			if err := ping(tc.password + "x"); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Errorf("PING with another password: %v, want WRONGPASS", err)
			}
		})
	}
}
