// SPDX-License-Identifier: GPL-2.0
//
// selftest: the module in its system -- per-fd limits (module parameters),
// RLIMIT_MEMLOCK, another process using the fd, TLB flush IPIs from this
// process's own mm while jobs run, CPU hotplug, a process killed in the
// middle of a job, the per-hat debugfs files, and a reduced run of the
// memory-pressure scenario.
#include "selftest.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable::st {
namespace {

// ------------------------------------------------------------ per-fd caps

void t_caps(Ctx& c, T& t)
{
	{
		ParamGuard g(t, "max_hats_per_fd", "2");
		if (!g.ok())
			return;
		t.diag("max_hats_per_fd %s -> 2 for this test", g.old().c_str());
		auto dev = Device::open();
		if (!t.want_ok(dev ? 0 : dev.error(), "open"))
			return;
		htable_hat_create a{}, b{}, x{};
		t.want_ok(dev->hat_create(a), "HAT_CREATE 1 of 2");
		t.want_ok(dev->hat_create(b), "HAT_CREATE 2 of 2");
		t.want_err(dev->hat_create(x), ENOSPC, "HAT_CREATE 3 of 2");
		x = {};
		x.flags = HTABLE_HAT_COPIED_TOP;
		t.want_err(dev->hat_create(x), ENOSPC, "HAT_CREATE copied-top 3 of 2");
		// a refused create leaves nothing behind: freeing one slot is enough
		t.want_ok(dev->hat_destroy(b.hat_id), "HAT_DESTROY one");
		x = {};
		t.want_ok(dev->hat_create(x), "HAT_CREATE after a destroy");
		// per fd: another file has its own count
		auto dev2 = Device::open();
		if (t.want_ok(dev2 ? 0 : dev2.error(), "open a second fd")) {
			htable_hat_create y{};
			t.want_ok(dev2->hat_create(y), "HAT_CREATE on the second fd");
		}
		// raising the limit takes effect for an fd that holds hats already
		if (t.want_ok(write_param("max_hats_per_fd", "3"), "max_hats_per_fd = 3")) {
			x = {};
			t.want_ok(dev->hat_create(x), "HAT_CREATE 3 of 3");
		}
	}
	{
		ParamGuard g(t, "max_tables_per_fd", "2");
		if (!g.ok())
			return;
		t.diag("max_tables_per_fd %s -> 2 for this test", g.old().c_str());
		auto dev = Device::open();
		if (!t.want_ok(dev ? 0 : dev.error(), "open"))
			return;
		auto hat = Hat::create(*dev);
		if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE"))
			return;
		Buffer buf(P);
		// 1 table (the top) < 2: this MAP may go ahead, and adds a table per level
		t.want_ok(dev->map_owned(hat->id(), kDemoVa, P), "MAP with 1 table held, limit 2");
		t.want_err(dev->map_owned(hat->id(), kDemoVa + k1G, P), ENOSPC,
			   "MAP owned with %u tables held, limit 2", c.levels());
		t.want_err(dev->map(hat->id(), kDemoVa + k1G, buf.data(), P), ENOSPC,
			   "MAP user memory with %u tables held, limit 2", c.levels());
		htable_translate tr{};
		if (t.want_ok(dev->translate(hat->id(), kDemoVa + k1G, tr), "TRANSLATE"))
			t.check(!tr.mapped, "a MAP refused with ENOSPC mapped anyway");
		// other fds are not affected by this fd's tables
		auto dev2 = Device::open();
		if (t.want_ok(dev2 ? 0 : dev2.error(), "open a second fd")) {
			auto h2 = Hat::create(*dev2);
			if (t.want_ok(h2 ? 0 : h2.error(), "HAT_CREATE on the second fd"))
				t.want_ok(dev2->map_owned(h2->id(), kDemoVa, P), "MAP on the second fd");
		}
	}
	// restored: the limit is gone again
	auto dev = Device::open();
	auto hat = dev ? Hat::create(*dev) : Result<Hat>(Err{dev.error()});
	if (t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE after the restore")) {
		t.want_ok(dev->map_owned(hat->id(), kDemoVa, P), "MAP after the restore");
		t.want_ok(dev->map_owned(hat->id(), kDemoVa + k1G, P), "second MAP after the restore");
	}
}

// ------------------------------------------------------------ RLIMIT_MEMLOCK

std::optional<u64> vm_locked_kib()
{
	std::string text;
	if (read_file("/proc/self/status", text) != 0)
		return std::nullopt;
	for (const auto& [k, v] : parse_kv(text)) {
		u64 x;
		if (k == "VmLck" && parse_u64(v, x))
			return x;
	}
	return std::nullopt;
}

void memlock_child(Ctx& c, T& t, void*)
{
	constexpr u64 limit_pages = 16;
	rlimit rl{limit_pages * P, limit_pages * P};
	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		_exit(3);
	auto dev = Device::open();  // ours: pins are charged to the opener's mm
	if (!t.want_ok(dev ? 0 : dev.error(), "open"))
		return;
	auto hat = Hat::create(*dev);
	if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE"))
		return;
	const u32 id = hat->id();
	Buffer buf(32 * P, 0, P, Huge::Never);
	auto lck0 = vm_locked_kib();
	// CAP_IPC_LOCK goes past the limit (the pins still show in VmLck)
	if (t.want_ok(dev->map(id, kDemoVa, buf.data(), 2 * limit_pages * P),
		      "MAP of %llu pages over a %llu-page RLIMIT_MEMLOCK with CAP_IPC_LOCK",
		      2 * limit_pages, limit_pages)) {
		if (auto l = vm_locked_kib(); l && lck0)
			t.check(*l == *lck0 + 2 * limit_pages * 4, "VmLck %llu -> %llu KiB with CAP_IPC_LOCK",
				*lck0, *l);
		t.want_ok(dev->unmap(id, kDemoVa, 2 * limit_pages * P), "UNMAP");
	}
	if (drop_caps({CAP_IPC_LOCK}, true) != 0)
		_exit(3);
	htable_version v{};
	t.want_ok(c.dev.version(v), "VERSION: CAP_SYS_ADMIN kept");
	t.diag("child: RLIMIT_MEMLOCK %llu KiB, no CAP_IPC_LOCK, VmLck %llu KiB", limit_pages * 4,
	       lck0.value_or(~0ull));
	t.want_err(dev->map(id, kDemoVa, buf.data(), (limit_pages + 1) * P), ENOMEM,
		   "MAP of %llu pages over a %llu-page RLIMIT_MEMLOCK", limit_pages + 1, limit_pages);
	if (auto l = vm_locked_kib(); l && lck0)
		t.check(*l == *lck0, "VmLck %llu -> %llu KiB after a refused MAP", *lck0, *l);
	if (!t.want_ok(dev->map(id, kDemoVa, buf.data(), limit_pages * P), "MAP of exactly the limit"))
		return;
	if (auto l = vm_locked_kib(); l && lck0)
		t.check(*l == *lck0 + limit_pages * 4, "VmLck %llu -> %llu KiB after mapping %llu pages",
			*lck0, *l, limit_pages);
	t.want_err(dev->map(id, kDemoVa + k1G, buf.data() + limit_pages * P, P), ENOMEM,
		   "MAP of one more page at the limit");
	htable_job j{};
	fill_pattern(buf.span(0, limit_pages * P), 0x3e);
	if (t.want_ok(dev->job(id, HTABLE_JOB_VERIFY, kDemoVa, limit_pages * P, 0x3e, HTABLE_JOB_ANY_CPU, j),
		      "VERIFY within the limit"))
		t.check(j.result == 0 && j.bytes == limit_pages * P, "VERIFY within the limit: %llu "
			"mismatches, %llu bytes", j.result, j.bytes);
	// unmapping gives the charge back
	if (t.want_ok(dev->unmap(id, kDemoVa, 8 * P), "UNMAP 8 pages"))
		t.want_ok(dev->map(id, kDemoVa + k1G, buf.data() + limit_pages * P, 8 * P),
			  "MAP 8 other pages after unmapping 8");
	t.want_ok(hat->reset(), "HAT_DESTROY");
	if (auto l = vm_locked_kib(); l && lck0)
		t.check(*l == *lck0, "VmLck %llu -> %llu KiB after destroying the hat", *lck0, *l);
	// module-owned memory is not process memory: not charged
	auto h2 = Hat::create(*dev);
	if (h2) {
		int err = dev->map_owned(h2->id(), kDemoVa, 4 * limit_pages * P);
		t.diag("MAP owned of %llu pages over RLIMIT_MEMLOCK: %s (owned memory is charged to the "
		       "memory cgroup, not to RLIMIT_MEMLOCK)", 4 * limit_pages, errno_desc(err).c_str());
	}
}

void t_memlock(Ctx& c, T& t)
{
	in_child(t, "RLIMIT_MEMLOCK child", memlock_child, c, nullptr);
}

// ------------------------------------------------------------ another mm

struct OtherMm {
	u32 id;
	u64 va;
	const u8* parent_buf;
};

void other_mm_child(Ctx& c, T& t, void* arg)
{
	auto* a = static_cast<OtherMm*>(arg);
	Buffer mine(P);
	t.want_err(c.dev.map(a->id, a->va + 8 * P, mine.data(), P), EFAULT,
		   "MAP of the child's memory through the parent's fd");
	// the same addresses exist in the child (a copy): still not the opener's mm
	t.want_err(c.dev.map(a->id, a->va + 8 * P, a->parent_buf, P), EFAULT,
		   "MAP of the parent's buffer address through the parent's fd, from the child");
	// what needs no process memory works
	t.want_ok(c.dev.map_owned(a->id, a->va + 16 * P, P), "MAP owned through the parent's fd");
	htable_job j{};
	if (want_job(c, t, j, a->id, HTABLE_JOB_VERIFY, a->va, 4 * P, 0xf0f, 4 * P, 0))
		t.check(j.result == 0, "child's VERIFY of the parent's mapping: %llu mismatches", j.result);
	want_mapped(c, t, a->id, a->va, true);
}

void t_other_mm(Ctx& c, T& t)
{
	auto f = fixture(c, t, 4);
	if (!f)
		return;
	fill_pattern(f->buf.span(0, 4 * P), 0xf0f);
	OtherMm arg{f->id(), f->va, f->buf.data()};
	in_child(t, "child using the parent's fd", other_mm_child, c, &arg);
	want_mapped(c, t, f->id(), f->va + 8 * P, false);
	want_mapped(c, t, f->id(), f->va + 16 * P, true);
	// control: the opener itself may map that memory
	t.want_ok(c.dev.map(f->id(), f->va + 8 * P, f->buf.data(), P), "MAP by the opener (control)");
}

// ------------------------------------------------------------ lazy TLB hazard

bool pin_thread(u32 cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

void t_lazy_tlb(Ctx& c, T& t)
{
	// Jobs run in kthreads that borrow whatever mm the CPU had (lazy TLB),
	// often ours.  Threads of this process change our mm on every CPU, so
	// TLB flush IPIs for it arrive while the runners are in CR3 windows.
	std::atomic<bool> stop{false};
	std::vector<std::atomic<u64>> iters(c.cpus.size());
	std::atomic<int> pinned_fail{0};
	std::vector<std::thread> storm;
	for (size_t k = 0; k < c.cpus.size() && k < 16; k++) {
		storm.emplace_back([&, k] {
			if (!pin_thread(c.cpus[k]))
				pinned_fail++;
			const size_t len = 16 * P;
			while (!stop.load(std::memory_order_relaxed)) {
				void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (p == MAP_FAILED)
					continue;
				auto* b = static_cast<volatile u8*>(p);
				for (size_t o = 0; o < len; o += P)
					b[o] = u8(o);
				mprotect(p, len, PROT_READ);
				(void)b[len / 2];
				mprotect(p, len, PROT_READ | PROT_WRITE);
				b[0] = 1;
				munmap(p, len);
				iters[k]++;
			}
		});
	}
	const u64 pages = 64, len = pages * P;
	auto a = fixture(c, t, pages), b = fixture(c, t, pages, true, 0, kProtRW, HTABLE_HAT_COPIED_TOP);
	const u64 mask = c.all_cpus_mask();
	u64 rounds = 0, bad = 0, shootdowns = 0;
	if (a && b) {
		auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
		while (std::chrono::steady_clock::now() < end && t.ok()) {
			for (Fixture* f : {&*a, &*b}) {
				const u64 seed = 0x1a2b0000 + rounds;
				htable_job j{};
				if (!want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, len, seed, mask, len, 0))
					break;
				bad += count_mismatches(f->buf.span(0, len), seed);
				if (!want_job_mask(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, seed, mask, len, 0))
					break;
				bad += j.result;
				shootdowns += j.shootdowns;
				const u32 cpu = c.cpus[rounds % c.cpus.size()];
				if (want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, f->va, len, 0, len, 0, cpu))
					bad += j.result != fnv1a64(f->buf.span(0, len));
			}
			rounds++;
		}
	}
	stop = true;
	for (auto& th : storm)
		th.join();
	std::string per;
	for (auto& n : iters)
		per += (per.empty() ? "" : ", ") + std::to_string(n.load());
	t.diag("%llu rounds of FILL/VERIFY/CHECKSUM on 2 hats (%llu hat shootdowns taken); "
	       "mmap/mprotect/munmap loops per CPU: %s", rounds, shootdowns, per.c_str());
	t.check(pinned_fail == 0, "%d storm threads could not be pinned", pinned_fail.load());
	t.check(rounds > 0, "no job round completed");
	t.check(bad == 0, "%llu bytes wrong under the mm storm", bad);
	for (size_t k = 0; k < iters.size() && k < 16; k++)
		t.check(iters[k] > 0, "the storm thread on CPU %u never ran", c.cpus[k]);
}

