package agentq

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// TestURLMaskersAgree feeds the same secret-bearing URLs through every
// public way agentq masks a URL: redact.URL, queue.MaskURL (log lines,
// hints, Redis errors), the config's masked output (`agentq config`:
// redis.url, llm.providers' base_url, alerts.webhook_url, a step payload)
// and the health check's dashboard URL. No secret may survive any of them,
// and the URL maskers agree: one masker, one list of secret parameters,
// one mask. Every secret in the inputs holds "SECRET".
func TestURLMaskersAgree(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		// The two probes of the review: token was in clear in
		// queue.MaskURL, sentinel_password in redact.URL.
		{"token parameter", "redis://h:6379/0?token=SECRET1", "redis://h:6379/0?token=****"},
		{"sentinel_password parameter", "redis://h:6379/0?sentinel_password=SECRET3", "redis://h:6379/0?sentinel_password=****"},
		{"password parameter", "redis://h:6379/0?master_name=m&password=SECRET4&addr=h2:1", "redis://h:6379/0?master_name=m&password=****&addr=h2:1"},
		{"escaped parameter name", "redis://h:6379/0?pass%77ord=SECRET5", "redis://h:6379/0?pass%77ord=****"},
		{"userinfo password", "redis://:SECRETpw@h:6379/0", "redis://:****@h:6379/0"},
		{"ACL user and password", "redis://user:SECRETpw@h:6379/0", "redis://user:****@h:6379/0"},
		{"bare token userinfo", "redis://SECRETtoken@h:6379/0", "redis://****@h:6379/0"},
		{"password with slash", "redis://u:SECRET/pw@h:6379/0", "redis://u:****@h:6379/0"},
		{"password with question mark", "redis://u:SECRET?pw@h:6379/0", "redis://u:****@h:6379/0"},
		{"password with hash", "redis://u:SECRET#pw@h:6379/0", "redis://u:****@h:6379/0"},
		{"password with at", "redis://u:SECRET@pw@h:6379/0", "redis://u:****@h:6379/0"},
		{"password with all four", "redis://u:SECRETa@SECRETb/SECRETc?SECRETd#SECRETe@h:6379/0", "redis://u:****@h:6379/0"},
		{"password with at, then slash", "redis://u:SECRETp@SECRETs/SECRETw@h:6379/0", "redis://u:****@h:6379/0"},
		{"sentinel URL", "redis-sentinel://:SECRETa@s1:26379,s2:26379/0?master=m&sentinel_password=SECRETb&password=SECRETc",
			"redis-sentinel://:****@s1:26379,s2:26379/0?master=m&sentinel_password=****&password=****"},
		{"https base URL", "https://u:SECRET#p@api.example.com/v1?api_key=SECRETk", "https://u:****@api.example.com/v1?api_key=****"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			noSecret := func(where, out string) {
				t.Helper()
				if strings.Contains(out, "SECRET") {
					t.Errorf("%s shows a secret: %q -> %q", where, tc.in, out)
				}
			}

			cfg := config.Default()
			cfg.Redis.URL = tc.in
			cfg.LLM.Providers = map[string]config.LLMProvider{"p": {BaseURL: tc.in}}
			cfg.Alerts.WebhookURL = tc.in
			payload, _ := json.Marshal(map[string]string{"url": tc.in, "note": "see " + tc.in + " now"})
			cfg.Workflows = map[string]config.Workflow{"w": {Steps: []config.Step{{Name: "s", Kind: "http.call", Payload: payload}}}}
			m := cfg.Masked()

			// The URL maskers, side by side: each must give want.
			for _, got := range []struct{ where, out string }{
				{"redact.URL", redact.URL(tc.in)},
				{"queue.MaskURL", queue.MaskURL(tc.in)},
				{"config redis.url", m.Redis.URL},
				{"config llm base_url", m.LLM.Providers["p"].BaseURL},
				{"health dashboard URL", maskedURL(tc.in)},
			} {
				noSecret(got.where, got.out)
				if got.out != tc.want {
					t.Errorf("%s(%q) = %q, want %q as every URL masker gives", got.where, tc.in, got.out, tc.want)
				}
			}

			// A webhook URL is masked more (path, every query value); a
			// payload string as text; the printed config and the errors
			// that echo a URL show no secret either.
			noSecret("config alerts.webhook_url", m.Alerts.WebhookURL)
			noSecret("config step payload", string(m.Workflows["w"].Steps[0].Payload))
			var y, j bytes.Buffer
			if err := cfg.WriteYAML(&y); err != nil {
				t.Fatal(err)
			}
			if err := cfg.WriteJSON(&j); err != nil {
				t.Fatal(err)
			}
			noSecret("agentq config (YAML)", y.String())
			noSecret("agentq config --json", j.String())
			if !strings.Contains(y.String(), tc.want) {
				t.Errorf("agentq config does not show redis.url as %q:\n%s", tc.want, y.String())
			}
			if err := (queue.RedisConfig{URL: tc.in}).Validate(); err != nil {
				noSecret("redis.url error", err.Error())
			}
			if _, err := healthzURL(tc.in); err != nil {
				noSecret("health dashboard URL error", err.Error())
			}
		})
	}
}

// TestOutputRedactorHeaderNames: the dead-letter output Redactor masks
// values named like secret headers, redact's and http.redact_headers, as
// fields of a JSON payload and in text, without a list of its own.
func TestOutputRedactorHeaderNames(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.HTTP.RedactHeaders = []string{"X-Session"}
	red := outputRedactor(cfg)
	doc := `{"Authorization":"SECRET1","cookie":"SECRET2","x-api-key":"SECRET3","X-Session":"SECRET4","n":"1"}`
	if out, ok := red.JSON([]byte(doc)); !ok || bytes.Contains(out, []byte("SECRET")) || !bytes.Contains(out, []byte(`"n":"1"`)) {
		t.Errorf("JSON(%s) = %s, %v", doc, out, ok)
	}
	for _, in := range []string{
		doc,
		"authorization: SECRET1\nset-cookie: SECRET2\nx-session: SECRET4",
		"proxy-authorization=SECRET1&x-auth-token=SECRET2&x-session=SECRET4",
		"headers:\n  cookie: SECRET2\n  X-Session: SECRET4\n",
	} {
		if out := red.Text(in); strings.Contains(out, "SECRET") {
			t.Errorf("Text(%q) = %q", in, out)
		}
	}
}
