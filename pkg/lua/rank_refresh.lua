-- rank_refresh.lua: score some subscriptions for the allocation ranking
-- (rank.lua), after a config sync marked them for scoring. The caller
-- passes a few at a time, so that no call holds the shard long and the
-- first new binding after a sync need not score the whole pool.
--
-- KEYS[1+3(i-1)], KEYS[2+3(i-1)], KEYS[3+3(i-1)] -> sub:<id>, :clients, :hourly
-- KEYS[1+3n], KEYS[2+3n] -> authpool:{P}:rank, authpool:{P}:rank:at (ZSETs)
-- ARGV[1] -> n; ARGV[2..1+n] -> subscription ids, in KEYS order
-- ARGV[2+n..9+n] -> the ranking's inputs (rank_params: seven health
--            weights, idle age ms)
-- Returns {code, scored}: CODE_OK. A subscription without a hash (not
-- synced) is left alone; no status is changed here.

local n = tonumber(ARGV[1])
local P = rank_params(2 + n)
if not P then return { CODE_OK, 0 } end
local rank_key, at_key = KEYS[1 + 3 * n], KEYS[2 + 3 * n]
local now = now_ms()
local batch = rank_batch()
for i = 1, n do
  local sk, ck, hk = KEYS[1 + 3 * (i - 1)], KEYS[2 + 3 * (i - 1)], KEYS[3 + 3 * (i - 1)]
  local f = sub_read(sk)
  if f.status then batch.add(ARGV[1 + i], rank_score(sk, hk, ck, P, now, f)) end
end
return { CODE_OK, batch.flush(rank_key, at_key) }
