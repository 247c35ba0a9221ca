-- maintain.lua (fenced): drop stale clients (never an active one: a turn in
-- flight is active), restore limited/cooldown subscriptions whose until has
-- passed, refresh rolling weekly totals and the resume fraction (elig).
--
-- KEYS[1] -> authpool:{P}:epoch (STRING fencing counter)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3+3(i-1)], KEYS[4+3(i-1)], KEYS[5+3(i-1)] -> sub:<id>, :clients, :hourly
-- KEYS[3+3n], KEYS[4+3n] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs,
--            rank.lua): every subscription's value is refreshed by the call
--            that leaves no stale client to drop (the last of a cycle)
-- ARGV[1] -> the caller's epoch
-- ARGV[2] -> stale age, ms
-- ARGV[3] -> approaching threshold (weekly fraction)
-- ARGV[4] -> n; ARGV[5..4+n] -> subscription ids, in KEYS order
-- ARGV[5+n] -> the most stale clients one call drops, over all subscriptions
--            (0 or absent: all of them), so that a wave of stale sessions
--            does not hold the shard in one long call. A call that stops at
--            the bound does nothing else; the rest of the work (states,
--            ranking) is done once, by the call that drops the last ones.
-- ARGV[6+n] -> idle age, ms (client-set scores are 'active until', lib.lua)
-- ARGV[7+n..14+n] -> the ranking's inputs (rank_params: seven health
--            weights, idle age ms); absent: every subscription is marked for scoring
-- Returns {code, droppedClients, restored, more}
--   CODE_OK: done; more is 1 when the call stopped at the drop limit and
--   stale clients may remain (call again), else 0
--   CODE_STALE_EPOCH: stale epoch (nothing changed)

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { CODE_STALE_EPOCH, 0, 0, 0 } end
local stale_ms = tonumber(ARGV[2])
local approach_at = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local limit = tonumber(ARGV[5 + n] or '') or 0
local more = false
local events_key = KEYS[2]
local idle_ms = tonumber(ARGV[6 + n] or '') or 0
local now = now_ms()
local dropped, restored = 0, 0
local rank_key, rank_at_key, rank_p = KEYS[3 + 3 * n], KEYS[4 + 3 * n], rank_params(7 + n)
local read = {}
-- The drops first. A turn may run longer than the stale age: it is active,
-- its session stays.
for i = 1, n do
  local ck = KEYS[4 + 3 * (i - 1)]
  if limit <= 0 then
    dropped = dropped + drop_stale(ck, stale_ms, idle_ms, now)
  else
    -- The bound reached before this one: stale clients may remain here.
    if limit - dropped <= 0 then more = true; break end
    local d, m = drop_stale(ck, stale_ms, idle_ms, now, limit - dropped)
    dropped = dropped + d
    more = m
    if more then break end
  end
end
-- Stopped at the bound: the caller calls again, and the last call does the
-- rest, so that a cycle reads every subscription once.
if more then return { CODE_OK, dropped, 0, 1 } end
for i = 1, n do
  local id = ARGV[4 + i]
  local sk, hk = KEYS[3 + 3 * (i - 1)], KEYS[5 + 3 * (i - 1)]
  local f = sub_read(sk)
  local status = f.status
  if status then
    local budget = to_micros(f.weeklyBudget)
    local weekly = weekly_micros(sk, hk, f.weeklyUsed, f.weeklyHour, now, true, f)
    local frac = weekly_frac(sk, weekly, budget, now, f)
    local e = elig(frac, now, f)
    if e ~= f.elig then redis.call('HSET', sk, 'elig', e) end
    if usable(status) then
      local st = usable_status(frac, approach_at, sk, now, f)
      if st ~= status then redis.call('HSET', sk, 'status', st) end
    else
      local st = restore_if_due(sk, events_key, id, status, f['until'], frac, approach_at, now, f)
      if st ~= status then restored = restored + 1 end
    end
  end
  read[i] = f
end
-- Ranking (rank.lua), once a cycle: every subscription scored from the
-- state above (a dropped client was stale, never active: the drops change
-- no value, and the calls that stop at the limit returned above).
if rank_p then
  local batch = rank_batch()
  for i = 1, n do
    batch.add(ARGV[4 + i], rank_score(KEYS[3 + 3 * (i - 1)], KEYS[5 + 3 * (i - 1)], KEYS[4 + 3 * (i - 1)], rank_p, now, read[i]))
  end
  batch.flush(rank_key, rank_at_key)
else
  for i = 1, n do rank_dirty(rank_at_key, ARGV[4 + i]) end
end
-- A member that is no subscription of the pool's leaves the ranking.
if redis.call('ZCARD', rank_key) > n then
  local member = {}
  for i = 1, n do member[ARGV[4 + i]] = true end
  for _, m in ipairs(redis.call('ZRANGE', rank_key, 0, -1)) do
    if not member[m] then redis.call('ZREM', rank_key, m); redis.call('ZREM', rank_at_key, m) end
  end
end
return { CODE_OK, dropped, restored, 0 }
