package handlers

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strings"
)

// LLMConfig configures the llm.chat kind: the providers it calls and the
// model names steps use. The zero value has no models: an llm.chat step
// then fails permanently naming the model it asked for.
type LLMConfig struct {
	// Providers are OpenAI-compatible endpoints by name.
	Providers map[string]LLMProvider
	// Models are the names steps use (payload "model"), each mapped to a
	// provider, the provider's model id and its prices.
	Models map[string]LLMModel
}

// LLMProvider is one OpenAI-compatible chat completions endpoint.
type LLMProvider struct {
	// BaseURL is the API root; requests go to BaseURL + "/chat/completions".
	BaseURL string
	// APIKeyEnv names the environment variable holding the API key, read
	// when a step runs; empty sends no Authorization header.
	APIKeyEnv string
}

// LLMModel is one model name steps use.
type LLMModel struct {
	// Provider names an entry of LLMConfig.Providers.
	Provider string
	// Model is the provider's model id, e.g. "gpt-4o-mini".
	Model string
	// InputPerMTok and OutputPerMTok are the prices in US dollars per
	// million prompt and completion tokens.
	InputPerMTok, OutputPerMTok float64
}

// Validate reports the first problem of c, naming its config key (e.g.
// llm.models.small.provider) and the bad value: a model whose provider is
// not configured, an empty model id, a negative or non-finite price, a
// provider whose base_url is not an absolute http or https URL, or an
// api_key_env that is not an environment variable name. A base URL is
// quoted with its secrets masked; an api_key_env value is never quoted,
// since a bad one is often the key itself. The zero value is valid.
func (c LLMConfig) Validate() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Providers)) {
		p := c.Providers[name]
		key := "llm.providers." + name
		if strings.TrimSpace(name) == "" {
			errs = append(errs, errors.New("llm.providers: a provider name is empty"))
			continue
		}
		if p.BaseURL == "" {
			errs = append(errs, fmt.Errorf("%s.base_url: is required (e.g. https://api.openai.com/v1)", key))
		} else if _, err := llmEndpoint(p.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("%s.base_url: %w", key, err))
		}
		if p.APIKeyEnv != "" && !envName(p.APIKeyEnv) {
			errs = append(errs, fmt.Errorf("%s.api_key_env: must name an environment variable (letters, digits and _, not starting with a digit), not hold the key itself", key))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Models)) {
		m := c.Models[name]
		key := "llm.models." + name
		switch {
		case strings.TrimSpace(name) == "":
			errs = append(errs, errors.New("llm.models: a model name is empty"))
			continue
		case m.Provider == "":
			errs = append(errs, fmt.Errorf("%s.provider: is required (configured: %s)", key, names(c.Providers)))
		case !hasKey(c.Providers, m.Provider):
			errs = append(errs, fmt.Errorf("%s.provider: no provider %q (configured: %s)", key, m.Provider, names(c.Providers)))
		}
		if strings.TrimSpace(m.Model) == "" {
			errs = append(errs, fmt.Errorf("%s.model: is required: the provider's model id, e.g. gpt-4o-mini", key))
		}
		for _, price := range []struct {
			field string
			v     float64
		}{{"input_per_mtok", m.InputPerMTok}, {"output_per_mtok", m.OutputPerMTok}} {
			if price.v < 0 || math.IsNaN(price.v) || math.IsInf(price.v, 0) {
				errs = append(errs, fmt.Errorf("%s.%s: must be a finite price >= 0, got %v", key, price.field, price.v))
			}
		}
	}
	return errors.Join(errs...)
}

// llmEndpoint returns the chat completions URL of a provider's base URL:
// base + "/chat/completions", one slash between them. It refuses a URL that
// is not absolute http or https, quoting it with its secrets masked.
func llmEndpoint(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http or https URL", defaultRedactor().URL(base))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q must not have a query or fragment: requests go to base_url + \"/chat/completions\"", defaultRedactor().URL(base))
	}
	return strings.TrimRight(base, "/") + "/chat/completions", nil
}

// envName reports whether s is a portable environment variable name.
func envName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// names lists m's keys sorted, or "none".
func names[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
