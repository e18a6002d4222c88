#!/bin/sh
# make demo: real TCP and UDP traffic between two private network namespaces,
# then the table as ct-lua sees it. Works as root and as an ordinary user;
# the host's own conntrack table is never touched.
set -eu
cd "$(dirname "$0")/.."

if [ "${CT_LUA_DEMO_NS:-}" != 1 ]; then
	# a private network namespace (and user namespace, so no root is needed)
	CT_LUA_DEMO_NS=1 exec unshare -rn "$0"
fi

peer=
servers=
cleanup() { kill $servers $peer 2>/dev/null || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a peer namespace at 10.7.0.2, joined by a veth pair"
unshare -n sleep 600 & peer=$!
sleep 0.2
ip link add ctl0 type veth peer name ctl1 netns "/proc/$peer/ns/net"
ip link set lo up
ip addr add 10.7.0.1/24 dev ctl0 && ip link set ctl0 up
nsenter -t "$peer" -n sh -c 'ip link set lo up; ip addr add 10.7.0.2/24 dev ctl1; ip link set ctl1 up'

step "tracking on: an nft rule with a ct expression, counters and timestamps"
echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct
echo 1 > /proc/sys/net/netfilter/nf_conntrack_timestamp
nft -f - <<'NFT'
table inet demo {
  chain out {
    type filter hook output priority 0;
    ct state new counter
  }
}
NFT

step "traffic: 3 TCP connections (port 80, 443, 8080) and 2 UDP exchanges (port 53)"
for port in 80 443 8080; do
	nsenter -t "$peer" -n socat -T3 "TCP-LISTEN:$port,reuseaddr" SYSTEM:'read l; echo hello' &
	servers="$servers $!"
done
nsenter -t "$peer" -n socat -T3 UDP-RECVFROM:53,reuseaddr,fork SYSTEM:'read l; echo answer' &
servers="$servers $!"
sleep 0.3
for port in 80 443 8080; do echo hi | socat -T3 - "TCP:10.7.0.2:$port" >/dev/null; done
for i in 1 2; do echo query | socat -T1 - UDP:10.7.0.2:53 >/dev/null; done

step "the table through the Lua API (ct-lua -e)"
./ct-lua -e '
local conntrack = require "conntrack"
local h = assert(conntrack.open())
local listed = 0
for f in h:dump() do
  listed = listed + 1
  print(string.format("%-5s %-12s %-10s:%-5s -> %-10s:%-5s %5d bytes  %s",
    f.proto, f.state or "", f.src, f.sport, f.dst, f.dport,
    (f.bytes or 0) + (f.reply_bytes or 0), f.status.ASSURED and "assured" or ""))
end
print(("%d entries listed; the kernel counts %d, of at most %d"):format(listed, h:count()))'

step "only TCP to port 443, as conntrack -L prints it (tostring of a flow)"
./ct-lua -e '
for f in assert(require("conntrack").open()):dump{ proto = "tcp", dport = 443 } do print(f) end'

step "the bundled summary script: ct-lua summary"
./ct-lua summary

step "and conntrack(8) on the same table, for comparison"
conntrack -L 2>&1
