#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `scripts/qemu-test --mode fuzz`: htablectl fuzz over several seeds, as one
# TAP stream on stdout (run by the guest's /init, htable.ko loaded).
#
#   seed 1   110000 ops, jobs on 1 or 2 CPUs
#   seed 3    20000 ops with 10% of the module's allocations failing
#   seed 2    90000 ops, jobs on 1 or 2 CPUs
#
# times htable.scale=N from the kernel command line (soak: --scale 10).
# By hand: scripts/qemu-test --kernel debug-6.12 --levels 5 --pti on --cpus 2
# --mode fuzz --timeout 1500 (6-10 minutes at scale 1 under TCG).
# Two streams run side by side, seed 1 | seed 3 then seed 2: a fuzzer is one
# thread that mostly waits for the kernel, and the guest has two CPUs (two
# fds on the module at once is a test of its own).  Each run then checks
# its own hats (debugfs owner_pid) and pins (VmLck) against its model
# (--concurrent); the module's global counters are checked here, once
# every run has ended.
. /guestlib.sh
scale=$(guest_scale)
counters() {
	for c in tables_live hats_live pinned_pages; do
		printf '%s %s ' $c "$(sed -n "s/^$c //p" /sys/kernel/debug/htable/stats)"
	done
}
before=$(counters)
t0=$(date +%s)

# run NAME ARGS...: one fuzzer, its TAP in /tmp/fuzz-NAME.tap
run() {
	name=$1
	shift
	/htablectl fuzz "$@" --concurrent > /tmp/fuzz-$name.tap 2>&1
	echo $? > /tmp/fuzz-$name.rc
}
run a --seed 1 --ops $((110000 * scale)) --cpus 2 &
(run b --seed 3 --ops $((20000 * scale)) --cpus 2 --inject 10
 run c --seed 2 --ops $((90000 * scale)) --cpus 2) &
wait
secs=$(($(date +%s) - t0))
after=$(counters)

# One stream: each run's 1..3 numbered on, and what a run did not get to
# report is a failure.
runs="a b c"
echo "TAP version 13"
echo "1..$((3 * $(echo $runs | wc -w) + 1))"
rc=0
files=
for r in $runs; do
	files="$files /tmp/fuzz-$r.tap"
	[ "$(cat /tmp/fuzz-$r.rc 2>/dev/null)" = 0 ] || rc=1
done
tap_merge 3 $files
base=$((3 * $(echo $runs | wc -w)))
if [ "$before" = "$after" ]; then
	echo "ok $((base + 1)) - module counters back after every run: $after"
else
	echo "not ok $((base + 1)) - module counters not back after every run: $before-> $after"
	rc=1
fi
ops=$(sed -n 's/^# reliability .*"ops":\([0-9]*\).*/\1/p' /tmp/fuzz-*.tap | awk '{ n += $1 } END { print n + 0 }')
echo "# fuzz.sh: $ops ops in $secs s ($((ops / (secs > 0 ? secs : 1))) ops/s), scale $scale"
exit $rc
