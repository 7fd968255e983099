package dlq

import "github.com/redis/go-redis/v9"

// The store's multi-key changes, each one Lua script in the {agentq-dlq}
// slot. Record and history keys are built from the prefix passed as ARGV[1]
// (or declared when the id is known to the caller). Times are unix ms.

// deadScript records a death: it appends to the record the task belongs to
// (the record a replay task replays, or the record already holding this
// archived task in status dead or rerun) or creates a record, moving the
// task's pending attempts into the record's history. For the reconciler
// (source "reconciler") it first checks that the archived task is not
// already reflected, and honours tombstones.
//
// KEYS: seq, idx, live, pending(queue, task), task(queue, task)
// ARGV: prefix, now, source, queue, task, kind, workflow, run_id, key,
// replay_of, payload, headers, max_attempts, class, error, failed_at,
// attempt_json, note, step
// Returns {record id, "created"|"appended"|"seen"|"tombstone"}.
var deadScript = redis.NewScript(`
local p, now, source, task, replayOf = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[10]
local step = ARGV[19] or ''
local target = false
if replayOf ~= '' and redis.call('EXISTS', p .. 'r:' .. replayOf) == 1 then
  if source == 'reconciler' then
    local f = redis.call('HMGET', p .. 'r:' .. replayOf, 'status', 'replay_task', 'archived_task')
    if not ((f[1] == 'replayed' and f[2] == task) or (f[1] == 'rerun' and f[3] == task)) then
      return {replayOf, 'seen'}
    end
  end
  target = replayOf
else
  local m = redis.call('GET', KEYS[5])
  if m == '-' and source == 'reconciler' then return {'', 'tombstone'} end
  if m and m ~= '-' then
    local f = redis.call('HMGET', p .. 'r:' .. m, 'status', 'archived_task')
    if f[2] == task then
      if f[1] == 'dead' and source == 'reconciler' then return {m, 'seen'} end
      if f[1] == 'replayed' and source == 'reconciler' then return {m, 'seen'} end
      if f[1] == 'dead' or f[1] == 'rerun' then target = m end
    end
  end
end
local rid, mode = target, 'appended'
if not rid then
  rid = tostring(redis.call('INCR', KEYS[1]))
  mode = 'created'
end
local rk, hk = p .. 'r:' .. rid, p .. 'a:' .. rid
local first = tonumber(ARGV[16])
local pend = redis.call('LRANGE', KEYS[4], 0, -1)
for _, a in ipairs(pend) do
  redis.call('RPUSH', hk, a)
  local at = tonumber(string.match(a, '^{"at":(%d+)'))
  if at and at < first then first = at end
end
redis.call('RPUSH', hk, ARGV[17])
redis.call('DEL', KEYS[4])
if mode == 'created' then
  redis.call('HSET', rk, 'id', rid, 'task_id', task, 'queue', ARGV[4], 'kind', ARGV[6], 'workflow', ARGV[7],
    'run_id', ARGV[8], 'step', step, 'key', ARGV[9], 'replay_of', replayOf, 'first_failed_at', string.format('%d', first), 'created_at', now,
    'source', source, 'replays', 0)
else
  local old = tonumber(redis.call('HGET', rk, 'first_failed_at'))
  if not old or first < old then redis.call('HSET', rk, 'first_failed_at', string.format('%d', first)) end
end
redis.call('HSET', rk, 'payload', ARGV[11], 'headers', ARGV[12], 'max_attempts', ARGV[13], 'status', 'dead',
  'class', ARGV[14], 'error', ARGV[15], 'failed_at', ARGV[16], 'archived_task', task, 'updated_at', now,
  'note', ARGV[18])
redis.call('HINCRBY', rk, 'attempts', #pend + 1)
redis.call('ZADD', KEYS[2], ARGV[16], rid)
redis.call('ZADD', KEYS[3], now, rid)
redis.call('SET', KEYS[5], rid)
return {rid, mode}`)

// successScript handles a success that may settle a record: it drops the
// task's pending attempts and resolves the record whose replay (or whose
// archived task, run again from asynqmon) just succeeded.
//
// KEYS: pending(queue, task), task(queue, task), live
// ARGV: prefix, task, replay_of, now
// Returns the resolved record id or "".
var successScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
local p, task, rid, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local note
if rid ~= '' then
  local f = redis.call('HMGET', p .. 'r:' .. rid, 'status', 'replay_task', 'archived_task')
  if not ((f[1] == 'replayed' and f[2] == task) or ((f[1] == 'dead' or f[1] == 'rerun') and f[3] == task)) then
    return ''
  end
  note = 'replay task ' .. task .. ' succeeded'
