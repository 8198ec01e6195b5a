# bsdsocket — build, test, bench, install.
# `make deps` installs what a fresh Debian machine lacks; everything else
# assumes it ran.

LUA        ?= lua5.4
LUA_VERSION = 5.4
# pkg-config names: lua5.4 (Debian, Alpine), lua-5.4 (FreeBSD), lua (Homebrew)
LUA_INC    ?= $(shell for p in lua$(LUA_VERSION) lua-$(LUA_VERSION) lua; do \
  pkg-config --cflags $$p 2>/dev/null && exit; done; \
  echo -I/usr/include/lua$(LUA_VERSION))
BUSTED     ?= $(LUA) /usr/bin/busted
CC         ?= cc
OPT        ?= -O2
CFLAGS_ALL  = -std=c99 -D_GNU_SOURCE -fPIC -pthread $(OPT) -g -Wall -Wextra -Werror $(LUA_INC) $(BACKEND_CFLAGS) $(CFLAGS)
LDFLAGS_SO  = -shared -pthread $(LDFLAGS)
# resolver.c: worker threads (-pthread) and dladdr/dlopen (-ldl before glibc 2.34)
LIBS        = -ldl $(BACKEND_LIBS)
# macOS loads modules as bundles whose Lua symbols the interpreter provides;
# the BSDs keep dlopen in libc and have no libdl (use gmake there).
UNAME_S    := $(shell uname -s)
ifeq ($(UNAME_S),Darwin)
LDFLAGS_SO  = -bundle -undefined dynamic_lookup -pthread $(LDFLAGS)
LIBS        = $(BACKEND_LIBS)
endif
ifneq ($(filter FreeBSD OpenBSD NetBSD DragonFly,$(UNAME_S)),)
LIBS        = $(BACKEND_LIBS)
endif

# The poller backend (csrc/poller.h): BACKEND=epoll, kqueue or poll; empty
# is the platform's best (epoll on Linux, kqueue on macOS and the BSDs).
# On Linux, kqueue is libkqueue, built from $(VENDOR) into $(BUILD)/libkqueue
# and linked into core.so. Use a BUILD per backend to keep them side by side.
BACKEND ?=
VENDOR  ?= $(firstword $(wildcard ../shared/vendor ../../shared/vendor) \
             ../shared/vendor)
ifneq ($(filter-out epoll kqueue poll,$(BACKEND)),)
$(error BACKEND=$(BACKEND): expected epoll, kqueue or poll)
endif
BACKEND_CFLAGS = $(if $(BACKEND),\
                   -DBSD_BACKEND_$(shell echo $(BACKEND) | tr a-z A-Z))
LIBKQUEUE_SRC  = $(VENDOR)/libkqueue-2.6.4
LIBKQUEUE      = $(BUILD)/libkqueue/libkqueue.a
LIBKQUEUE_MISSING  = $(LIBKQUEUE_SRC) is missing (BACKEND=kqueue on Linux
LIBKQUEUE_MISSING += builds libkqueue from it; set VENDOR=)
ifeq ($(BACKEND)-$(UNAME_S),kqueue-Linux)
BACKEND_CFLAGS += -I$(LIBKQUEUE_SRC)/include
BACKEND_LIBS    = $(LIBKQUEUE) -Wl,--exclude-libs,ALL
BACKEND_DEPS    = $(LIBKQUEUE)
endif

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

.PHONY: FORCE test-poll test-kqueue layers all deps deps-bench deps-ci test sanitize valgrind fuzz static bench bench-tls demo install uninstall clean rock-check errnames lint constants

all: $(MODULE) $(TLS_MODULE)

