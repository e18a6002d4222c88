#!/bin/sh
# The long soak (issue 8, item 4): tests/soak_spec.lua run for minutes instead of the
# 24 seconds that `make test` gives it. Real traffic to a peer namespace, ctnetlink churn,
# an events listener (a default buffer and an 8 KiB one) and periodic dumps, in a private
# network namespace like every spec; at the end it prints what was made, received and
# lost, and the RSS and descriptor floors of the listener and the dumper over the first
# and the second half, and fails if a floor grew or an event went unaccounted for.
#
#   tools/soak.sh [SECONDS]     default 600 (or $SOAK_SECONDS); not part of make test
cd "$(dirname "$0")/.." || exit 2
seconds=${1:-${SOAK_SECONDS:-600}}
case $seconds in
	''|*[!0-9]*) echo "usage: tools/soak.sh [SECONDS]" >&2; exit 2 ;;
esac
make -s all || exit 2
echo "soak: $seconds s; the summary follows the run"
SOAK_SECONDS=$seconds exec tests/run tests/soak_spec.lua
