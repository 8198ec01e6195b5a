# bsdsocket — build, test, bench, install.
# `make deps` installs what a fresh Debian machine lacks; everything else
# assumes it ran.

LUA        ?= lua5.4
LUA_VERSION = 5.4
LUA_INC    ?= $(shell pkg-config --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
BUSTED     ?= $(LUA) /usr/bin/busted
CC         ?= cc
OPT        ?= -O2
CFLAGS_ALL  = -std=c99 -D_GNU_SOURCE -fPIC -pthread $(OPT) -g -Wall -Wextra -Werror $(LUA_INC) $(CFLAGS)
LDFLAGS_SO  = -shared -pthread $(LDFLAGS)
# resolver.c: worker threads (-pthread) and dladdr/dlopen (-ldl before glibc 2.34)
LIBS        = -ldl

PREFIX     ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHARE  ?= $(PREFIX)/share/lua/$(LUA_VERSION)

SRCS   = $(sort $(filter-out csrc/tls.c,$(wildcard csrc/*.c)))
HDRS   = $(wildcard csrc/*.h)
BUILD ?= build
MODULE = $(BUILD)/bsdsocket/core.so

# bsdsocket.tls (csrc/tls.c, OpenSSL 3) is built next to the core when
# OpenSSL's headers are there (`make deps` installs them); the core never
# needs them. It reaches the core through the bsd_capi table only.
OPENSSL_INC ?= /usr/include
HAVE_OPENSSL := $(wildcard $(OPENSSL_INC)/openssl/ssl.h)
TLS_MODULE = $(if $(HAVE_OPENSSL),$(BUILD)/bsdsocket/tls.so)
TLS_LIBS  ?= -lssl -lcrypto

DEB_PACKAGES = lua5.4 liblua5.4-dev lua-busted luarocks lua-check pkg-config valgrind python3 dnsmasq-base curl lua-cqueues libssl-dev openssl netcat-openbsd
DEB_BENCH    = lua-socket lua-luv valgrind nginx-light wrk
# bsdsocket.luasocket's specs: LuaSocket's pure-Lua modules (socket.http,
# ltn12, mime), the real cqueues, luv and LuaSec, openssl for a test
# certificate, ip and unshare for LuaSocket's suite in a private namespace
DEB_INTEROP  = lua-socket lua-sec lua-cqueues lua-luv openssl iproute2 util-linux

.PHONY: layers all deps deps-bench deps-ci test sanitize valgrind fuzz static bench bench-tls demo install uninstall clean rock-check errnames lint constants

all: $(MODULE) $(TLS_MODULE)

$(MODULE): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(SRCS) $(LDFLAGS_SO) $(LIBS)

$(BUILD)/bsdsocket/tls.so: csrc/tls.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ csrc/tls.c $(LDFLAGS_SO) $(TLS_LIBS)

# Installs the Debian packages the build and the specs need, only when missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES) $(DEB_INTEROP); do \
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

# .ci/specs runs the spec files side by side (JOBS at a time; the files of
# spec/alone.txt alone, first) and prints busted's totals line. One file:
# `make test SPECS=spec/x_spec.lua`, or `lua5.4 /usr/bin/busted spec/x_spec.lua`.
# BUSTED_ARGS: busted options (--opt=value) or spec files, as before.
SPECS ?=
JOBS  ?= 6
RUN_SPECS = BUSTED="$(BUSTED)" JOBS=$(JOBS) .ci/specs
test: $(MODULE) $(TLS_MODULE) layers
	$(RUN_SPECS) $(BUSTED_ARGS) $(SPECS)

# The C files call each other one way (util <- errors <- addr <- socket <-
# {options, msg, poller, tls} <- core): a call against the grain fails.
layers:
	$(LUA) .ci/layers.lua

# The whole suite against a module built with AddressSanitizer and UBSan.
# The interpreter itself is not instrumented, so the runtime is preloaded.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# Only lua5.4 processes get the runtime: build-san/bin/lua5.4 (first in PATH,
# so child lua5.4 processes of the specs use it too) preloads libasan and
# .ci/unpreload.c, which drops LD_PRELOAD again, so curl, python3 and the
# shell run without ASan (curl deadlocks under it). exec -a keeps argv[0] on
# the wrapper, so an example that re-runs arg[-1] gets the runtime too.
REAL_LUA := $(shell command -v $(LUA))
sanitize:
	$(MAKE) BUILD=build-san OPT="-O1" CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" build-san/bsdsocket/core.so \
	  $(if $(HAVE_OPENSSL),build-san/bsdsocket/tls.so)
	@mkdir -p build-san/bin
	$(CC) -shared -fPIC -o build-san/unpreload.so .ci/unpreload.c
	printf '#!/bin/bash\nLD_PRELOAD="%s:%s$${LD_PRELOAD:+:$$LD_PRELOAD}" exec -a "$$0" %s "$$@"\n' \
	  "$$($(CC) -print-file-name=libasan.so)" "$(abspath build-san/unpreload.so)" "$(REAL_LUA)" \
	  > build-san/bin/$(notdir $(LUA))
	chmod +x build-san/bin/$(notdir $(LUA))
	PATH="$(abspath build-san/bin):$$PATH" BSDSOCKET_SANITIZE=1 \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	BSDSOCKET_BUILD=build-san SPEC_TIMES=build-san/spec-times $(RUN_SPECS) $(BUSTED_ARGS) $(SPECS)

# memcheck over the spec suite: invalid accesses, uninitialised values and
# definite leaks fail it (exit 99). .ci/valgrind.supp silences Lua, busted and
# libc noise only, never a bsdsocket frame. Child processes the specs start
# run natively (--trace-children=no). VALGRIND_SPECS picks spec files (empty:
# the whole suite); BSDSOCKET_LEAK_N scales leaks_spec's 100,000 down. One
# valgrind per spec file, VALGRIND_JOBS at a time (memcheck is CPU-bound).
VALGRIND_SPECS ?=
VALGRIND_LEAK_N ?= 5000
VALGRIND_JOBS ?= 2
VALGRIND = valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  --trace-children=no --suppressions=.ci/valgrind.supp --quiet
valgrind: $(MODULE) $(TLS_MODULE)
	BSDSOCKET_LEAK_N=$(VALGRIND_LEAK_N) BSDSOCKET_VALGRIND=1 SPEC_TIMES=$(BUILD)/valgrind-times \
	BUSTED="$(VALGRIND) $(BUSTED)" JOBS=$(VALGRIND_JOBS) SPEC_TIMEOUT=1800 \
	  .ci/specs $(BUSTED_ARGS) $(VALGRIND_SPECS)

# libFuzzer targets (clang -fsanitize=fuzzer with ASan and UBSan), each run
# for FUZZ_TIME seconds: fuzz_addr turns fuzzed strings and integers into
# addresses, resolver hints and conversions through the module's Lua API;
# fuzz_dns feeds random bytes to the DNS parser of examples/dns_query.lua.
# Prints the executions reached; a crash leaves build/fuzz/crash-* behind.
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
LUA_LIB    ?= $(shell pkg-config --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))
FUZZ_FLAGS  = -g -O1 -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -D_GNU_SOURCE $(LUA_INC) -Icsrc
# fuzz_tls (with OpenSSL's headers): random server bytes to a bsdsocket.tls
# client handshake, through the module's whole path.
FUZZ_TARGETS = addr dns $(if $(HAVE_OPENSSL),tls)

build/fuzz/fuzz_tls: fuzz/fuzz_tls.c csrc/tls.c $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< csrc/tls.c $(SRCS) $(LUA_LIB) $(TLS_LIBS) -ldl -lm

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(SRCS) $(LUA_LIB) $(LIBS) -lm

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@mkdir -p $(FUZZ_TARGETS:%=build/fuzz/corpus-%)
	$(LUA) fuzz/dns_seeds.lua build/fuzz/corpus-dns
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t for $(FUZZ_TIME) s"; \
	  if ! build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
	       -artifact_prefix=build/fuzz/ build/fuzz/corpus-$$t > build/fuzz/$$t.log 2>&1; then \
	    tail -60 build/fuzz/$$t.log; echo "fuzz_$$t: FAILED (see build/fuzz/$$t.log)"; exit 1; \
	  fi; \
	  echo "fuzz_$$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' build/fuzz/$$t.log | sed 's/Done \([0-9]*\) runs/\1 executions/')"; \
	done

# Static checks on csrc/: cppcheck and clang-tidy (.clang-tidy), both in the
# epoll and the poll(2) configuration; any finding fails. .ci/lua_noreturn.h
# tells the analyzers that luaL_error and friends do not return.
CPPCHECK_FLAGS = --enable=warning,style,performance,portability --error-exitcode=1 --std=c99 \
                 -D_GNU_SOURCE -D__linux__ -Icsrc --include=.ci/lua_noreturn.h --inline-suppr --quiet
TIDY_ARGS = -std=c99 -D_GNU_SOURCE $(LUA_INC) -Icsrc -include .ci/lua_noreturn.h
STATIC_SRCS = $(SRCS) $(if $(HAVE_OPENSSL),csrc/tls.c)
static:
	cppcheck $(CPPCHECK_FLAGS) $(STATIC_SRCS)
	cppcheck $(CPPCHECK_FLAGS) -DBSD_USE_POLL csrc/poller.c
	printf '%s\n' $(STATIC_SRCS) | xargs -P "$$(nproc)" -I{} clang-tidy --quiet {} -- $(TIDY_ARGS)
	clang-tidy --quiet csrc/poller.c -- $(TIDY_ARGS) -DBSD_USE_POLL
	@echo "static: cppcheck and clang-tidy clean"

# What CI needs beyond `deps`: the static checkers and clang's fuzzer runtime.
DEB_CI = cppcheck clang-tidy clang libclang-rt-14-dev
deps-ci: deps
	@missing=""; for p in $(DEB_CI); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# A server and a client talking over loopback.
demo: $(MODULE)
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/demo.lua

bench: $(MODULE) $(TLS_MODULE)
	$(MAKE) -C bench LUA=$(LUA) MODULE_DIR=$(abspath $(BUILD))

# the TLS benchmarks only (bench/tls/run.sh)
bench-tls: $(MODULE) $(TLS_MODULE)
	$(MAKE) -C bench tls LUA=$(LUA) MODULE_DIR=$(abspath $(BUILD))

install: $(MODULE) $(TLS_MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/bsdsocket $(DESTDIR)$(LUA_SHARE)/bsdsocket
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/bsdsocket/core.so
	$(if $(TLS_MODULE),install -m 755 $(TLS_MODULE) $(DESTDIR)$(LUA_LIBDIR)/bsdsocket/tls.so)
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