$(MODULE): $(SRCS) $(HDRS) $(BUILD)/backend $(BACKEND_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(SRCS) $(LDFLAGS_SO) $(LIBS)

# what BACKEND the build in $(BUILD) has: rewritten (and core.so rebuilt)
# only when it changes
$(BUILD)/backend: FORCE
	@mkdir -p $(dir $@)
	@echo '$(BACKEND)' | cmp -s - $@ || echo '$(BACKEND)' > $@

$(LIBKQUEUE):
	@test -f $(LIBKQUEUE_SRC)/CMakeLists.txt \
	  || { echo "make: $(LIBKQUEUE_MISSING)"; exit 1; }
	@mkdir -p $(dir $@)
	cmake -S $(LIBKQUEUE_SRC) -B $(dir $@) -DCMAKE_BUILD_TYPE=Release \
	  -DENABLE_SHARED=OFF -DENABLE_STATIC=ON > $(dir $@)cmake.log 2>&1 \
	  || { cat $(dir $@)cmake.log; exit 1; }
	cmake --build $(dir $@) -j2 >> $(dir $@)cmake.log 2>&1 \
	  || { cat $(dir $@)cmake.log; exit 1; }

# The whole suite on the other backends, each in a build of its own.
test-poll:
	BSDSOCKET_BUILD=build-poll BSDSOCKET_POLL_NESTED=1 \
	  $(MAKE) test BUILD=build-poll BACKEND=poll

test-kqueue:
	BSDSOCKET_BUILD=build-kqueue BSDSOCKET_POLL_NESTED=1 \
	  $(MAKE) test BUILD=build-kqueue BACKEND=kqueue

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
# fuzz_dns feeds random bytes to the DNS parser of examples/dns_query.lua
# (a Lua line hook makes the parser's lines libFuzzer's coverage).
# Prints the executions reached; a crash leaves build/fuzz/crash-* behind.
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
LUA_LIB    ?= $(shell pkg-config --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))
FUZZ_FLAGS  = -g -O1 -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -D_GNU_SOURCE $(LUA_INC) -Icsrc
# fuzz_tls (with OpenSSL's headers): a peer's bytes to a bsdsocket.tls client
# or server, through the module's whole path, seeded with what openssl
# s_server/s_client and Python's ssl sent it over loopback just before
# (fuzz/tls_record.py). Prints executions and final cov/ft per target.
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
	$(if $(HAVE_OPENSSL),python3 fuzz/tls_record.py build/fuzz/fuzz_tls build/fuzz/tls build/fuzz/corpus-tls)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t for $(FUZZ_TIME) s"; \
	  if ! build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
	       -artifact_prefix=build/fuzz/ build/fuzz/corpus-$$t > build/fuzz/$$t.log 2>&1; then \
	    tail -60 build/fuzz/$$t.log; echo "fuzz_$$t: FAILED (see build/fuzz/$$t.log)"; exit 1; \
	  fi; \
	  echo "fuzz_$$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' build/fuzz/$$t.log | sed 's/Done \([0-9]*\) runs/\1 executions/')," \
	    "$$(grep DONE build/fuzz/$$t.log | grep -o 'cov: [0-9]* ft: [0-9]*')"; \
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
	cppcheck $(CPPCHECK_FLAGS) -DBSD_BACKEND_POLL csrc/poller*.c
	$(if $(wildcard $(LIBKQUEUE_SRC)/include),cppcheck $(CPPCHECK_FLAGS) \
	  -DBSD_BACKEND_KQUEUE -I$(LIBKQUEUE_SRC)/include csrc/poller*.c)
	printf '%s\n' $(STATIC_SRCS) | xargs -P "$$(nproc)" -I{} clang-tidy --quiet {} -- $(TIDY_ARGS)
	for f in csrc/poller*.c; do \
	  clang-tidy --quiet $$f -- $(TIDY_ARGS) -DBSD_BACKEND_POLL || exit 1; done
	$(if $(wildcard $(LIBKQUEUE_SRC)/include),for f in csrc/poller*.c; do \
	  clang-tidy --quiet $$f -- $(TIDY_ARGS) -DBSD_BACKEND_KQUEUE \
	  -I$(LIBKQUEUE_SRC)/include || exit 1; done)
	@echo "static: cppcheck and clang-tidy clean"

