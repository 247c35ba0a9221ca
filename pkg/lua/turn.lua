-- turn.lua: a running turn's heartbeat, or the end of a turn that failed
-- (a settled turn ends in settle.lua). Nothing is kept per turn: the
-- session's client-set score (lib.lua) says until when it is active, and
-- this moves it on, never back (GT), on the subscription the session is
-- bound to, only when its entry is still there (XX).
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2..n+1] -> sub:<id>:clients of each subscription id in ARGV[6..]
-- ARGV[1] -> session id
-- ARGV[2] -> turn id (the settlement id of the turn)
-- ARGV[3] -> lease, ms: active until now + this; 0 ends the turn (active
--            for the idle age from now)
-- ARGV[4] -> stale age, ms: the session key is kept at least this long
-- ARGV[5] -> idle age, ms
-- ARGV[6] -> n; ARGV[7..6+n] -> subscription ids, in KEYS order
-- Returns {code}
--   CODE_OK: done (an entry already past it, or gone stale, is left as is)
--   CODE_NOT_FOUND: no such session, or it is on the fallback: nothing changed
--   CODE_STALE_SUBS: the session's subscription is not among the ids given
--           (nothing changed): call again with all of them

local sess_key = KEYS[1]
local sid = ARGV[1]
local lease_ms, stale_ms, idle_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local sub = redis.call('HGET', sess_key, 'sub')
if not sub or sub == '' then return { CODE_NOT_FOUND } end
local at = nil
for i = 1, n do
  if ARGV[6 + i] == sub then at = i end
end
if not at then return { CODE_STALE_SUBS } end
local now = now_ms()
local until_v = now + idle_ms
if lease_ms > 0 then until_v = now + lease_ms end
redis.call('ZADD', KEYS[1 + at], 'XX', 'GT', until_v, sid)
-- The session key must not expire while its turn runs, however long.
local ttl = stale_ms
if lease_ms > ttl then ttl = lease_ms end
redis.call('PEXPIRE', sess_key, ttl)
return { CODE_OK }
