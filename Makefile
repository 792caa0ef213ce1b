# crier: crierd (the daemon), crier-sim (provider simulator), crierctl (operator CLI),
# crier-audit (keeps receipts, replies and job events in SQLite or PostgreSQL).
#   make            build everything into build/
#   make test       install missing packages, build, run unit and integration tests
#   make run        install missing runtime packages, build, run the demo broadcast
#   make demo-up    leave the demo's redis-server, crier-sim and crierd running (.demo/)
#   make demo-down  stop what demo-up started
#   make bench      run the benchmark
#   SANITIZE=address,undefined   build with sanitizers;  WERROR=1   warnings are errors

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
PYTHON  ?= /usr/bin/python3

CC      ?= cc
PKG_CONFIG ?= pkg-config
PKGS    := libuv hiredis libcurl libcjson openssl libjwt uuid libsystemd

WARN    := -Wall -Wextra -Wpedantic -Wstrict-prototypes -Wmissing-prototypes \
           -Wwrite-strings -Wformat=2 -Wvla -fno-common -Wno-format-nonliteral
CSTD    := -std=c11 -D_GNU_SOURCE
OPT     ?= -O2 -g
ifdef WERROR
WARN    += -Werror
endif
ifdef SANITIZE
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDSAN   := -fsanitize=$(SANITIZE)
BUILD   ?= build-san
else
BUILD   ?= build
endif

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# SQL client libraries: crier-audit and crierctl only
SQL_PKGS   := sqlite3 libpq
SQL_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(SQL_PKGS) 2>/dev/null)
SQL_LIBS   := $(shell $(PKG_CONFIG) --libs $(SQL_PKGS) 2>/dev/null)
CPPFLAGS += -Iinclude -Idaemon -Iaudit -MMD -MP
CFLAGS   += $(CSTD) $(OPT) $(WARN) $(PKG_CFLAGS) $(SQL_CFLAGS)
LDFLAGS  += $(LDSAN)
LDLIBS   += $(PKG_LIBS) -lhttp_parser -lcsv -lm