// ------------------------------------------------------------ CPU hotplug

void t_hotplug(Ctx& c, T& t)
{
	const std::string online = "/sys/devices/system/cpu/cpu1/online";
	std::string state;
	if (c.cpus.size() < 2 || read_file(online, state) != 0 || state.rfind("1", 0) != 0) {
		t.diag("branch: not run: needs CPU 1 online with %s (%zu CPUs online)", online.c_str(),
		       c.cpus.size());
		return;
	}
	auto f = fixture(c, t, 2);
	if (!f)
		return;
	if (!t.want_ok(write_file(online, "0"), "echo 0 > %s", online.c_str()))
		return;
	t.diag("branch: CPU 1 offline, then online again");
	htable_version v{};
	if (t.want_ok(c.dev.version(v), "VERSION"))
		t.check(v.nr_cpus == c.cpus.size() - 1, "nr_cpus %u with CPU 1 offline", v.nr_cpus);
	htable_job j{};
	t.want_err(c.dev.job(f->id(), HTABLE_JOB_FILL, f->va, P, 1, 1, j), EINVAL, "JOB on offline CPU 1");
	t.want_err(c.dev.job_mask(f->id(), HTABLE_JOB_FILL, f->va, P, 1, c.all_cpus_mask(), j), EINVAL,
		   "JOB with a mask holding offline CPU 1");
	t.check(all_equal(f->buf.span(0, P), 0), "a refused job wrote");
	if (want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, P, 2, P, 0, c.cpus[0]))
		t.check(j.ran_on_cpu == c.cpus[0], "ran on %u", j.ran_on_cpu);
	int err = write_file(online, "1");
	for (int i = 0; err && i < 50; i++) {  // a hotplug may still be settling
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		err = write_file(online, "1");
	}
	if (!t.want_ok(err, "echo 1 > %s", online.c_str()))
		return;
	if (t.want_ok(c.dev.version(v), "VERSION"))
		t.check(v.nr_cpus == c.cpus.size(), "nr_cpus %u after onlining CPU 1", v.nr_cpus);
	if (want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va + P, P, 3, P, 0, 1)) {
		t.check(j.ran_on_cpu == 1, "JOB on CPU 1 after onlining ran on %u", j.ran_on_cpu);
		t.check(count_mismatches(f->buf.span(P, P), 3) == 0, "FILL on CPU 1 not in the buffer");
	}
	if (c.all_cpus_mask() & 2)
		want_job_mask(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va + P, P, 3, c.all_cpus_mask(), P, 0);
}

