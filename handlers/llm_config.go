package handlers

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
