package agentq

import (
	"path/filepath"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/agentq/agentq/config"
	"github.com/agentq/agentq/queue"
)

// CommandLine is the start of a command a user can paste to run agentq's
// commands against what this runtime uses, for hints such as the
// dead-letter replay command: Options.Name as written, then --config when
// Options.ConfigFile is set and --redis-url when Redis is not the default,
// each shell-quoted. A password in the URL is printed as **** and must be
// filled in (or given as AGENTQ_REDIS_PASSWORD); a password set apart from
// the URL (redis.password) is never printed and applies as usual when the
// command runs.
func (r *Runtime) CommandLine() string {
	words := []string{r.name}
	if f := r.opts.ConfigFile; f != "" {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		words = append(words, "--config", ShellQuote(f))
	}
	// With Redis Cluster the URL carries only credentials and TLS; the
	// seed addresses come from the config, so --config is what is needed.
	if u := r.cfg.Redis.URL; u != "" && u != config.DefaultRedisURL && len(r.cfg.Redis.ClusterAddrs) == 0 {
		words = append(words, "--redis-url", ShellQuote(queue.MaskURL(u)))
	}
	return strings.Join(words, " ")
}

// ShellQuote returns s as one POSIX shell word: unchanged when it holds
// only characters no shell treats specially, else in single quotes.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := !strings.ContainsFunc(s, func(r rune) bool {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return false
		}
		return !strings.ContainsRune("@%+=:,./_-", r)
	})
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// WorkerQueues returns the queues, with priorities, that a worker of this
// runtime serves: worker.queues, and with the default list also
// enqueue.queue and every workflow's queue. The map is the caller's.
func (r *Runtime) WorkerQueues() map[string]int { return workerQueues(r.cfg, r.runWfs) }

// RedisOptions returns the go-redis options cfg's Redis settings make, as
// the runtime's own client gets them, for a client with other limits
// passed as Options.Redis (shell completion's dials once, without
// retries). It reads the TLS files; errors never show a password.
func RedisOptions(cfg config.Config) (*redis.UniversalOptions, error) {
	return redisConfig(cfg).UniversalOptions()
}
