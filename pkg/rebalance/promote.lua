-- promote.lua: the replica that has just taken the leader lock becomes the
-- leader: a new fencing epoch and the leader:info record, written only while
-- it still holds the lock, so epochs are granted in the order of lock
-- tenures (a replica paused between SET NX and INCR cannot outbid the one
-- that took the lock after its own expired).
--
-- The epoch is max(counter + 1, Redis TIME in ms): a counter alone restarts
-- at 1 when Redis loses its data, and would hand a new leader the epoch a
-- paused old leader still holds. The clock carries the order across the
-- loss: a leader promoted at a later millisecond outbids every epoch granted
-- before it (unless Redis' clock steps back by more than the time between
-- the two promotions). Values stay below 2^53, so Lua's doubles hold them
-- exactly; they travel as decimal strings, the form the fenced scripts
-- compare with GET.
--
-- KEYS[1] -> authpool:{P}:leader (STRING, the redsync lock)
-- KEYS[2] -> authpool:{P}:epoch (STRING, fencing counter)
-- KEYS[3] -> authpool:{P}:leader:info (HASH holder epoch since)
-- ARGV[1] -> the lock value this replica set
-- ARGV[2] -> holder, this replica's id
-- Returns {epoch, since}: the new epoch and the time of the change (Unix ms,
--   Redis TIME), both as decimal strings; epoch '0' when the lock is not held
--   with ARGV[1] (nothing changed)

local lock_key, epoch_key, info_key = KEYS[1], KEYS[2], KEYS[3]
local value, holder = ARGV[1], ARGV[2]
if redis.call('GET', lock_key) ~= value then return { '0', '0' } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- INCR keeps the counter's own checks (an error on a non-integer value).
local epoch = redis.call('INCR', epoch_key)
if epoch < now then
  epoch = now
  redis.call('SET', epoch_key, string.format('%d', epoch))
end
local e, since = string.format('%d', epoch), string.format('%d', now)
redis.call('HSET', info_key, 'holder', holder, 'epoch', e, 'since', since)
return { e, since }
