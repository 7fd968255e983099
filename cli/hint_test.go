package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/dlq"
	"github.com/agentq/agentq/internal/logbuf"
	"github.com/agentq/agentq/internal/redistest"
)

func TestShellQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"plain", "myagent", "myagent"},
		{"url", "redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"},
		{"masked password", "redis://u:****@h:1/0", "'redis://u:****@h:1/0'"},
		{"query", "redis://h/0?dial_timeout=3s&x=1", "'redis://h/0?dial_timeout=3s&x=1'"},
		{"space", "/opt/my agent", "'/opt/my agent'"},
		{"quote", "it's", `'it'\''s'`},
		{"empty", "", "''"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := shellQuote(tc.in); got != tc.want {
				t.Fatalf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := shellWords(t, shellQuote(tc.in)); len(got) != 1 || got[0] != tc.in {
				t.Fatalf("%q does not read back as one word %q: %q", shellQuote(tc.in), tc.in, got)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		m          Main
		url        string
		cluster    []string
		configFile string
		want       string
		absent     string
	}{
		{name: "default redis", m: Main{Name: "myagent"}, want: "myagent"},
		{name: "default redis spelled out", m: Main{Name: "myagent"}, url: config.DefaultRedisURL, want: "myagent"},
		{name: "other redis", m: Main{Name: "myagent"}, url: "redis://127.0.0.1:6390/2", want: "myagent --redis-url redis://127.0.0.1:6390/2"},
		{name: "password masked", m: Main{Name: "myagent"}, url: "redis://app:hunter2@10.0.0.5:6379/0",
			want: "myagent --redis-url 'redis://app:****@10.0.0.5:6379/0'", absent: "hunter2"},
		{name: "cluster names the config only", m: Main{Name: "myagent"}, url: "redis://:pw@", cluster: []string{"a:1", "b:2"},
			configFile: "/etc/agentq.yaml", want: "myagent --config /etc/agentq.yaml", absent: "pw"},
		{name: "config and redis", m: Main{Name: "my agent"}, url: "redis://h:1/0", configFile: "/etc/a.yaml",
			want: "'my agent' --config /etc/a.yaml --redis-url redis://h:1/0"},
		{name: "default name is the program's", m: Main{}, want: filepath.Base(os.Args[0])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := commandLine(t, &tc.m, tc.configFile, tc.url, tc.cluster)
			if got != tc.want {
				t.Fatalf("commandLine() = %q, want %q", got, tc.want)
			}
			if tc.absent != "" && strings.Contains(got, tc.absent) {
				t.Fatalf("commandLine() = %q shows %q", got, tc.absent)
			}
		})
	}
	if got := commandLine(t, &Main{Name: "x"}, "rel/agentq.yaml", "", nil); !strings.Contains(got, " --config /") {
		t.Fatalf("a relative --config is not made absolute: %q", got)
	}
}

// commandLine is the hint prefix of the runtime m builds for a config
// file and a Redis.
func commandLine(t *testing.T, m *Main, configFile, url string, cluster []string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Redis.URL, cfg.Redis.ClusterAddrs = url, cluster
	rt, err := agentq.New(cfg, m.options(configFile))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	return rt.CommandLine()
}

