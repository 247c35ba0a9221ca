-- status.lua (read-only): the snapshot behind /debug/auth-pool, with the
-- health breakdown. It writes nothing: a due restore or an expired weekly
-- bucket is shown as it will be once a writing script notices it.
--
-- KEYS[1] -> authpool:{P}:subs (SET)
-- KEYS[2+3(i-1)], KEYS[3+3(i-1)], KEYS[4+3(i-1)] -> sub:<id>, :clients, :hourly
-- ARGV[1] -> stale age, ms
-- ARGV[2] -> approaching threshold (weekly fraction)
-- ARGV[3..9] -> health weights: weekly block blockRef clients burn burnFree idleBonus
-- ARGV[10] -> n; ARGV[11..10+n] -> subscription ids, in KEYS order
-- ARGV[11+n] -> idle age, ms ('' or absent: every live client counts as
--            active; client-set scores are 'active until', lib.lua)
-- Returns a JSON document {now, stale, subscriptions:[…]} (money as strings),
-- with stale = true when the SET no longer has n members. Each subscription
-- has windows.five_hour and windows.seven_day: the observed utilization
-- (string, '' never observed), used (the fraction in force, '' none), reset,
-- observedAt (ms, 0 unknown), status, current and source (observed: the
-- observation stands; reset: its window has reset since, it counts as 0;
-- estimate: none observed, the weekly budget estimate stands), and
-- weeklySource, the source of weeklyPercent.

local stale_ms = tonumber(ARGV[1])
local approach_at = tonumber(ARGV[2])
local W = weights(3)
local n = tonumber(ARGV[10])
local stale = redis.call('SCARD', KEYS[1]) ~= n
local now = now_ms()
local idle_ms = tonumber(ARGV[11 + n])
local edge = stale_edge(now, stale_ms, idle_ms or 0)
local out = {}
for i = 1, n do
  local id = ARGV[10 + i]
  local sk, ck, hk = KEYS[2 + 3 * (i - 1)], KEYS[3 + 3 * (i - 1)], KEYS[4 + 3 * (i - 1)]
  local h = redis.call('HGETALL', sk)
  local f = {}
  for j = 1, #h, 2 do f[h[j]] = h[j + 1] end
  local budget = to_micros(f.weeklyBudget)
  -- f (the whole hash) stands for the helpers' own reads of it.
  local weekly = weekly_micros(sk, hk, f.weeklyUsed, f.weeklyHour, now, false, f)
  local frac, src = weekly_frac(sk, weekly, budget, now, f)
  local status = f.status or 'removed'
  local until_v = int(f['until'])
  if (status == 'limited' or status == 'cooldown') and until_v > 0 and until_v <= now then
    status = usable_status(frac, approach_at, sk, now, f); until_v = 0
  elseif usable(status) then
    status = usable_status(frac, approach_at, sk, now, f)
  end
  local windows = {}
  local w5
  for _, name in ipairs({ 'five_hour', 'seven_day' }) do
    local w = window(sk, name, now, f)
    if name == 'five_hour' then w5 = w end
    local util, used = '', ''
    if w.util then util = string.format('%.4f', w.util) end
    if w.used then used = string.format('%.4f', w.used) end
    windows[name] = { utilization = util, used = used, reset = w.reset, observedAt = w.at,
      status = w.status, current = w.current, source = w.source }
  end
  local hfrac = frac
  if src == 'estimate' and budget <= 0 then hfrac = 0 end
  local clients = redis.call('ZCOUNT', ck, '(' .. ms(edge), '+inf')
  -- The cap and the health score count active clients; idle ones are shown.
  local act = clients
  if idle_ms then act = math.min(clients, active_count(ck, now)) end
  local active = block_active(f.blockStart, now)
  local block_cost = 0
  if active then block_cost = to_micros(f.blockCost) end
  local burn = burn_rate(block_cost, f.blockStart, now)
  local score, wp, bp, burn_pen, bonus = health(W, hfrac, w5.used, block_cost, active, act, burn)
  local shown = score
  if shown < 0 then shown = 0 elseif shown > 100 then shown = 100 end
  local eta = -1
  if burn > 0 then eta = ((budget - weekly) / 1000000) / burn end
  local block_end = 0
  if active then block_end = int(f.blockStart) + BLOCK end
  out[#out + 1] = {
    id = id, email = f.email or '', type = f.type or '', configDir = f.configDir or '',
    status = status, statusReason = f.statusReason or '', ['until'] = until_v,
    weeklyUsed = usd(weekly), weeklyBudget = usd(budget), weeklyPercent = string.format('%.2f', frac * 100),
    blockActive = active, blockStart = int(f.blockStart), blockEnd = block_end, blockCost = usd(block_cost),
    burnRate = string.format('%.6f', burn), lastUsageAt = int(f.lastUsageAt),
    tokens = int(f.tokens), requests = int(f.requests), clients = clients, maxClients = int(f.maxClients),
    activeClients = act, idleClients = math.max(0, clients - act),
    estimatedHoursUntilExhaustion = string.format('%.2f', eta),
    weeklySource = src, windows = windows, authFailures = int(f.authFailures),
    health = { score = string.format('%.4f', score), display = string.format('%.2f', shown),
      weeklyPercent = string.format('%.4f', wp), blockPercent = string.format('%.4f', bp),
      burnPenalty = string.format('%.4f', burn_pen), clients = act, idleBonus = bonus },
  }
end
return cjson.encode({ now = now, stale = stale, subscriptions = out })
