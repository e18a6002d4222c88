--- The ftp environment, where the kernel makes expectations: its ftp helper (an nft ct
-- helper object set on port 21), a shell ftp server on port 21 and two control
-- connections kept open, 1 from 127.0.0.1:40021 and 2 from [::1]:40022. Their conntrack
-- entries are masters with a helper, so the ftp commands they send (PORT, EPRT) announce
-- expectations, and ctnetlink may create expectations on them; after a test deleted one,
-- the same master can announce it again.
local H = require "helpers"

local M = {}

--- The server, a shell script for socat's EXEC: it answers every command; PASV with
-- $FTP_PASV (default 127,0,0,1,40,10).
M.SERVER = [[
cr=$(printf '\r')
printf '220 ct-lua test ftp\r\n'
while read -r cmd arg; do
  cmd=${cmd%"$cr"}
  case "$cmd" in
    PASV) printf '227 Entering Passive Mode (%s)\r\n' "${FTP_PASV:-127,0,0,1,40,10}" ;;
    EPSV) printf '229 Entering Extended Passive Mode (|||10250|)\r\n' ;;
    PORT|EPRT) printf '200 PORT command successful\r\n' ;;
    QUIT) printf '221 Goodbye\r\n'; exit 0 ;;
    *) printf '331 Please specify the password\r\n' ;;
  esac
done
]]

-- Sends each line written to the fifo $1 and appends each reply to the log $2.
local CLIENT = [[
exec 3<>"$1"
read -r banner
printf '%s\n' "$banner" >> "$2"
while read -r c <&3; do
  printf '%s\r\n' "$c"
  read -r reply
  printf '%s\n' "$reply" >> "$2"
done
]]

--- The nft ruleset that assigns the ftp helper to connections to port 21 (the kernel no
-- longer assigns helpers by itself).
M.RULESET = [[
table inet ct_lua_test_ftp {
  ct helper ftp-21 {
    type "ftp" protocol tcp
  }
  chain out {
    type filter hook output priority 0;
    tcp dport 21 ct helper set "ftp-21"
  }
}]]

-- The master entries of the two control connections: family, addresses and ports.
M.MASTERS = {
  { family = "ipv4", src = "127.0.0.1", dst = "127.0.0.1", sport = 40021, dport = 21 },
  { family = "ipv6", src = "::1", dst = "::1", sport = 40022, dport = 21 },
}

local function replies(client)
  return #H.lines(H.read_file(client.log))
end

--- Starts the environment with its files in the directory dir (made if missing); returns
-- it: env:send(n, command) has control connection n send an ftp command and waits for
-- the reply; env:stop() ends its processes.
function M.start(dir)
  local env = { pids = {}, clients = {} }
  H.must("mkdir -p " .. dir)
  H.write_file(dir .. "/server.sh", M.SERVER)
  H.write_file(dir .. "/client.sh", CLIENT)
  H.must("ip link set lo up")
  H.nft(M.RULESET)
  env.pids[#env.pids + 1] = H.must("socat TCP6-LISTEN:21,reuseaddr,fork,ipv6only=0 EXEC:" ..
    H.quote("sh " .. dir .. "/server.sh") .. " >/dev/null 2>&1 & echo $!"):match("%d+")
  H.eventually(2, "the ftp server", function() return H.run("ss -Hltn 'sport = :21'") ~= "" end)
  for i, m in ipairs(M.MASTERS) do
    local target = m.family == "ipv4" and "TCP:" .. m.dst .. ":21" or "TCP6:[" .. m.dst .. "]:21"
    local client = { fifo = dir .. "/cmd" .. i, log = dir .. "/log" .. i }
    H.must("rm -f " .. client.fifo .. " " .. client.log .. " && mkfifo " .. client.fifo ..
           " && touch " .. client.log)
    env.pids[#env.pids + 1] = H.must("socat " .. target .. ",sourceport=" .. m.sport ..
      ",reuseaddr EXEC:" .. H.quote("sh " .. dir .. "/client.sh " .. client.fifo .. " " ..
      client.log) .. " >/dev/null 2>&1 & echo $!"):match("%d+")
    env.clients[i] = client
    H.eventually(2, "the banner on ftp connection " .. i, function() return replies(client) >= 1 end)
  end

  function env.send(_, n, command)
    local client = assert(env.clients[n], "no ftp connection " .. tostring(n))
    local before = replies(client)
    local f = assert(io.open(client.fifo, "w"))
    f:write(command, "\n")
    f:close()
    H.eventually(2, "a reply to " .. command .. " on ftp connection " .. n,
                 function() return replies(client) > before end)
  end

  function env.stop(_)
    for _, pid in ipairs(env.pids) do H.run("kill " .. pid .. " 2>/dev/null") end
    env.pids, env.clients = {}, {}
  end

  return env
end

return M