COMMON_SRC := $(wildcard common/*.c)
CORE_SRC   := $(filter-out daemon/main.c,$(wildcard daemon/*.c)) $(wildcard workers/*.c)
SIM_SRC    := $(wildcard sim/*.c)
CLI_SRC    := $(wildcard cli/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)
AUDIT_SRC  := $(filter-out audit/main.c,$(wildcard audit/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
COMMON_OBJ := $(call obj,$(COMMON_SRC))
# the dashboard's page, style and script, built into the binary as C arrays
ASSETS     := $(wildcard dashboard/*.html dashboard/*.css dashboard/*.js)
ASSETS_OBJ := $(BUILD)/gen/assets.o
CORE_OBJ   := $(call obj,$(CORE_SRC)) $(ASSETS_OBJ)
AUDIT_OBJ  := $(call obj,$(AUDIT_SRC))

CRIERD   := $(BUILD)/crierd
CRIERSIM := $(BUILD)/crier-sim
CRIERCTL := $(BUILD)/crierctl
UNIT     := $(BUILD)/crier-unit
AUDIT    := $(BUILD)/crier-audit
BINS     := $(CRIERD) $(CRIERSIM) $(if $(CLI_SRC),$(CRIERCTL)) $(AUDIT) $(UNIT)

.PHONY: all deps deps-test deps-bench test unit integration run demo-up demo-down bench install \
        uninstall clean format fuzz fuzz-run
all: $(BINS)

# Packages by purpose (scripts/install-deps.sh): `run` only what building and
# running needs; the tests' and the benchmark's tools on top for those targets.
deps:
	@sh scripts/install-deps.sh run

deps-test:
	@sh scripts/install-deps.sh test

deps-bench:
	@sh scripts/install-deps.sh bench

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/assets.c: $(ASSETS) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh $(ASSETS) > $@.tmp && mv $@.tmp $@

$(ASSETS_OBJ): $(BUILD)/gen/assets.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libcrier.a: $(COMMON_OBJ) $(CORE_OBJ)
	$(AR) rcs $@ $^

$(CRIERD): $(call obj,daemon/main.c) $(BUILD)/libcrier.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(CRIERSIM): $(call obj,$(SIM_SRC)) $(BUILD)/libcrier.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lnghttp2

$(CRIERCTL): $(call obj,$(CLI_SRC)) $(AUDIT_OBJ) $(BUILD)/libcrier.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SQL_LIBS)

$(AUDIT): $(call obj,audit/main.c) $(AUDIT_OBJ) $(BUILD)/libcrier.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SQL_LIBS)

$(UNIT): $(call obj,$(UNIT_SRC)) $(AUDIT_OBJ) $(BUILD)/libcrier.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SQL_LIBS)

# The whole suite: unit tests, then integration tests against real redis-server
# and crier-sim; ends with "N passed, N failed".
test: deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=5
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run.sh

unit: all
	$(UNIT)

run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh scripts/demo.sh

# The demo left running for trying things by hand: state (config, logs, pids)
# in DEMO_DIR; `make demo-down` stops it.
DEMO_DIR ?= .demo
demo-up: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh scripts/demo.sh up --dir $(DEMO_DIR)

demo-down:
	@BUILD=$(BUILD) sh scripts/demo.sh down --dir $(DEMO_DIR)

bench: deps-bench
	@$(MAKE) --no-print-directory all $(BUILD)/http_bare $(BUILD)/crier-seed
	@BUILD=$(BUILD) sh bench/run.sh

# The benchmark's tools: the bare libcurl baseline and the pipelined subscriber seeder.
$(BUILD)/http_bare: bench/http_bare.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) $(WARN) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(PKG_LIBS)

$(BUILD)/crier-seed: bench/seed.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) $(WARN) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(PKG_LIBS)

# Fuzz targets (fuzz/fuzz_*.c, see fuzz/targets.h). `make fuzz` builds a corpus
# replay driver per target with $(CC) and, when clang is installed, a libFuzzer
# binary with AddressSanitizer and UndefinedBehaviorSanitizer; `make fuzz-run`
# replays fuzz/corpus/<target> and then fuzzes each target for FUZZ_SECONDS (new
# inputs go to $(BUILD)/fuzz/work-<target>). Any sanitizer report fails the run:
# nothing recovers (-fno-sanitize-recover=all, halt_on_error), the exit status
# is not trusted alone (a log with a report fails too), and the report is printed.
FUZZ_SRC     := $(wildcard fuzz/fuzz_*.c)
FUZZ_NAMES   := $(patsubst fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 10
CLANG        ?= $(shell command -v clang 2>/dev/null)
FUZZ_STUBS   := tests/unit/test_webhooks_clock.c
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_ENV      := UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
SAN_REPORT   := runtime error|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: UndefinedBehaviorSanitizer

$(BUILD)/fuzz/replay-%: fuzz/fuzz_%.c fuzz/replay.c fuzz/targets.h $(BUILD)/libcrier.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< fuzz/replay.c $(FUZZ_STUBS) $(BUILD)/libcrier.a $(LDLIBS)

$(BUILD)/fuzz/clang/libcrier.a: $(COMMON_SRC) $(CORE_SRC)
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz/clang CC=$(CLANG) SANITIZE= \
		OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" $@

$(BUILD)/fuzz/libfuzzer-%: fuzz/fuzz_%.c fuzz/targets.h $(BUILD)/fuzz/clang/libcrier.a
	$(CLANG) $(CPPFLAGS) $(CSTD) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer $(FUZZ_SAN) \
		$(PKG_CFLAGS) -o $@ $< $(FUZZ_STUBS) $(BUILD)/fuzz/clang/libcrier.a $(LDLIBS)

fuzz: $(addprefix $(BUILD)/fuzz/replay-,$(FUZZ_NAMES)) \
      $(if $(CLANG),$(addprefix $(BUILD)/fuzz/libfuzzer-,$(FUZZ_NAMES)))

fuzz-run: fuzz
	@for t in $(FUZZ_NAMES); do \
		log=$(BUILD)/fuzz/$$t.log; \
		$(SAN_ENV) $(BUILD)/fuzz/replay-$$t fuzz/corpus/$$t >$$log.replay 2>&1; rc=$$?; \
		if [ $$rc -ne 0 ] || grep -Eq '$(SAN_REPORT)' $$log.replay; then \
			cat $$log.replay; echo "fuzz $$t: corpus replay FAILED (exit $$rc)"; exit 1; \
		fi; \
		if [ -n "$(CLANG)" ]; then \
			mkdir -p $(BUILD)/fuzz/work-$$t; \
			$(SAN_ENV) $(BUILD)/fuzz/libfuzzer-$$t -max_total_time=$(FUZZ_SECONDS) \
				-rss_limit_mb=1024 -print_final_stats=0 -artifact_prefix=$(BUILD)/fuzz/ \
				$(BUILD)/fuzz/work-$$t \
				fuzz/corpus/$$t >$$log 2>&1; rc=$$?; \
			if [ $$rc -ne 0 ] || grep -Eq '$(SAN_REPORT)' $$log; then \
				grep -E -A 30 '$(SAN_REPORT)' $$log || tail -n 40 $$log; \
				echo "fuzz $$t: FAILED (exit $$rc; full log $$log)"; exit 1; \
			fi; \
			echo "fuzz $$t: $(FUZZ_SECONDS) s without a finding"; \
		else \
			echo "fuzz $$t: corpus replayed (no clang: no fuzzing)"; \
		fi; \
	done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/crier $(DESTDIR)$(UNITDIR)
	install -m 755 $(CRIERD) $(CRIERSIM) $(AUDIT) $(DESTDIR)$(BINDIR)/
	$(if $(CLI_SRC),install -m 755 $(CRIERCTL) $(DESTDIR)$(BINDIR)/)
	install -m 644 config/crierd.example.json $(DESTDIR)$(SYSCONFDIR)/crier/crierd.example.json
	@# a starting config the unit runs with; an existing one (the operator's) is kept
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/crier/crierd.json ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/crier/crierd.json"; \
	else \
		echo "install -m 644 config/crierd.json $(DESTDIR)$(SYSCONFDIR)/crier/crierd.json"; \
		install -m 644 config/crierd.json $(DESTDIR)$(SYSCONFDIR)/crier/crierd.json; \
	fi
	sed 's|@BINDIR@|$(BINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' config/crierd.service.in \
		> $(DESTDIR)$(UNITDIR)/crierd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/crierd.service
	install -m 644 config/crier-audit.example.json $(DESTDIR)$(SYSCONFDIR)/crier/crier-audit.example.json
	@# the example is a working start (SQLite in the unit's StateDirectory); an existing one is kept
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/crier/crier-audit.json ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/crier/crier-audit.json"; \
	else \
		install -m 644 config/crier-audit.example.json $(DESTDIR)$(SYSCONFDIR)/crier/crier-audit.json; \
	fi
	sed 's|@BINDIR@|$(BINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' config/crier-audit.service.in \
		> $(DESTDIR)$(UNITDIR)/crier-audit.service
	chmod 644 $(DESTDIR)$(UNITDIR)/crier-audit.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/crierd $(DESTDIR)$(BINDIR)/crier-sim $(DESTDIR)$(BINDIR)/crierctl
	rm -f $(DESTDIR)$(BINDIR)/crier-audit
	rm -f $(DESTDIR)$(SYSCONFDIR)/crier/crierd.example.json $(DESTDIR)$(UNITDIR)/crierd.service
	rm -f $(DESTDIR)$(SYSCONFDIR)/crier/crier-audit.example.json $(DESTDIR)$(UNITDIR)/crier-audit.service
	@# crierd.json is the operator's: uninstall leaves it (and so its directory)
	-rmdir $(DESTDIR)$(SYSCONFDIR)/crier 2>/dev/null

clean:
	rm -rf build build-san

format:
	clang-format -i $(wildcard */*.c */*.h tests/unit/*.c)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
