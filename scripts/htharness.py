# SPDX-License-Identifier: GPL-2.0
"""Guest test harness shared by scripts/qemu-test, scripts/check and scripts/demo.

A guest run: build htable.ko (and the KUnit module where the kernel has KUnit)
for one kernel, pack a busybox initramfs with them and a static htablectl,
boot QEMU under TCG with a hard timeout, and read two serial ports:

  ttyS0  the kernel console: scanned for kernel reports of any kind;
  ttyS1  what the guest's /init writes: KTAP from KUnit, TAP from
         `htablectl selftest`, kmemleak's findings, between markers.

KTAP and TAP are parsed by the kernel's own tools/testing/kunit/kunit.py.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# HTABLE_BUILD relocates build output (two harness runs from one tree).
BUILD = Path(os.environ.get("HTABLE_BUILD", ROOT / "build"))
CACHE = Path(os.environ.get("HTABLE_CACHE", Path.home() / ".cache" / "htable"))

# Packages the guest runs need; installed when missing (scripts/lib.sh).
GUEST_PKGS = ["qemu-system-x86", "busybox-static", "cpio", "gzip", "kmod",
              "linux-image-amd64", "linux-headers-amd64", "build-essential",
              "python3", "rsync", "libelf-dev"]

# Console lines that mean the kernel reported a problem.  Any one fails the
# guest.  "Call Trace:" catches every backtrace, whatever printed it.
REPORT_RE = re.compile(
    r"WARNING:|BUG:|Oops|general protection fault|Kernel panic|kernel BUG|"
    r"UBSAN:|KASAN:|unreferenced object|possible circular locking|"
    r"possible recursive locking|inconsistent lock state|"
    r"suspicious RCU usage|INFO: task .* blocked for more than|"
    r"INFO: rcu_.*stall|watchdog: BUG|Call Trace:|list_add corruption|"
    r"list_del corruption|DEBUG_LOCKS_WARN_ON|stack-protector|"
    r"sleeping function called from invalid context|scheduling while atomic|"
    r"HTABLE-GUEST-TIMEOUT")


def log(msg):
    print(f"[htable] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Run a command, echoing it; raise on failure."""
    return subprocess.run(cmd, check=True, **kw)


def ensure_pkgs(pkgs):
    run(["bash", "-c", f'. "{ROOT}/scripts/lib.sh"; ensure_pkgs "$@"', "ensure_pkgs", *pkgs])


# ---- kernels -----------------------------------------------------------------

class Kernel:
    """A kernel to boot: its image and the build tree modules are built against."""

    def __init__(self, name, image, kdir, kunit):
        self.name, self.image, self.kdir, self.kunit = name, Path(image), Path(kdir), kunit
        self.version = self._version()

    def _version(self):
        mk = self.kdir / "include/config/kernel.release"
        return mk.read_text().strip() if mk.exists() else self.kdir.name


def debian61():
    """Debian's stock 6.1 kernel (no KUnit): linux-image-amd64 + headers."""
    ensure_pkgs(["linux-image-amd64", "linux-headers-amd64"])
    dep = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", "linux-image-amd64"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"linux-image-(6\.1[^ ,]*-amd64)", dep)
    if not m:
        raise SystemExit(f"cannot tell the 6.1 kernel from linux-image-amd64's Depends: {dep}")
    rel = m.group(1).replace("-unsigned", "")
    image = Path(f"/boot/vmlinuz-{rel}")
    kdir = Path(f"/lib/modules/{rel}/build")
    if not image.exists() or not kdir.exists():
        raise SystemExit(f"Debian 6.1 kernel {rel}: missing {image} or {kdir}")
    return Kernel("debian-6.1", image, kdir, kunit=False)


def debug612():
    """The 6.12 debug kernel built from linux-source-6.12 (cached)."""
    tree = subprocess.run([str(ROOT / "scripts/build-kernel")], check=True,
                          capture_output=False, stdout=subprocess.PIPE, text=True).stdout.strip()
    tree = Path(tree)
    return Kernel("debug-6.12", tree / "arch/x86/boot/bzImage", tree, kunit=True)


