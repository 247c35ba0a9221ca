-- rank.lua: the allocation ranking (issue 14), prepended after lib.lua.
--
-- authpool:{P}:rank is a ZSET subscription id -> rank value, lowest first:
-- the order in which allocate examines subscriptions for a new binding, so
-- that it stops once no subscription left could beat the best eligible one
-- instead of scoring them all.
--   usable:    -(health score) + RANK_EPS * active clients: the best score
--              first; among equal scores fewer clients, then (the ZSET's
--              order of equal values) the lower id: allocate's tie-break
--              folded in.
--   unusable:  RANK_OFF, after every usable one.
-- authpool:{P}:rank:at is a ZSET subscription id -> the time (ms) from
-- which its value may no longer hold, so allocate examines it whatever its
-- value: a limited or cooldown one's until (it may be restored and chosen);
-- a usable one's next jump of a time-dependent term (its block ends, an
-- observed window resets), and never later than RANK_TTL after it was
-- scored (what moves with time alone: burn rate, sessions going idle, the
-- rolling week); 0 for a subscription a writer changed without scoring it.
-- No entry: the value holds until a write (disabled, draining, removed).
-- Eligibility is never read from here: allocate runs its exact checks on
-- each subscription it examines, and writes back the values it computed.

local RANK_OFF = 1125899906842624 -- 2^50, in plain digits
local RANK_EPS = 1e-9
local RANK_CLAMP = 1e14
local RANK_TTL = 5000
-- Lua orders strings by the C library's collation (Redis takes LC_COLLATE
-- from its environment); in the C locale that is the byte order in which
-- the ZSET keeps equal values, which these probes of the ids' alphabet
-- ([A-Za-z0-9_-]) tell apart from the usual others.
local RANK_BYTES = ('B' < 'a') and ('Z' < '_') and ('-' < '0') and ('a-b' < 'aa')

-- rank_fmt writes a value that reads back as the same double.
local function rank_fmt(v) return string.format('%.17g', v) end

-- rank_num reads a value back. (Some Lua implementations that stand in
-- for Redis in tests read no exponent after a mantissa without a point.)
local function rank_num(s)
  local v = tonumber(s)
  if v then return v end
  local m, e = string.match(s, '^([-+]?%d+)([eE][-+]?%d+)$')
  if m then return tonumber(m .. '.0' .. e) end
  return nil
end

-- rank_value is the value of a subscription in status with this health
-- score and active clients (the score allocate compares).
local function rank_value(status, score, clients)
  if not usable(status) then return RANK_OFF end
  local v = -score + RANK_EPS * clients
  if v > RANK_CLAMP then v = RANK_CLAMP elseif v < -RANK_CLAMP then v = -RANK_CLAMP end
  return rank_num(rank_fmt(v))
end

-- rank_until is when a value of a subscription in status, scored now,
-- stops holding (nil: until it is written). f: a sub_read table of its
-- hash (an unusable status needs only its until).
local function rank_until(status, now, f)
  if not usable(status) then
    if (status == 'limited' or status == 'cooldown') and int(f['until']) > 0 then return int(f['until']) end
    return nil
  end
  local t = now + RANK_TTL
  if block_active(f.blockStart, now) then t = math.min(t, int(f.blockStart) + BLOCK) end
  for _, name in ipairs({ 'five_hour', 'seven_day' }) do
    local at, reset = int(f['w:' .. name .. ':at']), int(f['w:' .. name .. ':reset'])
    local stop = 0
    if at > 0 then
      if reset > 0 then stop = reset else stop = at + WINDOW_LEN[name] end
    end
    if stop > now then t = math.min(t, stop) end
  end
  return t
end

-- rank_params reads the ranking's inputs from ARGV at index i: the seven
-- health weights (weights()) and the idle age, ms. nil when the caller
-- passed none: the writer then only marks its subscription for scoring.
local function rank_params(i)
  if not ARGV[i] or ARGV[i] == '' then return nil end
  return { W = weights(i), idle_ms = tonumber(ARGV[i + 7]) }
end

-- rank_put writes one subscription's value and its until (nil: none).
local function rank_put(rank_key, at_key, id, v, t)
  redis.call('ZADD', rank_key, rank_fmt(v), id)
  if t then redis.call('ZADD', at_key, ms(t), id) else redis.call('ZREM', at_key, id) end
end

