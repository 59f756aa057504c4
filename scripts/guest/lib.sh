# SPDX-License-Identifier: GPL-2.0
#
# Shared by the guest scripts: the harness copies it into every initramfs as
# /guestlib.sh, and they source it.  busybox sh.

# guest_scale: htable.scale=N from the kernel command line, 1 if absent
# (`scripts/qemu-test --scale`, make soak: 10).
guest_scale() {
	s=$(sed -n 's/.*htable\.scale=\([0-9][0-9]*\).*/\1/p' /proc/cmdline)
	[ -n "$s" ] && [ "$s" -gt 0 ] && echo "$s" || echo 1
}

# tap_merge PER FILE...: prints the TAP runs in FILE..., each planned
# 1..PER, as the body of one stream numbered on from 1 (the caller prints
# "TAP version 13" and the plan, PER times the number of files, first).
# A run's "Bail out!" becomes a note, and what a run did not get to report
# is a failure.
tap_merge() {
	per=$1
	shift
	base=0
	for f in "$@"; do
		awk -v base=$base -v per=$per '
			/^TAP version/ || /^1\.\.[0-9]+$/ { next }
			/^(not )?ok [0-9]+/ {
				n++
				match($0, /[0-9]+/)
				print substr($0, 1, RSTART - 1) (substr($0, RSTART, RLENGTH) + base) substr($0, RSTART + RLENGTH)
				next
			}
			/^Bail out!/ { print "# " $0; next }
			{ print }
			END { for (k = n + 1; k <= per; k++) print "not ok " (base + k) " - the run ended early" }
		' "$f"
		base=$((base + per))
	done
}
