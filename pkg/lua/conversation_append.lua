-- conversation_append.lua: append one settled turn to its session's stored
-- conversation, once per settlement id, owner-checked, bounded in bytes.
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2] -> authpool:{P}:session:<sid>:turns (LIST of JSON turns, oldest first)
-- KEYS[3] -> authpool:{P}:req:<turnId>:turn (STRING append marker)
-- ARGV[1] -> turn id (the turn's settlement id)
-- ARGV[2] -> owner: the caller's key id; a session of another owner does not
--            exist for it
-- ARGV[3] -> the user text the turn sent
-- ARGV[4] -> the assistant text it answered
-- ARGV[5] -> the system prompt the turn ran with ('' keeps the stored one)
-- ARGV[6] -> conversation bound, bytes (conversationMaxBytes); the oldest
--            turns go first, the newest always stays (the caller clips it)
-- ARGV[7] -> stale age, ms: the list expires with the session
-- ARGV[8] -> append marker TTL, ms
-- ARGV[9] -> the subscription the turn ran on ('' the fallback)
-- ARGV[10] -> the CLI session the turn left ('' none): recorded for the next
--            turn's --resume while the session is still bound to ARGV[9]
--            (the settle records it too, after the answer; this write is
--            the one a next turn on any replica is sure to see)
-- Returns {code, bytes, turns, dropped, truncated}
--   code 0: appended; bytes and turns are the conversation's after it,
--           dropped the turns it pushed out, truncated 1 once any turn of
--           the session was ever dropped
--   code 5: this turn id was appended already (nothing changed)
--   code 6: no such session, or another owner's (nothing changed)

local sess_key, turns_key, marker_key = KEYS[1], KEYS[2], KEYS[3]
local turn = ARGV[1]
local owner = ARGV[2]
local user_text, answer_text, system = ARGV[3], ARGV[4], ARGV[5]
local max_bytes = tonumber(ARGV[6])
local stale_ms = tonumber(ARGV[7])
local marker_ttl = tonumber(ARGV[8])
local ran_on, cli_session = ARGV[9] or '', ARGV[10] or ''

-- Checked before the marker is taken: a refused append may be retried.
local f = redis.call('HMGET', sess_key, 'sub', 'owner', 'convBytes', 'convTruncated')
if f[1] == false then return { CODE_NOT_FOUND, 0, 0, 0, 0 } end
if f[2] ~= false and f[2] ~= owner then return { CODE_NOT_FOUND, 0, 0, 0, 0 } end
if not redis.call('SET', marker_key, '1', 'NX', 'PX', marker_ttl) then
  return { CODE_DUPLICATE, 0, 0, 0, 0 }
end

-- The byte count lives in the session hash; a list that expired or was
-- never written resets it.
local count = redis.call('LLEN', turns_key)
local bytes = 0
if count > 0 then bytes = tonumber(f[3] or '0') or 0 end

local entry = cjson.encode({ id = turn, u = user_text, a = answer_text })
redis.call('RPUSH', turns_key, entry)
count = count + 1
bytes = bytes + #entry
local dropped = 0
while bytes > max_bytes and count > 1 do
  local old = redis.call('LPOP', turns_key)
  bytes = bytes - #old
  count = count - 1
  dropped = dropped + 1
end
if bytes < 0 then bytes = 0 end
-- One write of the session's fields.
local set = { 'convBytes', bytes }
if dropped > 0 then set[#set + 1] = 'convTruncated'; set[#set + 1] = '1' end
if system ~= '' then set[#set + 1] = 'system'; set[#set + 1] = system end
if cli_session ~= '' and ran_on ~= '' and f[1] == ran_on then
  set[#set + 1] = 'cliSession'; set[#set + 1] = cli_session
end
redis.call('HSET', sess_key, unpack(set))

-- The list lives as long as its session (at least the stale age).
local ttl = redis.call('PTTL', sess_key)
if ttl < stale_ms then ttl = stale_ms end
redis.call('PEXPIRE', turns_key, ttl)

local truncated = 0
if dropped > 0 or f[4] then truncated = 1 end
return { CODE_OK, bytes, count, dropped, truncated }
