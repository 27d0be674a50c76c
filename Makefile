# pop3d: see README.md.  `make` builds, `make test` runs every test.
CC	?= cc
PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
MANDIR	?= $(PREFIX)/share/man
PKG_CONFIG ?= pkg-config

WARN	= -std=c11 -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	  -Wmissing-prototypes -Wformat=2 -Wcast-qual -Wvla
ifeq ($(WERROR),1)
WARN	+= -Werror
endif
HARDEN	= -O2 -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3 -fstack-protector-strong \
	  -fstack-clash-protection -fPIE
HARDLD	= -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack
SANFLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer

# libbsd (strlcpy, closefrom, ... where libc lacks them, as glibc does) and
# libmd (MD5) come from pkg-config where it knows them; a BSD libc has the
# functions itself (FreeBSD's MD5 wants LDLIBS=-lmd).  Their static
# archives are linked where installed (Debian: in libbsd-dev and libmd-dev):
# as shared libraries they cost every session ~90 KiB resident (HACKING.md,
# "Memory").  libcrypt stays shared, so that libxcrypt's updates reach
# pop3d without a rebuild, and is not linked at all: auth.c loads it with
# dlopen(3) in the credential check child, under the soname of the library
# pkg-config points to (libcrypt.so.1 on Debian; pop3d.h has the default).
# -ldl: dlopen is in libc from glibc 2.34 on, in libdl before.
pc_if	= $(shell $(PKG_CONFIG) --exists $(1) && echo $(1))
pc_a	= $(wildcard $(shell $(PKG_CONFIG) --variable=libdir $(1))/$(2))
BSD_PC	:= $(call pc_if,libbsd-overlay)
MD_PC	:= $(call pc_if,libmd)
BSD_A	:= $(if $(BSD_PC),$(call pc_a,$(BSD_PC),libbsd.a))
MD_A	:= $(if $(MD_PC),$(call pc_a,$(MD_PC),libmd.a))
BSD_LIBS := $(or $(BSD_A),$(if $(BSD_PC),$(shell $(PKG_CONFIG) --libs $(BSD_PC))))
MD_LIBS	:= $(or $(MD_A),$(if $(MD_PC),$(shell $(PKG_CONFIG) --libs $(MD_PC))))
CRYPT_SO := $(shell readelf -d $(shell $(PKG_CONFIG) --variable=libdir \
	    libcrypt)/libcrypt.so 2>/dev/null | \
	    sed -n 's/.*(SONAME).*\[\(libcrypt\.so\.[0-9]*\)\]$$/\1/p')
DEPS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(BSD_PC) libcrypt) \
	    $(if $(CRYPT_SO),-DPOP3D_LIBCRYPT='"$(CRYPT_SO)"')
DEPS_LIBS   := $(BSD_LIBS) $(MD_LIBS) -ldl
CRIT_CFLAGS := $(shell $(PKG_CONFIG) --cflags criterion 2>/dev/null)
CRIT_LIBS   := $(shell $(PKG_CONFIG) --libs criterion 2>/dev/null)

# SAN=1 builds everything (binary, library, unit tests) with the sanitizers
# into obj-san/, so that it never mixes with the release objects.
# FI=1 builds the fault-injection binary for the crash tests into obj-fi/
# (FAULT() hooks in UPDATE, see journal.c); the release build has none.
ifeq ($(SAN),1)
O	= obj-san
MODE	= $(SANFLAGS)
MODELD	= $(SANFLAGS)
else ifeq ($(FI),1)
O	= obj-fi
MODE	= $(HARDEN) -DPOP3D_FAULTS
MODELD	= $(HARDLD)
else
O	= obj
MODE	= $(HARDEN)
MODELD	= $(HARDLD)
endif

ALL_CFLAGS  = $(WARN) $(MODE) -D_GNU_SOURCE -MMD -MP $(DEPS_CFLAGS) $(CFLAGS) $(TESTHOOKS)
ALL_LDFLAGS = $(MODELD) $(LDFLAGS)

LIBSRC	= auth.c io.c journal.c log.c maildir.c maildrop.c mbox.c mboxindex.c \
	  privsep.c session.c \
	  uidhash.c
LIBOBJ	= $(LIBSRC:%.c=$(O)/%.o)
UNITSRC	= $(wildcard tests/unit/test_*.c)
UNITBIN	= $(UNITSRC:tests/unit/%.c=$(O)/%)

all: $(O)/pop3d
ifeq ($(O),obj)
	@ln -sf $(O)/pop3d pop3d
endif

$(O):
	mkdir -p $(O)

$(O)/%.o: %.c | $(O)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(O)/libpop3d.a: $(LIBOBJ)
	rm -f $@ && ar rcs $@ $(LIBOBJ)

$(O)/pop3d: $(O)/pop3d.o $(O)/libpop3d.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(O)/pop3d.o $(O)/libpop3d.a $(DEPS_LIBS) $(LDLIBS)

$(O)/test_%: tests/unit/test_%.c $(O)/libpop3d.a | $(O)
	$(CC) $(ALL_CFLAGS) $(CRIT_CFLAGS) -I. -o $@ $< $(O)/libpop3d.a \
	    $(ALL_LDFLAGS) $(CRIT_LIBS) $(DEPS_LIBS)

