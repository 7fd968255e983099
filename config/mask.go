package config

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/agentq/agentq/redact"
)

// mask replaces secret values in output: package redact's, the one mask
// of agentq.
const mask = redact.Mask

// Masked returns a copy of c with secrets replaced by "****": password and token
// fields; redis.url and llm.providers' base URLs as redact.URL masks them (the
// userinfo's password, redis://user:****@host:6379/0, secret query parameters,
// credential-like path segments); alerts.webhook_url as redact's HostOnly masks
// it (the path and every query value too); and in step payloads and schedule
// inputs, the values of secret fields and headers (package redact's names and
// http.redact_*) and the secrets in every other string, as redact's JSON masks
// them. The copy shares no maps or slices with c.
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
	for name, w := range m.Workflows {
		w.Schedule.Input = maskJSON(w.Schedule.Input, red)
		w.Steps = slices.Clone(w.Steps)
		for i := range w.Steps {
			w.Steps[i].Payload = maskJSON(w.Steps[i].Payload, red)
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

// maskJSON returns a copy of the JSON document raw masked as red.JSON masks
// it (the value of every secret field or header name becomes "****", other
// strings are masked by red.StringValue) but keeping key order and
// formatting of what is not masked; raw itself when it is not JSON.
func maskJSON(raw json.RawMessage, red *redact.Redactor) json.RawMessage {
	if len(raw) == 0 {
		return slices.Clone(raw)
	}
	n := jsonToNode(raw)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == string(raw) {
		return slices.Clone(raw) // not JSON
	}
	if !maskNode(n, red) {
		return slices.Clone(raw)
	}
	var b bytes.Buffer
	if err := writeJSONNode(&b, n); err != nil {
		return slices.Clone(raw)
	}
	return b.Bytes()
}

// maskNode masks n's secrets in place and reports whether it masked any.
func maskNode(n *yaml.Node, red *redact.Redactor) bool {
	masked := false
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; red.SecretField(k) || red.SecretHeader(k) {
				n.Content[i+1] = scalarNode("!!str", mask)
				masked = true
				continue
			}
			masked = maskNode(n.Content[i+1], red) || masked
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			masked = maskNode(e, red) || masked
		}
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			if v := red.StringValue(n.Value); v != n.Value {
				n.Value = v
				masked = true
			}
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

// maskURL masks raw as redact.URL does or, when allQuery is set (a webhook
// URL, secret as a whole), as redact's HostOnly does: the path and every
// query value and the fragment too. Both work on the text, so they mask
// URLs that do not parse and keep the rest as written.
func maskURL(raw string, allQuery bool) string {
	if allQuery {
		return redact.Default().HostOnly(raw)
	}
	return redact.URL(raw)
}
