-- allocate.lua: bind a session to a subscription, atomically.
--
-- KEYS[1] -> authpool:{P}:subs (SET)
-- KEYS[2] -> authpool:{P}:session:<sid> (HASH)
-- KEYS[3] -> authpool:{P}:events (STREAM)
-- KEYS[4+3(i-1)], KEYS[5+3(i-1)], KEYS[6+3(i-1)] -> sub:<id>, sub:<id>:clients,
--            sub:<id>:hourly of the i-th subscription id in ARGV[N0+i]
-- KEYS[4+3n] -> authpool:{P}:rank (ZSET subscription id -> rank value, rank.lua):
--            the order in which a new binding examines the subscriptions
-- KEYS[5+3n] -> authpool:{P}:rank:at (ZSET subscription id -> ms from which its
--            rank value may no longer hold, rank.lua)
-- ARGV[1]  -> session id
-- ARGV[2]  -> priority (low|normal|high)
-- ARGV[3]  -> admission limit of that priority (weekly fraction, new bindings)
-- ARGV[4]  -> resume limit (weekly fraction under which a bound session stays)
-- ARGV[5]  -> approaching threshold (weekly fraction)
-- ARGV[6]  -> stale age, ms (session TTL; clients idle longer are dropped)
-- ARGV[7]  -> fallback allowed (1|0)
-- ARGV[8..14] -> health weights: weekly block blockRef clients burn burnFree idleBonus
-- ARGV[15] -> mode: "full", or "resume" (KEYS hold only the subscription a
--            replica's hint says the session is on; nothing is bound; the
--            gateway's hot path is resume.lua, this mode is its reference)
-- ARGV[16] -> n, the number of subscription ids that follow
-- ARGV[17..16+n] -> subscription ids, in KEYS order
-- ARGV[17+n] -> owner: the key id of the caller's API key ("-" without keys);
--            a session belongs to the key that created it
-- ARGV[18+n] -> turn id ('' none): a session bound to a subscription is
--            active for max(idle, lease) from now (its client-set score,
--            lib.lua), else for the idle age
-- ARGV[19+n] -> turn lease, ms
-- ARGV[20+n] -> idle age, ms: a subscription's cap counts its active
--            sessions only (client-set score after now)
-- ARGV[21+n] -> block admission threshold: a subscription whose observed,
--            current 5-hour utilization is at or over it takes no new
--            binding ('' or absent: no such limit); bound sessions stay
-- ARGV[22+n] -> known mask: one '1'/'0' per subscription id, '0' for one the
--            caller's replica cannot run (not in its config); '' all known
-- Returns {code, subId, kind, cliSession, from, reason, retryAfterMs}
--   CODE_OK: bound; kind "resumed" (same subscription) or "bound" (new binding)
--   CODE_FALLBACK: fallback (no eligible subscription); reason says why
--           (no_subscriptions, all_unavailable, five_hour_window, weekly_budget, capacity)
--   CODE_EXHAUSTED: exhausted (as CODE_FALLBACK, but fallback is off)
--   CODE_STALE_SUBS: stale subscription list (SCARD differs from n): reload and retry
--   CODE_NOT_FOUND: the session belongs to another owner: for this caller it does
--           not exist (nothing read or changed)
--   CODE_RESUME_MISS: resume mode only: the session cannot resume there; call in full mode
-- A bound session that comes back idle to a subscription full of active
-- sessions moves ('capacity'), like one whose subscription became unusable.
-- A draining subscription takes no new binding and keeps only its active
-- sessions: an idle one moves on its next turn ('draining').

local sid = ARGV[1]
local priority = ARGV[2]
local admit = tonumber(ARGV[3])
local resume_limit = tonumber(ARGV[4])
local approach_at = tonumber(ARGV[5])
local stale_ms = tonumber(ARGV[6])
local fallback_ok = ARGV[7] == '1'
local resume_only = ARGV[15] == 'resume'
local n = tonumber(ARGV[16])
local owner = ARGV[17 + n]
local turn = ARGV[18 + n]
local lease_ms = tonumber(ARGV[19 + n])
local idle_ms = tonumber(ARGV[20 + n])
local block_admit = tonumber(ARGV[21 + n])
local known_mask = ARGV[22 + n] or ''
local sess_key = KEYS[2]
local events_key = KEYS[3]

if not resume_only and redis.call('SCARD', KEYS[1]) ~= n then
  return { CODE_STALE_SUBS, '', '', '', '', 'stale_subscriptions', 0 }
end

-- Another owner's session does not exist for this caller. A session written
-- before owners were recorded has none and is adopted by its next caller.
local cur = redis.call('HMGET', sess_key, 'sub', 'cliSession', 'owner')
if cur[1] ~= false and cur[3] ~= false and cur[3] ~= owner then
  return { CODE_NOT_FOUND, '', '', '', '', 'not_found', 0 }
end

local now = now_ms()
-- The session's score where it is bound: active until then.
local until_v = now + idle_ms
if turn ~= '' and lease_ms > idle_ms then until_v = now + lease_ms end
local ttl = stale_ms
if lease_ms > ttl then ttl = lease_ms end
local idx = {}
for i = 1, n do idx[ARGV[16 + i]] = i end

-- known says whether the caller's replica can run the i-th subscription: a
-- replica on an older config than another one's does not know its new
-- subscriptions, and must neither bind to them nor fail a session bound
-- there (it moves it).
local function known(i) return known_mask == '' or string.sub(known_mask, i, i) == '1' end

local function keys_of(i) return KEYS[4 + 3 * (i - 1)], KEYS[5 + 3 * (i - 1)], KEYS[6 + 3 * (i - 1)] end

-- state reads what eligibility and ranking need, restoring a due status.
local function read_state(i)
  local id = ARGV[16 + i]
  local sk, ck, hk = keys_of(i)
  -- One HMGET of every field needed (the observed windows included).
  local f = sub_read(sk)
  local until0 = f['until']
  local budget = to_micros(f.weeklyBudget)
  local weekly = weekly_micros(sk, hk, f.weeklyUsed, f.weeklyHour, now, true, f)
  local frac, src = weekly_frac(sk, weekly, budget, now, f)
  local e = elig(frac, now, f)
  if e ~= f.elig then redis.call('HSET', sk, 'elig', e) end
  local status = f.status or 'removed'
  if status == 'available' or status == 'approaching' then
    local st = usable_status(frac, approach_at, sk, now, f)
    if st ~= status then redis.call('HSET', sk, 'status', st); status = st end
  else
    status = restore_if_due(sk, events_key, id, status, until0, frac, approach_at, now, f)
  end
  -- Health counts no weekly usage without a budget or an observation.
  local hfrac = frac
  if src == 'estimate' and budget <= 0 then hfrac = 0 end
  local w5 = window(sk, 'five_hour', now, f)
  return { id = id, sk = sk, ck = ck, status = status, until_v = int(until0), frac = frac, hfrac = hfrac, weekly = weekly,
    budget = budget, max = int(f.maxClients), blockStart = f.blockStart, blockCost = to_micros(f.blockCost),
    block_obs = w5.used, block_full = block_admit ~= nil and w5.used ~= nil and w5.used >= block_admit, f = f }
end

-- state is read_state once per subscription and call: a session leaving its
-- subscription has it read by the resume check, and again by the walk when
-- the walk examines it; nothing writes the hash in between.
local states = {}
local function state(i)
  local s = states[i]
  if not s then
    s = read_state(i)
    states[i] = s
  end
  return s
end

-- touch keeps the session where it is bound, active until until_v (GT:
-- never earlier than a running turn's lease).
local function touch(ck)
  if cur[3] ~= owner then redis.call('HSET', sess_key, 'owner', owner) end
  redis.call('PEXPIRE', sess_key, ttl)
  redis.call('ZADD', ck, 'GT', until_v, sid)
end

-- live_in says whether the session holds a live entry in a client set (one
-- whose entry went stale was not counted against the cap, so it must take
-- the capacity-checked path to come back) and whether it is active there.
local function live_in(ck)
  local score = redis.call('ZSCORE', ck, sid)
  if score == false then return false, false end
  score = tonumber(score)
  return score > stale_edge(now, stale_ms, idle_ms), score > now
end

-- Sticky resume: the session stays while its subscription can still serve it.
local old = cur[1]
if old == false then old = '' end
local leave_reason = ''
local old_live, old_active, old_ck = false, false, nil
if old ~= '' then
  local i = idx[old]
  if i and known(i) then
    local s = state(i)
    old_ck = s.ck
    old_live, old_active = live_in(s.ck)
    -- An active session keeps its slot; an idle one needs a free one.
    local room = old_live and (old_active or active_count(s.ck, now) < s.max)
    -- A draining subscription keeps the sessions still active there (an
    -- operator drains it for a re-login without cutting a conversation in
    -- the middle); one that went idle moves like any other.
    local serves = usable(s.status) or (s.status == 'draining' and old_live and old_active)
    if serves and s.frac < resume_limit and room then
      touch(s.ck)
      return { CODE_OK, old, 'resumed', cur[2] or '', '', '', 0 }
    end
    if not serves then leave_reason = s.status
    elseif s.frac >= resume_limit then leave_reason = 'budget'
    elseif old_live then leave_reason = 'capacity'
    else leave_reason = 'stale' end
  elseif i then
    leave_reason = 'unknown'
  else
    leave_reason = 'removed'
  end
end
if resume_only then return { CODE_RESUME_MISS, '', '', '', '', '', 0 } end

-- The active sessions of a client set, this session aside.
local function active_except(ck)
  local c = active_count(ck, now)
  if ck == old_ck and old_live and old_active then c = c - 1 end
  return c
end

-- New binding: highest unclamped health score; ties: fewer clients, then id.
-- The subscriptions are examined in rank order (rank.lua), each by the
-- exact checks below, until none left could beat the best eligible one.
local W = weights(8)
local best, best_score, best_clients, best_v = nil, nil, nil, nil
local reasons = { status = 0, capacity = 0, budget = 0, block = 0 }
local earliest = 0
-- value_of is s's rank value with this many active clients.
local function value_of(s, clients)
  local score = health(W, s.hfrac, s.block_obs, s.blockCost, block_active(s.blockStart, now), clients,
    burn_rate(s.blockCost, s.blockStart, now))
  return rank_value(s.status, score, clients), score
end
local function examine(i)
  local s = known(i) and state(i) or { status = 'unknown', until_v = 0 }
  if not usable(s.status) then
    reasons.status = reasons.status + 1
    if s.until_v > now and (earliest == 0 or s.until_v < earliest) then earliest = s.until_v end
    if s.status == 'unknown' then return nil end
    return rank_value(s.status), rank_until(s.status, now, { ['until'] = s.until_v })
  end
  -- Active clients only (this session aside); idle ones hold no slot.
  local clients = active_except(s.ck)
  local v, score = value_of(s, clients)
  if clients >= s.max then
    reasons.capacity = reasons.capacity + 1
  elseif s.frac >= admit then
    reasons.budget = reasons.budget + 1
  elseif s.block_full then
    -- Pacing: a nearly spent 5-hour window takes no new sessions until
    -- it resets; the ones already there continue (resume above).
    reasons.block = reasons.block + 1
  elseif best == nil or score > best_score
    or (score == best_score and (clients < best_clients or (clients == best_clients and s.id < best.id))) then
    best, best_score, best_clients, best_v = s, score, clients, v
  end
  return v, rank_until(s.status, now, s.f)
end
local function bound()
  if best == nil then return nil end
  return best_v, best.id
end
local rank_key, rank_at_key = KEYS[4 + 3 * n], KEYS[5 + 3 * n]
local sub_ids = {}
for i = 1, n do sub_ids[i] = ARGV[16 + i] end
local examined = rank_walk(rank_key, rank_at_key, sub_ids, idx, now, examine, bound)
-- A session leaving old frees its slot there: old's value counts it out
-- when old was examined (this session aside), else old is scored anew.
if old ~= '' and (best == nil or old ~= best.id) and idx[old] and not examined[idx[old]] then
  rank_dirty(rank_at_key, old)
end

if best == nil then
  local reason = 'no_subscriptions'
  if reasons.status > 0 then reason = 'all_unavailable' end
  if reasons.block > 0 then reason = 'five_hour_window' end
  if reasons.budget > 0 then reason = 'weekly_budget' end
  if reasons.capacity > 0 then reason = 'capacity' end
  local retry = 0
  if earliest > 0 then retry = earliest - now end
  if old ~= '' then
    local i = idx[old]
    if i then
      local _, ck = keys_of(i)
      redis.call('ZREM', ck, sid)
    end
    redis.call('HSET', sess_key, 'sub', '')
    redis.call('HDEL', sess_key, 'cliSession')
    redis.call('PEXPIRE', sess_key, stale_ms)
    if fallback_ok then
      emit(events_key, 'failover', 'warning', old,
        'Session moved from ' .. old .. ' to the fallback backend (' .. reason .. ')',
        { sessionId = sid, from = old, reason = reason }, now)
    else
      -- No fallback to move to: the session is refused, not moved.
      emit(events_key, 'exhausted', 'critical', old,
        'Pool exhausted: session ' .. sid .. ' left ' .. old .. ' (' .. leave_reason .. '), no subscription can take it ('
          .. reason .. ') and fallback is off; its requests are refused',
        { sessionId = sid, from = old, reason = reason, leaveReason = leave_reason, retryAfterMs = retry }, now)
    end
  end
  if old == '' and fallback_ok then
    -- A session on the fallback has its hash (owner, stored conversation)
    -- like any other, so it continues there or back on a subscription.
    if cur[1] == false then redis.call('HSET', sess_key, 'priority', priority, 'allocatedAt', ms(now)) end
    redis.call('HSET', sess_key, 'sub', '', 'owner', owner)
    redis.call('PEXPIRE', sess_key, stale_ms)
  end
  if fallback_ok then return { CODE_FALLBACK, '', 'fallback', '', old, reason, retry } end
  return { CODE_EXHAUSTED, '', 'exhausted', '', old, reason, retry }
end

if old ~= '' and old ~= best.id then
  local i = idx[old]
  if i then
    local _, ck = keys_of(i)
    redis.call('ZREM', ck, sid)
  end
  emit(events_key, 'rotation', 'info', old,
    'Session moved from ' .. old .. ' to ' .. best.id .. ' (' .. leave_reason .. ')',
    { sessionId = sid, from = old, to = best.id, reason = leave_reason }, now)
end
if old == best.id then
  -- Its entry had gone stale; it passed the cap check again and comes back
  -- to the same subscription, CLI session and all.
  touch(best.ck)
  rank_dirty(rank_at_key, old)
  return { CODE_OK, old, 'resumed', cur[2] or '', '', '', 0 }
end
redis.call('HSET', sess_key, 'sub', best.id, 'priority', priority, 'allocatedAt', ms(now), 'owner', owner)
if old ~= '' or cur[2] then redis.call('HDEL', sess_key, 'cliSession') end
redis.call('PEXPIRE', sess_key, ttl)
redis.call('ZADD', best.ck, 'GT', until_v, sid)
-- The chosen one has one active client more.
redis.call('ZADD', rank_key, rank_fmt((value_of(best, best_clients + 1))), best.id)
return { CODE_OK, best.id, 'bound', '', old, leave_reason, 0 }
