-- lib.lua: shared helpers, prepended to every script that needs them.
-- One formula, one place: money, the rolling weekly window, 5-hour blocks,
-- the health score, status restoration and event emission.
-- Everything is local: scripts define no globals.

local HOUR = 3600000
local BLOCK = 5 * HOUR
local WINDOW_HOURS = 168
local MIN_BURN_HOURS = 0.25

-- now_ms (clock.lua) is prepended ahead of this file.

-- Money is kept as integer micro-USD in arithmetic (exact sums) and stored as
-- decimal strings of USD.
-- (tonumber gives nil for nil, false and '', so each of them is 0.)
local function to_micros(s)
  local n = tonumber(s)
  if not n then return 0 end
  return math.floor(n * 1000000 + 0.5)
end

local function usd(m)
  local neg = m < 0
  if neg then m = -m end
  local s = string.format('%d.%06d', math.floor(m / 1000000), m % 1000000)
  if neg then return '-' .. s end
  return s
end

local function int(s)
  return tonumber(s) or 0
end

local function ms(n) return string.format('%d', n) end

-- rfc3339 renders Unix ms as RFC 3339 in UTC, whole seconds, for messages
-- people read (Redis Lua has no os.date). The civil-from-days algorithm of
-- H. Hinnant, proleptic Gregorian, in floor arithmetic.
local function rfc3339(t)
  local secs = math.floor(t / 1000)
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', y, m, d,
    math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60)
end

-- Observed windows (issue 11): the CLI's rate_limit_event readings, kept
-- per window in the subscription hash as w:<window>:util (fraction, absent
-- when the CLI did not say), w:<window>:reset, w:<window>:at (Unix ms) and
-- w:<window>:status. observe.lua writes them, newest observation wins.
local WINDOW_LEN = { five_hour = BLOCK, seven_day = WINDOW_HOURS * HOUR }
local WINDOW_NAMES = { 'five_hour', 'seven_day' }
local WEEK = WINDOW_HOURS * HOUR

-- sub_read reads, in one HMGET, the subscription-hash fields the hot
-- scripts need (plus extra, a list of more field names) into a table keyed
-- by field name (false: absent). Passed as pre to window, weekly_micros,
-- weekly_frac, usable_status and restore_if_due, it saves each of them an
-- HMGET of its own; only a script that does not itself write the observed
-- windows between reading and using it may pass it.
local SUB_FIELDS = { 'status', 'until', 'weeklyUsed', 'weeklyHour', 'weeklyBudget', 'maxClients',
  'blockStart', 'blockCost', 'weeklyFrom',
  'w:seven_day:util', 'w:seven_day:reset', 'w:seven_day:status', 'w:seven_day:at',
  'w:five_hour:util', 'w:five_hour:reset', 'w:five_hour:status', 'w:five_hour:at', 'elig' }
local function sub_read(sub_key, extra)
  local names = SUB_FIELDS
  if extra and #extra > 0 then
    names = {}
    for i = 1, #SUB_FIELDS do names[i] = SUB_FIELDS[i] end
    for i = 1, #extra do names[#names + 1] = extra[i] end
  end
  local v = redis.call('HMGET', sub_key, unpack(names))
  local f = {}
  for i = 1, #names do f[names[i]] = v[i] end
  return f
end

