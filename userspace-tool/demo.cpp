// SPDX-License-Identifier: GPL-2.0
//
// `htablectl demo`: a narrated tour of the module for a first-time reader.
// Every step is also checked; a failed check is printed with "!!" and makes
// the command exit 1.
#include "htablectl.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <exception>
#include <unistd.h>

namespace htable {
namespace {

const char kDemoHelp[] =
	"Usage: htablectl demo\n"
	"\n"
	"Walk through the module step by step, explaining each one: open the\n"
	"device, create a hat (a private page-table tree), map 1 MiB of this\n"
	"process's memory into it, translate an address, let a kernel thread on\n"
	"every online CPU write through the hat's page tables and read the result\n"
	"back from the process's own mapping, compare a kernel checksum with our\n"
	"own, unmap; then let the module take page tables back (REAP) and watch a\n"
	"job reload every translation and still verify; then put the machine under\n"
	"real memory pressure (`htablectl pressure`: ~20000 page tables, a memory\n"
	"hog that needs some of them back, drop_caches) and check every byte again;\n"
	"show the module's counters.\n"
	"Needs root.\n"
	"Exit status 0 only if every check passed.\n";

constexpr size_t kBufSize = 1 << 20;
constexpr u64 kSeed = 0xdecafbad0000ull;

class Narrator {
public:
	// A step header line: "[n] text".
	void step(const char* fmt, ...) __attribute__((format(printf, 2, 3)))
	{
		std::printf("[%d] ", ++n_);
		va_list ap;
		va_start(ap, fmt);
		std::vprintf(fmt, ap);
		va_end(ap);
		std::putchar('\n');
	}
	// An indented detail line.
	void note(const char* fmt, ...) __attribute__((format(printf, 2, 3)))
	{
		std::fputs("    ", stdout);
		va_list ap;
		va_start(ap, fmt);
		std::vprintf(fmt, ap);
		va_end(ap);
		std::putchar('\n');
	}
	// A failed check.
	void bad(const char* fmt, ...) __attribute__((format(printf, 2, 3)))
	{
		failed_ = true;
		std::fputs("    !! ", stdout);
		va_list ap;
		va_start(ap, fmt);
		std::vprintf(fmt, ap);
		va_end(ap);
		std::putchar('\n');
	}
	// Reports an ioctl failure; returns true if err != 0.
	bool failed(int err, const char* what)
	{
		if (err)
			bad("%s failed: %s", what, errno_desc(err).c_str());
		return err != 0;
	}
	bool any_failed() const { return failed_; }

private:
	int n_ = 0;
	bool failed_ = false;
};

int finish(Narrator& say)
{
	std::fflush(stdout);
	if (say.any_failed()) {
		std::puts("demo: FAILED, see the lines marked '!!' above.");
		return 1;
	}
	std::puts("demo: every check passed.");
	return 0;
}

// Page tables the hat holds, from its debugfs info (0 if unreadable).
u64 hat_tables(u32 hat_id)
{
	auto gids = find_hat_gids(getpid(), hat_id);
	std::string text;
	if (gids.size() != 1 || read_file(hat_debugfs_dir(gids[0]) + "/info", text) != 0)
		return 0;
	u64 n = 0;
	for (const auto& [k, v] : parse_kv(text))
		if (k == "tables")
			parse_u64(v, n);
	return n;
}

// Page tables are only a cache of what the hat maps: the module can take
// them back at any time (its shrinker does under memory pressure) and put
// the translations back from the hat's record on the next access.
void reclaim_story(Narrator& say, const Device& dev)
{
	constexpr u64 kPages = 16;
	auto hat = Hat::create(dev);
	if (!hat) {
		say.failed(hat.error(), "HTABLE_IOC_HAT_CREATE");
		return;
	}
	Buffer buf(kPages * kPageSize);
	for (u64 i = 0; i < kPages; i++)
		if (say.failed(dev.map(hat->id(), kDemoVa + i * k2M, buf.data() + i * kPageSize, kPageSize),
			       "HTABLE_IOC_MAP"))
			return;
	htable_job j{};
	for (u64 i = 0; i < kPages; i++)
		if (say.failed(dev.job(hat->id(), HTABLE_JOB_FILL, kDemoVa + i * k2M, kPageSize, kSeed + i,
				       HTABLE_JOB_ANY_CPU, j), "FILL job"))
			return;
	const u64 held = hat_tables(hat->id());
	say.step("A new hat #%u maps %llu of our pages, one every 2 MiB, so each needs a page",
		 hat->id(), kPages);
	say.note("table of its own at the lowest level; a FILL job wrote each page.%s",
		 held ? (" The hat holds " + std::to_string(held) + " page tables.").c_str() : "");

	auto before = read_stat("steals"), reloads0 = read_stat("reloads");
	u64 freed = 0;
	if (say.failed(dev.reap(~0ull, &freed), "HTABLE_IOC_REAP"))
		return;
	const u64 left = hat_tables(hat->id());
	say.step("HTABLE_IOC_REAP: the module takes page tables back, as its shrinker does under");
	if (held)
		say.note("memory pressure (it reports freed=%llu).  Our hat now holds %llu of its %llu "
			 "tables:", freed, left, held);
	else
		say.note("memory pressure (it reports freed=%llu).", freed);
	say.note("only the top level always stays.  What the tables said is not lost: each hat");
	say.note("keeps a record of its mappings, and tables are only a cache of it.");
	if (freed < kPages)
		say.bad("REAP freed only %llu tables; our hat alone had %llu to give", freed, kPages);

	u64 reloads = 0, bad = 0, bytes = 0;
	for (u64 i = 0; i < kPages; i++) {
		if (say.failed(dev.job(hat->id(), HTABLE_JOB_VERIFY, kDemoVa + i * k2M, kPageSize, kSeed + i,
				       HTABLE_JOB_ANY_CPU, j), "VERIFY job"))
			return;
		reloads += j.reloads;
		bad += j.result;
		bytes += j.bytes;
	}
	say.step("HAT_JOB VERIFY of every page: each first access faults in the CR3 window, the");
	say.note("module reloads the translation from the record and retries: %llu reloads,", reloads);
	if (bad == 0 && bytes == kPages * kPageSize && reloads >= kPages)
		say.note("and all %llu bytes still hold what the FILL jobs wrote. OK", bytes);
	else
		say.bad("%llu bytes checked, %llu differ, %llu reloads (expected %llu)", bytes, bad,
			reloads, kPages);
	auto after = read_stat("steals"), reloads1 = read_stat("reloads");
	if (before && after && reloads0 && reloads1)
		say.note("counters: steals %llu -> %llu, reloads %llu -> %llu.", *before, *after,
			 *reloads0, *reloads1);
	if (!say.failed(hat->reset(), "HTABLE_IOC_HAT_DESTROY"))
		say.note("HAT_DESTROY of the second hat.");
}

// The `htablectl pressure` scenario, told in the demo's voice.
class NarratedPressure : public PressureReport {
public:
	explicit NarratedPressure(Narrator& say) : say_(say) {}
	void note(const std::string& line) override { say_.note("%s", line.c_str()); }
	void result(bool ok, const std::string& name, const char* skip) override
	{
		if (skip)
			say_.note("(not run: %s: %s)", name.c_str(), skip);
		else if (ok)
			say_.note("OK  %s", name.c_str());
		else
			say_.bad("%s", name.c_str());
	}

private:
	Narrator& say_;
};

void pressure_story(Narrator& say)
{
	say.step("Memory pressure, for real.  New hats map ~20000 pages one per 2 MiB (each");
	say.note("needs its own page table: ~80 MiB of tables).  Then a child process eats");
	say.note("memory until little is left, and then half of the tables' size more: memory");
	say.note("that only the htable shrinker can give back.  If reclaim could not get our");
	say.note("tables, the OOM killer would kill the child.  Then echo 2 > drop_caches asks");
	say.note("every shrinker for everything, and jobs check every page still reads right:");
	PressureConfig cfg;
	cfg.tables = 20000;
	cfg.overcommit_pct = 50;
	NarratedPressure rep(say);
	run_pressure(cfg, rep);
}

int run_demo()
{
	Narrator say;
	auto dev = Device::open();
	if (!dev) {
		print_error(std::string("cannot open ") + kDevicePath, dev.error());
		return 1;
	}
	htable_version v{};
	if (int err = dev->version(v)) {
		print_error("HTABLE_IOC_VERSION", err);
		return 1;
	}
	auto cpus = online_cpus();
	std::puts("htable demo.  A \"hat\" is a private x86 page-table tree owned by the module.\n"
		  "We map part of our own memory into one, then let kernel threads switch CR3\n"
		  "onto it and touch that memory through the MMU.\n");
	say.step("Opened %s (ABI v%u).  The CPUs run %u-level paging, so a hat can map",
		 kDevicePath, v.abi_version, v.paging_levels);
	say.note("private VAs below 0x%llx (%s).  %u CPUs online: %s.  Features: %s.",
		 v.user_va_end, human_size(v.user_va_end).c_str(), v.nr_cpus,
		 format_cpu_list(cpus).c_str(), feature_string(v.features).c_str());

	// ---- hat
	auto hat = Hat::create(*dev);
	if (!hat) {
		say.failed(hat.error(), "HTABLE_IOC_HAT_CREATE");
		return finish(say);
	}
	say.step("HAT_CREATE: hat #%u, an empty %u-level page-table tree of its own,",
		 hat->id(), hat->levels());
	say.note("unrelated to this process's page tables.  Its id is valid on this fd only.");
	if (hat->levels() != v.paging_levels)
		say.bad("hat has %u levels but the CPUs use %u", hat->levels(), v.paging_levels);

	// ---- our buffer
	Buffer buf(kBufSize);
	say.step("Allocated 1 MiB (%llu pages) of ordinary anonymous memory in this process",
		 kBufSize / kPageSize);
	say.note("at %p and touched every page, so each has a physical page behind it.",
		 static_cast<void*>(buf.data()));

	// ---- map
	const u64 va = kDemoVa;
	if (say.failed(dev->map(hat->id(), va, buf.data(), kBufSize), "HTABLE_IOC_MAP"))
		return finish(say);
	say.step("HAT_MAP: hat VA 0x%llx..0x%llx now maps those same physical pages",
		 va, va + kBufSize - 1);
	say.note("(read/write).  The module pinned them so they cannot move while mapped.");

	// ---- translate, cross-checked with /proc/self/pagemap
	const u64 off = 5 * kPageSize + 0x123;
	htable_translate tr{};
	if (!say.failed(dev->translate(hat->id(), va + off, tr), "HTABLE_IOC_TRANSLATE")) {
		say.step("HAT_TRANSLATE walks the hat's tables in software:");
		if (!tr.mapped) {
			say.bad("VA 0x%llx reported as not mapped", va + off);
		} else {
			say.note("hat VA 0x%llx -> PA 0x%llx (%s page, level %llu, prot %s)", va + off,
				 tr.pa, human_size(tr.page_size).c_str(), tr.level,
				 prot_string(tr.prot).c_str());
			std::string why;
			const u8* mine = buf.data() + off;
			if (auto pfn = pagemap_pfn(mine, &why)) {
				u64 pa = (*pfn << 12) | (reinterpret_cast<uintptr_t>(mine) & 0xfff);
				if (pa == tr.pa)
					say.note("/proc/self/pagemap: our address %p is PA 0x%llx too: same byte. OK",
						 static_cast<const void*>(mine), pa);
				else
					say.bad("/proc/self/pagemap says our address %p is PA 0x%llx, not 0x%llx",
						static_cast<const void*>(mine), pa, tr.pa);
			} else {
				say.note("(no cross-check with /proc/self/pagemap: %s)", why.c_str());
			}
		}
	}

	// ---- one FILL job per CPU, each on its own slice
	// Slices are page multiples; with more than 256 CPUs only the first 256
	// get one (the buffer has 256 pages).
	const size_t nslices = std::min<size_t>(cpus.size(), kBufSize / kPageSize);
	const size_t slice = nslices ? (kBufSize / nslices) & ~(kPageSize - 1) : 0;
	say.step("HAT_JOB FILL, one per online CPU: a kernel thread bound to that CPU loads the");
	say.note("hat into CR3 and writes pattern(seed, offset) into its %s slice through the",
		 human_size(slice).c_str());
	say.note("hat's VAs.  Then this process reads its own buffer (its own page tables).");
	for (size_t i = 0; i < nslices; i++) {
		const u32 cpu = cpus[i];
		const u64 soff = i * slice, seed = kSeed + cpu;
		htable_job j{};
		if (say.failed(dev->job(hat->id(), HTABLE_JOB_FILL, va + soff, slice, seed, cpu, j),
			       ("FILL job on CPU " + std::to_string(cpu)).c_str()))
			continue;
		u64 first = 0;
		u64 bad = count_mismatches(buf.span(soff, slice), seed, 0, &first);
		if (j.ran_on_cpu != cpu || j.bytes != slice || j.faults != 0 || bad != 0) {
			say.bad("FILL on CPU %u: ran on CPU %u, %llu bytes, %llu faults; process reads "
				"back %llu wrong bytes (first at +0x%llx)", cpu, j.ran_on_cpu, j.bytes,
				j.faults, bad, first);
			continue;
		}
		say.note("kthread on CPU %u wrote through our page tables; process reads back: OK"
			 "  (%u CR3 window%s, longest irqs-off %llu ns)", cpu, j.windows,
			 j.windows == 1 ? "" : "s", j.max_window_ns);
	}

	// ---- checksum
	htable_job j{};
	if (!say.failed(dev->job(hat->id(), HTABLE_JOB_CHECKSUM, va, kBufSize, 0,
				 HTABLE_JOB_ANY_CPU, j), "CHECKSUM job")) {
		u64 mine = fnv1a64(buf.span(0, kBufSize));
		say.step("HAT_JOB CHECKSUM over the whole MiB (ran on CPU %u): FNV-1a 0x%016llx;",
			 j.ran_on_cpu, j.result);
		if (j.result == mine && j.bytes == kBufSize && j.faults == 0)
			say.note("the process hashes its own view of the buffer: 0x%016llx. OK", mine);
		else
			say.bad("the process computes 0x%016llx (kernel: %llu bytes, %llu faults)",
				mine, j.bytes, j.faults);
	}

	// ---- unmap, then a job over the now-empty range
	const u64 before_unmap = fnv1a64(buf.span(0, kBufSize));
	if (!say.failed(dev->unmap(hat->id(), va, kBufSize), "HTABLE_IOC_UNMAP")) {
		say.step("HAT_UNMAP of the whole range: the module unpins the pages.");
		if (!say.failed(dev->translate(hat->id(), va + off, tr), "HTABLE_IOC_TRANSLATE")) {
			if (tr.mapped)
				say.bad("VA 0x%llx still translates to PA 0x%llx", va + off, tr.pa);
			else
				say.note("translate of VA 0x%llx now says: not mapped. OK", va + off);
		}
		if (!say.failed(dev->job(hat->id(), HTABLE_JOB_CHECKSUM, va, kBufSize, 0,
					 HTABLE_JOB_ANY_CPU, j), "CHECKSUM job after unmap")) {
			const u64 pages = kBufSize / kPageSize;
			if (j.faults == pages && j.bytes == 0)
				say.note("a job over it touches 0 bytes and reports %llu faulting pages "
					 "(skipped safely). OK", j.faults);
			else
				say.bad("job after unmap: %llu bytes, %llu faults (expected 0 and %llu)",
					j.bytes, j.faults, pages);
		}
		if (fnv1a64(buf.span(0, kBufSize)) == before_unmap)
			say.note("our own buffer is unaffected: it still holds what the kthreads wrote.");
		else
			say.bad("our own buffer changed across the unmap");
	}

	// ---- destroy
	int err = hat->reset();
	if (!say.failed(err, "HTABLE_IOC_HAT_DESTROY"))
		say.step("HAT_DESTROY: the hat's page tables are freed (closing the fd would too).");

	// ---- reclaim: tables given back, then reloaded
	reclaim_story(say, *dev);

	// ---- the shrinker under real memory pressure
	pressure_story(say);

	// ---- stats
	std::vector<Stat> stats;
	if (int e = read_stats(stats)) {
		say.bad("cannot read %s: %s", kStatsPath, errno_desc(e).c_str());
	} else {
		say.step("The module's counters, from %s:", kStatsPath);
		std::string line;
		for (size_t i = 0; i < stats.size(); i++) {
			line += stats[i].name + " " + stats[i].value;
			if (i % 4 == 3 || i + 1 == stats.size()) {
				say.note("%s", line.c_str());
				line.clear();
			} else {
				line += "   ";
			}
		}
	}
	return finish(say);
}

}  // namespace

int cmd_demo(std::span<char*> args)
{
	if (int rc = parse_simple_args(args, kDemoHelp, {}); rc >= 0)
		return rc;
	try {
		return run_demo();
	} catch (const std::exception& e) {
		std::fflush(stdout);
		std::fprintf(stderr, "htablectl demo: %s\n", e.what());
		return 1;
	}
}

}  // namespace htable
