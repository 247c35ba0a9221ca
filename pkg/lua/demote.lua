-- demote.lua: a leader that resigns removes the leader:info record of its own
-- tenure, so operators never read a holder that no longer leads. A record
-- written by a newer leader is left alone.
--
-- KEYS[1] -> authpool:{P}:leader:info (HASH holder epoch since)
-- ARGV[1] -> holder, the resigning replica's id
-- ARGV[2] -> the epoch of its tenure
-- Returns 1 when the record was deleted, else 0

local info_key = KEYS[1]
local holder, epoch = ARGV[1], ARGV[2]
local f = redis.call('HMGET', info_key, 'holder', 'epoch')
if f[1] == holder and f[2] == epoch then
  redis.call('DEL', info_key)
  return 1
end
return 0
