-- Real ctnetlink traffic for the fuzzers' seeds (fuzz/seeds.sh runs this with
-- ct-lua under fuzz/capture.c, inside `unshare -rn`). ct-lua seeds.lua STEP
-- does one step; setup fills the table: tcp, udp, udplite, dccp, sctp, icmp,
-- gre, icmpv6, IPv6, zoned, marked and labelled entries, a helper and
-- expectations (IPv4 and IPv6).
local conntrack = require "conntrack"
local step = arg[1]
local h = assert(conntrack.open{ labelmap = arg[2] })

local FTP = { proto = "tcp", src = "10.4.1.1", dst = "10.4.1.2", sport = 1001, dport = 21,
              state = "ESTABLISHED", helper = "ftp", timeout = 300 }
local FTP6 = { proto = "tcp", src = "fd04::1", dst = "fd04::2", sport = 1002, dport = 21,
               state = "ESTABLISHED", helper = "ftp", timeout = 300 }
local function tuple(spec)
  return { proto = spec.proto, src = spec.src, dst = spec.dst, sport = spec.sport, dport = spec.dport }
end
local EXPECTED = { proto = "tcp", src = "10.4.1.2", dst = "10.4.1.1", sport = 0, dport = 6000 }
local EXPECTED6 = { proto = "tcp", src = "fd04::2", dst = "fd04::1", sport = 0, dport = 6001 }

local flows = {
  { proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1234, dport = 80, timeout = 100,
    state = "ESTABLISHED", mark = 7, status = "ASSURED,SEEN_REPLY", labels = "blue,red" },
  { proto = "udp", src = "10.0.0.3", dst = "10.0.0.4", sport = 53, dport = 53, timeout = 100, zone = 3 },
  { proto = "udplite", src = "10.0.0.5", dst = "10.0.0.6", sport = 5, dport = 6, timeout = 100 },
  { proto = "dccp", src = "10.0.0.7", dst = "10.0.0.8", sport = 7, dport = 8, timeout = 100,
    state = "OPEN" },
  { proto = "sctp", src = "10.0.0.9", dst = "10.0.0.10", sport = 9, dport = 10, timeout = 100,
    state = "ESTABLISHED", vtag = 11, reply_vtag = 12 },
  { proto = "icmp", src = "10.0.0.11", dst = "10.0.0.12", icmp_type = 8, icmp_code = 0,
    icmp_id = 42, timeout = 100 },
  { proto = "gre", src = "10.0.0.13", dst = "10.0.0.14", srckey = 1, dstkey = 2, timeout = 100 },
  { proto = "icmpv6", src = "fd00::1", dst = "fd00::2", icmp_type = 128, icmp_code = 0,
    icmp_id = 43, timeout = 100 },
  { proto = "tcp", src = "fd00::3", dst = "fd00::4", sport = 4, dport = 443, timeout = 100,
    state = "SYN_SENT", zone = 5 },
  { proto = "udp", src = "10.0.0.15", dst = "10.0.0.16", sport = 1, dport = 2, timeout = 100,
    reply_src = "192.168.0.1", reply_dst = "10.0.0.15", reply_sport = 2, reply_dport = 1 },
}

if step == "setup" then
  for _, f in ipairs(flows) do
    local ok, err = h:create(f)
    if not ok then
      f.labels = nil  -- no label storage without an nft 'ct label' rule
      ok, err = h:create(f)
    end
    io.stderr:write("create ", f.proto, " ", f.src, ": ", tostring(ok or err), "\n")
  end
  assert(h:create(FTP))
  assert(h:create(FTP6))
elseif step == "expect" then
  assert(h:expect_create{ master = tuple(FTP), expected = EXPECTED, timeout = 100,
                          flags = "PERMANENT", class = 0 })
  assert(h:expect_create{ master = tuple(FTP6), expected = EXPECTED6, timeout = 100 })
elseif step == "dump" then
  for f in h:dump() do local _ = tostring(f) end
elseif step == "get" then
  assert(h:get(tuple(flows[1])))
elseif step == "update" then
  assert(h:update({ proto = "udp" }, { mark = 9 }))
elseif step == "expect_dump" then
  for e in h:expect_dump() do local _ = tostring(e) end
elseif step == "expect_get" then
  assert(h:expect_get{ expected = EXPECTED })
elseif step == "stats" then
  assert(h:stats())
elseif step == "expect_stats" then
  assert(h:expect_stats())
elseif step == "count" then
  assert(h:count())
elseif step == "events" then
  -- events of every kind, caused by a second process (fuzz/seeds.sh)
  local ev = assert(h:listen{ events = { "new", "update", "destroy", "expect_new",
                                         "expect_update", "expect_destroy" } })
  io.stdout:write("listening\n") io.stdout:flush()
  local got, deadline = 0, os.time() + 10
  while os.time() < deadline and got < 40 do
    if ev:wait(1) then got = got + #assert(ev:recv()) end
  end
  io.stderr:write("events: ", got, "\n")
elseif step == "churn" then
  assert(h:flush())
  assert(h:create(flows[2]))
  assert(h:update(tuple(flows[2]) and { proto = "udp" }, { mark = 3 }))
  assert(h:create(FTP))
  assert(h:expect_create{ master = tuple(FTP), expected = EXPECTED, timeout = 100 })
  assert(h:expect_delete{ expected = EXPECTED })
  for _, f in ipairs(flows) do h:create(f) end
  assert(h:delete{})
end
h:close()
