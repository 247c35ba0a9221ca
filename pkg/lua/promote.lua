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
-- The in-process mode of cmd/api (one process, no election) promotes itself
-- through this script too, with no lock value: it has no lock to check, and
-- gets the same epochs.
--
-- KEYS[1] -> authpool:{P}:leader (STRING, the redsync lock)
-- KEYS[2] -> authpool:{P}:epoch (STRING, fencing counter)
-- KEYS[3] -> authpool:{P}:leader:info (HASH holder epoch since)
-- ARGV[1] -> the lock value this replica set; '' (in-process): no lock check
-- ARGV[2] -> holder, this replica's id; '': leader:info is left as it is
-- Returns {code, epoch, since}: CODE_OK with the new epoch and the time of
--   the change (Unix ms, Redis TIME), both as decimal strings; CODE_LOCK_LOST
--   when the lock is not held with ARGV[1] (nothing changed)

local lock_key, epoch_key, info_key = KEYS[1], KEYS[2], KEYS[3]
local value, holder = ARGV[1], ARGV[2]
if value ~= '' and redis.call('GET', lock_key) ~= value then return { CODE_LOCK_LOST, '0', '0' } end
local now = now_ms()
-- INCR keeps the counter's own checks (an error on a non-integer value).
local epoch = redis.call('INCR', epoch_key)
if epoch < now then
  epoch = now
  redis.call('SET', epoch_key, string.format('%d', epoch))
end
local e, since = string.format('%d', epoch), string.format('%d', now)
if holder ~= '' then redis.call('HSET', info_key, 'holder', holder, 'epoch', e, 'since', since) end
return { CODE_OK, e, since }
