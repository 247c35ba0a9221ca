-- settle.lua: record one request's usage, exactly once per request id.
--
-- KEYS[1] -> authpool:{P}:req:<requestId> (STRING settlement marker)
-- KEYS[2] -> authpool:{P}:sub:<id> (HASH), or authpool:{P}:fallback for fallback usage
-- KEYS[3] -> its :hourly HASH
-- KEYS[4] -> its :clients ZSET (untouched for fallback usage)
-- KEYS[5] -> authpool:{P}:session:<sid> (HASH; may not exist)
-- KEYS[6] -> authpool:{P}:usage (STREAM)
-- KEYS[7] -> authpool:{P}:events (STREAM)
-- KEYS[8] -> authpool:{P}:key:<name> (HASH requests tokens cost lastUsageAt) of
--            the client key that made the request (untouched without a name)
-- KEYS[9] -> its :hourly HASH hour-index -> USD (rolling 7 days)
-- KEYS[10] -> authpool:{P}:rank:at (ZSET, rank.lua): written only when the
--            turn's success ends an auth cooldown, so that the next new
--            binding scores the subscription again
-- ARGV[1]  -> settlement id: the turn's id
-- ARGV[2]  -> subscription id ('' for fallback usage)
-- ARGV[3]  -> session id ('' for none)
-- ARGV[4]  -> cost, decimal USD
-- ARGV[5..8] -> input, output, cache-creation, cache-read tokens (decimal
--            integers, copied as given into the usage entry)
-- ARGV[9]  -> model ('' unknown)
-- ARGV[10] -> modelUsage as a JSON object keyed by model ('' none)
-- ARGV[11] -> CLI session id to resume next time ('' none)
-- ARGV[12] -> approaching threshold (weekly fraction)
-- ARGV[13] -> settlement marker TTL, ms
-- ARGV[14] -> usage stream retention, ms
-- ARGV[15] -> stale age, ms (session TTL)
-- ARGV[16] -> n, the number of usage_threshold rule thresholds that follow
-- ARGV[17..16+n] -> thresholds as written in the config (e.g. "0.8")
-- ARGV[17+n] -> the client key's name ('' none: API_KEYS or no keys)
-- ARGV[18+n] -> idle age, ms: the turn has ended, the session is active
--            for this long from now (its client-set score, lib.lua)
-- ARGV[19+n] -> '1': the turn succeeded on the subscription: end its run of
--            failures and its login's probation, as failures.lua's
--            succeeded does (written only when there is one to end)
-- Returns {code, weeklyUsed, blockCost, burnRate, status}
--   CODE_OK: settled; CODE_DUPLICATE: duplicate request id (nothing changed)
--   fractions are decimal strings

local req = ARGV[1]
local id = ARGV[2]
local sid = ARGV[3]
local cost = to_micros(ARGV[4])
local tin, tout, tcc, tcr = int(ARGV[5]), int(ARGV[6]), int(ARGV[7]), int(ARGV[8])
local model = ARGV[9]
local model_usage = ARGV[10]
local cli_session = ARGV[11]
local approach_at = tonumber(ARGV[12])
local retention = tonumber(ARGV[14])
local stale_ms = ARGV[15]
local n = tonumber(ARGV[16])
local idle_ms = tonumber(ARGV[18 + n]) or 0
local succeeded = ARGV[19 + n] == '1'
local sub_key, hourly_key, clients_key = KEYS[2], KEYS[3], KEYS[4]
local sess_key, usage_key, events_key = KEYS[5], KEYS[6], KEYS[7]

if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[13]) then
  return { CODE_DUPLICATE, '', '', '', '' }
end

local now = now_ms()
local hour = math.floor(now / HOUR)
local hour_s = ms(hour)
local tokens = tin + tout + tcc + tcr
local fallback = id == ''
local cost_s = usd(cost)

-- One HMGET of the subscription: only the fields settle reads (its
-- counters, block, weekly total, budget, status, the observed windows,
-- elig, with a success the failure fields, and the threshold flags of the
-- rules), into a table shaped like sub_read's for the lib.lua helpers.
local names = { 'status', 'weeklyUsed', 'weeklyHour', 'weeklyFrom', 'weeklyBudget', 'blockStart', 'blockCost',
  'tokens', 'requests', 'elig',
  'w:seven_day:util', 'w:seven_day:reset', 'w:seven_day:status', 'w:seven_day:at',
  'w:five_hour:util', 'w:five_hour:reset', 'w:five_hour:status', 'w:five_hour:at' }
