#!/bin/sh
# Captures real ctnetlink replies and events (fuzz/seeds.lua under the
# fuzz/capture.c shim) in a private network namespace and writes them as
# seeds: tests/fuzz-corpus/{dump,expect,stats,events}/seed-*. The host's
# table is never touched. Run from the top of the tree after `make`.
set -eu
if [ -z "${CT_SEEDS_INNER:-}" ]; then
	CT_SEEDS_INNER=1 exec unshare -rn "$0" "$@"
fi
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -shared -fPIC -O2 -o "$tmp/capture.so" fuzz/capture.c -ldl
printf '0 blue\n1 green\n5 red\n' >"$tmp/connlabel.conf"
run() {	# run STEP [capture]
	if [ "${2:-}" = capture ]; then
		mkdir -p "$tmp/$1"
		CT_CAPTURE_DIR="$tmp/$1" LD_PRELOAD="$tmp/capture.so" ./ct-lua fuzz/seeds.lua "$1" "$tmp/connlabel.conf"
	else
		./ct-lua fuzz/seeds.lua "$1" "$tmp/connlabel.conf"
	fi
}
run setup
run expect
for step in dump get update expect_dump expect_get stats expect_stats count; do
	run "$step" capture
done
mkdir -p "$tmp/events"
CT_CAPTURE_DIR="$tmp/events" LD_PRELOAD="$tmp/capture.so" ./ct-lua fuzz/seeds.lua events \
	"$tmp/connlabel.conf" >"$tmp/listening" &
while ! grep -q listening "$tmp/listening"; do sleep 0.1; done
run churn
wait

# seed TARGET NAME SELECTOR STEP: the selector byte, then the step's replies
# in request order, each ended by FAKENL_END on its last datagram
seed() {
	mkdir -p "tests/fuzz-corpus/$1"
	lua5.4 - "tests/fuzz-corpus/$1/seed-$2" "$3" "$tmp/$4"/* <<'LUA'
local out = { string.char(tonumber(arg[2])) }
for i = 3, #arg do
  local data = assert(io.open(arg[i], "rb")):read("a")
  local pos, last = 1, nil
  local parts = {}
  while pos + 2 <= #data do
    local len = data:byte(pos + 1) | data:byte(pos + 2) << 8
    parts[#parts + 1] = { data:sub(pos + 1, pos + 2), data:sub(pos + 3, pos + 2 + len) }
    pos = pos + 3 + len
  end
  for j, p in ipairs(parts) do
    out[#out + 1] = string.char(j == #parts and 1 or 0) .. p[1] .. p[2]
  end
end
local f = assert(io.open(arg[1], "wb"))
f:write(table.concat(out))
f:close()
LUA
}
for sel in 0 1 2 10 6; do seed dump "dump-$sel" "$sel" dump; done
seed dump get 3 get
seed dump update 5 update
seed expect dump 0 expect_dump
seed expect dump-filter 1 expect_dump
seed expect get 2 expect_get
seed stats stats 0 stats
seed stats expect-stats 1 expect_stats
seed stats count 2 count
for sel in 0 1 3 4 8 16 64 131; do seed events "events-$sel" "$sel" events; done
ls -l tests/fuzz-corpus/*/seed-* | awk '{ print $5, $9 }'