-- rank_batch collects the values and untils of several subscriptions
-- (add) and writes them all in at most three commands (flush), not two
-- commands each.
local function rank_batch()
  local vals, ats, gone = {}, {}, {}
  local b = {}
  -- stored (optional): the value already in the ranking, not written again.
  function b.add(id, v, t, stored)
    if v ~= stored then
      vals[#vals + 1] = rank_fmt(v)
      vals[#vals + 1] = id
    end
    if t then
      ats[#ats + 1] = ms(t)
      ats[#ats + 1] = id
    else
      gone[#gone + 1] = id
    end
  end
  function b.flush(rank_key, at_key)
    if #vals > 0 then redis.call('ZADD', rank_key, unpack(vals)) end
    if #ats > 0 then redis.call('ZADD', at_key, unpack(ats)) end
    if #gone > 0 then redis.call('ZREM', at_key, unpack(gone)) end
    return #vals / 2 -- values written
  end
  return b
end

-- rank_dirty marks a subscription for scoring by the next allocate.
local function rank_dirty(at_key, id)
  redis.call('ZADD', at_key, 0, id)
end

-- rank_status writes what a status change implies without a score: an
-- unusable status its value and until, a usable one a mark for scoring.
local function rank_status(rank_key, at_key, id, status, until_v)
  if usable(status) then return rank_dirty(at_key, id) end
  local t = nil
  if (status == 'limited' or status == 'cooldown') and int(until_v) > 0 then t = int(until_v) end
  rank_put(rank_key, at_key, id, RANK_OFF, t)
end

-- rank_score computes a subscription's value as allocate's new-binding
-- loop scores it (no status is restored or changed here: a due until is
-- allocate's and maintain's to act on), and its until. pre: a sub_read
-- table of the hash as it is now, or nil to read it.
local function rank_score(sk, hk, ck, P, now, pre)
  local f = pre or sub_read(sk)
  local status = f.status or 'removed'
  if not usable(status) then return RANK_OFF, rank_until(status, now, f) end
  local budget = to_micros(f.weeklyBudget)
  local weekly = weekly_micros(sk, hk, f.weeklyUsed, f.weeklyHour, now, true, f)
  local frac, src = weekly_frac(sk, weekly, budget, now, f)
  if src == 'estimate' and budget <= 0 then frac = 0 end
  local w5 = window(sk, 'five_hour', now, f)
  local cost = to_micros(f.blockCost)
  local clients = active_count(ck, now)
  local score = health(P.W, frac, w5.used, cost, block_active(f.blockStart, now), clients,
    burn_rate(cost, f.blockStart, now))
  return rank_value(status, score, clients), rank_until(status, now, f)
end

-- rank_update refreshes one subscription's value after a write to it:
-- scored with P (rank_params), marked for scoring without.
local function rank_update(rank_key, at_key, id, sk, hk, ck, P, now, pre)
  if not P then return rank_dirty(at_key, id) end
  local v, t = rank_score(sk, hk, ck, P, now, pre)
  rank_put(rank_key, at_key, id, v, t)
end

-- rank_walk examines subscriptions for allocate's new binding: first every
-- one missing from the ranking or whose until has come (its restore, or a
-- term that moved, may make it the best), then from the lowest value on,
-- while the next one could still beat the best eligible one found so far.
-- ids: the subscription ids by index; idx: id -> index. examine(i) runs the
-- exact checks on the i-th subscription and returns its fresh value and
-- until (nil value: leave both as they are); bound() returns the value and
-- id of the best eligible one so far (nil when there is none). Examined
-- subscriptions get their fresh values. Returns the set of the indexes
-- examined. With no eligible subscription every one is examined: the
-- reasons come out as a full scan's.
local function rank_walk(rank_key, at_key, ids, idx, now, examine, bound)
  local n = #ids
  local seen, examined, count = {}, {}, 0
  local batch = rank_batch()
  local function visit(i, stored)
    seen[i], examined[i] = true, true
    count = count + 1
    local v, t = examine(i)
    if v ~= nil then batch.add(ids[i], v, t, stored) end
  end
  local function flush()
    batch.flush(rank_key, at_key)
    return examined
  end
  -- Missing from the ranking (a new pool, lost data): first, all of them.
  if redis.call('ZCARD', rank_key) ~= n then
    local member = {}
    for _, m in ipairs(redis.call('ZRANGE', rank_key, 0, -1)) do member[m] = true end
    for i = 1, n do
      if not member[ids[i]] then visit(i, nil) end
    end
  end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', at_key, '-inf', ms(now))) do
    local i = idx[m]
    if i and not seen[i] then visit(i, nil) end
  end
  -- Batches of growing size: most walks stop in the first one.
  local from, size = 0, 4
  while count < n do
    local batch = redis.call('ZRANGE', rank_key, from, from + size - 1, 'WITHSCORES')
    for j = 1, #batch, 2 do
      local m, v = batch[j], rank_num(batch[j + 1])
      local i = idx[m]
      if i and not seen[i] then
        local bv, bid = bound()
        if bv and v > bv then return flush() end
        if bv and v == bv and m > bid then
          -- An equal value loses to the best on the id (allocate's compare).
          -- So do the rest of the equal values when the collation is the
          -- bytes' order; else they are still read.
          if RANK_BYTES then return flush() end
          seen[i], count = true, count + 1
        else
          visit(i, v)
        end
      end
    end
    if #batch < 2 * size then break end
    from = from + size
    size = size * 2
  end
  -- In the SET but not in the ranking (a member that is not a subscription
  -- hid it from the ZCARD check): examined too.
  if count < n then
    for i = 1, n do
      if not seen[i] then visit(i, nil) end
    end
  end
  return flush()
end
