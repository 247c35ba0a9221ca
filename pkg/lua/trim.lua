-- trim.lua: drop events that the group has acknowledged and that are older
-- than the retention.
--
-- KEYS[1] -> authpool:{P}:events (STREAM)
-- ARGV[1] -> consumer group
-- ARGV[2] -> retention, ms
-- Returns the number of entries removed.
--
-- The cut (XTRIM MINID, which keeps ids >= the cut) is the lowest of: now -
-- retention, the group's lowest pending id, and its last-delivered id. So an
-- entry that was never delivered to the group, or is still pending, is kept
-- whatever its age.

local stream = KEYS[1]
local group = ARGV[1]
local retention = tonumber(ARGV[2])

if redis.call('EXISTS', stream) == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
  return tonumber(ms), tonumber(seq) or 0
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, ld
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then ld = g[i + 1] end
  end
  if name == group then last = ld end
end
if not last then return 0 end

local now = now_ms()
local cut = string.format('%.0f-0', math.max(0, now - retention))

local summary = redis.call('XPENDING', stream, group)
if tonumber(summary[1]) > 0 and less(summary[2], cut) then cut = summary[2] end
if less(last, cut) then cut = last end

return redis.call('XTRIM', stream, 'MINID', cut)
