-- maintain.lua (fenced): drop stale clients (never one with a turn in
-- flight), restore limited/cooldown subscriptions whose until has passed,
-- refresh rolling weekly totals, forget leases that ran out.
--
-- KEYS[1] -> authpool:{P}:epoch (STRING fencing counter)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3+3(i-1)], KEYS[4+3(i-1)], KEYS[5+3(i-1)] -> sub:<id>, :clients, :hourly
-- KEYS[3+3n] -> authpool:{P}:inflight (ZSET session id -> latest turn lease, ms)
-- ARGV[1] -> the caller's epoch
-- ARGV[2] -> stale age, ms
-- ARGV[3] -> approaching threshold (weekly fraction)
-- ARGV[4] -> n; ARGV[5..4+n] -> subscription ids, in KEYS order
-- Returns {code, droppedClients, restored}
--   CODE_OK: done; CODE_STALE_EPOCH: stale epoch (nothing changed)

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { CODE_STALE_EPOCH, 0, 0 } end
local stale_ms = tonumber(ARGV[2])
local approach_at = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local events_key = KEYS[2]
local inflight_key = KEYS[3 + 3 * n]
local now = now_ms()
local dropped, restored = 0, 0
redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', ms(now))
for i = 1, n do
  local id = ARGV[4 + i]
  local sk, ck, hk = KEYS[3 + 3 * (i - 1)], KEYS[4 + 3 * (i - 1)], KEYS[5 + 3 * (i - 1)]
  -- A turn may run longer than the stale age: its session stays.
  dropped = dropped + drop_stale(ck, inflight_key, stale_ms, now)
  local f = redis.call('HMGET', sk, 'status', 'until', 'weeklyUsed', 'weeklyHour', 'weeklyBudget')
  if f[1] then
    local budget = to_micros(f[5])
    local weekly = weekly_micros(sk, hk, f[3], f[4], now, true)
    local frac = weekly_frac(sk, weekly, budget, now)
    if usable(f[1]) then
      local st = usable_status(frac, approach_at, sk, now)
      if st ~= f[1] then redis.call('HSET', sk, 'status', st) end
    else
      local st = restore_if_due(sk, events_key, id, f[1], f[2], frac, approach_at, now)
      if st ~= f[1] then restored = restored + 1 end
    end
  end
end
return { CODE_OK, dropped, restored }
