--- What conntrack prints for entries, expectations and events: libnetfilter_conntrack's
-- text and XML through flow:format and expect:format, `-o save` built from the flow's
-- fields (conntrack's ct_save_snprintf), the timestamp prefixes, the `[USERSPACE]`
-- suffix of events, and `-o json` through conntrack.json.
--
-- Which flags apply depends on where conntrack prints (its callbacks differ):
--   list    -L, -G: extended, ktimestamp, id, labels; XML with header and footer
--   delete  -D: extended and id only, no labels; XML without header
--   update  -U: extended, id, labels; XML without header
--   event   -E: extended, ktimestamp, id, labels, timestamp prefix; XML with header
-- @module conntrack.cli.output
local labelmap = require "conntrack.cli.labelmap"
local bswap32 = require("conntrack.cli.values").bswap32

local M = {}

local fmt, concat = string.format, table.concat

M.XML_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n'

--- The start of conntrack's XML document whose root element is root ("conntrack", "expect").
function M.xml_start(root)
  return M.XML_HEADER .. "<" .. root .. ">\n"
end

--- Writes that start once per run, before the first entry (ctx.xml_header remembers it, so
-- that the end is written too).
function M.write_xml_start(ctx, root)
  if not ctx.xml_header then
    ctx.xml_header = true
    ctx.out:write(M.xml_start(root))
  end
end

-- -o save's status names, in bit order (EXPECTED, SEEN_REPLY, ASSURED, FIXED_TIMEOUT)
local SAVE_STATUS = { "EXPECTED", "SEEN_REPLY", "ASSURED", "FIXED_TIMEOUT" }
local SAVE_TYPE = { new = "-A ", update = "-U ", destroy = "-D " }

-- The protocol options of -o save, per handler name: { option, field[, transform] }.
local PORTS = { { "--sport", "sport" }, { "--dport", "dport" },
                { "--reply-port-src", "reply_sport" }, { "--reply-port-dst", "reply_dport" } }
local SAVE_PROTO = {
  tcp = { PORTS[1], PORTS[2], PORTS[3], PORTS[4], { "--state", "state" } },
  udp = PORTS, udplite = PORTS,
  sctp = { PORTS[1], PORTS[2], PORTS[3], PORTS[4], { "--state", "state" },
           { "--orig-vtag", "vtag", bswap32 }, { "--reply-vtag", "reply_vtag", bswap32 } },
  dccp = { PORTS[1], PORTS[2], PORTS[3], PORTS[4], { "--state", "state" } },
  gre = { { "--srckey", "srckey" }, { "--dstkey", "dstkey" },
          { "--reply-key-src", "reply_srckey" }, { "--reply-key-dst", "reply_dstkey" } },
  icmp = { { "--icmp-type", "icmp_type" }, { "--icmp-code", "icmp_code" }, { "--icmp-id", "icmp_id" } },
  icmpv6 = { { "--icmpv6-type", "icmp_type" }, { "--icmpv6-code", "icmp_code" },
             { "--icmpv6-id", "icmp_id" } },
}

--- conntrack's -o save line of a flow (kind: "new", "update", "destroy" or nil).
function M.save(f, kind)
  local p = {}
  p[1] = SAVE_TYPE[kind] or ""
  local t = f:totable()
  if t.timeout then p[#p + 1] = fmt("-t %d ", t.timeout) end
  if t.status then
    local names = {}
    for _, n in ipairs(SAVE_STATUS) do
      if t.status[n] then names[#names + 1] = n end
    end
    p[#p + 1] = "-u " .. (#names > 0 and concat(names, ",") or "UNSET") .. " "
  end
  if t.secmark then p[#p + 1] = fmt("-c %d ", t.secmark) end
  if t.zone and t.zone ~= 0 then p[#p + 1] = fmt("-w %d ", t.zone) end
  if t.orig_zone and t.orig_zone ~= 0 then p[#p + 1] = fmt("--orig-zone %d ", t.orig_zone) end
  if t.reply_zone and t.reply_zone ~= 0 then p[#p + 1] = fmt("--reply-zone %d ", t.reply_zone) end
  if t.src then p[#p + 1] = "-s " .. t.src .. " " end
  if t.dst then p[#p + 1] = "-d " .. t.dst .. " " end
  if t.reply_src then p[#p + 1] = (t.dnat and "-g " or "-r ") .. t.reply_src .. " " end
  if t.reply_dst then p[#p + 1] = (t.snat and "-n " or "-q ") .. t.reply_dst .. " " end
  local h = type(t.proto) == "string" and require("conntrack.cli.protocols").find(t.proto)
  if h and SAVE_PROTO[h.name] then
    p[#p + 1] = "-p " .. h.name .. " "
    for _, o in ipairs(SAVE_PROTO[h.name]) do
      local v = t[o[2]]
      if v ~= nil then
        if o[3] then v = o[3](v) end
        p[#p + 1] = o[1] .. " " .. tostring(v) .. " "
      end
    end
  else
    p[#p + 1] = fmt("-p %d ", type(t.proto) == "number" and t.proto or 0)
  end
  return (concat(p):gsub(" +$", ""))
end

--- The options of flow:format (and h:write) for the -o flags out (not save or json)
-- printed from place.
function M.format_options(out, place)
  return {
    xml = out.xml or nil,
    extended = out.extended or nil,
    id = out.id or nil,
    ktimestamp = (out.ktimestamp and (place == "list" or place == "event")) or nil,
    labels = (place ~= "delete" and labelmap.loaded()) or nil,
  }
end

--- A function(flow, kind) -> text of a flow for the -o flags out (a set) printed from
-- place (see above); kind is the event kind ("new", ...) or nil. The format options are
-- built once per command.
function M.formatter(out, place)
  if out.save then
    local fixed = place == "delete" and "destroy" or "new"
    return function(f, kind) return M.save(f, place == "event" and kind or fixed) end
  end
  local opts = M.format_options(out, place)
  local when = place == "event" and out.xml and out.timestamp
  return function(f, kind)
    opts.event = kind
    local text = f:format(opts)
    if when then text = M.with_when(text, "flow") end
    return text
  end
end

--- cmd's formatter of flows printed from place, made at its first line and kept in cmd.
function M.command_formatter(cmd, place)
  local formats = cmd.formats
  if not formats then
    formats = {}
    cmd.formats = formats
  end
  local format = formats[place]
  if not format then
    format = M.formatter(cmd.output, place)
    formats[place] = format
  end
  return format
end

--- The text of one flow (see formatter).
function M.flow(out, place, f, kind)
  return M.formatter(out, place)(f, kind)
end

--- conntrack's event timestamp prefix: "[%-.8ld.%-.6ld]\t" (zero-padded microseconds).
function M.event_stamp(t)
  local sec = math.floor(t)
  local usec = math.floor((t - sec) * 1e6 + 0.5)
  if usec >= 1000000 then sec, usec = sec + 1, usec - 1000000 end
  return fmt("[%.8d.%.6d]\t", sec, usec)
end

--- The expectation dump's timestamp prefix: "[%-8ld.%-6ld]\t" (padded with blanks).
function M.expect_stamp(t)
  local sec = math.floor(t)
  local usec = math.floor((t - sec) * 1e6)
  return fmt("[%-8d.%-6d]\t", sec, usec)
end

--- libnetfilter_conntrack's <when> element (NFCT_OF_TIME: -o xml,timestamp) for the local
-- time now, put where its printer puts it: before </flow> for entries, before the flag
-- elements and </meta> for expectations.
function M.with_when(xml, what)
  local t = os.date("*t")
  local when = fmt("<when><hour>%d</hour><min>%02d</min><sec>%02d</sec><wday>%d</wday>" ..
                   "<day>%d</day><month>%d</month><year>%d</year></when>",
                   t.hour, t.min, t.sec, t.wday, t.day, t.month, t.year)
  if what == "expect" then
    local head = xml:match("^(.*)</meta></flow>$")
    if not head then return xml end
    local tail = "</meta></flow>"
    while true do
      local h, flag = head:match("^(.*)(<%a+/>)$")
      if not (h and (flag == "<permanent/>" or flag == "<inactive/>" or flag == "<userspace/>")) then
        break
      end
      head, tail = h, flag .. tail
    end
    return head .. when .. tail
  end
  return (xml:gsub("</flow>$", when .. "</flow>"))
end

--- " [USERSPACE] portid=N[ progname=X]" for an event made through ctnetlink.
function M.userspace(portid, progname)
  if progname then return fmt(" [USERSPACE] portid=%d progname=%s", portid, progname) end
  return fmt(" [USERSPACE] portid=%d", portid)
end

return M