// shellWords splits a command line the way sh does for what shellQuote
// makes: plain words, single-quoted words and backslash escapes.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	quoted, escaped, inWord := false, false, false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted || escaped {
		t.Fatalf("unterminated quote or escape in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

var replayHintRE = regexp.MustCompile(`(?m)replay: (.+ dlq replay \S+)$`)

// paste runs a printed command line through Main.Run as a shell would run
// it, with an environment that names no Redis: only the command's own
// flags can lead it to the record.
func paste(t *testing.T, name, line string) runResult {
	t.Helper()
	words := shellWords(t, line)
	if len(words) == 0 || words[0] != name {
		t.Fatalf("hint %q does not start with the program %q", line, name)
	}
	var out, errb logbuf.Buffer
	m := &Main{Name: name, Stdout: &out, Stderr: &errb, Environ: []string{"AGENTQ_LOG_FORMAT=json"}}
	code := m.Run(context.Background(), words[1:])
	return runResult{code: code, out: out.String(), err: errb.String()}
}

func TestReplayHintNamesTheProgramAndItsRedis(t *testing.T) {
	t.Parallel()
	b := setupDLQ(t)
	id := b.ids["t-b"]
	var out, errb logbuf.Buffer
	m := &Main{Name: "myagent", Stdout: &out, Stderr: &errb, Environ: b.env}
	if code := m.Run(context.Background(), []string{"dlq", "show", id, "--config", b.conf}); code != ExitOK {
		t.Fatalf("dlq show: exit %d: %s", code, errb.String())
	}
	match := replayHintRE.FindStringSubmatch(out.String())
	if match == nil {
		t.Fatalf("dlq show prints no replay hint:\n%s", out.String())
	}
	hint := match[1]
	srvURL := strings.TrimPrefix(b.env[0], "AGENTQ_REDIS_URL=")
	want := "myagent --config " + b.conf + " --redis-url " + srvURL + " dlq replay " + id
	if hint != want {
		t.Fatalf("replay hint = %q, want %q", hint, want)
	}
	r := paste(t, "myagent", hint)
	if r.code != ExitOK || !strings.Contains(r.out, "replayed "+id) {
		t.Fatalf("pasted hint %q: exit %d out %q err %q", hint, r.code, r.out, r.err)
	}
	rec, err := b.store.Get(context.Background(), id)
	if err != nil || rec.Status != dlq.StatusReplayed {
		t.Fatalf("record after the pasted replay: %+v, %v", rec, err)
	}
}

func TestDevReplayHintUsesDevsRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name     string
		env      []string
		embedded bool
	}{
		{name: "configured redis", env: []string{"AGENTQ_REDIS_URL=" + srv.URL}},
		{name: "embedded redis", embedded: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := append([]string{"AGENTQ_LOG_FORMAT=json", "AGENTQ_DASHBOARD_ADDR=127.0.0.1:0"}, tc.env...)
			var out, errb logbuf.Buffer
			m := &Main{Name: "mydev", Stdout: &out, Stderr: &errb, Environ: env}
			// Without --exit: the hints are for while dev runs (with --exit,
			// dev prints none, and on a configured Redis it removes the
			// demo's keys when it ends).
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int, 1)
			go func() { done <- m.Run(ctx, []string{"dev"}) }()
			stopped := false
			defer func() {
				cancel()
				if !stopped {
					<-done
				}
			}()
			serving := time.After(90 * time.Second)
			for !strings.Contains(out.String(), "Serving the dashboard") {
				select {
				case code := <-done:
					stopped = true
					t.Fatalf("dev: exit %d before serving\n%s\n%s", code, out.String(), errb.String())
				case <-serving:
					t.Fatalf("dev is not serving after 90s:\n%s\n%s", out.String(), errb.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			url := srv.URL
			if tc.embedded {
				addr := regexp.MustCompile(`redis: embedded at (\S+)`).FindStringSubmatch(out.String())
				if addr == nil {
					t.Fatalf("dev names no embedded address:\n%s", out.String())
				}
				url = "redis://" + addr[1] + "/0"
			}
			if want := "and in the dead-letter store: mydev --redis-url " + url + " dlq list"; !strings.Contains(out.String(), want) {
				t.Fatalf("dev output lacks %q:\n%s", want, out.String())
			}
			hint := regexp.MustCompile(`replay with: (mydev --redis-url \S+ dlq replay \S+?)"`).FindStringSubmatch(errb.String())
			if hint == nil || !strings.Contains(hint[1], " "+url+" ") {
				t.Fatalf("dev's dead-letter warning has no replay hint naming %s:\n%s", url, errb.String())
			}
			if tc.embedded {
				return // the embedded Redis is gone with dev
			}
			r := paste(t, "mydev", hint[1])
			if r.code != ExitOK || !strings.Contains(r.out, "replayed ") {
				t.Fatalf("pasted hint %q: exit %d out %q err %q", hint[1], r.code, r.out, r.err)
			}
			cancel()
			stopped = true
			if code := <-done; code != ExitOK {
				t.Fatalf("dev after Ctrl-C: exit %d\n%s", code, errb.String())
			}
		})
	}
}

func TestProgramUnderGoRun(t *testing.T) {
	t.Parallel()
	info := func(path, main string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Path: path, Main: debug.Module{Path: main}}, true
		}
	}
	for _, tc := range []struct {
		name string
		m    Main
		arg0 string
		info func() (*debug.BuildInfo, bool)
		want string
	}{
		{name: "installed binary", arg0: "/usr/local/bin/agentq", info: info("github.com/agentq/agentq/cmd/agentq", "github.com/agentq/agentq"), want: "agentq"},
		{name: "go run", arg0: "/tmp/go-build123/b001/exe/agentq", info: info("github.com/agentq/agentq/cmd/agentq", "github.com/agentq/agentq"), want: "go run ./cmd/agentq"},
		{name: "go run of the module root", arg0: "/tmp/go-build9/b001/exe/myagent", info: info("example.com/myagent", "example.com/myagent"), want: "go run ."},
		{name: "a test binary", arg0: "/tmp/go-build5/b001/cli.test", info: info("github.com/agentq/agentq/cli.test", ""), want: "cli.test"},
		{name: "a name set by the Go user wins", m: Main{Name: "myagent"}, arg0: "/tmp/go-build1/b001/exe/x", info: info("example.com/x", "example.com/x"), want: "myagent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := tc.m
			got := strings.Join(m.program([]string{tc.arg0}, tc.info), " ")
			if tc.want == "agentq" || tc.want == "cli.test" {
				// The fallback is name(), from this process's os.Args.
				if got != m.name() {
					t.Fatalf("program = %q, want the fallback %q", got, m.name())
				}
				return
			}
			if got != tc.want {
				t.Fatalf("program = %q, want %q", got, tc.want)
			}
		})
	}
}
