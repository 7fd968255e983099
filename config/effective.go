package config

import "github.com/agentq/agentq/queue"

// Effective returns c with the values its parts decide at run time filled
// in, as `agentq config` shows them: worker.loops 0 becomes the dequeue
// loops a worker of this concurrency runs on this machine
// (queue.LoopsDefault), and an empty redis.url with no cluster addresses
// becomes DefaultRedisURL, which every command but `agentq dev` (which
// then embeds a server) connects to. The result loads back with Load.
func (c Config) Effective() Config {
	if c.Worker.Loops == 0 && c.Worker.Concurrency >= 1 {
		c.Worker.Loops = queue.LoopsDefault(c.Worker.Concurrency)
	}
	if c.Redis.URL == "" && len(c.Redis.ClusterAddrs) == 0 {
		c.Redis.URL = DefaultRedisURL
	}
	return c
}
