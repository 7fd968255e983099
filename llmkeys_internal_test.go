package agentq

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/agentq/agentq/config"
)

func TestWarnMissingAPIKeys(t *testing.T) {
	t.Parallel()
	const secret = "sk-live-0123456789"
	env := map[string]string{"SET_KEY": secret, "EMPTY_KEY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg := config.Default()
	cfg.LLM.Providers = map[string]config.LLMProvider{
		"openai": {BaseURL: "https://api.openai.com/v1", APIKeyEnv: "UNSET_KEY"},
		"empty":  {BaseURL: "http://x", APIKeyEnv: "EMPTY_KEY"},
		"ok":     {BaseURL: "http://x", APIKeyEnv: "SET_KEY"},
		"local":  {BaseURL: "http://127.0.0.1:11434/v1"}, // no key, on purpose
	}
	var buf bytes.Buffer
	r := &Runtime{cfg: cfg, log: zerolog.New(&buf)}
	r.warnMissingAPIKeys(lookup)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one warning for each of empty and openai, got:\n%s", buf.String())
	}
	for i, want := range []string{`"provider":"empty","api_key_env":"EMPTY_KEY"`, `"provider":"openai","api_key_env":"UNSET_KEY"`} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"level":"warn"`) {
			t.Errorf("warning %d = %s, want %s", i, lines[i], want)
		}
	}
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), `"ok"`) {
		t.Fatalf("a set key's provider or value shows:\n%s", buf.String())
	}
}
