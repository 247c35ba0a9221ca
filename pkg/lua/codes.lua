-- codes.lua: the reply codes, prepended to every script, so that a script
-- says CODE_STALE_EPOCH where it used to say 4. pkg/lua's codes.go holds the
-- Go constants of the same names (CODE_STALE_EPOCH is CodeStaleEpoch), and
-- TestReplyCodesMatchLua fails when the two lists differ.
local CODE_OK = 0
local CODE_FALLBACK = 1
local CODE_EXHAUSTED = 2
local CODE_STALE_SUBS = 3
local CODE_STALE_EPOCH = 4
local CODE_DUPLICATE = 5
local CODE_NOT_FOUND = 6
local CODE_UNCHANGED = 8
local CODE_NOTHING_TO_DO = 9
local CODE_RESUME_MISS = 10
local CODE_RATE_LIMITED = 11
local CODE_LOCK_LOST = 12
local CODE_NEED_CANDIDATES = 13
local CODE_REFUSED = 14
local CODE_OLDER_CONFIG = 15
