#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Guest script for `scripts/qemu-test --mode lifetime`: object lifetimes.
# Runs as root in the harness's initramfs with htable.ko loaded, and leaves
# it loaded.  Output: one TAP stream, ending with a '# reliability' line.
#
#   1. `htablectl lifetime` (see its --help): fd closed under running jobs,
#      create/destroy races, fds closed while their tables are stolen,
#      kill -9 at random moments, a killed long job, page tables charged to
#      a memory cgroup and uncharged after;
#   2. rmmod around a kill -9: refused while a process holds an fd, done
#      at once or right after the process is reaped;
#   3. 100 load/unload cycles with work in between (`htablectl lifetime
#      --quick`), and the free pages before and after;
#   4. kmemleak: a scan must find nothing.
#
# Sizes grow with htable.scale= (soak: 10).
. /guestlib.sh
scale=$(guest_scale)

body=/tmp/lifetime.body
: > "$body"
n=0
fails=0
say() { echo "$*" >> "$body"; }
result() {  # ok|notok DESCRIPTION
	n=$((n + 1))
	if [ "$1" = ok ]; then
		say "ok $n - $2"
	else
		say "not ok $n - $2"
		fails=$((fails + 1))
	fi
}
# Append a sub-run's TAP, its results renumbered after ours.
subrun() {
	"$@" > /tmp/sub.tap 2>&1
	rc=$?
	awk -v base="$n" '
		/^(not )?ok [0-9]+/ {
			k++
			rest = $0
			sub(/^(not )?ok [0-9]+/, "", rest)
			print (($1 == "not") ? "not ok " : "ok ") (base + k) rest
			next
		}
		/^TAP version/ || /^1\.\.[0-9]+$/ { next }
		{ print }
	' /tmp/sub.tap >> "$body"
	n=$((n + $(grep -cE '^(not )?ok [0-9]+' /tmp/sub.tap)))
	fails=$((fails + $(grep -cE '^not ok [0-9]+' /tmp/sub.tap)))
	if [ "$rc" -ne 0 ] && ! grep -qE '^not ok [0-9]+' /tmp/sub.tap; then
		result notok "$1 $2 exited $rc without a failed test"
	fi
}
loaded() { grep -q '^htable ' /proc/modules; }
# "free slab depot" in pages, once the page cache and the slab caches have
# been dropped.  Free includes the pages on per-CPU lists (nr_free_pages
# does not count them; they move by hundreds).  Slab is what KASAN's
# quarantine of freed objects and kmemleak's metadata grow into, and
# drop_caches does not empty them; the stack depot (KASAN's allocation and
# free traces) never gives its pools back.
mem_pages() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	pools=$(sed -n 's/^pools: //p' /sys/kernel/debug/stackdepot/stats 2> /dev/null)
	pcp=$(awk '/^ +count: /{ c += $2 } END { print c + 0 }' /proc/zoneinfo)
	awk -v depot=$((4 * ${pools:-0})) -v pcp="$pcp" '
		/^nr_free_pages /{ f = $2 } /^nr_slab_(un)?reclaimable /{ s += $2 }
		END { print f + pcp, s, depot }' /proc/vmstat
}
# Other kernel consumers, for the record: vmalloc (modules live there),
# percpu, kernel stacks (KiB), page tables (pages).
mem_notes() {
	awk '/^(VmallocUsed|Percpu|KernelStack|PageTables):/ { printf "%s %s kB, ", $1, $2 }' /proc/meminfo
}

grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup

# ---- 1. the tool's lifetime tests
subrun /htablectl lifetime --kills $((20 * scale)) --rounds 3 --tables $((2000 * scale)) \
	--cgroup /sys/fs/cgroup
figures=$(sed -n 's/^# figures //p' /tmp/sub.tap)
[ -n "$figures" ] || figures='"lifetime_failed":-1'

