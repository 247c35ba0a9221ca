-- sync.lua: upsert the static fields of the configured subscriptions and mark
-- subscriptions missing from the config as removed. Idempotent.
--
-- KEYS[1] -> authpool:{P}:subs (SET)
-- KEYS[2..n+1] -> sub:<id> of each configured subscription, in ARGV order
-- KEYS[n+2..] -> sub:<id> of every id currently in the SET (ARGV order after the configured ones)
-- ARGV[1] -> n, configured subscriptions; then 6 values each:
--            id, email, type, configDir, weeklyBudget (decimal USD), maxClients
-- ARGV[2+6n] -> m, ids currently in the SET; ARGV[3+6n..] -> those ids
-- Returns {code, added, removed}; CODE_STALE_SUBS: the SET changed since it was read (retry)

local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2 + 6 * n])
if redis.call('SCARD', KEYS[1]) ~= m then return { CODE_STALE_SUBS, 0, 0 } end
local configured = {}
local added, removed = 0, 0
for i = 1, n do
  local b = 1 + 6 * (i - 1)
  local id = ARGV[b + 1]
  configured[id] = true
  local sk = KEYS[1 + i]
  if redis.call('SADD', KEYS[1], id) == 1 then added = added + 1 end
  redis.call('HSET', sk, 'email', ARGV[b + 2], 'type', ARGV[b + 3], 'configDir', ARGV[b + 4],
    'weeklyBudget', ARGV[b + 5], 'maxClients', ARGV[b + 6])
  local st = redis.call('HGET', sk, 'status')
  if not st or st == 'removed' then
    redis.call('HSET', sk, 'status', 'available', 'statusReason', '', 'until', '0')
  end
end
for j = 1, m do
  local id = ARGV[2 + 6 * n + j]
  if not configured[id] then
    local sk = KEYS[1 + n + j]
    if redis.call('HGET', sk, 'status') ~= 'removed' then
      redis.call('HSET', sk, 'status', 'removed', 'statusReason', 'not in config', 'until', '0')
      removed = removed + 1
    end
  end
end
return { CODE_OK, added, removed }
