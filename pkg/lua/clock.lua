-- clock.lua: the one clock, prepended to every script (DESIGN §1): Unix ms
-- from Redis TIME, never a replica's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