KERNELS = {"debian-6.1": debian61, "debug-6.12": debug612}


# ---- builds ------------------------------------------------------------------

MODULE_SOURCES = ["Kbuild", "module", "htable", "arch", "kunit", "include"]


def build_module(kernel):
    """Build htable.ko (+ htable_kunit.ko) for @kernel in its own copy of the
    sources: kbuild builds in the source directory, so two kernels cannot
    share one.  A warning fails the build: it must stay warning-free."""
    out = BUILD / f"mod-{kernel.name}"
    out.mkdir(parents=True, exist_ok=True)
    for s in MODULE_SOURCES:
        run(["rsync", "-a", "--delete", "--exclude=*.o", "--exclude=.*.cmd",
             str(ROOT / s), str(out)], stdout=subprocess.DEVNULL)
    res = subprocess.run(["make", "-C", str(kernel.kdir), f"M={out}", "modules",
                          f"-j{os.cpu_count() or 2}"],
                         capture_output=True, text=True)
    text = res.stdout + res.stderr
    (out / "build.log").write_text(text)
    warnings = [l for l in text.splitlines()
                if re.search(r"warning:|WARNING:", l) and "Skipping BTF" not in l]
    if res.returncode != 0 or warnings:
        sys.stderr.write(text)
        raise SystemExit(f"module build for {kernel.name} failed"
                         + (f" ({len(warnings)} warnings)" if warnings else ""))
    kos = [out / "htable.ko"]
    if kernel.kunit:
        if not (out / "htable_kunit.ko").exists():
            raise SystemExit(f"{kernel.name} has KUnit but htable_kunit.ko was not built")
        kos.append(out / "htable_kunit.ko")
    return kos


def build_tool():
    run(["make", "-s", "-C", str(ROOT / "userspace-tool"), "static"])
    return ROOT / "userspace-tool" / "htablectl.static"


