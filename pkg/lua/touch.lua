-- touch.lua: renew a consumer's hold on one pending event.
--
-- KEYS[1] -> authpool:{P}:events (STREAM)
-- ARGV[1] -> consumer group
-- ARGV[2] -> consumer name
-- ARGV[3] -> entry id
-- Returns the entry's delivery count when it is pending and owned by the
--   consumer (its idle time is then reset to 0, so XAUTOCLAIM leaves it
--   alone), else 0 (acknowledged, or claimed by another consumer).

local stream = KEYS[1]
local group = ARGV[1]
local consumer = ARGV[2]
local id = ARGV[3]

local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 0 or p[1][2] ~= consumer then return 0 end
local count = p[1][4]
-- RETRYCOUNT keeps the delivery count as it is: a renewal is not a delivery.
redis.call('XCLAIM', stream, group, consumer, 0, id, 'RETRYCOUNT', count, 'JUSTID')
return count
