# ct-lua: `make` builds conntrack/core.so and ./ct-lua; `make test` and
# `make demo` install what they need first (make deps). `make install` and
# `make uninstall` take PREFIX and DESTDIR; `make docs` builds the HTML API
# reference into build/docs/.

PKGS      := lua5.4 libmnl libnetfilter_conntrack
CC        ?= cc
CFLAGS    ?= -O2 -g
WARNINGS  := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -pthread $(WARNINGS) $(CPPFLAGS) $(CFLAGS) \
             $(shell pkg-config --cflags $(PKGS))
NL_LIBS    = $(shell pkg-config --libs libmnl libnetfilter_conntrack)
LUA_LIBS   = $(shell pkg-config --libs lua5.4)
# ct-lua holds Lua itself, as Debian's lua5.4 does: one file is the whole product, and
# starting it maps one library fewer and resolves no Lua symbol. (Without the static
# library, from liblua5.4-dev, it links the shared one.)
LUA_STATIC = $(or $(wildcard $(shell pkg-config --variable=libdir lua5.4)/liblua5.4.a),$(LUA_LIBS))
LUA        = lua5.4

MODULE_SRCS := core/module.c core/handle.c core/dump.c core/batch.c core/stats.c \
               core/flow.c core/fields.c core/spec.c core/filter.c core/kernel_filter.c \
               core/labelmap.c core/expect.c core/expect_ops.c core/events.c core/seen.c \
               core/bpf.c core/bpf_run.c core/poll.c core/signals.c core/file.c core/netns.c core/nl.c \
               core/nlvalidate.c core/error.c core/requester.c core/write.c core/print.c \
               core/entry.c core/print_xml.c core/json_print.c core/event_write.c \
               core/save_line.c