# ---- initramfs ---------------------------------------------------------------

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmp /tmp
out=/dev/ttyS1
mode=$(sed -n 's/.*htable.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
# In demo mode ttyS1 is the person's terminal: the markers go to ttyS2.
mark=$out
[ "$mode" = demo ] && mark=/dev/ttyS2
say() { echo "$@" > $mark; }
say HTABLE-GUEST-START
say "HTABLE-KERNEL $(uname -r)"
if ! insmod /htable.ko; then say HTABLE-INSMOD-FAILED; fi
if [ "$mode" = demo ]; then
	/htablectl demo > $out 2>&1
	say "HTABLE-DEMO-RC $?"
else
	if [ -f /htable_kunit.ko ] && [ "$mode" = test ]; then
		dmesg -c > /dev/null
		insmod /htable_kunit.ko
		say HTABLE-KTAP-BEGIN
		dmesg | sed -e 's/^\[[^]]*\] //' > $out
		say HTABLE-KTAP-END
		rmmod htable_kunit
	fi
	say HTABLE-E2E-BEGIN
	# any mode but test: the harness's guest script (scripts/guest/<mode>.sh).
	if [ "$mode" = test ]; then
		/htablectl selftest > /tmp/e2e.tap 2>&1
	else
		sh /guest.sh > /tmp/e2e.tap 2>&1
	fi
	rc=$?
	cat /tmp/e2e.tap > $out
	say HTABLE-E2E-END
	say "HTABLE-E2E-RC $rc"
fi
say HTABLE-INFO-BEGIN
cat /sys/kernel/debug/htable/info > $mark
say HTABLE-INFO-END
say HTABLE-STATS-BEGIN
cat /sys/kernel/debug/htable/stats > $mark
say HTABLE-STATS-END
say HTABLE-WINDOWS-BEGIN
cat /sys/kernel/debug/htable/window_hist > $mark
say HTABLE-WINDOWS-END
if ! rmmod htable; then say HTABLE-RMMOD-FAILED; fi
if [ -f /sys/kernel/debug/kmemleak ]; then
	# Two scans: an object is reported only once it stayed unreferenced
	# across a full scan (see Documentation/dev-tools/kmemleak.rst).
	echo scan > /sys/kernel/debug/kmemleak
	sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	say HTABLE-KMEMLEAK-BEGIN
	cat /sys/kernel/debug/kmemleak > $mark
	say HTABLE-KMEMLEAK-END
fi
say HTABLE-GUEST-DONE
sync
reboot -f
"""


def make_initramfs(workdir, kos, tool, script=None):
    root = workdir / "initramfs"
    if root.exists():
        shutil.rmtree(root)
    for d in ["bin", "proc", "sys", "dev", "tmp"]:
        (root / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    for ko in kos:
        shutil.copy(ko, root / ko.name)
    shutil.copy(tool, root / "htablectl")
    if script:
        shutil.copy(script, root / "guest.sh")
        shutil.copy(GUEST_SCRIPTS / "lib.sh", root / "guestlib.sh")
    (root / "init").write_text(INIT)
    os.chmod(root / "init", 0o755)
    img = workdir / "initramfs.cpio.gz"
    with open(img, "wb") as f:
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                              capture_output=True, check=True).stdout
        f.write(subprocess.run(["gzip", "-1"], input=cpio, capture_output=True,
                               check=True).stdout)
    return img


# ---- booting -----------------------------------------------------------------

def boot(kernel, initrd, workdir, levels, pti, cpus, mem, mode, timeout, results_to=None,
         scale=1):
    """Boot under QEMU TCG; returns (console_text, results_text, seconds)."""
    console, results = workdir / "console.log", workdir / "results.log"
    for f in (console, results):
        f.write_text("")
    # no_timer_check: under a loaded host, TCG can miss the IO-APIC timer
    # check's deadline and panic ("IO-APIC + timer doesn't work!").
    append = ["console=ttyS0", "panic=-1", "oops=panic", "printk.time=1", "no_timer_check",
              f"htable.mode={mode}", f"htable.scale={scale}", "pti=on" if pti else "pti=off"]
    if levels == 4:
        append.append("no5lvl")
    if mode == "demo":
        append += ["quiet", "loglevel=3"]
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(cpus),
           "-m", str(mem), "-nodefaults", "-no-reboot", "-display", "none",
           "-kernel", str(kernel.image), "-initrd", str(initrd),
           "-append", " ".join(append),
           "-serial", f"file:{console}"]
    if results_to == "stdio":
        # The demo's output live on the terminal; markers to results.log.
        cmd += ["-chardev", "stdio,id=demo,signal=off", "-serial", "chardev:demo",
                "-serial", f"file:{results}"]
    else:
        cmd += ["-serial", f"file:{results}"]
    t0 = time.time()
    try:
        subprocess.run(cmd, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL,
                       stdout=None if results_to == "stdio" else subprocess.DEVNULL)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    dt = time.time() - t0
    ctext = console.read_text(errors="replace").replace("\r", "")
    rtext = results.read_text(errors="replace").replace("\r", "")
    if timed_out:
        ctext += f"\nHTABLE-GUEST-TIMEOUT after {timeout}s\n"
        console.write_text(ctext)
    return ctext, rtext, dt


# ---- parsing -----------------------------------------------------------------

def section(text, name):
    m = re.search(rf"^HTABLE-{name}-BEGIN\n(.*?)^HTABLE-{name}-END$", text, re.S | re.M)
    return m.group(1) if m else None


def kunit_tool():
    """kunit.py from the 6.12 source tree built by scripts/build-kernel."""
    tree = Path(subprocess.run([str(ROOT / "scripts/build-kernel")], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.strip())
    return tree / "tools/testing/kunit/kunit.py"


def parse_ktap(text, workdir, name):
    """Parse (K)TAP with kunit.py; returns {passed, failed, skipped, suites}."""
    src = workdir / f"{name}.ktap"
    src.write_text(text)
    js = workdir / f"{name}.json"
    res = subprocess.run([sys.executable, str(kunit_tool()), "parse", f"--json={js}", str(src)],
                         capture_output=True, text=True)
    (workdir / f"{name}.parse.log").write_text(res.stdout + res.stderr)
    out = {"passed": 0, "failed": 0, "skipped": 0, "suites": {}}
    if not js.exists():
        out["failed"] = 1
        out["suites"]["<unparsable>"] = {"passed": 0, "failed": 1}
        return out, res.stdout + res.stderr
    tree = json.loads(js.read_text())

    def leaves(group):
        for tc in group.get("test_cases", []):
            yield tc
        for sg in group.get("sub_groups", []):
            yield from leaves(sg)

    # KUnit: the root's subtests are suites.  TAP: the root holds the cases.
    if tree.get("sub_groups") and not tree.get("test_cases"):
        groups = tree["sub_groups"]
    else:
        groups = [dict(tree, name=name)]
    for g in groups:
        s = {"passed": 0, "failed": 0, "skipped": 0}
        for tc in leaves(g):
            key = {"PASS": "passed", "SKIP": "skipped"}.get(tc["status"], "failed")
            s[key] += 1
        out["suites"][g["name"]] = s
        for k in ("passed", "failed", "skipped"):
            out[k] += s[k]
    # Missing results against the plan show up as ERROR leaves.  kunit.py
    # also exits non-zero for output it cannot make sense of: count that
    # as one failure when no leaf failed.
    if res.returncode != 0 and out["failed"] == 0:
        out["failed"] = 1
        out["suites"]["<parse>"] = {"passed": 0, "failed": 1, "skipped": 0}
    return out, res.stdout + res.stderr


def kernel_reports(console, results):
    lines = [l for l in console.splitlines() if REPORT_RE.search(l)]
    leak = section(results, "KMEMLEAK")
    if leak and leak.strip():
        lines += ["kmemleak: " + l for l in leak.splitlines()[:20]]
    return lines


def context(console, n=40):
    """The lines around the first report, for the failure output."""
    ls = console.splitlines()
    for i, l in enumerate(ls):
        if REPORT_RE.search(l):
            return "\n".join(ls[max(0, i - 5):i + n])
    return "\n".join(ls[-n:])


# ---- one configuration, end to end -------------------------------------------

# Modes with their own /init branch; any other mode runs scripts/guest/<mode>.sh
# (or the script given), whose stdout is parsed as TAP like the selftest's.
BUILTIN_MODES = ("test", "demo")
GUEST_SCRIPTS = ROOT / "scripts" / "guest"


def run_config(kernel_name, levels, pti, cpus, mem=1024, mode="test", timeout=600,
               name=None, quiet=False, script=None, scale=1):
    ensure_pkgs(GUEST_PKGS)
    kernel = KERNELS[kernel_name]()
    name = name or (f"{kernel_name}-{levels}lvl-pti{'on' if pti else 'off'}-smp{cpus}"
                    + ("" if mode == "test" else f"-{mode}-{mem}M"))
    work = BUILD / "check" / name
    work.mkdir(parents=True, exist_ok=True)
    kos = build_module(kernel)
    tool = build_tool()
    if mode not in BUILTIN_MODES:
        script = Path(script) if script else GUEST_SCRIPTS / f"{mode}.sh"
        if not script.exists():
            raise SystemExit(f"mode {mode}: no guest script {script}")
    initrd = make_initramfs(work, kos, tool, script if mode not in BUILTIN_MODES else None)
    log(f"{name}: booting {kernel.version} ({levels}-level, pti={'on' if pti else 'off'}, "
          f"{cpus} CPUs, {mem} MiB)")
    console, results, secs = boot(kernel, initrd, work, levels, pti, cpus, mem, mode, timeout,
                                    results_to="stdio" if mode == "demo" else None, scale=scale)
    res = {
        "name": name,
        "kernel": kernel.version,
        "paging_levels": levels,
        "pti": pti,
        "cpus": cpus,
        "memory_mib": mem,
        "mode": mode,
        "seconds": round(secs, 1),
        "log": str(work / "console.log"),
        "results_log": str(work / "results.log"),
        "problems": [],
    }
    problems = res["problems"]
    if "HTABLE-GUEST-DONE" not in results:
        problems.append("the guest did not finish its /init (crash or timeout)")
    for marker, what in (("HTABLE-INSMOD-FAILED", "insmod htable.ko failed"),
                         ("HTABLE-RMMOD-FAILED", "rmmod htable failed")):
        if marker in results:
            problems.append(what)

    info = section(results, "INFO") or ""
    kv = dict(l.split(None, 1) for l in info.splitlines() if " " in l)
    if kv.get("paging_levels") != str(levels):
        problems.append(f"guest runs {kv.get('paging_levels', '?')}-level paging, "
                        f"expected {levels}")
    if kv.get("online_cpus") != str(cpus):
        problems.append(f"guest has {kv.get('online_cpus', '?')} CPUs online, expected {cpus}")
    if kv.get("pti") != ("1" if pti else "0"):
        problems.append(f"guest PTI is {kv.get('pti', '?')}, expected {int(pti)}")

    what = ("htablectl selftest" if mode == "test"
            else f"guest script {script.name if script else mode}")
    if mode != "demo":
        if kernel.kunit and mode == "test":
            ktap = section(results, "KTAP")
            if ktap is None:
                problems.append("no KTAP section from the guest")
                ktap = ""
            res["kunit"], _ = parse_ktap(ktap, work, "kunit")
            if res["kunit"]["passed"] + res["kunit"]["failed"] == 0:
                problems.append("KUnit ran no test")
        else:
            res["kunit"] = {"passed": 0, "failed": 0, "skipped": 0, "suites": {},
                            "available": kernel.kunit}
        tap = section(results, "E2E")
        if tap is None:
            problems.append("no e2e section from the guest")
            tap = ""
        e2e, _ = parse_ktap(tap, work, "e2e")
        # Figures a test reports for summary.json: "# reliability {json}".
        figs = []
        for line in tap.splitlines():
            if line.startswith("# reliability "):
                try:
                    figs.append(json.loads(line[len("# reliability "):]))
                except ValueError:
                    problems.append(f"unparsable figures line: {line[:200]}")
        if figs:
            res["reliability"] = figs
        res["e2e"] = {k: e2e[k] for k in ("passed", "failed", "skipped")}
        if e2e["passed"] + e2e["failed"] == 0:
            problems.append(f"{what} ran no test")
        if "HTABLE-E2E-RC 0" not in results:
            problems.append(f"{what} exited non-zero")
    elif "HTABLE-DEMO-RC 0" not in results:
        problems.append("htablectl demo exited non-zero")

    # The module's counters at the end of the run: the CR3-window figures
    # (docs/ARCHITECTURE.md quotes them) and what was still held.
    stats = dict(l.split(None, 1) for l in (section(results, "STATS") or "").splitlines()
                 if " " in l)
    res["module_stats"] = {k: int(stats[k]) for k in
                           ("jobs", "windows", "max_window_ns", "steals", "reloads",
                            "shrinker_calls", "shrinker_freed", "tables_live", "pages_live",
                            "objects_live")
                           if stats.get(k, "").isdigit()}
    hist = [l.split() for l in (section(results, "WINDOWS") or "").splitlines()]
    res["module_stats"]["window_hist"] = {k: int(v) for k, v in hist if v.isdigit()}
    reports = kernel_reports(console, results)
    res["kernel_reports"] = len(reports)
    res["ok"] = (not problems and not reports
                 and res.get("kunit", {}).get("failed", 0) == 0
                 and res.get("e2e", {}).get("failed", 0) == 0)
    if not res["ok"] and not quiet:
        sys.stderr.write(f"\n==== {name}: FAILED ====\n")
        for p in problems:
            sys.stderr.write(f"  problem: {p}\n")
        for r in reports[:20]:
            sys.stderr.write(f"  kernel report: {r}\n")
        for part in ("kunit", "e2e"):
            for suite, s in res.get(part, {}).get("suites", {}).items():
                if s.get("failed"):
                    sys.stderr.write(f"  {part} {suite}: {s['failed']} failed "
                                     f"(see {work}/{part}.parse.log)\n")
        if reports:
            sys.stderr.write("---- console around the first report ----\n")
            sys.stderr.write(context(console) + "\n")
        elif problems:
            sys.stderr.write("---- last console lines ----\n")
            sys.stderr.write("\n".join(console.splitlines()[-30:]) + "\n")
        sys.stderr.write(f"  full log: {work}/console.log\n\n")
    return res
