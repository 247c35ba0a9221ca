-- release.lua: end a session (the client said it is done).
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2..n+1] -> sub:<id>:clients of each subscription id in ARGV[3..]
-- ARGV[1] -> session id
-- ARGV[2] -> n, the number of subscription ids that follow
-- ARGV[3..2+n] -> subscription ids, in KEYS order
-- Returns {code, subId}: code 0 released (subId '' when it was on the
--   fallback); code 6 no such session; code 3 the session's subscription is
--   not among the ids given (stale list: reload and retry; nothing changed)

local sid = ARGV[1]
local n = tonumber(ARGV[2])
local sub = redis.call('HGET', KEYS[1], 'sub')
if not sub then return { 6, '' } end
local at = nil
for i = 1, n do
  if ARGV[2 + i] == sub then at = i end
end
if sub ~= '' and not at then return { 3, '' } end
if at then redis.call('ZREM', KEYS[1 + at], sid) end
redis.call('DEL', KEYS[1])
return { 0, sub }
