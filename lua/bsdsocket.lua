-- bsdsocket: the Berkeley sockets API for Lua 5.4.
-- Everything from the C module bsdsocket.core, plus the Lua conveniences.
local core = require "bsdsocket.core"

local S = {}
for k, v in pairs(core) do S[k] = v end

return S