MODULE_OBJS := $(MODULE_SRCS:core/%.c=build/%.o)
EMBEDDED    := $(sort $(wildcard lua/*.lua lua/*/*.lua lua/*/*/*.lua)) $(sort $(wildcard scripts/*.lua))

DEB_PACKAGES := build-essential pkg-config libnetfilter-conntrack-dev libmnl-dev \
                liblua5.4-dev lua5.4 lua-busted lua-cjson conntrack nftables iproute2 \
                util-linux socat valgrind lua-check cppcheck lua-luv lua-cqueues \
                lua-socket tmux

.PHONY: all deps test demo valgrind lint clean bench bench-deps install uninstall docs docs-deps \
	check-asan check-valgrind fuzz fuzz-build fuzz-regress fuzz-merge fuzz-deps

all: conntrack/core.so ct-lua

build conntrack:
	mkdir -p $@

build/%.o: core/%.c core/ct.h core/module.h | build
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/main.o: core/embedded.h

conntrack/core.so: $(MODULE_OBJS) | conntrack
	$(CC) -shared $(LDFLAGS) -o $@ $(MODULE_OBJS) $(NL_LIBS) -pthread

build/embedded.c: tools/embed.lua $(EMBEDDED) | build
	$(LUA) tools/embed.lua $@ $(EMBEDDED)

build/embedded.o: build/embedded.c core/embedded.h
	$(CC) $(ALL_CFLAGS) -Icore -c -o $@ $<

# -Wl,-E exports the Lua API so C modules loaded by scripts bind to our Lua.
ct-lua: build/main.o build/embedded.o $(MODULE_OBJS)
	$(CC) -Wl,-E $(LDFLAGS) -o $@ $^ $(LUA_STATIC) $(NL_LIBS) -lm -ldl -pthread

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

# ---- sanitizers and fuzzing ---------------------------------------------------
# check-asan: the whole suite against an ASan + UBSan + LeakSanitizer build of
# core.so and ct-lua, made in a copy of the tree (build/asan/tree) so that every
# spec finds it where it always looks; any report fails it (tools/check-asan).
# check-valgrind: memcheck over the specs that drive core/ in process, plus
# ct-lua over tests/fixtures/exercise.lua (tools/check-valgrind).
check-asan: deps
	tools/check-asan

check-valgrind: deps all
	tools/check-valgrind

# libFuzzer targets (fuzz/fuzz_NAME.c) over core/ built by clang with ASan and
# UBSan, behind a fake kernel (fuzz/harness.h). `make fuzz` runs each for
# FUZZ_SECONDS on its corpus, tests/fuzz-corpus/NAME (new finds go to
# build/fuzz/corpus/NAME, crashes to build/fuzz/artifacts); `make fuzz-merge`
# minimises both into tests/fuzz-corpus; `make fuzz-regress` replays the
# corpora and every kept crash (tests/fuzz-crashes/NAME) without fuzzing.
# FUZZ_TARGETS=dump make fuzz picks targets.
FUZZ_TARGETS  ?= dump entry expect stats events filter cli save_line
FUZZ_SECONDS  ?= 60
FUZZ_CC       ?= clang
FUZZ_PACKAGES := clang libclang-rt-14-dev
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 $(FUZZ_SAN) $(WARNINGS) -Icore \
                 -DCT_SRC='"$(CURDIR)"' $(shell pkg-config --cflags $(PKGS))
FUZZ_OBJS     := $(MODULE_SRCS:core/%.c=build/fuzz/%.o)
.SECONDARY: $(FUZZ_OBJS)

build/fuzz:
	mkdir -p $@

build/fuzz/%.o: core/%.c core/ct.h core/module.h | build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/harness.c fuzz/fakenl.c fuzz/harness.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ fuzz/fuzz_$*.c fuzz/harness.c \
		fuzz/fakenl.c $(FUZZ_OBJS) $(LUA_LIBS) $(NL_LIBS) -lm -pthread

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz run $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	tools/fuzz regress $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	tools/fuzz merge $(FUZZ_TARGETS)

# what the fuzzers need besides the build: clang and its libFuzzer runtime
fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FUZZ_PACKAGES)"

# ---- install / uninstall ---------------------------------------------------
# FHS layout under PREFIX, staged under DESTDIR:
#   $(BINDIR)/ct-lua, $(BINDIR)/ct-conntrack -> ct-lua
#   $(LUA_CMOD_DIR)/conntrack/core.so    (lib/lua/5.4: plain lua5.4's cpath)
#   $(LUA_LMOD_DIR)/conntrack.lua, conntrack/**.lua    (share/lua/5.4)
#   $(MANDIR)/man1/ct-lua.1, $(MANDIR)/man8/ct-conntrack.8
# Nothing named `conntrack` goes into BINDIR unless INSTALL_CONNTRACK_SHADOW=1,
# which adds $(BINDIR)/conntrack -> ct-lua: it then shadows conntrack(8) for
# every PATH that lists BINDIR first. It never replaces a file that is not
# that symlink. The LuaRocks build (ct-lua-scm-1.rockspec) sets BINDIR,
# LUA_CMOD_DIR, LUA_LMOD_DIR and MANDIR to its own tree.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LUA_CMOD_DIR ?= $(PREFIX)/lib/lua/5.4
LUA_LMOD_DIR ?= $(PREFIX)/share/lua/5.4
MANDIR       ?= $(PREFIX)/share/man
INSTALL_CONNTRACK_SHADOW ?= 0
INSTALL      ?= install

# Module sources, relative to lua/: every *.lua at any depth (conntrack/cli/...).
LUA_SOURCES   = $(sort $(patsubst lua/%,%,$(shell find lua -name '*.lua' -type f)))
LUA_SUBDIRS   = $(sort $(patsubst lua/%,%,$(shell find lua -mindepth 1 -type d)))
MAN_PAGES    := man/ct-lua.1 man/ct-conntrack.8

install: all
	@link=$(DESTDIR)$(BINDIR)/conntrack; \
	if [ "$(INSTALL_CONNTRACK_SHADOW)" = 1 ] && [ -e "$$link" -o -L "$$link" ] && \
	   [ "$$(readlink "$$link")" != ct-lua ]; then \
		echo "$$link exists and is not a symlink to ct-lua; not replacing it" >&2; exit 1; \
	fi
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUA_CMOD_DIR)/conntrack \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 ct-lua $(DESTDIR)$(BINDIR)/ct-lua
	ln -sfn ct-lua $(DESTDIR)$(BINDIR)/ct-conntrack
	$(INSTALL) -m 0644 conntrack/core.so $(DESTDIR)$(LUA_CMOD_DIR)/conntrack/core.so
	@set -e; for f in $(LUA_SOURCES); do \
		echo "$(INSTALL) -D -m 0644 lua/$$f $(DESTDIR)$(LUA_LMOD_DIR)/$$f"; \
		$(INSTALL) -D -m 0644 lua/$$f $(DESTDIR)$(LUA_LMOD_DIR)/$$f; \
	done
	$(INSTALL) -m 0644 man/ct-lua.1 $(DESTDIR)$(MANDIR)/man1/ct-lua.1
	$(INSTALL) -m 0644 man/ct-conntrack.8 $(DESTDIR)$(MANDIR)/man8/ct-conntrack.8
	@if [ "$(INSTALL_CONNTRACK_SHADOW)" = 1 ]; then \
		echo "ln -sfn ct-lua $(DESTDIR)$(BINDIR)/conntrack"; \
		ln -sfn ct-lua $(DESTDIR)$(BINDIR)/conntrack; \
	fi

# Removes what install installs (bin/conntrack only when it is our symlink),
# then the package's own directories if they are left empty; the shared
# directories (bin, lib/lua/5.4, share/man/man1, ...) stay.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ct-lua $(DESTDIR)$(BINDIR)/ct-conntrack
	@link=$(DESTDIR)$(BINDIR)/conntrack; \
	if [ -L "$$link" ] && [ "$$(readlink "$$link")" = ct-lua ]; then \
		echo "rm -f $$link"; rm -f "$$link"; \
	fi
	rm -f $(DESTDIR)$(LUA_CMOD_DIR)/conntrack/core.so
	rmdir $(DESTDIR)$(LUA_CMOD_DIR)/conntrack 2>/dev/null || true
	rm -f $(addprefix $(DESTDIR)$(LUA_LMOD_DIR)/,$(LUA_SOURCES))
	cd $(DESTDIR)$(LUA_LMOD_DIR) 2>/dev/null && \
		for d in $$(printf '%s\n' $(LUA_SUBDIRS) | sort -r); do rmdir "$$d" 2>/dev/null; done; true
	rm -f $(DESTDIR)$(MANDIR)/man1/ct-lua.1 $(DESTDIR)$(MANDIR)/man8/ct-conntrack.8

# ---- docs --------------------------------------------------------------------
# The HTML API reference (LDoc: Debian lua-ldoc, run by lua5.1, with
# lua-discount for the Markdown) from config.ld. doc/api.luadoc documents the
# C module (kept apart from core/*.c); the field list is generated from
# conntrack.fields by doc/fields.lua, so it cannot drift; lua/conntrack.lua
# and lua/conntrack/json.lua carry their own comments. doc/coverage.lua fails
# the build when a function or method has no entry (or an entry names nothing),
# and so do LDoc's warnings and groff's about the man pages. Not part of
# `make test`; installs its Debian packages first, like make test.
DOC_PACKAGES := lua-ldoc lua-discount lua5.1 groff-base

docs: docs-deps all
	./ct-lua doc/fields.lua build/fields.luadoc
	./ct-lua doc/coverage.lua doc/api.luadoc build/fields.luadoc lua/conntrack.lua
	@rm -rf build/docs
	@ldoc . >build/ldoc.log 2>&1 || { cat build/ldoc.log; exit 1; }
	@if grep -v -e '^reading configuration' -e '^found master module' \
		-e '^\*\*\*closing section' -e '^output written to' build/ldoc.log; then \
		echo "ldoc: the warnings above must be fixed" >&2; exit 1; fi
	@for page in $(MAN_PAGES); do \
		groff -man -Tutf8 -ww -z $$page 2>build/groff.log; \
		if [ -s build/groff.log ]; then cat build/groff.log; exit 1; fi; \
	done
	@echo "API reference: build/docs/index.html"

# what docs needs besides the build: the deps target with another list
docs-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DOC_PACKAGES)"

# ct-lua's conntrack against /usr/sbin/conntrack, side by side, in a private
# namespace (bench/run); never part of make test. BENCH_SIZES=10000
# BENCH_PAIRS=3 make bench is a quick pass. Appends to bench/RESULTS.md.
bench: bench-deps all build/rawdump
	BENCH_COMMAND="make bench" bench/run

# deps plus what only the benchmark uses: /usr/bin/time (GNU time)
bench-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEB_PACKAGES) time"

build/rawdump: bench/rawdump.c | build
	$(CC) -std=c11 -D_GNU_SOURCE $(WARNINGS) $(CFLAGS) -o $@ $<

clean:
	rm -rf build conntrack ct-lua
