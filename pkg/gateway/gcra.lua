-- gcra.lua: one request against a client's rate limit (generic cell rate
-- algorithm), shared by every gateway replica.
--
-- KEYS[1] -> authpool:{P}:ratelimit:<subject> (STRING: theoretical arrival time, ms)
-- ARGV[1] -> emission interval, ms (one request every ARGV[1] ms on average)
-- ARGV[2] -> burst, requests (how many may arrive at once)
-- Returns {allowed (1|0), remaining, retryAfterMs}

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local key = KEYS[1]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end

local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return { 0, 0, allow_at - now }
end

redis.call('SET', key, string.format('%d', new_tat), 'PX', new_tat - now)
return { 1, math.floor((now - allow_at) / interval), 0 }