# What CI needs beyond `deps`: the static checkers and clang's fuzzer runtime.
DEB_CI = cppcheck clang-tidy clang libclang-rt-14-dev musl-tools
deps-ci: deps
	@missing=""; for p in $(DEB_CI); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Lua 5.5 and musl: interpreters and busted's C modules built from the
# unchanged sources in ../shared/vendor, every output under build/lua55 or
# build/musl. Each dir's bin/ holds `lua` and a `lua5.4` link to it, first in
# PATH, so the child lua5.4 processes the specs start run the Lua under test.
# The interpreters' default paths find build/<dir>/lib, the vendored Lua files
# of luasystem and lua-term, then Debian's pure-Lua busted, penlight,
# luassert, say, cliargs, mediator and dkjson in /usr/share/lua/5.4.
VENDORA  = $(abspath $(VENDOR))
V55      = $(VENDOR)/lua-5.5.0
V54      = $(VENDOR)/lua-5.4.6
XCC      = $(CC)
XLUA     = $(V55)
build/musl/%: XCC = musl-gcc
build/musl/%: XLUA = $(V54)
XFLAGS   = -std=gnu99 -O2 -fPIC -shared -I$(XLUA)
XPATH    = $(abspath build/$*)/lib/?.lua;$(abspath build/$*)/lib/?/init.lua;$\
  $(VENDORA)/luasystem-0.7.1/?.lua;$(VENDORA)/luasystem-0.7.1/?/init.lua;$\
  $(VENDORA)/lua-term-0.08/?.lua;$(VENDORA)/lua-term-0.08/?/init.lua;$\
  /usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;./?.lua
BUSTED_C = lib/lfs.so lib/system/core.so lib/term/core.so
SYSTEM_C = bitflags compat core environment random term time wcwidth
.PRECIOUS: build/%/bin/lua

build/%/bin/lua:
	@test -d "$(VENDOR)" || { echo "needs ../shared/vendor"; exit 1; }
	@mkdir -p $(dir $@)
	$(XCC) -std=c99 -O2 -DLUA_USE_LINUX -DLUA_PATH_DEFAULT='"$(XPATH)"' \
	  -DLUA_CPATH_DEFAULT='"$(abspath build/$*)/lib/?.so;./?.so"' \
	  -o $@ $(XLUA)/onelua.c -Wl,-E -lm -ldl
	ln -sf lua $(dir $@)lua5.4
# a static liblua for the C host of resolver_spec (LUA_LIB below)
build/%/liblua.a: | build/%/bin/lua
	$(XCC) -std=c99 -O2 -DLUA_USE_LINUX -DMAKE_LIB -c -o build/$*/onelua.o \
	  $(XLUA)/onelua.c
	ar rcs $@ build/$*/onelua.o
build/%/lib/lfs.so: | build/%/bin/lua
	@mkdir -p $(dir $@)
	$(XCC) $(XFLAGS) -o $@ $(VENDOR)/luafilesystem-1.9.0/src/lfs.c
build/%/lib/system/core.so: | build/%/bin/lua
	@mkdir -p $(dir $@)
	$(XCC) $(XFLAGS) -o $@ $(SYSTEM_C:%=$(VENDOR)/luasystem-0.7.1/src/%.c)
build/%/lib/term/core.so: | build/%/bin/lua
	@mkdir -p $(dir $@)
	$(XCC) $(XFLAGS) -o $@ $(VENDOR)/lua-term-0.08/core.c

# Debian's penlight and busted assign to loop variables, which 5.5 refuses:
# .ci/lua55compat.lua writes 5.5-ready copies of those files to lib/.
BUSTED_LUA = $(shell cd /usr/share/lua/5.4 && find pl busted luassert say \
  cliargs cliargs.lua busted.lua mediator.lua dkjson.lua -name '*.lua')
