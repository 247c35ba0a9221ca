-- release.lua: end a session (the client said it is done).
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2..n+1] -> sub:<id>:clients of each subscription id in ARGV[3..]
-- KEYS[n+2] -> authpool:{P}:session:<sid>:turns (LIST, the stored conversation)
-- KEYS[n+3] -> authpool:{P}:rank:at (ZSET, rank.lua): the freed slot moves the
--            session's subscription in allocate's order
-- ARGV[1] -> session id
-- ARGV[2] -> n, the number of subscription ids that follow
-- ARGV[3..2+n] -> subscription ids, in KEYS order
-- ARGV[3+n] -> owner: the caller's key id; '' releases whatever the owner
--            (operators)
-- Returns {code, subId}: CODE_OK released (subId '' when it was on the
--   fallback); CODE_NOT_FOUND no such session, or another owner's (nothing changed);
--   CODE_STALE_SUBS the session's subscription is not among the ids given (stale
--   list: reload and retry; nothing changed)

local sid = ARGV[1]
local n = tonumber(ARGV[2])
local owner = ARGV[3 + n]
local f = redis.call('HMGET', KEYS[1], 'sub', 'owner')
local sub = f[1]
if not sub then return { CODE_NOT_FOUND, '' } end
if owner ~= '' and f[2] and f[2] ~= owner then return { CODE_NOT_FOUND, '' } end
local at = nil
for i = 1, n do
  if ARGV[2 + i] == sub then at = i end
end
if sub ~= '' and not at then return { CODE_STALE_SUBS, '' } end
if at then
  redis.call('ZREM', KEYS[1 + at], sid)
  -- rank.lua's rank_dirty: the next allocate scores the subscription.
  redis.call('ZADD', KEYS[n + 3], 0, sub)
end
redis.call('DEL', KEYS[1], KEYS[n + 2])
return { CODE_OK, sub }