-- window reads one observed window. current: its window has not reset since
-- it was observed (without a reset time, for the window's length after the
-- observation). used: the utilization in force, the observation while
-- current and 0 once its window has reset; nil when no utilization was ever
-- observed (the estimate stands). source says which.
-- pre (optional) is a sub_read table of the subscription hash already read
-- in this call: the window is taken from it instead of another HMGET.
local function window(sub_key, name, now, pre)
  -- The field names are constants: no concatenation on every read.
  local k1, k2, k3, k4 = 'w:seven_day:util', 'w:seven_day:reset', 'w:seven_day:status', 'w:seven_day:at'
  if name == 'five_hour' then
    k1, k2, k3, k4 = 'w:five_hour:util', 'w:five_hour:reset', 'w:five_hour:status', 'w:five_hour:at'
  elseif name ~= 'seven_day' then
    local p = 'w:' .. name .. ':'
    k1, k2, k3, k4 = p .. 'util', p .. 'reset', p .. 'status', p .. 'at'
  end
  local util, reset, st, at
  if pre then
    util, reset, st, at = pre[k1], pre[k2], pre[k3], pre[k4]
  else
    local f = redis.call('HMGET', sub_key, k1, k2, k3, k4)
    util, reset, st, at = f[1], f[2], f[3], f[4]
  end
  local w = { name = name, util = tonumber(util), reset = int(reset), status = st or '', at = int(at),
    current = false, source = 'estimate', used = nil }
  if w.at > 0 then
    if w.reset > 0 then w.current = now < w.reset else w.current = now < w.at + WINDOW_LEN[name] end
  end
  if w.util and w.at > 0 then
    if w.current then w.used, w.source = w.util, 'observed' else w.used, w.source = 0, 'reset' end
  end
  return w
end

-- week_start is the first hour of the weekly usage window: the hour of the
-- observed seven_day reset minus 7 days (moved on by whole weeks once that
-- reset has passed), never older than the rolling 168 hours; the rolling
-- window alone before any reset was observed.
local function week_start(reset, now)
  local oldest = math.floor(now / HOUR) - (WINDOW_HOURS - 1)
  if reset <= 0 then return oldest end
  local anchor = reset - WEEK
  if anchor + WEEK <= now then anchor = anchor + math.floor((now - anchor) / WEEK) * WEEK end
  local h = math.floor(anchor / HOUR)
  if h > oldest then return h end
  return oldest
end

-- weekly_micros returns the weekly usage of a subscription: the stored
-- total while it was computed in the current hour from the same start, else
-- the sum of the hourly buckets from week_start to floor(now/1h). With
-- write, buckets older than 168 hours are deleted and the total stored.
-- pre (optional): a sub_read table; its fields are read instead of the
-- hash, and the stored total written here is written into it too.
local function weekly_micros(sub_key, hourly_key, stored, stored_hour, now, write, pre)
  local cur = math.floor(now / HOUR)
  local a
  if pre then
    a = { pre['w:seven_day:reset'], pre.weeklyFrom }
  else
    a = redis.call('HMGET', sub_key, 'w:seven_day:reset', 'weeklyFrom')
  end
  local first = week_start(int(a[1]), now)
  if int(stored_hour) == cur and int(a[2]) == first then return to_micros(stored) end
  local oldest = cur - (WINDOW_HOURS - 1)
  local flat = redis.call('HGETALL', hourly_key)
  local sum = 0
  local old = {}
  for i = 1, #flat, 2 do
    local h = tonumber(flat[i])
    if h and h >= first and h <= cur then
      sum = sum + to_micros(flat[i + 1])
    elseif not h or h < oldest then
      -- Out of the window. A bucket after cur (the clock stepped back, e.g.
      -- after a failover) is kept: it counts once its hour comes.
      old[#old + 1] = flat[i]
    end
  end
  if write then
    if #old > 0 then redis.call('HDEL', hourly_key, unpack(old)) end
    redis.call('HSET', sub_key, 'weeklyUsed', usd(sum), 'weeklyHour', ms(cur), 'weeklyFrom', ms(first))
    if pre then pre.weeklyUsed, pre.weeklyHour, pre.weeklyFrom = usd(sum), ms(cur), ms(first) end
  end
  return sum
end

-- weekly_frac is the weekly fraction admission and health use: the observed
-- seven_day utilization while it is current (0 once its window reset), else
-- the estimate weekly/budget (1 without a budget). Also returns its source.
local function weekly_frac(sub_key, weekly, budget, now, pre)
  local w = window(sub_key, 'seven_day', now, pre)
  if w.used then return w.used, w.source end
  if budget > 0 then return weekly / budget, 'estimate' end
  return 1, 'estimate'
end

-- block_state follows ccusage: a block is active while now < blockStart + 5h.
local function block_active(block_start, now)
  local bs = int(block_start)
  return bs > 0 and now < bs + BLOCK
end

local function burn_rate(block_cost_micros, block_start, now)
  if not block_active(block_start, now) then return 0 end
  local hours = (now - int(block_start)) / HOUR
  if hours < MIN_BURN_HOURS then hours = MIN_BURN_HOURS end
  return (block_cost_micros / 1000000) / hours
end

-- health returns the unclamped score and its parts. W holds the weights:
-- weekly, block, blockRef (USD), clients, burn, burnFree (USD/h), idleBonus.
-- frac is the weekly fraction (weekly_frac); block_obs the observed current
-- 5-hour utilization, which stands in for the block's cost estimate (nil:
-- none observed).
local function health(W, frac, block_obs, block_cost_micros, block_is_active, clients, burn)
  local weekly_pct = frac * 100
  local block_pct = 0
  if block_obs then
    block_pct = block_obs * 100
  elseif block_is_active then
    block_pct = (block_cost_micros / 1000000) / W.blockRef * 100
    if block_pct > 100 then block_pct = 100 end
  end
  local burn_pen = burn - W.burnFree
  if burn_pen < 0 then burn_pen = 0 end
  local bonus = 0
  if not block_is_active and not (block_obs and block_obs > 0) then bonus = W.idleBonus end
  local score = 100 - W.weekly * weekly_pct - W.block * block_pct - W.clients * clients - W.burn * burn_pen + bonus
  return score, weekly_pct, block_pct, burn_pen, bonus
