// Package config owns agentq's effective configuration: the Config struct and
// its defaults, loading it in layers (defaults < agentq.yaml < AGENTQ_* environment
// variables < command-line flags), validating it with errors that name the key, the
// bad value and where it came from, and printing it with secrets masked.
//
// It is the only package that imports viper. Everything else receives a validated
// Config value.
package config
