package handlers

import (
	"fmt"

	"github.com/agentq/agentq/queue"
)

// Register adds the built-in kinds, http.call, llm.chat and noop, to r. It
// refuses an invalid cfg (cfg.LLM included), naming the field, and a kind
// that is already registered.
func Register(r *queue.Registry, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("handlers config: %w", err)
	}
	if err := cfg.LLM.Validate(); err != nil {
		return fmt.Errorf("handlers config: %w", err)
	}
	if err := queue.Register(r, HTTPCallSchema, NewHTTPCall(cfg).Handle); err != nil {
		return err
	}
	if err := queue.Register(r, LLMChatSchema, NewLLMChat(cfg).Handle); err != nil {
		return err
	}
	return queue.Register(r, NoopSchema, Noop)
}
