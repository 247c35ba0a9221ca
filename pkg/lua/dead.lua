-- dead.lua: move one pending event to the dead stream, atomically with its
-- acknowledgement.
--
-- KEYS[1] -> authpool:{P}:events (STREAM)
-- KEYS[2] -> authpool:{P}:events:dead (STREAM)
-- ARGV[1] -> consumer group
-- ARGV[2] -> entry id
-- ARGV[3] -> approximate cap of the dead stream (MAXLEN ~)
-- ARGV[4..] -> field, value pairs to store: the original fields plus
--              eventId, error, attempts
-- Returns 1 when moved (a failedAt field, Unix ms from Redis TIME, is
--   added), 0 when the entry was no longer pending (another consumer of the
--   group finished it first), so an event is never dead twice.

local stream = KEYS[1]
local dead = KEYS[2]
local group = ARGV[1]
local id = ARGV[2]
local cap = ARGV[3]

if redis.call('XACK', stream, group, id) == 0 then return 0 end

local failed_at = string.format('%d', now_ms())

local args = { dead, 'MAXLEN', '~', cap, '*' }
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
args[#args + 1] = 'failedAt'
args[#args + 1] = failed_at
redis.call('XADD', unpack(args))
return 1
