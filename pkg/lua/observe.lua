-- observe.lua: record the CLI's rate_limit_event readings of a subscription
-- (issue 11), per window, newest observation wins: a reading observed
-- before the one stored (a slower replica's) changes nothing. The
-- observation time is the gateway's (when the CLI printed the line), not
-- TIME, so that it orders readings the way the CLI made them.
--
-- A script of its own, called right after the run, rather than more ARGV of
-- settle.lua: a turn that fails on its limit, or prints no result, has
-- readings but may have nothing to settle, and a settle is retried in the
-- background for up to an hour, when its readings would be stale (newest
-- wins would discard them anyway, but the approaching status and the
-- threshold events would come late).
--
-- KEYS[1] -> authpool:{P}:sub:<id> (HASH; fields w:<window>:util, :reset,
--            :status, :at, and othr:<window>:<threshold> flags)
-- KEYS[2] -> its :hourly HASH
-- KEYS[3] -> authpool:{P}:events (STREAM)
-- KEYS[4] -> its :clients ZSET (the ranking's active count)
-- KEYS[5], KEYS[6] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs, rank.lua)
-- ARGV[1] -> subscription id
-- ARGV[2] -> approaching threshold (fraction)
-- ARGV[3] -> n, the number of usage_threshold rule thresholds that follow
-- ARGV[4..3+n] -> thresholds as written in the config (e.g. "0.8")
-- ARGV[4+n] -> m, the number of observations that follow, oldest first
-- ARGV[5+n+5(j-1) .. 9+n+5(j-1)] -> observation j: window (five_hour |
--            seven_day), utilization ('' not said), reset (Unix ms, 0 not
--            said), status ('' not said), observed at (Unix ms)
-- ARGV[5+n+5m..12+n+5m] -> the ranking's inputs (rank_params: seven health
--            weights, idle age ms); absent: the subscription is marked for scoring
-- Returns {code, applied, status}
--   CODE_OK: applied observations (of m); CODE_UNCHANGED: none was newer
--   than what is stored; CODE_NOT_FOUND: unknown subscription.
--   status is the subscription's status afterwards.

local id = ARGV[1]
local approach_at = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local m = tonumber(ARGV[4 + n])
local sub_key, hourly_key, events_key = KEYS[1], KEYS[2], KEYS[3]

local status = redis.call('HGET', sub_key, 'status')
if not status then return { CODE_NOT_FOUND, 0, '' } end
local now = now_ms()

local applied = 0
for j = 1, m do
  local b = 4 + n + 5 * (j - 1)
  local name, util, reset, st, at = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 4], tonumber(ARGV[b + 5])
  if (name == 'five_hour' or name == 'seven_day') and at and at > 0 then
    local p = 'w:' .. name .. ':'
    if at >= int(redis.call('HGET', sub_key, p .. 'at')) then
      applied = applied + 1
      -- What a reading leaves out stands from the last one while it speaks
      -- of the same period (CLI versions differ in what they print): a
      -- reset not said is kept; a utilization not said is kept only when
      -- the reset is the one it was read with.
      local stored_reset = int(redis.call('HGET', sub_key, p .. 'reset'))
      if not reset or reset <= 0 then reset = stored_reset end
      redis.call('HSET', sub_key, p .. 'at', ms(at), p .. 'status', st, p .. 'reset', ms(reset))
      if util then
        redis.call('HSET', sub_key, p .. 'util', string.format('%.6f', util))
      elseif reset ~= stored_reset then
        redis.call('HDEL', sub_key, p .. 'util')
      end
      -- One usage_threshold event per rule per crossing per window period:
      -- the flag holds the reset of the period it fired in.
      if util and reset > now then
        for i = 1, n do
          local t = ARGV[3 + i]
          local flag = 'othr:' .. name .. ':' .. t
          if util >= tonumber(t) and int(redis.call('HGET', sub_key, flag)) ~= reset then
            redis.call('HSET', sub_key, flag, ms(reset))
            emit(events_key, 'usage_threshold', 'warning', id,
              string.format('Subscription %s at %.0f%% of its %s window (observed); resets at %s', id, util * 100,
                name, rfc3339(reset)),
              { window = name, utilization = util, threshold = tonumber(t), resetsAt = reset, source = 'observed' }, now)
          end
        end
      end
    end
  end
end
if applied == 0 then return { CODE_UNCHANGED, 0, status } end

-- A usable subscription's status follows its windows at once; limited and
-- cooldown are mark's and failures' to set and end.
-- The weekly fraction follows the seven_day window: the resume fraction
-- (elig, lib.lua) is written again.
-- One read of the hash as the loop left it serves everything below.
local f = sub_read(sub_key)
local weekly = weekly_micros(sub_key, hourly_key, f.weeklyUsed, f.weeklyHour, now, true, f)
local frac = weekly_frac(sub_key, weekly, to_micros(f.weeklyBudget), now, f)
local set = { 'elig', elig(frac, now, f) }
if usable(status) then
  local st = usable_status(frac, approach_at, sub_key, now, f)
  if st ~= status then set[#set + 1] = 'status'; set[#set + 1] = st; status = st end
end
redis.call('HSET', sub_key, unpack(set))
f.status = status
-- Ranking (rank.lua): the windows move the subscription in allocate's order.
rank_update(KEYS[5], KEYS[6], id, sub_key, hourly_key, KEYS[4], rank_params(5 + n + 5 * m), now, f)
return { CODE_OK, applied, status }
