-- failures.lua: count a subscription's crashes and timeouts in a row, shared
-- by every gateway replica, and put it in cooldown at the threshold.
--
-- KEYS[1] -> authpool:{P}:sub:<id> (HASH; the count is its field 'failures')
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- ARGV[1] -> subscription id
-- ARGV[2] -> outcome: failed | succeeded
-- ARGV[3] -> threshold: failures in a row that trip the cooldown (>= 1)
-- ARGV[4] -> cooldown length, ms
-- Returns {code, failures, status, until}
--   CODE_OK: this failure tripped the cooldown (count reset to 0, a
--   limit_reached event written, as mark.lua writes for reason 'failures');
--   CODE_UNCHANGED: counted (or, on success, reset) only; a trip on a subscription
--   already cooling down only extends its until (no second event), and one
--   that is disabled or removed is left as it is;
--   CODE_NOT_FOUND: unknown subscription.
-- failures is the count after this call; until is ms ('0' when none).

local id = ARGV[1]
local outcome = ARGV[2]
local threshold = tonumber(ARGV[3])
local cooldown_ms = tonumber(ARGV[4])
local sub_key, events_key = KEYS[1], KEYS[2]

local f = redis.call('HMGET', sub_key, 'status', 'until')
local status = f[1]
if not status then return { CODE_NOT_FOUND, 0, '', '0' } end

if outcome ~= 'failed' then
  -- A success ends the run: the next failure starts counting again.
  redis.call('HDEL', sub_key, 'failures')
  return { CODE_UNCHANGED, 0, status, f[2] or '0' }
end

local n = redis.call('HINCRBY', sub_key, 'failures', 1)
if n < threshold then return { CODE_UNCHANGED, n, status, f[2] or '0' } end

-- Tripped: whatever the status does, the next run counts from zero.
redis.call('HDEL', sub_key, 'failures')
-- The same transition as mark.lua's cooldown with no until given.
if status == 'removed' or status == 'disabled' then return { CODE_UNCHANGED, 0, status, f[2] or '0' } end
local now = now_ms()
local until_v = now + cooldown_ms
if status == 'cooldown' then
  local kept = int(f[2])
  if kept > now + 8 * 24 * HOUR then kept = now + 8 * 24 * HOUR end
  if until_v < kept then until_v = kept end
  if until_v ~= int(f[2]) then redis.call('HSET', sub_key, 'until', ms(until_v)) end
  return { CODE_UNCHANGED, 0, status, ms(until_v) }
end
redis.call('HSET', sub_key, 'status', 'cooldown', 'statusReason', 'failures', 'until', ms(until_v))
emit(events_key, 'limit_reached', 'warning', id,
  'Subscription ' .. id .. ' cooling down (failures) until ' .. rfc3339(until_v),
  { status = 'cooldown', reason = 'failures', ['until'] = until_v, previousStatus = status }, now)
return { CODE_OK, 0, 'cooldown', ms(until_v) }