# ---- 2. rmmod around a kill -9
rounds=$((5 * scale))
held_refused=0 held_unloaded=0 direct=0 after_wait=0 stuck=0 reloads=0
for i in $(seq "$rounds"); do
	/htablectl lifetime --hold > /tmp/hold.out 2>&1 &
	pid=$!
	t=0
	while ! grep -q '^ready' /tmp/hold.out && [ $t -lt 300 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	# An open fd pins the module (the file's fops owner).
	if rmmod htable 2> /tmp/rmmod.err; then
		held_unloaded=$((held_unloaded + 1))
		insmod /htable.ko
	else
		held_refused=$((held_refused + 1))
		why=$(cat /tmp/rmmod.err)
	fi
	usleep $((RANDOM % 300000))
	kill -9 "$pid"
	# Right after the kill the process may still be on its way out.
	if rmmod htable 2> /dev/null; then
		direct=$((direct + 1))
		wait "$pid" 2> /dev/null
	else
		wait "$pid" 2> /dev/null
		if rmmod htable 2> /tmp/rmmod.err; then
			after_wait=$((after_wait + 1))
		else
			stuck=$((stuck + 1))
			say "# round $i: rmmod after the holder was reaped: $(cat /tmp/rmmod.err)"
		fi
	fi
	loaded || { insmod /htable.ko && reloads=$((reloads + 1)); }
done
say "# rmmod while an fd was held: $why"
if [ $held_refused -eq "$rounds" ]; then
	result ok "rmmod refused while a process holds an fd ($held_refused of $rounds)"
else
	result notok "rmmod refused while a process holds an fd ($held_refused of $rounds)"
fi
if [ $stuck -eq 0 ] && [ $reloads -eq "$rounds" ]; then
	result ok "rmmod after kill -9: $direct at once, $after_wait once the process was reaped, reloaded $reloads times"
else
	result notok "rmmod after kill -9: $direct at once, $after_wait after reaping, $stuck never, reloaded $reloads of $rounds"
fi

# ---- 3. load/unload cycles with work in between
cycles=$((100 * scale))
warm=10
bad_unload=0 bad_load=0 bad_work=0
set -- $(mem_pages)
free_start=$1
t0=$(date +%s)
for i in $(seq "$cycles"); do
	rmmod htable || bad_unload=$((bad_unload + 1))
	if ! insmod /htable.ko; then
		bad_load=$((bad_load + 1))
		continue
	fi
	if ! /htablectl lifetime --quick > /tmp/quick.out 2>&1; then
		bad_work=$((bad_work + 1))
		[ $bad_work -le 3 ] && sed "s/^/# cycle $i: /" /tmp/quick.out >> "$body"
	fi
	if [ "$i" -eq $warm ]; then
		set -- $(mem_pages)
		free_warm=$1 slab_warm=$2 depot_warm=$3
		notes_warm=$(mem_notes)
	fi
done
t1=$(date +%s)
set -- $(mem_pages)
free_end=$1 slab_end=$2 depot_end=$3
notes_end=$(mem_notes)
loaded || insmod /htable.ko
if [ $((bad_unload + bad_load + bad_work)) -eq 0 ]; then
	result ok "$cycles load/unload cycles with work in between ($((t1 - t0)) s)"
else
	result notok "$cycles load/unload cycles: $bad_unload rmmod, $bad_load insmod, $bad_work work failures"
fi
# Pages gone from cycle $warm on (the caches have warmed up by then) to the
# end, less what the slab and the stack depot grew by.  Slab objects the
# module kept are kmemleak's to find (below).  Measured noise of the sum
# with nothing running: about 50 pages.  A module keeping 2 pages a load
# fails at scale 1, 1 page in 10 loads at scale 10; its reserve alone is
# 200 pages a load.
tolerance=96
[ -n "$free_warm" ] || { free_warm=$free_start; slab_warm=$slab_end; depot_warm=$depot_end; }
leaked=$((free_warm - free_end - (slab_end - slab_warm) - (depot_end - depot_warm)))
[ $leaked -ge 0 ] || leaked=0
say "# nr_free_pages $free_start at the start, $free_warm after $warm cycles, $free_end after $cycles; slab pages $slab_warm -> $slab_end, stack depot pages $depot_warm -> $depot_end"
say "# after $warm cycles: $notes_warm"
say "# after $cycles cycles: $notes_end"
if [ $leaked -le $tolerance ]; then
	result ok "pages after $((cycles - warm)) more cycles: $leaked unaccounted for (tolerance $tolerance)"
else
	result notok "pages after $((cycles - warm)) more cycles: $leaked unaccounted for (tolerance $tolerance)"
fi

# ---- 4. kmemleak
kmemleak=-1
if [ -w /sys/kernel/debug/kmemleak ]; then
	# An object is reported once it stayed unreferenced across a full scan.
	echo scan > /sys/kernel/debug/kmemleak
	sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	kmemleak=$(grep -c 'unreferenced object' /sys/kernel/debug/kmemleak)
	if [ "$kmemleak" -eq 0 ]; then
		result ok "kmemleak: no unreferenced object"
	else
		result notok "kmemleak: $kmemleak unreferenced objects"
		head -40 /sys/kernel/debug/kmemleak | sed 's/^/# /' >> "$body"
	fi
else
	result ok "kmemleak # SKIP no /sys/kernel/debug/kmemleak"
fi

say "# reliability {\"test\":\"lifetime\",\"cycles\":$cycles,\"rmmod_rounds\":$rounds,\"leaked_pages\":$leaked,\"free_pages_tolerance\":$tolerance,\"kmemleak\":$kmemleak,$figures}"
echo "TAP version 13"
echo "1..$n"
cat "$body"
loaded || insmod /htable.ko
[ $fails -eq 0 ]
