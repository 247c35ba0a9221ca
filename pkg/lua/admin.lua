-- admin.lua: an operator's write (DESIGN §10, /admin/v1), fenced against a
-- removed subscription, recorded as one admin_action event.
--
-- KEYS[1] -> authpool:{P}:subs (SET)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3] -> authpool:{P}:session:<sid> (HASH; a never-written key for
--            subscription ops)
-- KEYS[4] -> authpool:{P}:session:<sid>:turns (LIST; likewise)
-- KEYS[5+3(i-1)], KEYS[6+3(i-1)], KEYS[7+3(i-1)] -> sub:<id>, :clients,
--            :hourly of the i-th subscription id in ARGV[8+i]
-- KEYS[5+3n], KEYS[6+3n] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs,
--            rank.lua): a status change, or a session moved or ended, moves
--            subscriptions in allocate's order
-- ARGV[1] -> op: drain | disable | enable | reset (on a subscription),
--            move | end (on a session)
-- ARGV[2] -> target: subscription id, or session id
-- ARGV[3] -> destination subscription id (move), else ''
-- ARGV[4] -> actor: the admin token's name ("admin")
-- ARGV[5] -> approaching threshold (weekly fraction)
-- ARGV[6] -> stale age, ms
-- ARGV[7] -> idle age, ms (move: the destination's cap counts active sessions)
-- ARGV[8] -> n; ARGV[9..8+n] -> subscription ids, in KEYS order
-- Returns {code, status, detail}
--   CODE_OK: done; status is the subscription's new status (subscription
--     ops) or the session's subscription after it (move: the destination;
--     end: the one it left, '' for the fallback)
--   CODE_UNCHANGED: already so (nothing written, no event)
--   CODE_NOT_FOUND: no such subscription (or removed), or no such session
--   CODE_REFUSED: move only: the destination cannot take it; detail says
--     why (status, capacity, same)
--   CODE_STALE_SUBS: the SET no longer has n members (nothing changed)

local op, target, dest, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local approach_at = tonumber(ARGV[5])
local stale_ms, idle_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local events_key, sess_key, turns_key = KEYS[2], KEYS[3], KEYS[4]
if redis.call('SCARD', KEYS[1]) ~= n then return { CODE_STALE_SUBS, '', '' } end
local now = now_ms()
local idx = {}
for i = 1, n do idx[ARGV[8 + i]] = i end
local function keys_of(i) return KEYS[5 + 3 * (i - 1)], KEYS[6 + 3 * (i - 1)], KEYS[7 + 3 * (i - 1)] end
local rank_key, rank_at_key = KEYS[5 + 3 * n], KEYS[6 + 3 * n]

local function record(sub, what, data)
  data.action = op
  data.actor = actor
  emit(events_key, 'admin_action', 'info', sub, 'Operator ' .. actor .. ': ' .. what, data, now)
end

-- live_status reads a member subscription's status; nil when it is not a
-- member or removed: the config removed it, and no operator brings it back.
local function live_status(id)
  local i = idx[id]
  if not i then return nil end
  local sk = keys_of(i)
  local st = redis.call('HGET', sk, 'status')
  if not st or st == 'removed' then return nil end
  return st, i
end

local function fresh_usable(i)
  local sk, _, hk = keys_of(i)
  local f = redis.call('HMGET', sk, 'weeklyUsed', 'weeklyHour', 'weeklyBudget')
  local budget = to_micros(f[3])
  local frac = 1
  if budget > 0 then frac = weekly_micros(sk, hk, f[1], f[2], now, true) / budget end
  return usable_status(frac, approach_at)
end

