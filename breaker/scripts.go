package breaker

import "github.com/redis/go-redis/v9"

// failureScript records one failed call and opens a closed breaker that
// reached its consecutive failures or its failure rate. Rate buckets older
// than the window are dropped on the way.
// KEYS[1] state. ARGV[1] now ms, ARGV[2] bucket start, ARGV[3] window start,
// ARGV[4] failures threshold, ARGV[5] failure rate, ARGV[6] min calls,
// ARGV[7] cooldown ms, ARGV[8] ttl ms.
// Returns {state, consecutive, next probe ms, calls, failures, opened (0/1)}.
var failureScript = redis.NewScript(`
local k = KEYS[1]
local consec = redis.call('HINCRBY', k, 'consec', 1)
redis.call('HINCRBY', k, 'c:' .. ARGV[2], 1)
redis.call('HINCRBY', k, 'f:' .. ARGV[2], 1)
local all = redis.call('HGETALL', k)
local calls, fails, state, next_probe = 0, 0, 'closed', 0
local from = tonumber(ARGV[3])
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  local p = string.sub(f, 1, 2)
  if p == 'c:' or p == 'f:' then
    if tonumber(string.sub(f, 3)) < from then
      redis.call('HDEL', k, f)
    elseif p == 'c:' then
      calls = calls + tonumber(v)
    else
      fails = fails + tonumber(v)
    end
  elseif f == 'state' then
    state = v
  elseif f == 'next_probe' then
    next_probe = tonumber(v)
  end
end
local opened = 0
if state == 'closed' and (consec >= tonumber(ARGV[4]) or (calls >= tonumber(ARGV[6]) and fails >= tonumber(ARGV[5]) * calls)) then
  state = 'open'
  next_probe = tonumber(ARGV[1]) + tonumber(ARGV[7])
  redis.call('HSET', k, 'state', 'open', 'opened_at', ARGV[1], 'next_probe', next_probe)
  opened = 1
end
redis.call('PEXPIRE', k, ARGV[8])
return {state, consec, next_probe, calls, fails, opened}`)

// probeScript lets one call probe a breaker: an open one whose cool-down is
// over, or a half-open one whose probe lock expired (its prober died).
// KEYS[1] state, KEYS[2] probe lock. ARGV[1] now ms, ARGV[2] token,
// ARGV[3] lock ttl ms.
// Returns {1 if this call probes, state, next probe ms}.
var probeScript = redis.NewScript(`
local st = redis.call('HMGET', KEYS[1], 'state', 'next_probe')
local state = st[1] or 'closed'
local next_probe = tonumber(st[2] or '0') or 0
if (state == 'open' and tonumber(ARGV[1]) >= next_probe) or state == 'half_open' then
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
    redis.call('HSET', KEYS[1], 'state', 'half_open')
    return {1, 'half_open', next_probe}
  end
end
return {0, state, next_probe}`)

// probeResultScript closes the breaker after a good probe (dropping its
// counts, for a fresh start) or re-opens it for another cool-down after a
// failed one. A probe that lost its lock (it ran past the lock's ttl and
// another call probes now) changes nothing.
// KEYS[1] state, KEYS[2] probe lock. ARGV[1] token, ARGV[2] "1" for a good
// probe, ARGV[3] now ms, ARGV[4] cooldown ms, ARGV[5] ttl ms.
// Returns {1 if applied, state, next probe ms}.
var probeResultScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  local st = redis.call('HMGET', KEYS[1], 'state', 'next_probe')
  return {0, st[1] or 'closed', tonumber(st[2] or '0') or 0}
end
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    local p = string.sub(f, 1, 2)
    if p == 'c:' or p == 'f:' then redis.call('HDEL', KEYS[1], f) end
  end
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'consec', 0, 'next_probe', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, 'closed', 0}
end
local next_probe = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[1], 'consec', 1)
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[3], 'next_probe', next_probe)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, 'open', next_probe}`)
