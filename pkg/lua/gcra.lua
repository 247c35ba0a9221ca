-- gcra.lua: one request against a client's rate limit (generic cell rate
-- algorithm), shared by every gateway replica.
--
-- KEYS[1] -> authpool:{P}:ratelimit:<subject> (STRING: theoretical arrival time, ms)
-- ARGV[1] -> emission interval, ms (one request every ARGV[1] ms on average)
-- ARGV[2] -> burst, requests (how many may arrive at once)
-- Returns {code, remaining, retryAfterMs}
--   CODE_OK: allowed; CODE_RATE_LIMITED: refused, retry after retryAfterMs

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local key = KEYS[1]

local now = now_ms()

local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end

local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return { CODE_RATE_LIMITED, 0, allow_at - now }
end

redis.call('SET', key, string.format('%d', new_tat), 'PX', new_tat - now)
return { CODE_OK, math.floor((now - allow_at) / interval), 0 }