// ------------------------------------------------------------ lifetime

[[noreturn]] void lifetime_child(int fd, const std::vector<u32>& cpus)
{
	auto dev = Device::open();
	if (!dev)
		_exit(3);
	htable_hat_create h[3] = {};
	h[2].flags = HTABLE_HAT_COPIED_TOP;
	for (auto& x : h)
		if (dev->hat_create(x))
			_exit(3);
	Buffer buf(64 * P, 0x11, P, Huge::Never);
	if (dev->map(h[0].hat_id, kDemoVa, buf.data(), buf.size()) ||
	    dev->map_owned(h[1].hat_id, kDemoVa, 4 * k2M, kProtRW, k2M) ||
	    dev->map(h[2].hat_id, kDemoVa, buf.data(), 16 * P))
		_exit(3);
	for (u64 i = 0; i < 16; i++)
		if (dev->map_owned(h[2].hat_id, kDemoVa + k1G + i * k2M, P))
			_exit(3);
	if (write(fd, "r", 1) != 1)
		_exit(3);
	const u64 mask = cpu_mask_of(cpus);
	for (u64 round = 0;; round++) {
		htable_job j{};
		dev->job_mask(h[1].hat_id, HTABLE_JOB_FILL, kDemoVa, 4 * k2M, round, mask, j);
		dev->job_mask(h[0].hat_id, HTABLE_JOB_VERIFY, kDemoVa, 64 * P, round, mask, j);
	}
}

