// Package handlers owns agentq's built-in task kinds: http.call, one HTTP
// request to a tool with its response classified into jobs' outcome errors;
// llm.chat, one request to an OpenAI-compatible chat completions endpoint
// with its usage reported and its reply checked against a JSON Schema; and
// noop. Secrets in their errors are masked with package redact.
//
// Handlers know nothing of asynq or Redis: each gets a context, the
// *jobs.Step and its typed payload, and returns an error built with jobs'
// constructors. Register adds them to a queue.Registry.
package handlers
