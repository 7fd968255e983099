package runs

import "github.com/redis/go-redis/v9"

// casScript writes one change of a run's state if the state is still at
// the version the change was computed from, and bumps the version.
//
// KEYS[1] the run's state hash, KEYS[2] its history list (one slot: the
// {run:<id>} tag)
// ARGV[1] the expected version; "0": the run must not exist (a start)
// ARGV[2] the state document, ARGV[3] the list line
// ARGV[4] the expiry of both keys in ms; "0" keeps them (PERSIST)
// ARGV[5] how many history entries to keep
// ARGV[6] n, the number of output fields that follow
// ARGV[7 .. 6+2n] output field, value pairs
// ARGV[7+2n ..] history entries to append
//
// It returns {1, new version} when it wrote, {0, current version} when the
// version did not match (nothing written).
var casScript = redis.NewScript(casSrc)

const casSrc = `
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur ~= tonumber(ARGV[1]) then
  return {0, cur}
end
local v = cur + 1
redis.call('HSET', KEYS[1], 'v', tostring(v), 'doc', ARGV[2], 'sum', ARGV[3])
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if i <= #ARGV then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
end
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return {1, v}`