void t_lifetime(Ctx& c, T& t)
{
	auto before = counters(t);
	if (!t.check(before.has_value(), "debugfs stats needed"))
		return;
	const pid_t pid = fork_ready_child(t, "a child with 3 hats and jobs",
					   [&](int fd) { lifetime_child(fd, c.cpus); });
	if (pid < 0)
		return;
	auto during = counters(t);
	if (during) {
		t.diag("while the child runs: hats_live %llu pinned_pages %llu tables_live %llu",
		       during->hats_live, during->pinned_pages, during->tables_live);
		t.check(during->hats_live == before->hats_live + 3, "hats_live %llu -> %llu with the "
			"child's 3 hats", before->hats_live, during->hats_live);
		t.check(during->pinned_pages == before->pinned_pages + 80, "pinned_pages %llu -> %llu "
			"with the child's 80 pinned pages", before->pinned_pages, during->pinned_pages);
	}
	t.check(find_hat_gids(pid, 1).size() == 1, "no debugfs dir for the child's hat 1");
	std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside a job by now
	kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	t.check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child wait status 0x%x", status);
	auto after = wait_counters(t, *before, 10000);
	if (t.check(after.has_value(), "stats unreadable"))
		t.check(after->hats_live == before->hats_live && after->pinned_pages == before->pinned_pages &&
				after->tables_live == before->tables_live,
			"after kill -9: hats_live %llu -> %llu, pinned_pages %llu -> %llu, tables_live "
			"%llu -> %llu", before->hats_live, after->hats_live, before->pinned_pages,
			after->pinned_pages, before->tables_live, after->tables_live);
	for (u32 id = 1; id <= 3; id++)
		t.check(find_hat_gids(pid, id).empty(), "debugfs still has hat %u of the killed child", id);
}

