package config

import (
	"maps"
	"slices"
	"strings"
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
// alerts.webhook_url, the password in llm.providers' base URLs. The copy
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
	for name, w := range m.Workflows {
		w.Schedule.Input = slices.Clone(w.Schedule.Input)
		w.Steps = slices.Clone(w.Steps)
		for i := range w.Steps {
			w.Steps[i].Payload = slices.Clone(w.Steps[i].Payload)
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