local NF = #names
for i = 1, n do names[NF + i] = 'thr:' .. ARGV[16 + i] end
local succeeding = succeeded and not fallback
if succeeding then
  for i = 1, #SUCCESS_FIELDS do names[NF + n + i] = SUCCESS_FIELDS[i] end
end
local v = redis.call('HMGET', sub_key, unpack(names))
local f = { status = v[1], weeklyUsed = v[2], weeklyHour = v[3], weeklyFrom = v[4], weeklyBudget = v[5],
  blockStart = v[6], blockCost = v[7], tokens = v[8], requests = v[9], elig = v[10],
  ['w:seven_day:util'] = v[11], ['w:seven_day:reset'] = v[12], ['w:seven_day:status'] = v[13], ['w:seven_day:at'] = v[14],
  ['w:five_hour:util'] = v[15], ['w:five_hour:reset'] = v[16], ['w:five_hour:status'] = v[17], ['w:five_hour:at'] = v[18] }
for i = 1, n do f[names[NF + i]] = v[NF + i] end
if succeeding then
  for i = 1, #SUCCESS_FIELDS do f[SUCCESS_FIELDS[i]] = v[NF + n + i] end
  local was = f.status
  succeed(sub_key, events_key, id, f, now)
  -- The only way settle makes a subscription better: rank.lua's rank_dirty.
  if f.status ~= was then redis.call('ZADD', KEYS[10], 0, id) end
end
local before = weekly_micros(sub_key, hourly_key, f.weeklyUsed, f.weeklyHour, now, true, f)
local after = before + cost
local after_s = usd(after)
if cost > 0 then
  local bucket = to_micros(redis.call('HGET', hourly_key, hour_s)) + cost
  redis.call('HSET', hourly_key, hour_s, usd(bucket))
end

-- 5-hour block (ccusage): a usage at or after blockStart+5h opens a new block,
-- floored to the hour.
local block_start = int(f.blockStart)
local block_cost = to_micros(f.blockCost)
local new_block = not block_active(block_start, now)
if new_block then
  block_start = hour * HOUR
  block_cost = 0
end
block_cost = block_cost + cost
local block_cost_s = usd(block_cost)
local burn = burn_rate(block_cost, block_start, now)
local burn_s = string.format('%.6f', burn)

-- One HSET of the subscription: usage, block, and (below) its status and
-- the resume fraction when they change. weeklyHour and weeklyFrom are
-- current already (weekly_micros wrote them if they were not).
local set = { 'weeklyUsed', after_s, 'blockCost', block_cost_s, 'burnRate', burn_s, 'lastUsageAt', ms(now),
  'tokens', ms(int(f.tokens) + tokens), 'requests', ms(int(f.requests) + 1) }
-- A new block's start goes before its cost: a new hash gets its fields in
-- the order docs/redis.md shows.
if new_block then table.insert(set, 3, 'blockStart'); table.insert(set, 4, ms(block_start)) end