// ------------------------------------------------------------ debugfs

std::vector<std::string> lines_of(const std::string& s)
{
	std::vector<std::string> out;
	size_t pos = 0;
	while (pos < s.size()) {
		size_t eol = s.find('\n', pos);
		if (eol == std::string::npos)
			eol = s.size();
		out.push_back(s.substr(pos, eol - pos));
		pos = eol + 1;
	}
	return out;
}

void dump_child(Ctx&, T& t, void* arg)
{
	if (drop_caps({CAP_SYS_ADMIN}, false) != 0)
		_exit(3);
	std::string dump;
	if (t.want_ok(read_file(*static_cast<std::string*>(arg), dump), "read dump without CAP_SYS_ADMIN"))
		t.check(dump.find("pa=") == std::string::npos && !dump.empty(),
			"dump read without CAP_SYS_ADMIN shows pa=:\n%s", dump.c_str());
}

void t_debugfs(Ctx& c, T& t)
{
	auto dev = Device::open();
	if (!t.want_ok(dev ? 0 : dev.error(), "open"))
		return;
	for (u32 flags : {0u, u32(HTABLE_HAT_COPIED_TOP)}) {
		const char* kind = flags ? "copied-top" : "normal";
		auto hat = Hat::create(*dev, flags);
		if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE %s", kind))
			return;
		Buffer buf(4 * P);
		if (!t.want_ok(dev->map(hat->id(), kDemoVa, buf.data(), 4 * P), "MAP") ||
		    !t.want_ok(dev->map_owned(hat->id(), kDemoVa + k1G, P), "MAP owned"))
			return;
		auto gids = find_hat_gids(getpid(), hat->id());
		if (!t.check(gids.size() == 1, "%s hat %u: %zu debugfs dirs with owner_pid %d", kind,
			     hat->id(), gids.size(), getpid()))
			return;
		const std::string dir = hat_debugfs_dir(gids[0]);
		std::string info, dump;
		if (!t.want_ok(read_file(dir + "/info", info), "read %s/info", dir.c_str()) ||
		    !t.want_ok(read_file(dir + "/dump", dump), "read %s/dump", dir.c_str()))
			return;
		std::map<std::string, std::string> kv;
		for (auto& [k, v] : parse_kv(info))
			kv[k] = v;
		// top + one table per lower level for kDemoVa, and a level-1 and a
		// level-0 table of their own for kDemoVa + 1 GiB
		const u64 want_tables = c.levels() + 2;
		t.check(kv["gid"] == std::to_string(gids[0]) && kv["fd_id"] == std::to_string(hat->id()) &&
				kv["levels"] == std::to_string(c.levels()) &&
				kv["copied_top"] == (flags ? "1" : "0") && kv["extents"] == "2" &&
				kv["tables"] == std::to_string(want_tables),
			"%s info (expected %llu tables, 2 extents):\n%s", kind, want_tables, info.c_str());
		auto lines = lines_of(dump);
		size_t with_pa = 0;
		for (const auto& l : lines)
			with_pa += l.find("pa=") != std::string::npos;
		const std::string root = "L" + std::to_string(c.levels() - 1) + " ";
		t.check(lines.size() == want_tables, "%s dump: %zu lines, %llu tables", kind, lines.size(),
			want_tables);
		t.check(with_pa == 1 && !lines.empty() && lines[0].rfind(root, 0) == 0 &&
				lines[0].find("pa=") != std::string::npos,
			"%s dump: pa= must be on the root line only:\n%s", kind, dump.c_str());
		if (flags)
			t.check(!lines.empty() && lines[0].find("copied-top") != std::string::npos,
				"copied-top dump's root line lacks 'copied-top': %s",
				lines.empty() ? "" : lines[0].c_str());
		if (!flags) {
			std::string path = dir + "/dump";
			in_child(t, "reading dump without CAP_SYS_ADMIN", dump_child, c, &path);
		}
		const u32 id = hat->id();
		t.want_ok(hat->reset(), "HAT_DESTROY");
		struct stat st;
		t.check(::stat(dir.c_str(), &st) != 0 && errno == ENOENT, "%s still exists after destroy",
			dir.c_str());
		t.check(find_hat_gids(getpid(), id).empty(), "a debugfs dir still names destroyed hat %u", id);
	}
}

