-- rebalance.lua (fenced): move idle clients from the usable subscription with
-- the highest weekly usage to the one with the lowest, when their cost gap
-- exceeds the threshold (DESIGN §6). The gap rule — which pair, and whether
-- the gap calls for a move — lives here only.
--
-- The caller cannot know the pair's candidate sessions before the script has
-- chosen the pair, and every key a script touches must be in KEYS, so it
-- calls twice: first with no expected pair (the script answers
-- CODE_NEED_CANDIDATES with the pair), then with the pair and the idle
-- sessions of its source. A pair that changed in between is answered with
-- CODE_NEED_CANDIDATES again and nothing moves.
--
-- KEYS[1] -> authpool:{P}:epoch (STRING fencing counter)
-- KEYS[2] -> authpool:{P}:events (STREAM)
-- KEYS[3] -> authpool:{P}:subs (SET)
-- KEYS[4+3(i-1)], KEYS[5+3(i-1)], KEYS[6+3(i-1)] -> sub:<id>, :clients, :hourly
-- KEYS[4+3n..3+3n+k] -> authpool:{P}:session:<sid> of each candidate
-- ARGV[1] -> the caller's epoch
-- ARGV[2] -> cost gap threshold, decimal USD
-- ARGV[3] -> idle age, ms (only idle clients move: client-set score, 'active
--            until', before now; a turn in flight is active)
-- ARGV[4] -> stale age, ms
-- ARGV[5] -> at most this many moves
-- ARGV[6] -> admission limit (weekly fraction) the destination must be under
-- ARGV[7] -> n; ARGV[8..7+n] -> subscription ids, in KEYS order
-- ARGV[8+n], ARGV[9+n] -> the expected source and destination ('' at first)
-- ARGV[10+n] -> k; ARGV[11+n..10+n+k] -> candidate session ids on the source
-- ARGV[11+n+k] -> block admission threshold: a destination whose observed,
--            current 5-hour utilization is at or over it takes no session
--            ('' or absent: no such limit)
-- Returns {code, moved, gap, from, to, needed, now}
--   CODE_OK: done (moved may be 0)
--   CODE_NEED_CANDIDATES: a move is needed from `from` to `to`; call again
--     with them and the source's idle sessions (nothing changed)
--   CODE_NOTHING_TO_DO: no move needed (needed 0: no usable pair, or the gap
--     is not over the threshold) or possible (needed 1: a side unusable, the
--     destination full or over its admission limit)
--   CODE_STALE_EPOCH: stale epoch; CODE_STALE_SUBS: the SET no longer has n
--     members (nothing changed)
--   gap is a decimal USD string; now is Redis' clock (ms), by which the caller
--   picks idle candidates

local function reply(code, moved, gap, from, to, needed, now)
  return { code, moved, gap, from, to, needed, now }
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return reply(CODE_STALE_EPOCH, 0, '0', '', '', 0, 0) end
local threshold = to_micros(ARGV[2])
local idle_ms, stale_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_moves = tonumber(ARGV[5])
local admit = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local want_from, want_to = ARGV[8 + n], ARGV[9 + n]
local k = tonumber(ARGV[10 + n])
local block_admit = tonumber(ARGV[11 + n + k])
local events_key = KEYS[2]
local now = now_ms()
local edge = stale_edge(now, stale_ms, idle_ms)
if redis.call('SCARD', KEYS[3]) ~= n then return reply(CODE_STALE_SUBS, 0, '0', '', '', 0, now) end

-- A draining subscription is never part of the pair: it takes no session
-- (an operator drains it for a re-login), and its idle sessions leave on
-- their next turn through allocate.lua, where the stored conversation
-- follows them.
-- The pair, among subscriptions usable now (a limited or cooldown status
-- whose until has passed counts as restored, as status.lua shows it): the
-- highest weekly usage (the first in id order on a tie) and the lowest (on
-- a tie, the one with fewer live clients).
local hi, lo
for i = 1, n do
  local sk, ck, hk = KEYS[4 + 3 * (i - 1)], KEYS[5 + 3 * (i - 1)], KEYS[6 + 3 * (i - 1)]
  local f = redis.call('HMGET', sk, 'status', 'until', 'weeklyUsed', 'weeklyHour')
  local status = f[1] or 'removed'
  local due = (status == 'limited' or status == 'cooldown') and int(f[2]) > 0 and int(f[2]) <= now
  if usable(status) or due then
    local s = { i = i, id = ARGV[7 + i], weekly = weekly_micros(sk, hk, f[3], f[4], now, false),
      clients = redis.call('ZCOUNT', ck, '(' .. ms(edge), '+inf') }
    if not hi or s.weekly > hi.weekly then hi = s end
    if not lo or s.weekly < lo.weekly or (s.weekly == lo.weekly and s.clients < lo.clients) then lo = s end
  end
end
if not hi or hi.id == lo.id then return reply(CODE_NOTHING_TO_DO, 0, '0', '', '', 0, now) end
local from, to = hi.id, lo.id
local gap = hi.weekly - lo.weekly
if gap <= threshold then return reply(CODE_NOTHING_TO_DO, 0, usd(gap), from, to, 0, now) end
if from ~= want_from or to ~= want_to then return reply(CODE_NEED_CANDIDATES, 0, usd(gap), from, to, 1, now) end

local fi, ti = 4 + 3 * (hi.i - 1), 4 + 3 * (lo.i - 1)
local fsk, fck, fhk = KEYS[fi], KEYS[fi + 1], KEYS[fi + 2]
local tsk, tck, thk = KEYS[ti], KEYS[ti + 1], KEYS[ti + 2]
-- The stored statuses: a due restore is maintain's to make (with its event).
local function side(sk, hk)
  local f = redis.call('HMGET', sk, 'status', 'weeklyUsed', 'weeklyHour', 'weeklyBudget', 'maxClients')
  return f[1], weekly_micros(sk, hk, f[2], f[3], now, true), to_micros(f[4]), int(f[5])
end
local fs = side(fsk, fhk)
local ts, tw, tb, tmax = side(tsk, thk)
local function none() return reply(CODE_NOTHING_TO_DO, 0, usd(gap), from, to, 1, now) end
if not usable(fs) or not usable(ts) then return none() end
-- The destination's weekly fraction as allocate admits by it: observed
-- while current, else the estimate.
if weekly_frac(tsk, tw, tb, now) >= admit then return none() end
if block_admit then
  local w5 = window(tsk, 'five_hour', now)
  if w5.used and w5.used >= block_admit then return none() end
end
drop_stale(tck, stale_ms, idle_ms, now)
-- Room is counted in active sessions, as allocate counts it.
local room = tmax - active_count(tck, now)
if room <= 0 then return none() end

local moved = 0
for i = 1, k do
  if moved >= max_moves or moved >= room then break end
  local sid = ARGV[10 + n + i]
  local sess = KEYS[3 + 3 * n + i]
  local last = redis.call('ZSCORE', fck, sid)
  if last and tonumber(last) < now and tonumber(last) >= edge
      and redis.call('HGET', sess, 'sub') == from then
    redis.call('ZREM', fck, sid)
    redis.call('ZADD', tck, last, sid)
    redis.call('HSET', sess, 'sub', to)
    redis.call('HDEL', sess, 'cliSession')
    moved = moved + 1
    emit(events_key, 'rotation', 'info', from,
      'Rebalancing moved session ' .. sid .. ' from ' .. from .. ' to ' .. to,
      { sessionId = sid, from = from, to = to, reason = 'rebalance', gap = usd(gap) }, now)
  end
end
return reply(CODE_OK, moved, usd(gap), from, to, 1, now)
