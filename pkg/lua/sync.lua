-- sync.lua: write a config version's subscription list: upsert the static
-- fields of the configured subscriptions and mark subscriptions missing from
-- the config as removed. The newest config wins: a version older than the
-- one Redis holds changes nothing, so a replica still on an old config
-- during a rollout can neither remove a new subscription nor undo a newer
-- list. Idempotent for one version.
--
-- KEYS[1] -> authpool:{P}:subs (SET)
-- KEYS[2] -> authpool:{P}:config (HASH hash loadedAt: the version in force)
-- KEYS[3] -> authpool:{P}:events (STREAM)
-- KEYS[4..n+3] -> sub:<id> of each configured subscription, in ARGV order
-- KEYS[n+4..] -> sub:<id> of every id currently in the SET (ARGV order after the configured ones)
-- KEYS[n+m+4], KEYS[n+m+5] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs,
--            rank.lua): every subscription written here is scored anew by the
--            next allocate
-- ARGV[1] -> config hash (hex)
-- ARGV[2] -> config loadedAt (Unix ms); versions order by (loadedAt, hash)
-- ARGV[3] -> n, configured subscriptions; then 6 values each:
--            id, email, type, configDir, weeklyBudget (decimal USD), maxClients
-- ARGV[4+6n] -> m, ids currently in the SET; ARGV[5+6n..] -> those ids
-- Returns {code, added, removed, hash, loadedAt}: CODE_OK, or CODE_OLDER_CONFIG
-- (nothing written; hash and loadedAt are the version in force), or
-- CODE_STALE_SUBS: the SET changed since it was read (retry).
-- A change of version writes one config_reloaded event and one
-- subscription_added / subscription_removed per change, here, so that each
-- is written once however many replicas load the same file.

local hash = ARGV[1]
local loaded_at = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local m = tonumber(ARGV[4 + 6 * n])
local subs_key, config_key, events_key = KEYS[1], KEYS[2], KEYS[3]

local cur = redis.call('HMGET', config_key, 'hash', 'loadedAt')
local cur_hash, cur_at = cur[1], tonumber(cur[2] or '0')
if cur_hash and cur_hash ~= hash and (cur_at > loaded_at or (cur_at == loaded_at and cur_hash > hash)) then
  return { CODE_OLDER_CONFIG, 0, 0, cur_hash, tostring(cur_at) }
end
if redis.call('SCARD', subs_key) ~= m then return { CODE_STALE_SUBS, 0, 0, '', '' } end

local now = now_ms()
-- Events only when the version changes over an existing one: the first sync
-- of a pool, and a re-sync after Redis lost its data, are no news.
local changed = cur_hash ~= false and cur_hash ~= hash
local configured = {}
local added, removed = 0, 0
local added_ids, removed_ids = {}, {}
for i = 1, n do
  local b = 3 + 6 * (i - 1)
  local id = ARGV[b + 1]
  configured[id] = true
  local sk = KEYS[3 + i]
  local st = redis.call('HGET', sk, 'status')
  if redis.call('SADD', subs_key, id) == 1 or st == 'removed' then
    added = added + 1
    added_ids[#added_ids + 1] = id
  end
  redis.call('HSET', sk, 'email', ARGV[b + 2], 'type', ARGV[b + 3], 'configDir', ARGV[b + 4],
    'weeklyBudget', ARGV[b + 5], 'maxClients', ARGV[b + 6])
  -- The budget may have changed: the resume fraction is the next
  -- allocate's (or maintain's) to compute.
  redis.call('HDEL', sk, 'elig')
  if not st or st == 'removed' then
    -- A subscription added back starts afresh: no operator's drain from before.
    redis.call('HSET', sk, 'status', 'available', 'statusReason', '', 'until', '0')
    redis.call('HDEL', sk, 'drain')
  end
  rank_dirty(KEYS[n + m + 5], id)
end
for j = 1, m do
  local id = ARGV[4 + 6 * n + j]
  if not configured[id] then
    local sk = KEYS[3 + n + j]
    if redis.call('HGET', sk, 'status') ~= 'removed' then
      redis.call('HSET', sk, 'status', 'removed', 'statusReason', 'not in config', 'until', '0')
      rank_status(KEYS[n + m + 4], KEYS[n + m + 5], id, 'removed', 0)
      removed = removed + 1
      removed_ids[#removed_ids + 1] = id
    end
  end
end
if cur_hash ~= hash or cur_at < loaded_at then
  redis.call('HSET', config_key, 'hash', hash, 'loadedAt', tostring(math.max(cur_at, loaded_at)))
end
if changed then
  for _, id in ipairs(added_ids) do
    emit(events_key, 'subscription_added', 'info', id, 'New subscription added: ' .. id,
      { subscriptionId = id, configHash = hash }, now)
  end
  for _, id in ipairs(removed_ids) do
    emit(events_key, 'subscription_removed', 'warning', id, 'Subscription removed: ' .. id,
      { subscriptionId = id, configHash = hash }, now)
  end
  emit(events_key, 'config_reloaded', 'info', '', 'Config reloaded (version ' .. string.sub(hash, 1, 12) .. ')',
    { configHash = hash, loadedAt = loaded_at, added = added, removed = removed }, now)
end
return { CODE_OK, added, removed, hash, tostring(math.max(cur_at, loaded_at)) }
