--- The library handle of a run, and the kernel's errors in conntrack's words (err2str).
-- @module conntrack.cli.kernel
local M = {}

local EPERM, ENOENT, EINTR, ENOMEM, EEXIST, EINVAL, ENOSPC, ETIME, EOPNOTSUPP, EAFNOSUPPORT,
      ENOTSUPP = 1, 2, 4, 12, 17, 22, 28, 62, 95, 97, 524
M.ENOENT, M.EEXIST, M.EINVAL, M.ENOSPC, M.ENOBUFS, M.EPERM = ENOENT, EEXIST, EINVAL, ENOSPC, 105, EPERM
M.EOPNOTSUPP = EOPNOTSUPP

-- Commands that share a message (conntrack's err2str masks; its 0xFFFF covers the
-- commands of bits 0..15, so -A, -S and -C expect are not in it).
local BIT = {
  CT_LIST = 0, CT_CREATE = 1, CT_UPDATE = 2, CT_DELETE = 3, CT_GET = 4, CT_FLUSH = 5,
  CT_EVENT = 6, CT_VERSION = 7, CT_HELP = 8, EXP_LIST = 9, EXP_CREATE = 10, EXP_DELETE = 11,
  EXP_GET = 12, EXP_FLUSH = 13, EXP_EVENT = 14, CT_COUNT = 15, EXP_COUNT = 16,
  CT_STATS = 17, EXP_STATS = 18, CT_ADD = 19,
}
local function mask(...)
  local m = 0
  for _, c in ipairs({ ... }) do m = m | (1 << BIT[c]) end
  return m
end
local TABLE = {
  { mask("CT_LIST"), ENOTSUPP, "function not implemented" },
  { 0xFFFF, EINVAL, "invalid parameters" },
  { mask("CT_CREATE"), EEXIST, "Such conntrack exists, try -U to update" },
  { mask("CT_CREATE", "CT_GET", "CT_DELETE", "CT_ADD"), ENOENT, "such conntrack doesn't exist" },
  { mask("CT_CREATE", "CT_GET", "CT_ADD"), ENOMEM, "not enough memory" },
  { mask("CT_GET"), EAFNOSUPPORT, "protocol not supported" },
  { mask("CT_CREATE", "CT_ADD"), ETIME, "conntrack has expired" },
  { mask("EXP_CREATE"), ENOENT, "master conntrack not found" },
  { mask("EXP_CREATE"), EINVAL, "invalid parameters" },
  { -1, EPERM, "sorry, you must be root or get CAP_NET_ADMIN capability to do this" },
}

-- strerror for the errors the library words its own way
local STRERROR = {
  [EPERM] = "Operation not permitted", [ENOSPC] = "No space left on device",
  [EINVAL] = "Invalid argument",
  [EINTR] = "Interrupted system call", [EOPNOTSUPP] = "Operation not supported",
}

--- strerror(errno), from the library's "conntrack.op: <strerror>" message when it has one.
function M.strerror(errno, message)
  if STRERROR[errno] then return STRERROR[errno] end
  local text = type(message) == "string" and message:match("^conntrack%.[%w_]+: (.*)$")
  return text or ("Unknown error " .. tostring(errno))
end

--- conntrack's err2str(errno, command).
function M.err2str(errno, command, message)
  local bit = 1 << (BIT[command] or 0)
  for _, e in ipairs(TABLE) do
    if e[1] & bit ~= 0 and e[2] == errno then return e[3] end
  end
  return M.strerror(errno, message)
end

--- The handle of the run (opened once, in cmd.netns when given), or raises conntrack's
-- failure.
function M.handle(ctx, cmd)
  if ctx.handle then return ctx.handle end
  local conntrack = require "conntrack"
  local h, msg, errno = conntrack.open{ netns = cmd.netns }
  if not h then
    if cmd.netns then
      error({ status = 1, msg = string.format("cannot open network namespace `%s': %s",
                                              cmd.netns, M.strerror(errno, msg)) }, 0)
    end
    ctx.err:write("mnl_socket_open: ", M.strerror(errno, msg), "\n")
    error({ status = 1, msg = "Can't open handler" }, 0)
  end
  ctx.handle = h
  return h
end

--- Raises "Operation failed: ..." for a kernel error of command.
function M.failed(command, errno, message)
  error({ status = 1, msg = "Operation failed: " .. M.err2str(errno, command, message) }, 0)
end

--- Runs fn (a dump loop) and turns a raised conntrack.error into conntrack's failure.
function M.guard(command, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return end
  if type(err) == "table" and err.errno then M.failed(command, err.errno, err.message) end
  error(err, 0)
end

return M