if op == 'drain' or op == 'disable' or op == 'enable' or op == 'reset' then
  local status, i = live_status(target)
  if not status then return { CODE_NOT_FOUND, '', '' } end
  local sk = keys_of(i)
  local want
  if op == 'drain' then
    if status == 'draining' then
      -- Drained before the flag existed: it gets the flag now.
      redis.call('HSET', sk, 'drain', '1')
      return { CODE_UNCHANGED, status, '' }
    end
    -- The drain is kept as a flag too, so that it outlives a limit or a
    -- cooldown: one in force now stays (with its until), and the
    -- subscription goes back to draining when it ends.
    redis.call('HSET', sk, 'drain', '1')
    if status == 'limited' or status == 'cooldown' then
      record(target, op .. ' subscription ' .. target .. ' (' .. status .. ': draining once it ends)',
        { subscriptionId = target, previousStatus = status, status = status })
      return { CODE_OK, status, status }
    end
    want = 'draining'
  elseif op == 'disable' then
    if status == 'disabled' then return { CODE_UNCHANGED, status, '' } end
    want = 'disabled'
  elseif op == 'enable' then
    -- enable ends a drain (the flag too) as well as what else stops it.
    local drained = redis.call('HDEL', sk, 'drain') == 1
    if usable(status) then
      if drained then return { CODE_OK, status, status } end
      return { CODE_UNCHANGED, status, '' }
    end
    want = fresh_usable(i)
  else
    -- reset ends a limit or a cooldown now; the failure count goes too,
    -- so the next crash does not trip a new cooldown at once. A drain in
    -- force outlives it.
    if status ~= 'limited' and status ~= 'cooldown' then return { CODE_UNCHANGED, status, '' } end
    want = fresh_usable(i)
    if redis.call('HGET', sk, 'drain') == '1' then want = 'draining' end
    redis.call('HSET', sk, 'failures', '0')
  end
  local reason = ''
  if want == 'draining' or want == 'disabled' then reason = 'operator' end
  redis.call('HSET', sk, 'status', want, 'statusReason', reason, 'until', '0')
  rank_status(rank_key, rank_at_key, target, want, 0)
  record(target, op .. ' subscription ' .. target .. ' (' .. status .. ' -> ' .. want .. ')',
    { subscriptionId = target, previousStatus = status, status = want })
  return { CODE_OK, want, status }
end

if op ~= 'move' and op ~= 'end' then return { CODE_NOT_FOUND, '', 'op' } end

local cur = redis.call('HMGET', sess_key, 'sub', 'owner')
local from = cur[1]
if not from then return { CODE_NOT_FOUND, '', '' } end
local fi = idx[from]
if from ~= '' and not fi then return { CODE_STALE_SUBS, '', '' } end

if op == 'end' then
  if fi then
    local _, ck = keys_of(fi)
    redis.call('ZREM', ck, target)
    rank_dirty(rank_at_key, from)
  end
  redis.call('DEL', sess_key, turns_key)
  record(from, 'ended session ' .. target, { sessionId = target, from = from, owner = cur[2] or '' })
  return { CODE_OK, from, '' }
end

-- move: capacity-checked like an allocation, to a usable destination.
local dstatus, di = live_status(dest)
if not dstatus then return { CODE_NOT_FOUND, '', 'destination' } end
if dest == from then return { CODE_REFUSED, from, 'same' } end
if not usable(dstatus) then return { CODE_REFUSED, from, 'status' } end
local dsk, dck = keys_of(di)
local max = int(redis.call('HGET', dsk, 'maxClients'))
drop_stale(dck, stale_ms, idle_ms, now)
if active_count(dck, now) >= max then
  return { CODE_REFUSED, from, 'capacity' }
end
-- A session from the fallback has no score: active for the idle age, as
-- after a turn.
local last = now + idle_ms
if fi then
  local _, ck = keys_of(fi)
  local score = redis.call('ZSCORE', ck, target)
  if score then last = tonumber(score) end
  redis.call('ZREM', ck, target)
  rank_dirty(rank_at_key, from)
end
rank_dirty(rank_at_key, dest)
-- The session keeps its last activity: a move makes no idle session active.
redis.call('ZADD', dck, last, target)
redis.call('HSET', sess_key, 'sub', dest)
redis.call('HDEL', sess_key, 'cliSession')
redis.call('PEXPIRE', sess_key, stale_ms)
if redis.call('EXISTS', turns_key) == 1 then redis.call('PEXPIRE', turns_key, stale_ms) end
local shown_from = from
if from == '' then shown_from = 'fallback' end
emit(events_key, 'rotation', 'info', shown_from,
  'Operator moved session ' .. target .. ' from ' .. shown_from .. ' to ' .. dest,
  { sessionId = target, from = from, to = dest, reason = 'admin' }, now)
record(dest, 'moved session ' .. target .. ' from ' .. shown_from .. ' to ' .. dest,
  { sessionId = target, from = from, to = dest })
return { CODE_OK, dest, from }
