-- resume.lua: the lean resume of a session on the subscription this
-- replica last saw it on (issue 14): the hot path of every turn, so it
-- reads one session field set, one subscription field set and one
-- client-set score, and writes only the score and the session's TTL. It
-- decides only when the answer needs no recomputation: the subscription's
-- weekly fraction is the one the writing scripts left in its 'elig' field
-- (see lib.lua), valid until its time; anything else (no such session, bound
-- elsewhere, a status that may have to be restored, the fraction out of
-- date, an entry gone stale, no room) answers CODE_RESUME_MISS and the full
-- allocate.lua decides. Its decision is allocate.lua's resume decision
-- (TestResumeMatchesAllocate).
--
-- KEYS[1] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[2] -> authpool:{P}:sub:<id> (HASH) of the hinted subscription
-- KEYS[3] -> its :clients ZSET (session id -> active until, ms)
-- ARGV[1] -> session id
-- ARGV[2] -> the hinted subscription id
-- ARGV[3] -> owner: the key id of the caller's API key ("-" without keys)
-- ARGV[4] -> resume limit (weekly fraction under which a bound session stays)
-- ARGV[5] -> stale age, ms (session TTL)
-- ARGV[6] -> idle age, ms
-- ARGV[7] -> turn id ('' none): with one, the session stays active for
--            max(idle, lease) from now
-- ARGV[8] -> turn lease, ms
-- Returns {code, cliSession}
--   CODE_OK: resumed there; CODE_NOT_FOUND: another owner's session
--   (nothing changed); CODE_RESUME_MISS: call allocate.lua (nothing changed)

local sess_key, sub_key, ck = KEYS[1], KEYS[2], KEYS[3]
local sid, id, owner = ARGV[1], ARGV[2], ARGV[3]
local resume_limit = tonumber(ARGV[4])
local stale_ms, idle_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local turn, lease_ms = ARGV[7], tonumber(ARGV[8])
local miss = { CODE_RESUME_MISS, '' }

local cur = redis.call('HMGET', sess_key, 'sub', 'cliSession', 'owner')
if cur[1] == false then return miss end
if cur[3] ~= false and cur[3] ~= owner then return { CODE_NOT_FOUND, '' } end
if cur[1] ~= id then return miss end

local f = redis.call('HMGET', sub_key, 'status', 'elig', 'maxClients')
if not f[2] then return miss end
local now = now_ms()
local c = string.find(f[2], ':', 1, true)
if not c or now >= tonumber(string.sub(f[2], c + 1)) or tonumber(string.sub(f[2], 1, c - 1)) >= resume_limit then
  return miss
end
local score = redis.call('ZSCORE', ck, sid)
if not score then return miss end
score = tonumber(score)
-- Stale (lib.lua's stale_edge): it must pass the capacity check again.
local edge = now - stale_ms + idle_ms
if edge > now then edge = now end
if score <= edge then return miss end
local active = score > now
local st = f[1]
if not (st == 'available' or st == 'approaching' or (st == 'draining' and active)) then return miss end
-- An idle session needs a free slot among the active ones.
if not active and redis.call('ZCOUNT', ck, '(' .. string.format('%d', now), '+inf') >= (tonumber(f[3]) or 0) then
  return miss
end

local until_v = now + idle_ms
if turn ~= '' and lease_ms > idle_ms then until_v = now + lease_ms end
redis.call('ZADD', ck, 'GT', until_v, sid)
if cur[3] ~= owner then redis.call('HSET', sess_key, 'owner', owner) end
local ttl = stale_ms
if lease_ms > ttl then ttl = lease_ms end
redis.call('PEXPIRE', sess_key, ttl)
return { CODE_OK, cur[2] or '' }
