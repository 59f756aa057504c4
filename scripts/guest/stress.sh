#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Guest script for `scripts/qemu-test --mode stress --cpus 4`: the
# concurrency stress test (`htablectl stress`, see its --help) with one
# worker process per CPU, against a process calling REAP and one driving
# the shrinker.  Runs as root in the harness's initramfs with htable.ko
# loaded, and leaves it loaded.  Output: one TAP stream.
#
# Length: 90 s of stress per unit of htable.scale= (soak: 10).
. /guestlib.sh
scale=$(guest_scale)
cpus=$(grep -c '^processor' /proc/cpuinfo)
exec /htablectl stress --procs "$cpus" --seconds $((90 * scale))