end

-- weights reads the seven health weights from ARGV starting at index i.
local function weights(i)
  return {
    weekly = tonumber(ARGV[i]), block = tonumber(ARGV[i + 1]), blockRef = tonumber(ARGV[i + 2]),
    clients = tonumber(ARGV[i + 3]), burn = tonumber(ARGV[i + 4]), burnFree = tonumber(ARGV[i + 5]),
    idleBonus = tonumber(ARGV[i + 6]),
  }
end

local function usable(status)
  return status == 'available' or status == 'approaching'
end

-- emit appends a notification to the outbox stream and publishes a wake-up hint.
local function emit(events_key, etype, severity, sub, message, data, now)
  redis.call('XADD', events_key, '*', 'type', etype, 'severity', severity,
    'subscriptionId', sub, 'message', message, 'data', cjson.encode(data), 'ts', ms(now))
  redis.call('PUBLISH', events_key, etype)
end

-- usable_status is the usable status matching a weekly fraction and, with
-- sub_key, the observed windows: a current allowed_warning, or a current
-- observed utilization at or over the threshold, is approaching too.
local function usable_status(frac, approach_at, sub_key, now, pre)
  if approach_at > 0 and frac >= approach_at then return 'approaching' end
  if sub_key then
    for _, name in ipairs(WINDOW_NAMES) do
      local w = window(sub_key, name, now, pre)
      if w.current and (w.status == 'allowed_warning' or (approach_at > 0 and w.used and w.used >= approach_at)) then
        return 'approaching'
      end
    end
  end
  return 'available'
end

-- restore_if_due ends a limited/cooldown status whose until has passed and
-- returns the status in force. A cooldown for refused credentials ends
-- without a recovered event: the login is only on probation until a turn
-- succeeds (failures.lua says recovered then).
local function restore_if_due(sub_key, events_key, id, status, until_v, frac, approach_at, now, pre)
  if (status == 'limited' or status == 'cooldown') and int(until_v) > 0 and int(until_v) <= now then
    local g = redis.call('HMGET', sub_key, 'statusReason', 'drain')
    local reason = g[1]
    -- An operator's drain outlives a limit: the subscription goes back to
    -- draining, not to taking new sessions.
    local st = 'draining'
    if g[2] ~= '1' then st = usable_status(frac, approach_at, sub_key, now, pre) end
    redis.call('HSET', sub_key, 'status', st, 'statusReason', '', 'until', '0')
    if pre then pre.status, pre['until'] = st, '0' end
    if not (status == 'cooldown' and reason == 'auth') then
      emit(events_key, 'recovered', 'info', id, 'Subscription ' .. id .. ' recovered from ' .. status,
        { previousStatus = status }, now)
    end
    return st
  end
  return status
end

