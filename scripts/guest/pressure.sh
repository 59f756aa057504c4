#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest script for the "pressure" configurations of `make check` (run by the
# harness after `insmod /htable.ko`; stdout is parsed as TAP).
#
# The memory hog goes past MemAvailable by half of the page tables' memory:
# only the htable shrinker can give that back, so the hog surviving (no OOM
# kill) shows reclaim got our tables when it needed them, not just when
# drop_caches asked.
#
# The test's size is the guest's memory, not a count: htable.scale=N (soak:
# 10) runs it N times over, each round from fresh hats.
. /guestlib.sh
scale=$(guest_scale)
[ "$scale" -gt 1 ] || exec /htablectl pressure --overcommit 50

per=8	# kPressureChecks: `htablectl pressure` plans 1..8
rc=0
files=
i=1
while [ $i -le $scale ]; do
	/htablectl pressure --overcommit 50 > /tmp/pressure-$i.tap 2>&1 || rc=1
	files="$files /tmp/pressure-$i.tap"
	i=$((i + 1))
done
echo "TAP version 13"
echo "1..$((per * scale))"
tap_merge $per $files
exit $rc