build/lua55/lib/.compat: .ci/lua55compat.lua | build/lua55/bin/lua
	@build/lua55/bin/lua .ci/lua55compat.lua /usr/share/lua/5.4 build/lua55/lib \
	  $(BUSTED_LUA)
	touch $@
# What a spec builds (poller_spec's poll backend, resolver_spec's C host)
# uses the Lua under test too: LUA_INC, LUA_LIB and CC go in the environment.
XENV = PATH="$(abspath build/$(1)/bin):$$PATH" BSDSOCKET_BUILD=build/$(1) \
  LUA_INC=-I$(abspath $(2)) \
  LUA_LIB="$(abspath build/$(1)/liblua.a) -Wl,-E -lm -ldl"
.PHONY: check-lua55 check-musl
# The whole suite on Lua 5.5.0, the module and the TLS module built against
# its headers (-Werror), after every tracked .lua file compiles on 5.5.
check-lua55: $(BUSTED_C:%=build/lua55/%) build/lua55/lib/.compat \
  build/lua55/liblua.a
	$(MAKE) BUILD=build/lua55 LUA_INC=-I$(V55) all
	build/lua55/bin/lua .ci/loadall.lua $(shell git ls-files '*.lua')
	$(call XENV,lua55,$(V55)) BUSTED="build/lua55/bin/lua /usr/bin/busted" \
	  JOBS=$(JOBS) SPEC_TIMES=build/lua55/spec-times .ci/specs $(BUSTED_ARGS)

