# Shared helpers for the harness scripts (sourced, not run).

log() { printf '[htable] %s\n' "$*" >&2; }
die() { printf '[htable] error: %s\n' "$*" >&2; exit 1; }

# ensure_pkgs PKG... : install Debian packages that are missing.  Runs
# `apt-get update` at most once per machine boot-cycle of the cache, so a warm
# machine never touches the network.
ensure_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing: ${missing[*]}"
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "${HTABLE_APT_UPDATED:-}" ]; then
		$sudo apt-get update -qq > "${TMPDIR:-/tmp}/htable-apt.log" 2>&1 || { cat "${TMPDIR:-/tmp}/htable-apt.log" >&2; die "apt-get update failed"; }
		export HTABLE_APT_UPDATED=1
	fi
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >> "${TMPDIR:-/tmp}/htable-apt.log" 2>&1 || { tail -n 30 "${TMPDIR:-/tmp}/htable-apt.log" >&2; false; } ||
		die "apt-get install ${missing[*]} failed"
}
