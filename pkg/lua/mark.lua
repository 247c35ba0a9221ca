-- mark.lua: set a subscription's status.
--
-- KEYS[1] -> authpool:{P}:sub:<id> (HASH)
-- KEYS[2] -> its :hourly HASH
-- KEYS[3] -> authpool:{P}:events (STREAM)
-- KEYS[4], KEYS[5] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs, rank.lua):
--            a status change moves the subscription in allocate's order
-- ARGV[1] -> subscription id
-- ARGV[2] -> status: limited | cooldown | disabled | available
-- ARGV[3] -> reason (free text: "usage_limit", "auth", "failures", "operator", …;
--            "five_hour" / "seven_day": the window a limit was reached in)
-- ARGV[4] -> until, Unix ms (limited: the provider's reset time, 0 = the end
--            of the current block, or one hour when no block is active;
--            cooldown: now + ARGV[5] when 0). Every limited until, and a
--            given cooldown until, is clamped to [now + 60 s, now + 8 d].
-- ARGV[5] -> cooldown length, ms
-- ARGV[6] -> approaching threshold (weekly fraction)
-- Returns {code, status, until}
--   CODE_OK: changed; CODE_NOT_FOUND: unknown subscription; CODE_UNCHANGED: unchanged (already
--   in that state, a later until was kept; or removed; or disabled and asked
--   for limited/cooldown)

local id = ARGV[1]
local want = ARGV[2]
local reason = ARGV[3]
local until_v = tonumber(ARGV[4])
local cooldown_ms = tonumber(ARGV[5])
local approach_at = tonumber(ARGV[6])
local sub_key, hourly_key, events_key = KEYS[1], KEYS[2], KEYS[3]

-- A reset is believed only within these bounds of Redis' clock, whoever
-- parsed it: a misread once marked four subscriptions limited until 2286,
-- and one already passed (or a block about to end) would flap the status.
local MIN_AHEAD = 60 * 1000
local MAX_AHEAD = 8 * 24 * HOUR

local f = redis.call('HMGET', sub_key, 'status', 'until', 'blockStart', 'weeklyUsed', 'weeklyHour', 'weeklyBudget')
local status = f[1]
if not status then return { CODE_NOT_FOUND, '', '0' } end
-- removed is the config's to change; disabled the operator's: a backend's
-- limit or failure does not override it (and its expiry would re-enable it).
if status == 'removed' or (status == 'disabled' and want ~= 'available' and want ~= 'disabled') then
  return { CODE_UNCHANGED, status, f[2] or '0' }
end
local now = now_ms()

if want == 'limited' or want == 'cooldown' then
  local given = until_v > 0
  if until_v <= now then
    if want == 'limited' then
      if block_active(f[3], now) then until_v = int(f[3]) + BLOCK else until_v = now + HOUR end
    else
      until_v = now + cooldown_ms
    end
  end
  if want == 'limited' or given then
    if until_v < now + MIN_AHEAD then until_v = now + MIN_AHEAD end
    if until_v > now + MAX_AHEAD then until_v = now + MAX_AHEAD end
  end
  if status == want then
    -- Many in-flight requests hit the same limit: one event, the latest
    -- reset. A stored until beyond the bound (written before it) goes too.
    local kept = int(f[2])
    if kept > now + MAX_AHEAD then kept = now + MAX_AHEAD end
    if until_v < kept then until_v = kept end
    if until_v ~= int(f[2]) then
      redis.call('HSET', sub_key, 'until', ms(until_v))
      rank_status(KEYS[4], KEYS[5], id, status, until_v)
    end
    return { CODE_UNCHANGED, status, ms(until_v) }
  end
  redis.call('HSET', sub_key, 'status', want, 'statusReason', reason, 'until', ms(until_v))
  rank_status(KEYS[4], KEYS[5], id, want, until_v)
  -- A reason naming a window (five_hour, seven_day: the CLI's rejected
  -- rate_limit_event said which) is named in the event.
  local window_name = nil
  if reason == 'five_hour' or reason == 'seven_day' then window_name = reason end
  local msg = 'Subscription ' .. id .. ' reached its usage limit; resets at ' .. rfc3339(until_v)
  if window_name then
    msg = 'Subscription ' .. id .. ' reached its ' .. window_name .. ' usage limit; resets at ' .. rfc3339(until_v)
  end
  if want == 'cooldown' then msg = 'Subscription ' .. id .. ' cooling down (' .. reason .. ') until ' .. rfc3339(until_v) end
  emit(events_key, 'limit_reached', 'warning', id, msg,
    { status = want, reason = reason, window = window_name, ['until'] = until_v, previousStatus = status }, now)
  return { CODE_OK, want, ms(until_v) }
end

if want == 'disabled' then
  if status == 'disabled' then return { CODE_UNCHANGED, status, '0' } end
  redis.call('HSET', sub_key, 'status', 'disabled', 'statusReason', reason, 'until', '0')
  rank_status(KEYS[4], KEYS[5], id, 'disabled', 0)
  return { CODE_OK, 'disabled', '0' }
end

-- available: an operator (or a successful probe) ends any unusable status.
if usable(status) then return { CODE_UNCHANGED, status, '0' } end
local budget = to_micros(f[6])
local weekly = weekly_micros(sub_key, hourly_key, f[4], f[5], now, true)
local frac = weekly_frac(sub_key, weekly, budget, now)
local st = usable_status(frac, approach_at, sub_key, now)
-- An operator's drain outlives what ended here.
if redis.call('HGET', sub_key, 'drain') == '1' then st = 'draining' end
redis.call('HSET', sub_key, 'status', st, 'statusReason', '', 'until', '0')
rank_status(KEYS[4], KEYS[5], id, st, 0)
-- Made usable by hand, a refused login's episode ends here: its recovered
-- is this one, and a later refusal starts again at the shortest cooldown.
redis.call('HDEL', sub_key, 'authSince', 'authFailures')
emit(events_key, 'recovered', 'info', id, 'Subscription ' .. id .. ' recovered from ' .. status,
  { previousStatus = status, reason = reason }, now)
return { CODE_OK, st, '0' }