# Lua 5.4.6 and the core module built with musl-gcc -Werror; the demo, then
# the specs except those of bsdsocket.tls (MUSL_SKIP: OpenSSL here is built
# for glibc). Specs of LuaSocket's C parts, cqueues, luv and LuaSec are
# pending: those are built for Debian's Lua only.
MUSL_SKIP = tls tls_faults tls_peers examples_tls
check-musl: $(BUSTED_C:%=build/musl/%) build/musl/liblua.a
	$(MAKE) CC=musl-gcc BUILD=build/musl LUA_INC=-I$(V54) HAVE_OPENSSL= all
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/musl/?.so;;" \
	  build/musl/bin/lua examples/demo.lua
	$(call XENV,musl,$(V54)) CC=musl-gcc \
	  BUSTED="build/musl/bin/lua /usr/bin/busted" JOBS=$(JOBS) \
	  SPEC_TIMES=build/musl/spec-times .ci/specs $(BUSTED_ARGS) \
	  $(filter-out $(MUSL_SKIP:%=spec/%_spec.lua),$(wildcard spec/*_spec.lua))

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

# The module built with the fast system calls turned off (csrc/platform.h
# honours -DBSD_NO_*), so each fallback runs here on real sockets: fcntl
# after socket/socketpair/accept, the SIGPIPE guard, pread+send for
# sendfile, no splice (tcp_proxy copies), sendmsg/recvmsg loops for
# sendmmsg/recvmmsg, getsockname for the family, fcntl on received
# descriptors, memmem's loop, sigwait; and the absent ones (peer
# credentials, SCM_CREDENTIALS, abstract names) as specs see them there.
# tls.so is built as usual (it relies on MSG_NOSIGNAL or SO_NOSIGPIPE).
FALLBACK_FLAGS = -DBSD_NO_ACCEPT4 -DBSD_NO_SOCK_CLOEXEC -DBSD_NO_PIPE2 \
  -DBSD_NO_MSG_NOSIGNAL -DBSD_NO_SENDFILE -DBSD_NO_SPLICE -DBSD_NO_MMSG \
  -DBSD_NO_MSG_CMSG_CLOEXEC -DBSD_NO_SO_DOMAIN -DBSD_NO_SO_PROTOCOL \
  -DBSD_NO_SO_PEERCRED -DBSD_NO_SCM_CREDENTIALS -DBSD_NO_ABSTRACT \
  -DBSD_NO_MEMMEM -DBSD_NO_SIGTIMEDWAIT -DBSD_FALLBACK_BUILD
FALLBACK_SPECS = spec/socket_spec.lua spec/tcp_spec.lua spec/udp_spec.lua \
  spec/unix_spec.lua spec/unix_extras_spec.lua spec/msg_spec.lua \
  spec/mmsg_spec.lua spec/fd_passing_spec.lua spec/zerocopy_spec.lua \
  spec/buffer_spec.lua spec/errors_spec.lua spec/resolver_spec.lua \
  spec/examples_proxy_spec.lua spec/platform_spec.lua
.PHONY: check-fallbacks check-macos check-freebsd
check-fallbacks:
	$(MAKE) BUILD=build-fallback CFLAGS="$(FALLBACK_FLAGS)" \
	  build-fallback/bsdsocket/core.so
	$(if $(HAVE_OPENSSL),$(MAKE) BUILD=build-fallback \
	  build-fallback/bsdsocket/tls.so)
	BSDSOCKET_BUILD=build-fallback BUSTED="$(BUSTED)" JOBS=$(JOBS) \
	  SPEC_TIMES=build-fallback/spec-times .ci/specs $(FALLBACK_SPECS)
	@# sendfile(2) itself with sigwait taking off its SIGPIPE (macOS has
	@# no sigtimedwait)
	$(MAKE) BUILD=build-fallback/nosigtimedwait \
	  CFLAGS="-DBSD_NO_SIGTIMEDWAIT -DBSD_FALLBACK_BUILD" \
	  build-fallback/nosigtimedwait/bsdsocket/core.so
	BSDSOCKET_BUILD=build-fallback/nosigtimedwait BUSTED="$(BUSTED)" \
	  SPEC_TIMES=build-fallback/spec-times .ci/specs \
	  spec/zerocopy_spec.lua spec/platform_spec.lua

# Every csrc/ file compiled (-fsyntax-only -Werror) against macOS's or
# FreeBSD's API surface: .ci/surface/<os>.h, pre-included, defines the OS
# macro, hides what that system lacks and poisons the calls it does not
# have; .ci/surface/include makes <sys/epoll.h> and <sys/sendfile.h> fail.
# macOS's headers show their BSD and POSIX names by default, not GNU's:
# glibc then hides accept4, pipe2, splice, sendmmsg as macOS lacks them.
SURFACE_SRCS = $(SRCS) $(if $(HAVE_OPENSSL),csrc/tls.c)
SURFACE_DEFS_macos = -D_DEFAULT_SOURCE
SURFACE_DEFS_freebsd = -D_GNU_SOURCE
check-macos check-freebsd: check-%:
	@for f in $(SURFACE_SRCS); do \
	  $(CC) -fsyntax-only -std=c99 $(SURFACE_DEFS_$*) -Wall -Wextra -Werror \
	    -I.ci/surface/include \
	    -include .ci/surface/$*.h $(LUA_INC) $$f || exit 1; \
	done; \
	echo "check-$*: $(words $(SURFACE_SRCS)) files compile against the $* surface"

# Regenerate csrc/constants.h and csrc/errnames.h from this platform's headers.
constants:
	sh csrc/genconstants.sh > csrc/constants.h

errnames:
	sh csrc/generrnames.sh > csrc/errnames.h

# luacheck, and C lines within 80 columns (csrc/ and fuzz/; wrap a long
# line by hand, or with clang-format --lines=N:N for code)
lint:
	luacheck -q --std lua54 lua spec examples bench
	@awk 'length > 80 { print FILENAME ":" FNR ": " length " columns"; bad = 1 } \
	  END { if (bad) { print "lint: C lines over 80 columns"; exit 1 } }' \
	  csrc/*.c csrc/*.h fuzz/*.c
	@echo "lint: luacheck clean, C within 80 columns"

clean:
	rm -rf build build-san build-poll build-kqueue build-fallback bench/build bsdsocket csrc/*.o
