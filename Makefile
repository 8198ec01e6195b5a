# bsdsocket — build, test, bench, install.
# `make deps` installs what a fresh Debian machine lacks; everything else
# assumes it ran.

LUA        ?= lua5.4
LUA_VERSION = 5.4
LUA_INC    ?= $(shell pkg-config --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
BUSTED     ?= $(LUA) /usr/bin/busted
CC         ?= cc
OPT        ?= -O2
CFLAGS_ALL  = -std=c99 -D_GNU_SOURCE -fPIC $(OPT) -g -Wall -Wextra -Werror $(LUA_INC) $(CFLAGS)
LDFLAGS_SO  = -shared $(LDFLAGS)

PREFIX     ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHARE  ?= $(PREFIX)/share/lua/$(LUA_VERSION)

SRCS   = $(sort $(wildcard csrc/*.c))
HDRS   = $(wildcard csrc/*.h)
BUILD ?= build
MODULE = $(BUILD)/bsdsocket/core.so

DEB_PACKAGES = lua5.4 liblua5.4-dev lua-busted luarocks lua-check pkg-config valgrind python3 dnsmasq-base curl
DEB_BENCH    = lua-socket lua-luv valgrind

.PHONY: all deps deps-bench test sanitize valgrind bench demo install uninstall clean rock-check errnames lint constants

all: $(MODULE)

$(MODULE): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(SRCS) $(LDFLAGS_SO)

# Installs the Debian packages the build and the specs need, only when missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

deps-bench: deps
	@missing=""; for p in $(DEB_BENCH); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: $(MODULE)
	$(BUSTED) $(BUSTED_ARGS)

# The whole suite against a module built with AddressSanitizer and UBSan.
# The interpreter itself is not instrumented, so the runtime is preloaded.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize:
	$(MAKE) BUILD=build-san OPT="-O1" CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" build-san/bsdsocket/core.so
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	BSDSOCKET_BUILD=build-san $(BUSTED) $(BUSTED_ARGS)

valgrind: $(MODULE)
	valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  --trace-children=no --suppressions=.ci/valgrind.supp --quiet \
	  $(BUSTED) $(BUSTED_ARGS)

# A server and a client talking over loopback.
demo: $(MODULE)
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/demo.lua

bench: $(MODULE)
	$(MAKE) -C bench LUA=$(LUA) MODULE_DIR=$(abspath $(BUILD))

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/bsdsocket $(DESTDIR)$(LUA_SHARE)/bsdsocket
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/bsdsocket/core.so
	install -m 644 lua/bsdsocket.lua $(DESTDIR)$(LUA_SHARE)/bsdsocket.lua
	install -m 644 lua/bsdsocket/*.lua $(DESTDIR)$(LUA_SHARE)/bsdsocket/

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/bsdsocket $(DESTDIR)$(LUA_SHARE)/bsdsocket $(DESTDIR)$(LUA_SHARE)/bsdsocket.lua

# luarocks make into a private tree, then load and use the module from there.
rock-check:
	sh .ci/rock-check

# Regenerate csrc/constants.h and csrc/errnames.h from this platform's headers.
constants:
	sh csrc/genconstants.sh > csrc/constants.h

errnames:
	sh csrc/generrnames.sh > csrc/errnames.h

lint:
	luacheck -q --std lua54 lua spec examples bench

clean:
	rm -rf build build-san bench/build bsdsocket csrc/*.o
