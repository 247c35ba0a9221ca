-- turn.lua: refresh or end the in-flight lease of one running turn.
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2] -> authpool:{P}:inflight (ZSET session id -> latest lease, ms)
-- ARGV[1] -> session id
-- ARGV[2] -> turn id (the settlement id of the turn)
-- ARGV[3] -> lease, ms: refresh the lease to now + this; 0 ends the turn
--            (a failed turn: no settle will clear it)
-- ARGV[4] -> stale age, ms: the session key is kept at least this long
--            while the turn runs
-- Returns {code}
--   CODE_OK: lease refreshed, or turn ended
--   CODE_NOT_FOUND: no such turn (already settled or ended, or its lease ran out and
--           was cleaned up): nothing changed

local sess_key, index_key = KEYS[1], KEYS[2]
local sid, turn = ARGV[1], ARGV[2]
local lease_ms = tonumber(ARGV[3])
local stale_ms = tonumber(ARGV[4])
local now = now_ms()
local field = INFLIGHT .. turn

if redis.call('HEXISTS', sess_key, field) == 0 then return { CODE_NOT_FOUND } end
if lease_ms <= 0 then
  redis.call('HDEL', sess_key, field)
  inflight_sync(sess_key, index_key, sid, now)
  return { CODE_OK }
end
lease_turn(sess_key, index_key, sid, turn, lease_ms, now)
-- The session key must not expire while its turn runs, however long.
if redis.call('PTTL', sess_key) < stale_ms then redis.call('PEXPIRE', sess_key, stale_ms) end
return { CODE_OK }