# The streaming writer's portable path (what builds without SSE2 run):
# io.c again with -DPOP3D_NO_SSE2, linked ahead of the library, under the
# same tests.
$(O)/io-portable.o: io.c | $(O)
	$(CC) $(ALL_CFLAGS) -DPOP3D_NO_SSE2 -c -o $@ io.c

$(O)/test_io_portable: tests/unit/test_io.c $(O)/io-portable.o \
    $(O)/libpop3d.a | $(O)
	$(CC) $(ALL_CFLAGS) $(CRIT_CFLAGS) -I. -o $@ $< $(O)/io-portable.o \
	    $(O)/libpop3d.a $(ALL_LDFLAGS) $(CRIT_LIBS) $(DEPS_LIBS)

unit: $(UNITBIN) $(O)/test_io_portable

# Every test, in four passes (tests/run): the hardened build, the same
# under ASan + UBSan, the end-to-end suite under valgrind, and each fuzz
# target for FUZZ_SECONDS.  One summary line at the end.  `make check`
# runs only the first pass.
test: all unit
	$(MAKE) SAN=1 all unit
	$(MAKE) FI=1 all
	$(MAKE) fuzz-build
	tests/run

check: all unit
	$(MAKE) FI=1 all
	PASSES=release tests/run

asan:
	$(MAKE) SAN=1 all unit
	PASSES=sanitizers tests/run

valgrind: all unit
	PASSES=valgrind tests/run

# The seed scenario on 127.0.0.1 under systemd-socket-activate (README.md).
demo: all
	contrib/demo.sh

# Installs the binary, the man pages, the systemd units (with the binary's
# real path) and the examples; DESTDIR for staging, PREFIX for the place.
UNITDIR	?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR	?= $(PREFIX)/share/doc/pop3d

# A file that names the binary, installed with its real path, mode 644.
install_sbin = sed 's|/usr/local/sbin/pop3d|$(SBINDIR)/pop3d|g' $(1) \
	    > $(DESTDIR)$(2) && chmod 644 $(DESTDIR)$(2)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(DOCDIR)/examples
	install -m 755 obj/pop3d $(DESTDIR)$(SBINDIR)/pop3d
	$(call install_sbin,man/pop3d.8,$(MANDIR)/man8/pop3d.8)
	install -m 644 man/pop3d.users.5 $(DESTDIR)$(MANDIR)/man5/pop3d.users.5
	install -m 644 systemd/pop3d.socket $(DESTDIR)$(UNITDIR)/pop3d.socket
	$(call install_sbin,systemd/pop3d@.service,$(UNITDIR)/pop3d@.service)
	install -d $(DESTDIR)$(TMPFILESDIR)
	install -m 644 systemd/pop3d-tmpfiles.conf \
	    $(DESTDIR)$(TMPFILESDIR)/pop3d.conf
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/examples/
	$(call install_sbin,inetd.conf.example,$(DOCDIR)/examples/inetd.conf.example)
	$(call install_sbin,contrib/tcpserver.sh,$(DOCDIR)/examples/tcpserver.sh)
	$(call install_sbin,contrib/xinetd.d/pop3d,$(DOCDIR)/examples/xinetd.pop3d)

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/pop3d $(DESTDIR)$(MANDIR)/man8/pop3d.8 \
	    $(DESTDIR)$(MANDIR)/man5/pop3d.users.5 \
	    $(DESTDIR)$(UNITDIR)/pop3d.socket $(DESTDIR)$(UNITDIR)/pop3d@.service \
	    $(DESTDIR)$(TMPFILESDIR)/pop3d.conf
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf obj obj-san obj-fi pop3d

-include $(wildcard $(O)/*.d)

.PHONY: all unit test check asan valgrind demo install uninstall clean

# Fuzz targets (tests/fuzz/): the library built with clang, libFuzzer's
# coverage and ASan + UBSan into obj-fuzz/, one binary per harness.
# `make fuzz` builds them and runs each for FUZZ_SECONDS (default 60).
FUZZ_CC	 ?= clang
FUZZ_SAN  = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer
FUZZ_CFLAGS = $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -D_GNU_SOURCE \
	    -MMD -MP $(DEPS_CFLAGS) $(CFLAGS)
FUZZ_NAMES = session base64 users mbox maildir journal
FUZZ_OBJ  = $(LIBSRC:%.c=obj-fuzz/%.o)
FUZZ_BIN  = $(FUZZ_NAMES:%=obj-fuzz/fuzz_%)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	tests/fuzz/run

obj-fuzz:
	mkdir -p obj-fuzz

obj-fuzz/%.o: %.c | obj-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

obj-fuzz/libpop3d.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $(FUZZ_OBJ)

obj-fuzz/fuzz_%: tests/fuzz/fuzz_%.c obj-fuzz/libpop3d.a | obj-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I. -o $@ $< obj-fuzz/libpop3d.a \
	    $(FUZZ_SAN) -fsanitize=fuzzer $(LDFLAGS) $(DEPS_LIBS)

clean: clean-fuzz
clean-fuzz:
	rm -rf obj-fuzz

-include $(wildcard obj-fuzz/*.d)

.PHONY: fuzz fuzz-build clean-fuzz