-- Client sets (issue 14): a session's score is the time (ms) until which it
-- is active. A turn start sets it to now + max(idle, lease), a heartbeat to
-- now + lease, a turn's end to now + idle, always with ZADD GT so it never
-- goes down. A session is active while its score is after now (a turn in
-- flight always is, until its lease runs out unrefreshed), idle from then
-- on, and stale once its score is before now - stale + idle (its last turn
-- ended longer than the stale age ago).

-- active_count is the number of active sessions of a client set.
local function active_count(ck, now)
  return redis.call('ZCOUNT', ck, '(' .. ms(now), '+inf')
end

-- stale_edge is the score under which a client-set entry is stale; never
-- after now, so an active session is never stale.
local function stale_edge(now, stale_ms, idle_ms)
  local e = now - stale_ms + idle_ms
  if e > now then e = now end
  return e
end

-- drop_stale removes the stale entries of a client set; returns how many.
-- With limit (> 0) it removes at most limit entries (the stalest) and also
-- returns whether stale entries remain.
local function drop_stale(ck, stale_ms, idle_ms, now, limit)
  local edge = '(' .. ms(stale_edge(now, stale_ms, idle_ms))
  if not limit or limit <= 0 then
    return redis.call('ZREMRANGEBYSCORE', ck, '-inf', edge), false
  end
  local n = redis.call('ZCOUNT', ck, '-inf', edge)
  if n > limit then
    redis.call('ZREMRANGEBYRANK', ck, 0, limit - 1)
    return limit, true
  end
  if n > 0 then redis.call('ZREMRANGEBYSCORE', ck, '-inf', edge) end
  return n, false
end

-- elig is the subscription field 'elig' = '<weekly fraction>:<valid until
-- ms>' that resume.lua reads instead of recomputing the fraction: the
-- fraction weekly_frac gives now, and the first time it may give another
-- without a write to the subscription (the next hour, when the weekly sum
-- is recomputed; the observed seven_day reset, or the end of its window,
-- when the observation stops being current and the week's start moves).
-- Every script that writes the fraction's inputs (the weekly total, the
-- budget, the seven_day window) writes or deletes it.
local function elig(frac, now, pre)
  local v = (math.floor(now / HOUR) + 1) * HOUR
  local reset, at = int(pre['w:seven_day:reset']), int(pre['w:seven_day:at'])
  if reset > 0 then
    local t = reset
    if t <= now then t = t + (math.floor((now - t) / WEEK) + 1) * WEEK end
    if t < v then v = t end
  elseif at > 0 and at + WEEK > now and at + WEEK < v then
    v = at + WEEK
  end
  return string.format('%.17g:%d', frac, v)
end

-- succeed ends a subscription's run of failures and its login's probation
-- after a successful turn (failures.lua's succeeded, settle.lua's flag). f
-- holds the subscription's fields read with SUCCESS_FIELDS and status
-- (false: absent); nothing is written when there is nothing to end. Returns
-- whether it ended an auth episode (the recovered event is written then).
local SUCCESS_FIELDS = { 'statusReason', 'failures', 'authFailures', 'authSince' }
local function succeed(sub_key, events_key, id, f, now)
  local del = {}
  if f.failures then del[#del + 1] = 'failures' end
  if f.authFailures then del[#del + 1] = 'authFailures' end
  if f.authSince then del[#del + 1] = 'authSince' end
  if #del > 0 then redis.call('HDEL', sub_key, unpack(del)) end
  f.failures, f.authFailures = false, false
  if not f.authSince then return false end
  f.authSince = false
  -- The login works again: the episode ends, said once.
  if f.status == 'cooldown' and f.statusReason == 'auth' then
    -- The next allocate sets approaching if the windows say so; an
    -- operator's drain outlives the cooldown.
    local st = 'available'
    if redis.call('HGET', sub_key, 'drain') == '1' then st = 'draining' end
    redis.call('HSET', sub_key, 'status', st, 'statusReason', '', 'until', '0')
    f.status, f.statusReason, f['until'] = st, '', '0'
  end
  emit(events_key, 'recovered', 'info', id, 'Subscription ' .. id .. ' recovered: its login works again',
    { previousStatus = 'cooldown', reason = 'auth' }, now)
  return true
end
