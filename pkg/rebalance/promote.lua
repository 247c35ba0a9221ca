-- promote.lua: the replica that has just taken the leader lock becomes the
-- leader: a new fencing epoch and the leader:info record, written only while
-- it still holds the lock, so epochs are granted in the order of lock
-- tenures (a replica paused between SET NX and INCR cannot outbid the one
-- that took the lock after its own expired).
--
-- KEYS[1] -> authpool:{P}:leader (STRING, the redsync lock)
-- KEYS[2] -> authpool:{P}:epoch (STRING, fencing counter)
-- KEYS[3] -> authpool:{P}:leader:info (HASH holder epoch since)
-- ARGV[1] -> the lock value this replica set
-- ARGV[2] -> holder, this replica's id
-- Returns {epoch, since}: the new epoch and the time of the change (Unix ms,
--   Redis TIME, as a string); epoch 0 when the lock is not held with ARGV[1]
--   (nothing changed)

local lock_key, epoch_key, info_key = KEYS[1], KEYS[2], KEYS[3]
local value, holder = ARGV[1], ARGV[2]
if redis.call('GET', lock_key) ~= value then return { 0, '0' } end
local epoch = redis.call('INCR', epoch_key)
local t = redis.call('TIME')
local since = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', info_key, 'holder', holder, 'epoch', string.format('%d', epoch), 'since', since)
return { epoch, since }