local status = f.status or ''
local rules = n
local budget, frac_before, frac_after, w7 = 0, 1, 1, nil
if not fallback then
  budget = to_micros(f.weeklyBudget)
  if budget > 0 then frac_before, frac_after = before / budget, after / budget end
  -- The observed seven_day utilization, while current, stands for the
  -- estimate; its thresholds are observe.lua's to announce.
  w7 = window(sub_key, 'seven_day', now, f)
  -- weekly_frac's value (frac_after is 1 without a budget), from what is at hand.
  local frac = w7.used or frac_after
  if usable(status) then
    local st = usable_status(frac, approach_at, sub_key, now, f)
    if st ~= status then set[#set + 1] = 'status'; set[#set + 1] = st; status = st end
  end
  local e = elig(frac, now, f)
  if e ~= f.elig then set[#set + 1] = 'elig'; set[#set + 1] = e end
end
redis.call('HSET', sub_key, unpack(set))

if not fallback then
  -- One usage_threshold event per rule per crossing: a flag is set when the
  -- threshold is crossed and cleared only once usage has fallen back under it.
  -- (rules, not n: n still locates the key name after the thresholds.)
  if w7.used then rules = 0 end
  for i = 1, rules do
    local t = ARGV[16 + i]
    local tf = tonumber(t)
    local flag = 'thr:' .. t
    local set = f[flag] ~= false and f[flag] ~= nil
    if set and frac_before < tf then redis.call('HDEL', sub_key, flag); set = false; f[flag] = false end
    if not set and frac_after >= tf then
      redis.call('HSET', sub_key, flag, '1')
      f[flag] = '1'
      local remaining = budget - after
      local eta = 'unknown'
      if remaining <= 0 then eta = 'exhausted'
      elseif burn > 0 then eta = string.format('%.0f hours', (remaining / 1000000) / burn) end
      emit(events_key, 'usage_threshold', 'warning', id,
        string.format('Subscription %s at %.0f%% weekly budget', id, frac_after * 100),
        { weeklyUsed = after / 1000000, weeklyBudget = budget / 1000000,
          weeklyPercent = string.format('%.1f', frac_after * 100), burnRate = burn,
          estimatedTimeUntilExhaustion = eta, threshold = tf }, now)
    end
  end
end

-- The session: the turn has ended; counters, the CLI session to resume,
-- and activity (hash and client set move together so they never
-- disagree). One HMGET, one HSET.
local owner_of = ''
if sid ~= '' then
  local h = redis.call('HMGET', sess_key, 'sub', 'requests', 'tokens', 'cost', 'owner')
  local bound = h[1]
  owner_of = h[5] or ''
  if bound then
    local sset = { 'requests', ms(int(h[2]) + 1), 'tokens', ms(int(h[3]) + tokens),
      'cost', usd(to_micros(h[4]) + cost) }
    -- Activity is refreshed only where the hash and its client-set entry
    -- move together: on the subscription it is bound to (active for the
    -- idle age from the turn's end; GT keeps a later lease, XX adds no
    -- entry the session no longer has), or on the fallback (no entry). A
    -- late settle from a subscription the session has left must not keep
    -- the hash alive past its entry.
    local active = false
    if bound == id and not fallback then
      if cli_session ~= '' then sset[#sset + 1] = 'cliSession'; sset[#sset + 1] = cli_session end
      redis.call('ZADD', clients_key, 'XX', 'GT', ms(now + idle_ms), sid)
      active = true
    elseif bound == '' then
      active = true
    end
    redis.call('HSET', sess_key, unpack(sset))
    if active then redis.call('PEXPIRE', sess_key, stale_ms) end
  end
end

-- Usage per named client key, next to the pool's: what its weekly budget
-- is checked against.
local key_name = ARGV[17 + n] or ''
if key_name ~= '' then
  local kk, kh = KEYS[8], KEYS[9]
  local c = redis.call('HMGET', kk, 'requests', 'tokens', 'cost')
  redis.call('HSET', kk, 'requests', ms(int(c[1]) + 1), 'tokens', ms(int(c[2]) + tokens),
    'cost', usd(to_micros(c[3]) + cost), 'lastUsageAt', ms(now))
  local bucket = redis.call('HGET', kh, hour_s)
  redis.call('HSET', kh, hour_s, usd(to_micros(bucket) + cost))
  -- Buckets leave the 7 days only as hours pass: look for them when this
  -- hour's bucket is new, not on every settle (readers skip older hours).
  if not bucket then
    for _, h in ipairs(redis.call('HKEYS', kh)) do
      if tonumber(h) < hour - 167 then redis.call('HDEL', kh, h) end
    end
  end
end

local sub_field = id
if fallback then sub_field = 'fallback' end
-- key: the owner key id of the session (a 16-hex digest, never the key),
-- so that the savings report can say who spends what; keyName: the named
-- client key's name (API_KEYS_FILE), when it has one.
local key = ''
if sid ~= '' then key = owner_of end
local entry = { 'sub', sub_field, 'session', sid, 'key', key, 'req', req, 'cost', cost_s,
  'in', ARGV[5], 'out', ARGV[6], 'cacheCreate', ARGV[7], 'cacheRead', ARGV[8],
  'model', model, 'modelUsage', model_usage }
if key_name ~= '' then
  entry[#entry + 1] = 'keyName'
  entry[#entry + 1] = key_name
end
redis.call('XADD', usage_key, 'MINID', ms(now - retention), '*', unpack(entry))

-- No ranking value written (rank.lua; only the mark above, when a success
-- ends an auth cooldown): usage only lowers a subscription's health,
-- and a stored value that is too good costs the next new binding one more
-- subscription examined, which rescores it; a block that opens anew is
-- caught by the :at entry set at the old block's end, and maintain
-- rescores every subscription once a cycle.

return { CODE_OK, after_s, block_cost_s, burn_s, status }
