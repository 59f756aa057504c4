// SPDX-License-Identifier: GPL-2.0
//
// `htablectl pressure`: does memory pressure take page tables back, and do
// the hats still work afterwards?  Meant for a small guest (the harness
// runs it in 256 and 512 MiB).  Output is TAP; see kPressureHelp.
//
// The scenario (run_pressure(), also run reduced by the selftest):
//   1. setup   hats holding N level-0 tables: one 4 KiB page every 2 MiB,
//              so each page needs a table of its own.  The pages are the
//              process's own: a buffer of kAliasPages pages, page i % 256
//              at the i-th VA, so that the memory is all page tables (one
//              table page plus ~0.6 KiB of bookkeeping each) and tens of
//              thousands of them fit a 256 MiB machine.  N is scaled down
//              to mem_pct % of MemAvailable.
//   2. fill    FILL jobs through the hat write every buffer page (several
//              threads, one CPU each); the process reads them back.
//   3. hog     a child allocates and touches anonymous memory until
//              MemAvailable is down to 15% of MemTotal (no swap in the guest:
//              only the kernel's caches, our tables among them, can give),
//              then, with --overcommit PCT, all that is still available and
//              PCT% of the tables' memory more:
//              memory only our shrinker can give back, so an OOM kill means
//              reclaim could not get tables we could have given.  It
//              volunteers for the OOM killer (oom_score_adj 1000), this
//              process does not (-1000).
//   4. drop    echo 2 > /proc/sys/vm/drop_caches: every shrinker is asked
//              to free everything it can.
//   5. checks  shrinker_calls grew; tables_live fell by at least 90% of
//              what `stealable` said before; the reserve is back at its
//              target; then (hog gone) a VERIFY job at every VA sees the
//              bytes of the page it must map (a lost or crossed mapping
//              shows: every page has its own seed) and the jobs reloaded
//              translations; destroying the hats returns
//              tables_live/hats_live/pinned_pages to where they were.
#include "htablectl.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable {
namespace {

constexpr u64 kPressureVa = 0x200000000000ull;  // 32 TiB, valid with 4 and 5 levels
constexpr u64 kCostPerTable = 4700;             // table page + bookkeeping, bytes (measured ~4.6 KiB)
constexpr u64 kAliasPages = 256;                // the user buffer behind every VA

u64 page_seed(u32 hat, u64 i)
{
	return 0x9e5500000000ull ^ (u64(hat) << 40) ^ i;
}

struct Snapshot {
	u64 tables_live = 0, hats_live = 0, pinned = 0, stealable = 0, steals = 0, reloads = 0;
	u64 shrinker_calls = 0, shrinker_freed = 0, reserve = 0, reserve_target = 0;
	bool ok = false;
};

Snapshot snapshot()
{
	Snapshot s;
	std::vector<Stat> st;
	if (read_stats(st) != 0)
		return s;
	auto get = [&](const char* name, u64& out) {
		auto v = stat_u64(st, name);
		out = v.value_or(0);
		return v.has_value();
	};
	s.ok = get("tables_live", s.tables_live) & get("hats_live", s.hats_live) &
	       get("pinned_pages", s.pinned) & get("stealable", s.stealable) &
	       get("steals", s.steals) & get("reloads", s.reloads) &
	       get("shrinker_calls", s.shrinker_calls) & get("shrinker_freed", s.shrinker_freed);
	get("reserve", s.reserve);
	get("reserve_target", s.reserve_target);
	// the reserve file is the authority on the reserve
	std::string text;
	if (read_file(std::string(kDebugfsDir) + "/reserve", text) == 0) {
		for (const auto& [k, v] : parse_kv(text)) {
			if (k == "reserve")
				parse_u64(v, s.reserve);
			else if (k == "target")
				parse_u64(v, s.reserve_target);
		}
	}
	return s;
}

struct Page {
	u32 hat_index;
	u32 hat_id;
	u64 i;
	u64 va() const { return kPressureVa + i * k2M; }
	u64 buffer_page() const { return i % kAliasPages; }
	u64 seed() const { return page_seed(0, buffer_page()); }
};

// Runs one job per page on `threads` threads, thread k on CPU cpus[k %
// ncpu].  Returns the number of pages for which check() failed.
template <class Check>
u64 jobs_over(const Device& dev, const std::vector<Page>& pages, u32 op, unsigned threads,
	      const std::vector<u32>& cpus, Check check, u64* reloads)
{
	std::atomic<u64> bad{0}, rel{0};
	std::atomic<size_t> next{0};
	std::vector<std::thread> th;
	for (unsigned k = 0; k < threads; k++) {
		th.emplace_back([&, k] {
			const u32 cpu = cpus[k % cpus.size()];
			for (;;) {
				size_t n = next.fetch_add(1);
				if (n >= pages.size())
					break;
				const Page& p = pages[n];
				htable_job j{};
				int err = dev.job(p.hat_id, op, p.va(), kPageSize, p.seed(), cpu, j);
				rel += j.reloads;
				if (!check(err, j))
					bad++;
			}
		});
	}
	for (auto& t : th)
		t.join();
	if (reloads)
		*reloads = rel;
	return bad;
}

// The memory hog: a child that allocates until MemAvailable is down to
// `left_kib`, reports how much it holds through `fd`, then waits.
[[noreturn]] void hog_child(int fd, u64 left_kib, u64 extra)
{
	(void)write_file("/proc/self/oom_score_adj", "1000");
	u64 total = 0;
	const u64 mem_total = meminfo_kib("MemTotal").value_or(0);
	u64 avail = 0;
	for (;;) {
		avail = meminfo_kib("MemAvailable").value_or(0);
		if (avail <= left_kib || total / 1024 >= mem_total)
			break;
		// big steps while far away, smaller ones close to the goal
		u64 step = std::clamp<u64>((avail - left_kib) * 1024 / 4, 1ull << 20, 16ull << 20);
		void* p = mmap(nullptr, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		std::memset(p, 0x5a, step);
		total += step;
	}
	// Past MemAvailable: what is still available, then `extra` more.  Each
	// step now has to come out of reclaim, and the only reclaimable memory
	// left is ours.
	if (extra)
		extra += meminfo_kib("MemAvailable").value_or(0) * 1024;
	for (u64 more = 0; more < extra;) {
		const u64 step = std::min<u64>(extra - more, 4ull << 20);
		void* p = mmap(nullptr, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		std::memset(p, 0x5a, step);
		total += step;
		more += step;
	}
	avail = meminfo_kib("MemAvailable").value_or(0);
	char msg[64];
	int n = std::snprintf(msg, sizeof(msg), "%llu %llu\n", total, avail);
	if (write(fd, msg, size_t(n)) != n)
		_exit(1);
	for (;;)
		pause();
}

}  // namespace

int run_pressure(const PressureConfig& cfg, PressureReport& rep)
{
	int failed = 0;
	int reported = 0;
	auto result = [&](bool ok, const std::string& name, const char* skip = nullptr) {
		rep.result(ok, name, skip);
		reported++;
		if (!ok)
			failed++;
	};
	// Report the remaining checks as failed when the scenario cannot go on.
	auto abort_rest = [&](const std::string& why) {
		while (reported < kPressureChecks)
			result(false, "not reached: " + why);
		return failed;
	};

	const Snapshot base = snapshot();
	if (!base.ok) {
		rep.note(std::string("cannot read the counters in ") + kStatsPath);
		return abort_rest("no debugfs stats");
	}
	const u64 avail = meminfo_kib("MemAvailable").value_or(0), total = meminfo_kib("MemTotal").value_or(0);
	u64 n = cfg.tables;
	if (cfg.scale && avail) {
		const u64 fit = avail * 1024 / 100 * cfg.mem_pct / kCostPerTable;
		if (fit < n)
			n = fit;
	}
	n = std::max<u64>(n, 1);
	u32 nhats = cfg.hats ? cfg.hats : u32(std::clamp<u64>((n + 4999) / 5000, 1, 16));
	nhats = u32(std::min<u64>(nhats, n));
	auto cpus = online_cpus();
	unsigned threads = cfg.threads ? cfg.threads : unsigned(std::min<size_t>(cpus.size(), 8));
	rep.note(strfmt("MemTotal %llu MiB, MemAvailable %llu MiB: %llu tables wanted, %llu chosen "
		     "(~%llu MiB, at most %u%% of MemAvailable), in %u hat%s, %u job thread%s",
		     total / 1024, avail / 1024, cfg.tables, n, n * kCostPerTable >> 20, cfg.mem_pct,
		     nhats, nhats == 1 ? "" : "s", threads, threads == 1 ? "" : "s"));

	// ---- 1. setup
	auto dev = Device::open();
	if (!dev) {
		rep.note("cannot open " + std::string(kDevicePath) + ": " + errno_desc(dev.error()));
		return abort_rest("no device");
	}
	std::vector<Hat> hats;
	std::vector<Page> pages;
	// 4 KiB pages, never THP: the hat maps each one on its own.
	Buffer buf(kAliasPages * kPageSize, 0, kPageSize, Huge::Never);
	int map_err = 0;
	u64 map_fail_at = 0;
	auto t0 = std::chrono::steady_clock::now();
	for (u32 h = 0; h < nhats && !map_err; h++) {
		auto hat = Hat::create(*dev);
		if (!hat) {
			map_err = hat.error();
			break;
		}
		const u64 count = n / nhats + (h < n % nhats ? 1 : 0);
		for (u64 i = 0; i < count; i++) {
			// Global index: every VA of every hat has its own 2 MiB slot.
			Page p{h, hat->id(), pages.size()};
			if (int err = dev->map(p.hat_id, p.va(), buf.data() + p.buffer_page() * kPageSize,
					       kPageSize, kProtRW, HTABLE_PAGE_4K)) {
				map_err = err;
				map_fail_at = pages.size();
				break;
			}
			pages.push_back(p);
		}
		hats.push_back(std::move(*hat));
	}
	auto secs = [&] {
		auto now = std::chrono::steady_clock::now();
		double s = std::chrono::duration<double>(now - t0).count();
		t0 = now;
		return s;
	};
	const Snapshot mapped = snapshot();
	rep.note(strfmt("mapped %zu VAs (aliases of %llu pages) in %.1f s; tables_live %llu -> %llu, "
		     "stealable %llu, MemAvailable now %llu MiB", pages.size(), kAliasPages, secs(),
		     base.tables_live, mapped.tables_live, mapped.stealable,
		     meminfo_kib("MemAvailable").value_or(0) / 1024));
	if (map_err)
		rep.note(strfmt("MAP failed after %llu pages: %s", map_fail_at, errno_desc(map_err).c_str()));
	result(!map_err && mapped.tables_live >= base.tables_live + pages.size(),
	       strfmt("setup: %zu user pages at 2 MiB strides in %u hat%s hold >= %zu more tables",
		   pages.size(), nhats, nhats == 1 ? "" : "s", pages.size()));
	if (map_err)
		return abort_rest("setup failed");

	// ---- 2. fill: through the hat, one VA per buffer page; the process
	// then reads its own buffer.
	const std::vector<Page> firsts(pages.begin(),
				       pages.begin() + std::min<size_t>(pages.size(), kAliasPages));
	u64 bad = jobs_over(*dev, firsts, HTABLE_JOB_FILL, threads, cpus,
			    [](int err, const htable_job& j) { return !err && j.bytes == kPageSize && !j.faults; },
			    nullptr);
	u64 wrong = 0;
	for (const Page& p : firsts)
		wrong += count_mismatches(buf.span(p.buffer_page() * kPageSize, kPageSize), p.seed()) != 0;
	const Snapshot filled = snapshot();
	rep.note(strfmt("filled in %.1f s; tables_live %llu, stealable %llu, reserve %llu/%llu", secs(),
		     filled.tables_live, filled.stealable, filled.reserve, filled.reserve_target));
	result(bad == 0 && wrong == 0,
	       strfmt("fill: FILL jobs through the hat wrote the %zu buffer pages the process reads back "
		   "(%llu jobs failed, %llu pages wrong)", firsts.size(), bad, wrong));

	// ---- 3. hog
	pid_t hog = -1;
	bool hog_alive = false;
	u64 hogged_tables = ~0ull;
	std::string old_adj;
	(void)read_file("/proc/self/oom_score_adj", old_adj);
	if (cfg.hog) {
		(void)write_file("/proc/self/oom_score_adj", "-1000");
		const u64 left = total * cfg.hog_left_pct / 100;
		int fds[2];
		if (pipe(fds) != 0) {
			result(false, "hog: pipe: " + std::string(std::strerror(errno)));
		} else {
			std::fflush(stdout);
			hog = fork();
			if (hog == 0) {
				close(fds[0]);
				hog_child(fds[1], left, filled.tables_live * kPageSize * cfg.overcommit_pct / 100);
			}
			close(fds[1]);
			char msg[64] = {};
			pollfd pfd{fds[0], POLLIN, 0};
			ssize_t got = -1;
			if (hog > 0 && poll(&pfd, 1, 300 * 1000) == 1)
				got = read(fds[0], msg, sizeof(msg) - 1);
			close(fds[0]);
			unsigned long long held = 0, at = 0;
			const bool hog_ok = got > 0 && std::sscanf(msg, "%llu %llu", &held, &at) == 2;
			const Snapshot hogged = snapshot();
			hogged_tables = hogged.tables_live;
			rep.note(strfmt("hog holds %llu MiB, MemAvailable %llu MiB (goal %llu MiB) after %.1f s; "
				     "tables_live %llu -> %llu, shrinker_calls +%llu, shrinker_freed +%llu",
				     held >> 20, at / 1024, left / 1024, secs(), filled.tables_live,
				     hogged.tables_live, hogged.shrinker_calls - filled.shrinker_calls,
				     hogged.shrinker_freed - filled.shrinker_freed));
			int hst = 0;
			hog_alive = hog > 0 && waitpid(hog, &hst, WNOHANG) == 0;
			if (hog > 0 && !hog_alive) {
				rep.note(strfmt("the hog died (wait status 0x%x): OOM-killed?", hst));
				hog = -1;
			}
			result(hog_ok && hog_alive,
			       strfmt("hog: a child took MemAvailable down to ~%u%% of MemTotal, then the "
				   "rest and %u%% of the tables' memory more, without an OOM kill",
				   cfg.hog_left_pct, cfg.overcommit_pct));
		}
	} else {
		result(true, "hog", "memory hog disabled");
	}

	// ---- 4. drop caches
	int drop_err = write_file("/proc/sys/vm/drop_caches", "2");
	const Snapshot dropped = snapshot();
	if (drop_err)
		rep.note("echo 2 > /proc/sys/vm/drop_caches: " + errno_desc(drop_err));
	rep.note(strfmt("after drop_caches (%.1f s): tables_live %llu -> %llu, steals +%llu, shrinker_calls "
		     "+%llu, shrinker_freed +%llu, reserve %llu/%llu", secs(), filled.tables_live,
		     dropped.tables_live, dropped.steals - filled.steals,
		     dropped.shrinker_calls - filled.shrinker_calls,
		     dropped.shrinker_freed - filled.shrinker_freed, dropped.reserve,
		     dropped.reserve_target));
	if (hog > 0) {
		int status = 0;
		pid_t w = waitpid(hog, &status, WNOHANG);
		if (w == hog)
			rep.note(strfmt("the hog died before we stopped it (wait status 0x%x)", status));
		kill(hog, SIGKILL);
		if (w != hog)
			waitpid(hog, &status, 0);
	}
	if (!old_adj.empty())
		(void)write_file("/proc/self/oom_score_adj", old_adj);

	// ---- 5. checks
	result(!drop_err && dropped.shrinker_calls > filled.shrinker_calls,
	       strfmt("shrinker: shrinker_calls grew (%llu -> %llu)", filled.shrinker_calls,
		   dropped.shrinker_calls));
	const u64 drop = filled.tables_live > dropped.tables_live ? filled.tables_live - dropped.tables_live : 0;
	const u64 need = filled.stealable * 9 / 10;
	result(drop >= need, strfmt("reclaim: tables_live fell by %llu, >= 90%% of the %llu stealable (%llu)",
				 drop, filled.stealable, need));
	result(dropped.reserve == dropped.reserve_target,
	       strfmt("reserve: back at its target (%llu of %llu)", dropped.reserve, dropped.reserve_target));

	u64 reloads = 0;
	std::atomic<u64> mismatched{0};
	bad = jobs_over(*dev, pages, HTABLE_JOB_VERIFY, threads, cpus,
			[&](int err, const htable_job& j) {
				if (!err && j.result)
					mismatched++;
				return !err && j.bytes == kPageSize && !j.faults && !j.result;
			},
			&reloads);
	rep.note(strfmt("verified in %.1f s: %llu reloads", secs(), reloads));
	result(bad == 0 && reloads > 0,
	       strfmt("verify: every byte of %zu pages verifies after reclaim (%llu pages bad, %llu "
		   "mismatching), %llu reloads", pages.size(), bad, mismatched.load(), reloads));

	rep.figures(strfmt("{\"test\":\"pressure\",\"tables\":%zu,\"stealable\":%llu,\"reclaimed\":%llu,"
			"\"reclaimed_pct\":%llu,\"reclaimed_during_hog\":%llu,\"overcommit_pct\":%u,"
			"\"oom_killed\":%d,\"pages_bad\":%llu,\"mismatches\":%llu,\"reloads\":%llu}",
			pages.size(), filled.stealable, drop,
			filled.stealable ? drop * 100 / filled.stealable : 0,
			filled.tables_live - std::min(filled.tables_live, hogged_tables),
			cfg.hog ? cfg.overcommit_pct : 0, cfg.hog && !hog_alive, bad, mismatched.load(),
			reloads));

	// ---- cleanup
	hats.clear();
	dev->close();
	Snapshot after;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	do {
		after = snapshot();
		if (after.tables_live == base.tables_live && after.hats_live == base.hats_live)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	} while (std::chrono::steady_clock::now() < deadline);
	result(after.tables_live == base.tables_live && after.hats_live == base.hats_live &&
		       after.pinned == base.pinned,
	       strfmt("cleanup: tables_live %llu -> %llu, hats_live %llu -> %llu, pinned_pages %llu -> %llu",
		   base.tables_live, after.tables_live, base.hats_live, after.hats_live, base.pinned,
		   after.pinned));
	return failed;
}

// ---------------------------------------------------------------- subcommand

namespace {

const char kPressureHelp[] =
	"Usage: htablectl pressure [--tables N] [--hats N] [--no-scale] [--no-hog]\n"
	"                          [--hog-left PCT] [--overcommit PCT] [--threads N]\n"
	"\n"
	"Memory-pressure test for a small machine (made for 256-512 MiB guests).\n"
	"Creates hats holding N page tables (default 40000: a page of a 1 MiB user\n"
	"buffer every 2 MiB; N is scaled down to fit 60% of MemAvailable unless\n"
	"--no-scale), fills them, then runs a memory hog in a child until\n"
	"MemAvailable is down to PCT% of MemTotal (default 15; --no-hog skips it)\n"
	"and then, with --overcommit PCT, the rest of MemAvailable and PCT % of the\n"
	"tables' memory more (default 0): memory only the shrinker can give back;\n"
	"the hog must not be OOM-killed),\n"
	"writes 2 to /proc/sys/vm/drop_caches, and checks:\n"
	"  - debugfs shrinker_calls grew;\n"
	"  - tables_live fell by at least 90% of the stealable count before;\n"
	"  - the reserve is back at its target;\n"
	"  - a VERIFY job at every VA sees every byte of its page, with reloads;\n"
	"  - destroying the hats returns tables_live, hats_live, pinned_pages.\n"
	"Output is TAP version 13 ('1..8', one ok/not ok per check, '#' notes).\n"
	"Needs root, debugfs and the htable module.  Exit status 0 only if every\n"
	"check passed, 1 otherwise, 2 on a usage error.\n";

class TapReport : public PressureReport {
public:
	void note(const std::string& line) override
	{
		std::printf("# %s\n", line.c_str());
		std::fflush(stdout);
	}
	void figures(const std::string& json) override
	{
		std::printf("# reliability %s\n", json.c_str());
		std::fflush(stdout);
	}
	void result(bool ok, const std::string& name, const char* skip) override
	{
		if (skip)
			std::printf("ok %d - %s # SKIP %s\n", ++n_, name.c_str(), skip);
		else
			std::printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_, name.c_str());
		std::fflush(stdout);
	}

private:
	int n_ = 0;
};

}  // namespace

int cmd_pressure(std::span<char*> args)
{
	PressureConfig cfg;
	for (size_t i = 1; i < args.size(); i++) {
		std::string a = args[i];
		auto value = [&](u64& out) {
			if (i + 1 >= args.size() || !parse_u64(args[i + 1], out)) {
				std::fprintf(stderr, "htablectl pressure: %s needs a number\n", a.c_str());
				return false;
			}
			i++;
			return true;
		};
		u64 v = 0;
		if (a == "--help" || a == "-h") {
			std::fputs(kPressureHelp, stdout);
			return 0;
		} else if (a == "--tables") {
			if (!value(v) || v == 0)
				return 2;
			cfg.tables = v;
		} else if (a == "--hats") {
			if (!value(v) || v == 0 || v > 4096)
				return 2;
			cfg.hats = u32(v);
		} else if (a == "--threads") {
			if (!value(v) || v == 0 || v > 64)
				return 2;
			cfg.threads = unsigned(v);
		} else if (a == "--hog-left") {
			if (!value(v) || v == 0 || v >= 100)
				return 2;
			cfg.hog_left_pct = unsigned(v);
		} else if (a == "--overcommit") {
			if (!value(v) || v > 100)
				return 2;
			cfg.overcommit_pct = unsigned(v);
		} else if (a == "--no-hog") {
			cfg.hog = false;
		} else if (a == "--no-scale") {
			cfg.scale = false;
		} else {
			std::fprintf(stderr, "htablectl pressure: unexpected argument '%s'\n"
					     "Try 'htablectl pressure --help'.\n", a.c_str());
			return 2;
		}
	}
	std::printf("TAP version 13\n1..%d\n", kPressureChecks);
	std::fflush(stdout);
	TapReport rep;
	int failed = run_pressure(cfg, rep);
	std::printf("# %d of %d checks passed\n", kPressureChecks - failed, kPressureChecks);
	return failed ? 1 : 0;
}

}  // namespace htable
