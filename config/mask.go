package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/agentq/agentq/redact"
)

// mask replaces secret values in output.
const mask = "****"

// secretParams are URL query parameters whose values are masked in any URL.
var secretParams = []string{
	"password", "pass", "pwd", "sentinel_password", "secret", "token",
	"access_token", "api_key", "apikey", "key", "auth", "sig", "signature",
}

// Masked returns a copy of c with secrets replaced by "****": password and token
// fields, the password in any URL (redis://user:****@host:6379/0), secret query
// parameters of redis.url, and the path and every query value of
// alerts.webhook_url, the password in llm.providers' base URLs, and the
// values of secret fields and headers (package redact's names and
// http.redact_*) in step payloads and schedule inputs. The copy
// shares no maps or slices with c.
func (c Config) Masked() Config {
	m := c
	m.Redis.URL = maskURL(c.Redis.URL, false)
	m.Redis.Password = maskSecret(c.Redis.Password)
	m.Redis.ClusterAddrs = slices.Clone(c.Redis.ClusterAddrs)
	m.Worker.Queues = maps.Clone(c.Worker.Queues)
	m.Dashboard.BasicAuthPassword = maskSecret(c.Dashboard.BasicAuthPassword)
	m.Dashboard.BearerToken = maskSecret(c.Dashboard.BearerToken)
	m.HTTP.RedactHeaders = slices.Clone(c.HTTP.RedactHeaders)
	m.HTTP.RedactFields = slices.Clone(c.HTTP.RedactFields)
	m.Alerts.WebhookURL = maskURL(c.Alerts.WebhookURL, true)
	m.Workflows = maps.Clone(c.Workflows)
	red := redact.New(c.HTTP.RedactHeaders, c.HTTP.RedactFields)
	secret := func(name string) bool { return red.SecretField(name) || red.SecretHeader(name) }
	for name, w := range m.Workflows {
		w.Schedule.Input = maskJSON(w.Schedule.Input, secret)
		w.Steps = slices.Clone(w.Steps)
		for i := range w.Steps {
			w.Steps[i].Payload = maskJSON(w.Steps[i].Payload, secret)
		}
		m.Workflows[name] = w
	}
	m.Breakers.Overrides = maps.Clone(c.Breakers.Overrides)
	m.LLM.Providers = maps.Clone(c.LLM.Providers)
	for name, p := range m.LLM.Providers {
		p.BaseURL = maskURL(p.BaseURL, false)
		m.LLM.Providers[name] = p
	}
	m.LLM.Models = maps.Clone(c.LLM.Models)
	m.origins = maps.Clone(c.origins)
	return m
}

// maskJSON returns a copy of the JSON document raw with the value of every
// object key secret names replaced by "****", keeping key order; raw
// itself when it is not JSON.
func maskJSON(raw json.RawMessage, secret func(string) bool) json.RawMessage {
	if len(raw) == 0 {
		return slices.Clone(raw)
	}
	n := jsonToNode(raw)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == string(raw) {
		return slices.Clone(raw) // not JSON
	}
	if !maskNode(n, secret) {
		return slices.Clone(raw)
	}
	var b bytes.Buffer
	if err := writeJSONNode(&b, n); err != nil {
		return slices.Clone(raw)
	}
	return b.Bytes()
}

// maskNode masks n's secret values in place and reports whether it masked
// any.
func maskNode(n *yaml.Node, secret func(string) bool) bool {
	masked := false
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if secret(n.Content[i].Value) {
				n.Content[i+1] = scalarNode("!!str", mask)
				masked = true
				continue
			}
			masked = maskNode(n.Content[i+1], secret) || masked
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			masked = maskNode(e, secret) || masked
		}
	}
	return masked
}

func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return mask
}

// maskURL masks the password in raw's user info and the values of secret query
// parameters, or of all of them when allQuery is set (and the fragment). It works
// on the text, not on url.Parse, so that it also masks URLs that do not parse and
// leaves the rest exactly as written.
func maskURL(raw string, allQuery bool) string {
	if raw == "" {
		return ""
	}
	scheme, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
	}
	rest, fragment, hasFragment := strings.Cut(rest, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	// The user info ends at the last "@" before the query: an unescaped "/" or "@"
	// in a password must not make the mask miss it.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user := rest[:at]
		if colon := strings.Index(user, ":"); colon >= 0 {
			user = user[:colon+1] + mask
		} else if !strings.Contains(user, "/") {
			user = mask // a bare token (https://TOKEN@host), as queue.MaskURL and redact do
		}
		rest = user + rest[at:]
	}
	if allQuery {
		// Webhook URLs often carry their secret in the path
		// (https://hooks.example.com/services/T0/B0/SECRET): keep the host,
		// mask from the first "/" on. An "@" may be in the path as well as
		// after the user info, so the first "/" of what is left, not the
		// first after the last "@", starts the path; a "/" in the user info
		// masks too much, never too little.
		if slash := strings.Index(rest, "/"); slash >= 0 && slash+1 < len(rest) {
			rest = rest[:slash] + "/" + mask
		}
	}
	out := scheme + rest
	if hasQuery {
		params := strings.Split(query, "&")
		for i, p := range params {
			k, _, hasValue := strings.Cut(p, "=")
			if hasValue && (allQuery || slices.Contains(secretParams, strings.ToLower(k))) {
				params[i] = k + "=" + mask
			} else if !hasValue && allQuery && p != "" {
				params[i] = mask
			}
		}
		out += "?" + strings.Join(params, "&")
	}
	if hasFragment {
		if allQuery && fragment != "" {
			fragment = mask
		}
		out += "#" + fragment
	}
	return out
}
