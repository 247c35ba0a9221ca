-- failures.lua: count a subscription's crashes and timeouts in a row, and
-- its refused logins, shared by every gateway replica, and put it in
-- cooldown.
--
-- KEYS[1] -> authpool:{P}:sub:<id> (HASH; the counts are its fields
--            'failures' and 'authFailures', 'authSince' marks an auth episode)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3], KEYS[4] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs, rank.lua):
--            a status change moves the subscription in allocate's order
-- ARGV[1] -> subscription id
-- ARGV[2] -> outcome: failed | auth | succeeded
-- ARGV[3] -> threshold: failures in a row that trip the cooldown (>= 1)
-- ARGV[4] -> cooldown length, ms (failed); the first auth cooldown (auth)
-- ARGV[5] -> the longest auth cooldown, ms
-- Returns {code, failures, status, until}
--   failed: CODE_OK: this failure tripped the cooldown (count reset to 0, a
--   limit_reached event written, as mark.lua writes for reason 'failures');
--   CODE_UNCHANGED: counted only; a trip on a subscription already cooling
--   down only extends its until (no second event), and one that is disabled
--   or removed is left as it is.
--   auth: CODE_OK: a cooldown (reason auth) of ARGV[4]·2^(k-1), at most
--   ARGV[5], for the k-th refused login in a row; the first of an episode
--   writes the auth_failed event. CODE_UNCHANGED: the subscription was
--   already cooling down for it (a turn that started before), or is
--   disabled or removed. failures is k.
--   succeeded: CODE_OK: it ended an auth episode (recovered event, status
--   usable again); CODE_UNCHANGED: counts reset only.
--   CODE_NOT_FOUND: unknown subscription.
-- until is ms ('0' when none).

local id = ARGV[1]
local outcome = ARGV[2]
local threshold = tonumber(ARGV[3])
local cooldown_ms = tonumber(ARGV[4])
local auth_max_ms = tonumber(ARGV[5])
local sub_key, events_key = KEYS[1], KEYS[2]

local f = redis.call('HMGET', sub_key, 'status', 'until', 'statusReason', 'authSince', 'failures', 'authFailures')
local status = f[1]
if not status then return { CODE_NOT_FOUND, 0, '', '0' } end

if outcome == 'succeeded' then
  -- A success ends the run: the next failure starts counting again.
  local s = { status = status, ['until'] = f[2], statusReason = f[3], authSince = f[4],
    failures = f[5], authFailures = f[6] }
  if not succeed(sub_key, events_key, id, s, now_ms()) then
    return { CODE_UNCHANGED, 0, status, f[2] or '0' }
  end
  if s.status ~= status then rank_status(KEYS[3], KEYS[4], id, s.status, 0) end
  return { CODE_OK, 0, s.status, '0' }
end

if status == 'removed' or status == 'disabled' then return { CODE_UNCHANGED, 0, status, f[2] or '0' } end
local now = now_ms()

if outcome == 'auth' then
  local k = int(redis.call('HGET', sub_key, 'authFailures'))
  if status == 'cooldown' and f[3] == 'auth' and int(f[2]) > now then
    return { CODE_UNCHANGED, k, status, f[2] }
  end
  k = redis.call('HINCRBY', sub_key, 'authFailures', 1)
  local len = cooldown_ms
  for _ = 2, k do
    len = len * 2
    if len >= auth_max_ms then break end
  end
  if len > auth_max_ms then len = auth_max_ms end
  local until_v = now + len
  redis.call('HSET', sub_key, 'status', 'cooldown', 'statusReason', 'auth', 'until', ms(until_v))
  rank_status(KEYS[3], KEYS[4], id, 'cooldown', until_v)
  if redis.call('HSETNX', sub_key, 'authSince', ms(now)) == 1 then
    emit(events_key, 'auth_failed', 'critical', id,
      'Subscription ' .. id .. ' refused its login: log in again in its config dir (claude /login), or '
        .. 'make a new token with claude setup-token; it is retried from ' .. rfc3339(until_v)
        .. ', the cooldown doubling while the login is refused',
      { status = 'cooldown', reason = 'auth', ['until'] = until_v, failures = k, previousStatus = status }, now)
  end
  return { CODE_OK, k, 'cooldown', ms(until_v) }
end

local n = redis.call('HINCRBY', sub_key, 'failures', 1)
if n < threshold then return { CODE_UNCHANGED, n, status, f[2] or '0' } end

-- Tripped: whatever the status does, the next run counts from zero.
redis.call('HDEL', sub_key, 'failures')
-- The same transition as mark.lua's cooldown with no until given.
local until_v = now + cooldown_ms
if status == 'cooldown' then
  local kept = int(f[2])
  if kept > now + 8 * 24 * HOUR then kept = now + 8 * 24 * HOUR end
  if until_v < kept then until_v = kept end
  if until_v ~= int(f[2]) then
    redis.call('HSET', sub_key, 'until', ms(until_v))
    rank_status(KEYS[3], KEYS[4], id, status, until_v)
  end
  return { CODE_UNCHANGED, 0, status, ms(until_v) }
end
redis.call('HSET', sub_key, 'status', 'cooldown', 'statusReason', 'failures', 'until', ms(until_v))
rank_status(KEYS[3], KEYS[4], id, 'cooldown', until_v)
emit(events_key, 'limit_reached', 'warning', id,
  'Subscription ' .. id .. ' cooling down (failures) until ' .. rfc3339(until_v),
  { status = 'cooldown', reason = 'failures', ['until'] = until_v, previousStatus = status }, now)
return { CODE_OK, 0, 'cooldown', ms(until_v) }
