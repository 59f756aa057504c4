#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest script for the "pressure" configurations of `make check` (run by the
# harness after `insmod /htable.ko`; stdout is parsed as TAP).
#
# The memory hog goes past MemAvailable by half of the page tables' memory:
# only the htable shrinker can give that back, so the hog surviving (no OOM
# kill) shows reclaim got our tables when it needed them, not just when
# drop_caches asked.
exec /htablectl pressure --overcommit 50