// ------------------------------------------------------------ pressure

class TReport : public PressureReport {
public:
	explicit TReport(T& t) : t_(t) {}
	void note(const std::string& line) override { t_.diag("%s", line.c_str()); }
	void result(bool ok, const std::string& name, const char* skip) override
	{
		if (skip)
			t_.diag("skipped: %s (%s)", name.c_str(), skip);
		else if (ok)
			t_.diag("ok: %s", name.c_str());
		else
			t_.check(false, "%s", name.c_str());
	}

private:
	T& t_;
};

void t_pressure_lite(Ctx&, T& t)
{
	PressureConfig cfg;
	cfg.tables = 2000;
	cfg.hats = 2;
	cfg.hog = false;  // the full run (htablectl pressure) adds a memory hog
	TReport rep(t);
	run_pressure(cfg, rep);
}

}  // namespace

std::vector<Case> system_cases()
{
	return {
		{"caps: max_hats_per_fd / max_tables_per_fd give ENOSPC, per fd", t_caps},
		{"rlimit: MAP over RLIMIT_MEMLOCK gives ENOMEM without CAP_IPC_LOCK, works with it",
		 t_memlock},
		{"fd: from a forked child MAP of user memory gives EFAULT, owned works", t_other_mm},
		{"lazy TLB: mmap/mprotect/munmap storm on all CPUs while jobs run", t_lazy_tlb},
		{"hotplug: offline CPU 1 gives EINVAL, online again runs there", t_hotplug},
		{"lifetime: kill -9 during a job returns hats, pins and tables", t_lifetime},
		{"debugfs: hats/<gid>/info and dump while a hat lives, gone after", t_debugfs},
		{"pressure (reduced): 2000 tables, drop_caches, reclaim, verify", t_pressure_lite},
	};
}

}  // namespace htable::st
