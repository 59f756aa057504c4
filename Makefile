# SPDX-License-Identifier: GPL-2.0
#
# htable — top-level targets.  See README.md.
#
#   make                  htable.ko for KDIR (default: the running kernel) + htablectl
#   make host-test        the core's unit tests on the host (GoogleTest, ASan+UBSan)
#   make check            every test: host, KUnit and end to end in QEMU guests
#   make soak             the reliability tests (fuzz, stress, lifetime, pressure)
#                         on the debug kernel, ten times longer (hours);
#                         MODES=fuzz,stress runs a part of it
#   make demo             boot a Debian 6.1 guest and show the module working
#   make clean

KDIR ?= /lib/modules/$(shell uname -r)/build
PWD := $(shell pwd)

.PHONY: all module tool host-test check soak demo clean

all: module tool

module:
	@test -d "$(KDIR)" || { echo "KDIR=$(KDIR) does not exist: install the headers of your kernel or pass KDIR=" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(PWD) modules

tool:
	$(MAKE) -C userspace-tool

host-test:
	bash -c '. scripts/lib.sh && ensure_pkgs build-essential libgtest-dev python3'
	$(MAKE) -C tests/host run

# The harness is Python; everything else it needs it installs itself.
BOOTSTRAP = bash -c '. scripts/lib.sh && ensure_pkgs python3 rsync'

check:
	$(BOOTSTRAP)
	scripts/check

soak:
	$(BOOTSTRAP)
	scripts/check --soak $(if $(MODES),--only $(MODES))

demo:
	$(BOOTSTRAP)
	scripts/demo

clean:
	-test -d "$(KDIR)" && $(MAKE) -C $(KDIR) M=$(PWD) clean
	$(MAKE) -C userspace-tool clean
	$(MAKE) -C tests/host clean
	rm -rf build
