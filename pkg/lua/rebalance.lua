-- rebalance.lua (fenced): move idle clients from the subscription with the
-- highest weekly usage to the one with the lowest (DESIGN §6). The caller
-- picks the pair and the candidate sessions; the script re-checks everything.
--
-- KEYS[1] -> authpool:{P}:epoch (STRING fencing counter)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3], KEYS[4], KEYS[5] -> source sub:<id>, :clients, :hourly
-- KEYS[6], KEYS[7], KEYS[8] -> destination sub:<id>, :clients, :hourly
-- KEYS[9] -> authpool:{P}:inflight (ZSET session id -> latest turn lease, ms)
-- KEYS[10..9+k] -> authpool:{P}:session:<sid> of each candidate in ARGV[10..]
-- ARGV[1] -> the caller's epoch
-- ARGV[2] -> source id; ARGV[3] -> destination id
-- ARGV[4] -> cost gap threshold, decimal USD
-- ARGV[5] -> idle age, ms (only clients inactive longer, with no turn in
--            flight, move)
-- ARGV[6] -> stale age, ms
-- ARGV[7] -> at most this many moves
-- ARGV[8] -> admission limit (weekly fraction) the destination must be under
-- ARGV[9] -> k; ARGV[10..9+k] -> candidate session ids
-- Returns {code, moved, gap}
--   code 0: done (moved may be 0); code 4: stale epoch (nothing changed);
--   code 9: no move needed or possible (gap under threshold, a side unusable,
--   destination full); gap is a decimal USD string

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { 4, 0, '0' } end
local from, to = ARGV[2], ARGV[3]
local threshold = to_micros(ARGV[4])
local idle_ms, stale_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_moves = tonumber(ARGV[7])
local admit = tonumber(ARGV[8])
local k = tonumber(ARGV[9])
local events_key = KEYS[2]
local now = now_ms()

local function side(sk, hk)
  local f = redis.call('HMGET', sk, 'status', 'weeklyUsed', 'weeklyHour', 'weeklyBudget', 'maxClients')
  return f[1], weekly_micros(sk, hk, f[2], f[3], now, true), to_micros(f[4]), int(f[5])
end
local fs, fw = side(KEYS[3], KEYS[5])
local ts, tw, tb, tmax = side(KEYS[6], KEYS[8])
local gap = fw - tw
if not usable(fs) or not usable(ts) or gap <= threshold or from == to then return { 9, 0, usd(gap) } end
if tb <= 0 or tw / tb >= admit then return { 9, 0, usd(gap) } end
local tck = KEYS[7]
drop_stale(tck, KEYS[9], stale_ms, now)
-- Room is counted in active sessions, as allocate counts it.
local room = tmax - active_clients(tck, live_leases(KEYS[9], now), idle_ms, now, nil)
if room <= 0 then return { 9, 0, usd(gap) } end

local moved = 0
for i = 1, k do
  if moved >= max_moves or moved >= room then break end
  local sid = ARGV[9 + i]
  local sess = KEYS[9 + i]
  local last = redis.call('ZSCORE', KEYS[4], sid)
  if last and tonumber(last) < now - idle_ms and tonumber(last) >= now - stale_ms
      and not in_flight(KEYS[9], sid, now) and redis.call('HGET', sess, 'sub') == from then
    redis.call('ZREM', KEYS[4], sid)
    redis.call('ZADD', tck, last, sid)
    redis.call('HSET', sess, 'sub', to)
    redis.call('HDEL', sess, 'cliSession')
    moved = moved + 1
    emit(events_key, 'rotation', 'info', from,
      'Rebalancing moved session ' .. sid .. ' from ' .. from .. ' to ' .. to,
      { sessionId = sid, from = from, to = to, reason = 'rebalance', gap = usd(gap) }, now)
  end
end
return { 0, moved, usd(gap) }