else
  rid = redis.call('GET', KEYS[2])
  if not rid or rid == '-' then return '' end
  local f = redis.call('HMGET', p .. 'r:' .. rid, 'status', 'archived_task')
  if not ((f[1] == 'dead' or f[1] == 'rerun') and f[2] == task) then return '' end
  note = 'archived task ' .. task .. ' was run again (asynqmon) and succeeded'
end
redis.call('HSET', p .. 'r:' .. rid, 'status', 'resolved', 'resolved_at', now, 'updated_at', now, 'note', note)
redis.call('ZREM', KEYS[3], rid)
return rid`)

// claimScript moves a record from dead or deleted to replayed and names the
// replay task <task_id>-r<N>. Of concurrent claims exactly one succeeds.
//
// KEYS: record, live
// ARGV: id, now
// Returns {"ok", replay task, archived task} or {"missing"} or
// {"status", status, replay task}.
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local f = redis.call('HMGET', KEYS[1], 'status', 'replay_task', 'task_id', 'archived_task')
if f[1] ~= 'dead' and f[1] ~= 'deleted' then return {'status', f[1], f[2] or ''} end
local n = redis.call('HINCRBY', KEYS[1], 'replays', 1)
local tid = f[3] .. '-r' .. n
redis.call('HSET', KEYS[1], 'status', 'replayed', 'prev_status', f[1], 'prev_replay_task', f[2] or '',
  'replay_task', tid, 'replayed_at', ARGV[2], 'updated_at', ARGV[2], 'note', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {'ok', tid, f[4] or ''}`)

// unclaimScript undoes a claim whose enqueue failed, so that the next replay
// reuses the same task id (and meets the task if the enqueue did land).
//
// KEYS: record, live
// ARGV: id, replay task, now
var unclaimScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'replay_task', 'prev_status', 'prev_replay_task')
if f[1] ~= 'replayed' or f[2] ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], 'replays', -1)
redis.call('HSET', KEYS[1], 'status', f[3], 'replay_task', f[4] or '', 'updated_at', ARGV[3])
if f[3] ~= 'dead' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1`)

// markScript changes a record's status if it still has the status and
// field value the caller saw (compare and set).
//
// KEYS: record, live
// ARGV: id, from status, field, field value, to status, note, now
var markScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'status', ARGV[3])
if f[1] ~= ARGV[2] or f[2] ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'note', ARGV[6], 'updated_at', ARGV[7])
if ARGV[5] == 'resolved' then redis.call('HSET', KEYS[1], 'resolved_at', ARGV[7]) end
if ARGV[5] == 'dead' or ARGV[5] == 'rerun' or ARGV[5] == 'replayed' then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1`)

// unwatchScript clears a dead record's archived task that asynq trimmed
// from its archive: the record stays dead and leaves the reconciler's watch.
//
// KEYS: record, live
// ARGV: id, archived task, note, now
var unwatchScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'status', 'archived_task')
if f[1] ~= 'dead' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'archived_task', '', 'note', ARGV[3], 'updated_at', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`)

// purgeScript deletes a record and its history and leaves a tombstone on
// each of its tasks, so that the reconciler does not record them again.
//
// KEYS: record, history, idx, live
// ARGV: prefix, id, tombstone ttl
// Returns {status, queue, archived task} or nil when there is no record.
var purgeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local f = redis.call('HMGET', KEYS[1], 'status', 'queue', 'task_id', 'replays', 'archived_task')
local n = tonumber(f[4]) or 0
for k = 0, n do
  local tid = f[3]
  if k > 0 then tid = f[3] .. '-r' .. k end
  local mk = ARGV[1] .. 't:' .. f[2] .. ':' .. tid
  if redis.call('GET', mk) == ARGV[2] then redis.call('SET', mk, '-', 'PX', ARGV[3]) end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return {f[1] or '', f[2] or '', f[5] or ''}`)

// knownScript tells the reconciler which archived tasks are already
// reflected by a record (or tombstoned), so that only the others are read
// from asynq.
//
// KEYS: task(queue, id) for each id
// ARGV: prefix, id...
// Returns 1 (known) or 0 per id.
var knownScript = redis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local m = redis.call('GET', k)
  local known = 0
  if m == '-' then
    known = 1
  elseif m then
    local f = redis.call('HMGET', ARGV[1] .. 'r:' .. m, 'status', 'archived_task')
    if f[2] == ARGV[i + 1] and (f[1] == 'dead' or f[1] == 'replayed') then known = 1 end
  end
  out[i] = known
end
return out`)
