# ct-lua: `make` builds conntrack/core.so and ./ct-lua; `make test` and
# `make demo` install what they need first (make deps).

PKGS      := lua5.4 libmnl libnetfilter_conntrack
CC        ?= cc
CFLAGS    ?= -O2 -g
WARNINGS  := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -pthread $(WARNINGS) $(CFLAGS) \
             $(shell pkg-config --cflags $(PKGS))
NL_LIBS    = $(shell pkg-config --libs libmnl libnetfilter_conntrack)
LUA_LIBS   = $(shell pkg-config --libs lua5.4)

MODULE_SRCS := core/module.c core/handle.c core/dump.c core/batch.c core/stats.c \
               core/flow.c core/fields.c core/spec.c core/filter.c core/labelmap.c \
               core/expect.c core/expect_ops.c core/events.c core/seen.c core/bpf.c \
               core/poll.c core/signals.c core/netns.c core/nl.c core/error.c
MODULE_OBJS := $(MODULE_SRCS:core/%.c=build/%.o)
EMBEDDED    := $(sort $(wildcard lua/*.lua lua/*/*.lua)) $(sort $(wildcard scripts/*.lua))

DEB_PACKAGES := build-essential pkg-config libnetfilter-conntrack-dev libmnl-dev \
                liblua5.4-dev lua5.4 lua-busted lua-cjson conntrack nftables iproute2 \
                util-linux socat valgrind lua-check cppcheck lua-luv lua-cqueues

.PHONY: all deps test demo valgrind lint clean

all: conntrack/core.so ct-lua

build conntrack:
	mkdir -p $@

build/%.o: core/%.c core/ct.h core/module.h | build
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/main.o: core/embedded.h

conntrack/core.so: $(MODULE_OBJS) | conntrack
	$(CC) -shared -o $@ $(MODULE_OBJS) $(NL_LIBS) -pthread

build/embedded.c: tools/embed.lua $(EMBEDDED) | build
	lua5.4 tools/embed.lua $@ $(EMBEDDED)

build/embedded.o: build/embedded.c core/embedded.h
	$(CC) $(ALL_CFLAGS) -Icore -c -o $@ $<

# -Wl,-E exports the Lua API so C modules loaded by scripts bind to our Lua.
ct-lua: build/main.o build/embedded.o $(MODULE_OBJS)
	$(CC) -Wl,-E -o $@ $^ $(LUA_LIBS) $(NL_LIBS) -lm -ldl -pthread

# Installs the Debian packages that are missing (as root), or says how.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "missing packages; run as root: apt-get install $$missing" >&2; exit 1; \
	fi

test: deps all
	tests/run

demo: deps all
	tools/demo.sh

# static checks: luacheck over the Lua, cppcheck over the C
lint: deps
	luacheck lua scripts examples tests
	cppcheck --enable=warning,style,performance,portability --std=c11 --quiet \
		--error-exitcode=1 --inline-suppr -Icore core

# memcheck over a script that goes through every allocating path
valgrind: all
	unshare -rn valgrind --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect,possible \
		./ct-lua tests/fixtures/exercise.lua

clean:
	rm -rf build conntrack ct-lua
