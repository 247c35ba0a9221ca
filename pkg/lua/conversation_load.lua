-- conversation_load.lua: read a session's stored conversation, owner-checked.
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2] -> authpool:{P}:session:<sid>:turns (LIST of JSON turns, oldest first)
-- ARGV[1] -> owner: the caller's key id
-- ARGV[2] -> with turns (1|0): 0 reads only the system prompt and the flags
-- Returns {code, system, truncated, turn...}
--   code 0: found; system '' when none is stored; truncated 1 when oldest
--           turns were dropped; then the turns' JSON, oldest first
--   code 6: no such session, or another owner's
-- The list's TTL is raised to its session's, so a session kept alive by
-- turns that failed (and appended nothing) keeps its conversation too.

local sess_key, turns_key = KEYS[1], KEYS[2]
local owner = ARGV[1]
local with_turns = ARGV[2] == '1'

local f = redis.call('HMGET', sess_key, 'sub', 'owner', 'system', 'convTruncated')
if f[1] == false then return { CODE_NOT_FOUND, '', 0 } end
if f[2] ~= false and f[2] ~= owner then return { CODE_NOT_FOUND, '', 0 } end
local out = { 0, f[3] or '', 0 }
if f[4] == '1' then out[3] = 1 end
local ttl = redis.call('PTTL', sess_key)
local turns_ttl = redis.call('PTTL', turns_key)
if ttl > 0 and turns_ttl >= 0 and turns_ttl < ttl then
  redis.call('PEXPIRE', turns_key, ttl)
end
if with_turns then
  for _, t in ipairs(redis.call('LRANGE', turns_key, 0, -1)) do out[#out + 1] = t end
end
return out
