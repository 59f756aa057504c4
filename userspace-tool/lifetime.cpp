// SPDX-License-Identifier: GPL-2.0
//
// `htablectl lifetime`: what happens to the module's objects when their
// owners go away at the worst moment.  Output is TAP; see kLifetimeHelp.
//
//   close    threads run multi-CPU jobs on an fd while the main thread
//            destroys a hat under them and then closes the fd: each job
//            completes with correct results or fails with ENOENT / EBADF;
//   race     one thread creates hats while another destroys the id the
//            next create will get (ids are reused lowest first): no hat's
//            debugfs directory may outlive it;
//   steal    an fd closed while REAP or the shrinker steal its hat's
//            tables: the hat goes without any later call to help it;
//   kill     a child busy with long jobs, big maps, walks and reaps is
//            killed with SIGKILL at random moments, many times;
//   memcg    in a memory cgroup (v2), page tables are charged to it
//            (__GFP_ACCOUNT): memory.stat `kernel` rises by about the
//            module's page count while they live and falls back after;
// and after each, hats_live, tables_live, pinned_pages (and pages_live,
// objects_live where the module has them) are back where they were.
//
// --quick is one short round of work for the load/unload loop of
// scripts/guest/lifetime.sh; --hold keeps an fd busy until killed, for
// its rmmod checks.
#include "htablectl.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <map>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable {
namespace {

using Clock = std::chrono::steady_clock;

constexpr u64 kP = kPageSize;
constexpr u64 kVa = 0x400000000000ull;  // 64 TiB: valid with 4 and 5 levels

class Tap {
public:
	void note(const std::string& s)
	{
		std::printf("# %s\n", s.c_str());
		std::fflush(stdout);
	}
	bool result(bool ok, const std::string& name)
	{
		std::printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_, name.c_str());
		std::fflush(stdout);
		failed_ += !ok;
		return ok;
	}
	int failed() const { return failed_; }
	// A test that cannot go on still reports every result it promised.
	void skip_rest(int n, const std::string& why)
	{
		while (n-- > 0)
			result(false, why);
	}

private:
	int n_ = 0, failed_ = 0;
};

u64 cpu_mask_all()
{
	return cpu_mask_of(online_cpus());
}

// The gids of hats/ in debugfs.
std::vector<std::string> debugfs_hat_dirs()
{
	std::vector<std::string> out;
	DIR* d = opendir((std::string(kDebugfsDir) + "/hats").c_str());
	if (!d)
		return out;
	while (struct dirent* e = readdir(d))
		if (e->d_name[0] != '.')
			out.push_back(e->d_name);
	closedir(d);
	std::sort(out.begin(), out.end());
	return out;
}

// Counters back at `base` (polling: the last put may come from another
// thread's ioctl on its way out); the result named after `what`.
bool counters_back(Tap& tap, const CounterSet& base, const std::string& what, u64* leaks = nullptr)
{
	const CounterSet now = wait_leak_counters(base, 10000);
	u64 total = 0;
	const std::string diff = counter_diff(base, now, false, &total);
	if (leaks)
		*leaks += total;
	return tap.result(now == base, what + ": counters back (" +
					       (diff.empty() ? counter_diff(base, now, true) : "differ: " + diff) +
					       ")");
}

// ---------------------------------------------------------------- close

struct InFlight {
	std::atomic<u64> ok{0}, gone{0}, closed{0}, wrong{0};
};

// One thread: VERIFY jobs over every CPU on one hat until the fd is gone.
// A job that ran must have seen every byte as the FILL left it: its hat
// and memory live until its last reference goes, whoever destroyed it.
void verify_until_closed(int fd, u32 hat, u64 len, u64 seed, u64 mask, InFlight& st)
{
	for (;;) {
		htable_job j{};
		j.hat_id = hat;
		j.op = HTABLE_JOB_VERIFY;
		j.cpu = HTABLE_JOB_ANY_CPU;
		j.va = kVa;
		j.length = len;
		j.seed = seed;
		j.cpu_mask = mask;
		const int err = ::ioctl(fd, HTABLE_IOC_JOB, &j) < 0 ? errno : 0;
		if (err == EBADF) {
			st.closed++;
			return;
		}
		if (err == ENOENT) {
			st.gone++;
			std::this_thread::yield();
			continue;
		}
		if (err || j.bytes != len || j.faults || j.result) {
			st.wrong++;
			std::printf("# close: hat %u: VERIFY %s, bytes %llu of %llu, faults %llu, %llu bad\n",
				    hat, errno_desc(err).c_str(), j.bytes, len, j.faults, j.result);
			std::fflush(stdout);
			if (err)
				return;
			continue;
		}
		st.ok++;
	}
}

void test_close(Tap& tap, unsigned rounds, Rng& rng)
{
	const u64 mask = cpu_mask_all();
	const unsigned nthreads = 2 * unsigned(online_cpus().size());
	InFlight st;
	unsigned ran = 0;
	for (unsigned r = 0; r < rounds; r++) {
		const CounterSet base = leak_counters();
		auto dev = Device::open();
		if (!dev) {
			tap.result(false, strfmt("close round %u: open: %s", r + 1, errno_desc(dev.error()).c_str()));
			continue;
		}
		// Three hats: owned 2 MiB leaves, owned 4 KiB leaves (copied top),
		// this process's memory.
		const u64 lens[3] = {2 * k2M, 128 * kP, 64 * kP};
		Buffer user(lens[2], 0, kP, Huge::Never);
		std::vector<u32> hats;
		int err = 0;
		for (unsigned h = 0; h < 3 && !err; h++) {
			auto hat = Hat::create(*dev, h == 1 ? HTABLE_HAT_COPIED_TOP : 0);
			err = hat ? 0 : hat.error();
			if (!err)
				err = h == 2 ? dev->map(hat->id(), kVa, user.data(), lens[h])
					     : dev->map_owned(hat->id(), kVa, lens[h], kProtRW, h ? kP : k2M);
			htable_job j{};
			if (!err)
				err = dev->job_mask(hat->id(), HTABLE_JOB_FILL, kVa, lens[h], 0xc105e + r, mask, j);
			if (!err)
				hats.push_back(hat->release());  // the fd's now: closing it destroys the hat
		}
		if (err) {
			tap.result(false, strfmt("close round %u: set up: %s", r + 1, errno_desc(err).c_str()));
			continue;
		}
		const int fd = dev->fd();
		std::vector<std::thread> th;
		for (unsigned k = 0; k < nthreads; k++) {
			const unsigned h = k % 3;
			th.emplace_back(verify_until_closed, fd, hats[h], lens[h], 0xc105e + r, mask, std::ref(st));
		}
		// Jobs are in flight within milliseconds; vary when the blows land,
		// and leave the threads of the destroyed hat time to find it gone.
		std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng.below(200)));
		(void)dev->hat_destroy(hats[r % 3]);
		std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng.below(200)));
		// Nothing else may be opened until the threads are done: a new file
		// could get the number they are using.
		dev->close();
		for (auto& t : th)
			t.join();
		counters_back(tap, base, strfmt("close round %u", r + 1));
		ran++;
	}
	tap.result(ran == rounds && st.wrong == 0 && st.closed == ran * nthreads,
		   strfmt("close: %llu jobs completed and verified, %llu saw their hat destroyed (ENOENT), "
			  "%llu threads saw the fd closed (EBADF), %llu wrong", st.ok.load(), st.gone.load(),
			  st.closed.load(), st.wrong.load()));
}

// ---------------------------------------------------------------- race

void test_race(Tap& tap, unsigned iterations)
{
	const CounterSet base = leak_counters();
	const auto dirs0 = debugfs_hat_dirs();
	auto dev = Device::open();
	if (!dev) {
		tap.skip_rest(3, "race: open: " + errno_desc(dev.error()));
		return;
	}
	std::atomic<bool> stop{false};
	std::atomic<u64> created{0}, destroyed{0}, errors{0};
	// Ids are allocated lowest first: a destroyed id 1 is the next create's.
	std::thread killer([&] {
		while (!stop.load()) {
			for (u32 id = 1; id <= 2; id++) {
				const int err = dev->hat_destroy(id);
				if (!err)
					destroyed++;
				else if (err != ENOENT)
					errors++;
			}
		}
	});
	for (unsigned i = 0; i < iterations; i++) {
		htable_hat_create c{};
		const int err = dev->hat_create(c);
		if (!err)
			created++;
		else if (err != ENOSPC)
			errors++;
	}
	stop = true;
	killer.join();
	// Every directory there now must belong to a live hat: read them all
	// (a directory left behind by a hat already freed is a use after free).
	const auto dirs = debugfs_hat_dirs();
	const u64 live = u64(std::count_if(dirs.begin(), dirs.end(), [&](const std::string& d) {
		return std::find(dirs0.begin(), dirs0.end(), d) == dirs0.end();
	}));
	std::string text;
	for (const auto& d : dirs)
		(void)read_file(std::string(kDebugfsDir) + "/hats/" + d + "/info", text);
	std::vector<Stat> st;
	(void)read_stats(st);
	const u64 hats_live = stat_u64(st, "hats_live").value_or(0);
	u64 hats_base = 0;
	for (const auto& [n, v] : base)
		if (n == "hats_live")
			hats_base = v;
	tap.result(errors == 0 && created > 0 && destroyed > 0 && live == hats_live - hats_base,
		   strfmt("race: %llu creates against %llu destroys of the next id: %llu debugfs "
			  "directories for %llu live hats, %llu errors", created.load(), destroyed.load(),
			  live, hats_live - hats_base, errors.load()));
	dev->close();
	counters_back(tap, base, "race");
	tap.result(debugfs_hat_dirs() == dirs0, "race: no debugfs directory outlives its hat");
}

// ---------------------------------------------------------------- steal

// A steal holds a reference on the hat it takes a table from.  When the
// owner closes its fd meanwhile, the steal's put is the last one: the hat
// must still go, with its tables, although no later call may come to
// purge it (the reaper below stops right after the close).
void test_steal_close(Tap& tap, unsigned rounds, bool shrinker, Rng& rng)
{
	const char* what = shrinker ? "close against the shrinker" : "close against REAP";
	u64 bad = 0, freed_total = 0;
	for (unsigned r = 0; r < rounds; r++) {
		const CounterSet base = leak_counters();
		auto dev = Device::open();
		auto reaper = Device::open();
		auto hat = dev ? Hat::create(*dev) : Result<Hat>(Err{dev.error()});
		if (!hat || !reaper) {
			bad++;
			tap.note(strfmt("%s round %u: cannot set up", what, r + 1));
			continue;
		}
		// One owned page every 2 MiB: a table each, all stealable.
		for (u64 i = 0; i < 64; i++)
			(void)dev->map_owned(hat->id(), kVa + i * k2M, kP, kProtRW, kP);
		(void)hat->release();
		std::atomic<bool> stop{false};
		std::atomic<u64> freed{0};
		std::thread th([&] {
			while (!stop.load()) {
				u64 n = 0;
				if (shrinker)
					(void)write_file("/proc/sys/vm/drop_caches", "2");
				else
					(void)reaper->reap(1, &n);
				freed += n;
			}
		});
		std::this_thread::sleep_for(std::chrono::milliseconds(rng.below(30)));
		dev->close();
		stop = true;
		th.join();
		freed_total += freed;
		reaper->close();
		// No call into the module from here on: the counters must come back
		// by themselves.
		const CounterSet now = wait_leak_counters(base, 2000);
		if (now != base) {
			bad++;
			tap.note(strfmt("%s round %u: %s", what, r + 1, counter_diff(base, now).c_str()));
		}
	}
	tap.result(bad == 0, strfmt("%s: %u closes while tables were being stolen (%llu by REAP): "
				    "counters back by themselves every time (%llu not)", what, rounds,
				    freed_total, bad));
}

// ---------------------------------------------------------------- kill

enum KillOp : int { kIdle, kMapUser, kMapOwned, kJob, kWalk, kReap, kUnmap, kCreate, kDestroy, kNumKillOps };
const char* const kKillOpNames[kNumKillOps] = {
	"between ioctls", "MAP user", "MAP owned", "JOB", "WALK", "REAP", "UNMAP", "HAT_CREATE", "HAT_DESTROY",
};

// The victim: one ioctl after another, saying which in shared memory.
[[noreturn]] void victim(std::atomic<int>* doing, u64 seed)
{
	Rng rng(seed);
	auto dev = Device::open();
	if (!dev)
		_exit(3);
	const u64 mask = cpu_mask_all();
	// 4 MiB of this process's memory: 1024 pins per MAP.
	Buffer user(4 << 20, 0x5a, kP, Huge::Never);
	auto call = [&](KillOp op, auto fn) {
		doing->store(op);
		int err = fn();
		doing->store(kIdle);
		return err;
	};
	std::vector<u32> hats;
	for (;;) {
		if (hats.size() < 3) {
			htable_hat_create c{};
			if (!call(kCreate, [&] { return dev->hat_create(c); }))
				hats.push_back(c.hat_id);
			continue;
		}
		const u32 hat = hats[rng.below(hats.size())];
		const u64 va = kVa + rng.below(4) * k1G;
		htable_job j{};
		std::vector<htable_walk_entry> es;
		// Weighted so that the time spent in each kind of call is similar:
		// a job over 4 MiB costs as much as a few maps.
		switch (rng.below(12)) {
		case 0:
		case 1:
		case 2:
			call(kMapUser, [&] { return dev->map(hat, va, user.data(), user.size()); });
			break;
		case 3:
		case 4:
			call(kMapOwned, [&] { return dev->map_owned(hat, va + k2M * 4, 4 * k2M, kProtRW, kP); });
			break;
		case 5:
			call(kJob, [&] {
				return dev->job_mask(hat, rng.below(2) ? HTABLE_JOB_FILL : HTABLE_JOB_VERIFY, va,
						     2 * k2M, seed, mask, j);
			});
			break;
		case 6:
		case 7:
			call(kWalk, [&] { return dev->walk_all(hat, kVa, kVa + 4 * k1G, es, 4); });
			break;
		case 8:
			call(kReap, [&] { return dev->reap(~0ull); });
			break;
		case 9:
		case 10:
			call(kUnmap, [&] { return dev->unmap(hat, va, k1G); });
			break;
		case 11:
			call(kDestroy, [&] { return dev->hat_destroy(hat); });
			hats.erase(std::find(hats.begin(), hats.end(), hat));
			break;
		}
	}
}

void test_kill(Tap& tap, unsigned kills, Rng& rng, u64* leaks)
{
	void* shm = mmap(nullptr, kP, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		tap.skip_rest(2, std::string("kill: mmap: ") + std::strerror(errno));
		return;
	}
	auto* doing = new (shm) std::atomic<int>(kIdle);
	u64 hist[kNumKillOps] = {}, bad = 0, odd = 0;
	for (unsigned k = 0; k < kills; k++) {
		const CounterSet base = leak_counters();
		doing->store(kIdle);
		std::fflush(stdout);
		pid_t pid = fork();
		if (pid == 0)
			victim(doing, 0x4b111 + k);
		if (pid < 0) {
			tap.note(std::string("kill: fork: ") + std::strerror(errno));
			bad++;
			break;
		}
		// Strike at random, from its first calls on.
		std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng.below(1500)));
		const int at = doing->load();
		kill(pid, SIGKILL);
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
		hist[at >= 0 && at < kNumKillOps ? at : 0]++;
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
			odd++;
			tap.note(strfmt("kill %u: the victim ended on its own (wait status 0x%x)", k + 1, status));
		}
		const CounterSet now = wait_leak_counters(base, 10000);
		u64 total = 0;
		const std::string diff = counter_diff(base, now, false, &total);
		*leaks += total;
		if (now != base) {
			bad++;
			tap.note(strfmt("kill %u (during %s): %s", k + 1, kKillOpNames[at], diff.c_str()));
		}
	}
	munmap(shm, kP);
	std::string where;
	for (int o = 0; o < kNumKillOps; o++)
		if (hist[o])
			where += strfmt("%s%s %llu", where.empty() ? "" : ", ", kKillOpNames[o], hist[o]);
	tap.result(bad == 0 && odd == 0,
		   strfmt("kill: %u kill -9 at random moments (%s): counters back every time (%llu not)",
			  kills, where.c_str(), bad));
	// Most kills must land inside an ioctl, or the test did not test that.
	tap.result(hist[kIdle] * 2 < kills, strfmt("kill: %llu of %u kills landed inside an ioctl",
						   kills - hist[kIdle], kills));
}

// A job's length is the caller's choice: one over 64 GiB of holes runs for
// many minutes under TCG.  Its owner must still die at once when killed
// (and meanwhile not be reported as a hung task).
void test_killable_job(Tap& tap)
{
	constexpr u64 kLen = 64 * k1G;
	const CounterSet base = leak_counters();
	int fds[2];
	if (pipe(fds) != 0) {
		tap.skip_rest(2, std::string("killable job: pipe: ") + std::strerror(errno));
		return;
	}
	std::fflush(stdout);
	const pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		auto dev = Device::open();
		auto hat = dev ? Hat::create(*dev) : Result<Hat>(Err{dev.error()});
		if (!hat || dev->map_owned(hat->id(), kVa, k2M, kProtRW, k2M))
			_exit(3);
		if (::write(fds[1], "r", 1) != 1)
			_exit(3);
		htable_job j{};
		(void)dev->job_mask(hat->id(), HTABLE_JOB_FILL, kVa, kLen, 1, cpu_mask_all(), j);
		_exit(0);
	}
	close(fds[1]);
	char ch = 0;
	const bool ready = pid > 0 && read(fds[0], &ch, 1) == 1;
	close(fds[0]);
	std::this_thread::sleep_for(std::chrono::seconds(1));
	const auto t0 = Clock::now();
	if (pid > 0)
		kill(pid, SIGKILL);
	int status = 0;
	bool dead = false;
	while (pid > 0 && Clock::now() - t0 < std::chrono::seconds(20)) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			dead = true;
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
	tap.result(ready && dead && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && secs < 10,
		   strfmt("killable job: SIGKILL ends a FILL over %llu GiB of holes on every CPU in %.1f s "
			  "(< 10)%s", kLen >> 30, secs, ready ? "" : " (the child could not set up)"));
	if (!dead)
		tap.skip_rest(1, "killable job: the child is still in the module");
	else
		counters_back(tap, base, "killable job");
}

// ---------------------------------------------------------------- memcg

// Sent from the child in the cgroup through a pipe: plain data only.
struct MemcgFigures {
	bool ok = false;
	char why[160] = {};
	u64 tables = 0;                                 // level-0 tables made
	u64 pages_delta = 0;                            // module: pages (or tables) while mapped
	long long kernel0 = 0, kernel1 = 0, kernel2 = 0;  // memory.stat kernel, bytes
	long long current0 = 0, current1 = 0, current2 = 0;
	bool have_pages_live = false;
	// After a REAP took the tables, and after jobs reloaded them.
	u64 reaped = 0, reloaded = 0, job_faults = 0;
	u64 pages_reaped = 0, pages_reloaded = 0;
	long long kernel_reaped = 0, kernel_reloaded = 0;
};

std::optional<long long> cg_value(const std::string& dir, const char* file, const char* key)
{
	std::string text;
	if (read_file(dir + "/" + file, text) != 0)
		return std::nullopt;
	if (!key)
		return std::atoll(text.c_str());
	for (const auto& [k, v] : parse_kv(text))
		if (k == key)
			return std::atoll(v.c_str());
	return std::nullopt;
}

// In the child (in the cgroup): map one 4 KiB page of its own at `tables`
// VAs 2 MiB apart (a level-0 table each), read, tear down, read.
MemcgFigures memcg_child(const std::string& cg, u64 tables)
{
	MemcgFigures f;
	f.tables = tables;
	auto pages = [&] {
		auto v = read_stat("pages_live");
		f.have_pages_live = v.has_value();
		return v ? *v : read_stat("tables_live").value_or(0);
	};
	auto kernel = [&] { return cg_value(cg, "memory.stat", "kernel").value_or(-1); };
	auto current = [&] { return cg_value(cg, "memory.current", nullptr).value_or(-1); };
	const u64 p0 = pages();
	f.kernel0 = kernel();
	f.current0 = current();
	{
		auto dev = Device::open();
		if (!dev) {
			std::snprintf(f.why, sizeof(f.why), "open: %s", errno_desc(dev.error()).c_str());
			return f;
		}
		auto hat = Hat::create(*dev);
		if (!hat) {
			std::snprintf(f.why, sizeof(f.why), "HAT_CREATE: %s", errno_desc(hat.error()).c_str());
			return f;
		}
		Buffer page(kP, 0x77, kP, Huge::Never);
		for (u64 i = 0; i < tables; i++) {
			if (int err = dev->map(hat->id(), kVa + i * k2M, page.data(), kP)) {
				std::snprintf(f.why, sizeof(f.why), "MAP %llu of %llu: %s", i, tables,
					      errno_desc(err).c_str());
				return f;
			}
		}
		f.pages_delta = pages() - p0;
		// memory.stat is flushed lazily (per-CPU batches, every 2 s at
		// most): let the periodic flush run before reading it.
		std::this_thread::sleep_for(std::chrono::milliseconds(2100));
		f.kernel1 = kernel();
		f.current1 = current();

		// The tables a job reloads are charged here too, although a
		// runner kthread allocates them: take every table back, then
		// touch each page through a job.
		if (int err = dev->reap(~0ull, &f.reaped)) {
			std::snprintf(f.why, sizeof(f.why), "REAP: %s", errno_desc(err).c_str());
			return f;
		}
		f.pages_reaped = pages();
		std::this_thread::sleep_for(std::chrono::milliseconds(2100));
		f.kernel_reaped = kernel();
		for (u64 i = 0; i < tables; i++) {
			htable_job j{};
			if (int err = dev->job(hat->id(), HTABLE_JOB_TOUCH, kVa + i * k2M, 8, 0,
					       HTABLE_JOB_ANY_CPU, j)) {
				std::snprintf(f.why, sizeof(f.why), "TOUCH %llu: %s", i, errno_desc(err).c_str());
				return f;
			}
			f.reloaded += j.reloads;
			f.job_faults += j.faults;
		}
		f.pages_reloaded = pages();
		std::this_thread::sleep_for(std::chrono::milliseconds(2100));
		f.kernel_reloaded = kernel();
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(2100));
	f.kernel2 = kernel();
	f.current2 = current();
	f.ok = true;
	return f;
}

void test_memcg(Tap& tap, const std::string& root, u64 tables, MemcgFigures& out)
{
	const std::string cg = root + "/htable-lifetime";
	std::string ctl;
	if (read_file(root + "/cgroup.controllers", ctl) != 0 || ctl.find("memory") == std::string::npos) {
		tap.skip_rest(4, "memcg: no memory controller in " + root + " (mount -t cgroup2?)");
		return;
	}
	const int e1 = write_file(root + "/cgroup.subtree_control", "+memory");
	const int e2 = mkdir(cg.c_str(), 0755) == 0 || errno == EEXIST ? 0 : errno;
	if (e1 || e2) {
		tap.skip_rest(4, "memcg: cannot make " + cg + ": " + errno_desc(e1 ? e1 : e2));
		return;
	}
	const CounterSet base = leak_counters();
	int fds[2];
	if (pipe(fds) != 0) {
		tap.skip_rest(4, std::string("memcg: pipe: ") + std::strerror(errno));
		return;
	}
	std::fflush(stdout);
	const pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		MemcgFigures f;
		if (int err = write_file(cg + "/cgroup.procs", std::to_string(getpid())))
			std::snprintf(f.why, sizeof(f.why), "join %s: %s", cg.c_str(), errno_desc(err).c_str());
		else
			f = memcg_child(cg, tables);
		_exit(::write(fds[1], &f, sizeof(f)) == ssize_t(sizeof(f)) ? 0 : 1);
	}
	close(fds[1]);
	MemcgFigures f;
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	const bool got = read(fds[0], &f, sizeof(f)) == ssize_t(sizeof(f));
	close(fds[0]);
	(void)rmdir(cg.c_str());
	out = f;
	if (!got || !f.ok) {
		tap.result(false, strfmt("memcg: the child in %s failed: %s (wait status 0x%x)", cg.c_str(),
					 got ? f.why : "no report", status));
		tap.skip_rest(3, "memcg: not reached");
		return;
	}
	const char* unit = f.have_pages_live ? "pages_live" : "tables_live";
	const long long want = (long long)(f.pages_delta * kP), rise = f.kernel1 - f.kernel0;
	tap.note(strfmt("memcg: %llu tables: %s +%llu, memory.stat kernel %lld -> %lld -> %lld, "
			"memory.current %lld -> %lld -> %lld", f.tables, unit, f.pages_delta, f.kernel0,
			f.kernel1, f.kernel2, f.current0, f.current1, f.current2));
	// Every table page is charged; on top, what the module keeps per MAP
	// (the core's objects, a region and its page array: 500-750 bytes
	// measured), and 256 KiB for what per-CPU stat batches may still hold.
	const long long slack = (long long)f.tables * 1024 + (256 << 10);
	tap.result(f.pages_delta >= f.tables && rise >= want - (256 << 10) && rise <= want + slack,
		   strfmt("memcg: kernel memory rose %lld KiB for %s +%llu (%lld KiB): within -256 KiB "
			  "..+%lld KiB", rise >> 10, unit, f.pages_delta, want >> 10, slack >> 10));
	// The reloads: each page the runners allocated is charged here, not
	// to the root cgroup the runner kthreads belong to.
	const long long rwant = (long long)((f.pages_reloaded - f.pages_reaped) * kP);
	const long long rrise = f.kernel_reloaded - f.kernel_reaped;
	tap.note(strfmt("memcg: REAP took %llu tables (%s then %llu), %llu jobs reloaded %llu "
			"translations (%s then %llu, %llu faults), memory.stat kernel %lld -> %lld -> %lld",
			f.reaped, unit, f.pages_reaped, f.tables, f.reloaded, unit, f.pages_reloaded,
			f.job_faults, f.kernel1, f.kernel_reaped, f.kernel_reloaded));
	tap.result(f.job_faults == 0 && f.reloaded >= f.tables && rwant >= (long long)(f.tables * kP) &&
			   rrise >= rwant - (256 << 10) && rrise <= rwant + slack,
		   strfmt("memcg: jobs' reloads charged to the job's caller: kernel memory rose %lld KiB "
			  "for %lld KiB of reloaded tables (%llu reloads, %llu faults)",
			  rrise >> 10, rwant >> 10, f.reloaded, f.job_faults));
	tap.result(f.kernel2 - f.kernel0 < (256 << 10) && f.current2 - f.current0 < (1 << 20),
		   strfmt("memcg: back after teardown: kernel %+lld KiB (< 256), current %+lld KiB (< 1024)",
			  (f.kernel2 - f.kernel0) >> 10, (f.current2 - f.current0) >> 10));
	counters_back(tap, base, "memcg");
}

// ---------------------------------------------------------------- quick, hold

// One short round for the load/unload loop: every kind of object made and
// dropped.  Prints only what went wrong; exit status 0 or 1.
int quick()
{
	const CounterSet base = leak_counters();
	int bad = 0;
	auto check = [&](bool ok, const std::string& what) {
		if (!ok) {
			std::printf("# quick: %s\n", what.c_str());
			bad++;
		}
		return ok;
	};
	if (!check(!base.empty(), "no counters in debugfs"))
		return 1;
	{
		auto dev = Device::open();
		if (!check(bool(dev), "open"))
			return 1;
		// This process's memory and owned memory side by side: one job
		// covers both.
		const u64 mask = cpu_mask_all(), len = 16 * kP;
		Buffer user(len, 0, kP, Huge::Never);
		for (u32 flags : {0u, u32(HTABLE_HAT_COPIED_TOP)}) {
			auto hat = Hat::create(*dev, flags);
			if (!check(bool(hat), "HAT_CREATE"))
				return 1;
			htable_job j{};
			u64 freed = 0;
			check(!dev->map(hat->id(), kVa, user.data(), len), "MAP user memory");
			check(!dev->map_owned(hat->id(), kVa + len, len), "MAP owned");
			check(!dev->job_mask(hat->id(), HTABLE_JOB_FILL, kVa, 2 * len, 7, mask, j) &&
				      j.bytes == 2 * len, "FILL");
			check(!dev->reap(~0ull, &freed), "REAP");
			check(!dev->job_mask(hat->id(), HTABLE_JOB_VERIFY, kVa, 2 * len, 7, mask, j) &&
				      j.bytes == 2 * len && !j.result && !j.faults,
			      strfmt("VERIFY after REAP: %llu bytes, %llu bad, %llu faults", j.bytes, j.result,
				     j.faults));
			check(count_mismatches(user.span(0, len), 7) == 0, "user memory after FILL");
			check(!dev->unmap(hat->id(), kVa, len), "UNMAP");
			// The owned mapping goes with the hat, or (copied-top) with the fd.
			if (flags)
				(void)hat->release();
		}
	}
	const CounterSet now = wait_leak_counters(base, 10000);
	check(now == base, "counters: " + counter_diff(base, now));
	return bad ? 1 : 0;
}

// Keep an fd busy with long jobs until killed; "ready" once it is.
[[noreturn]] void hold()
{
	auto dev = Device::open();
	if (!dev) {
		print_error(std::string("cannot open ") + kDevicePath, dev.error());
		_exit(1);
	}
	auto hat = Hat::create(*dev);
	if (!hat || dev->map_owned(hat->id(), kVa, 8 * k2M, kProtRW, k2M)) {
		std::printf("# hold: cannot set up a hat\n");
		_exit(1);
	}
	std::printf("ready\n");
	std::fflush(stdout);
	const u64 mask = cpu_mask_all();
	for (u64 seed = 0;; seed++) {
		htable_job j{};
		(void)dev->job_mask(hat->id(), HTABLE_JOB_FILL, kVa, 8 * k2M, seed, mask, j);
		(void)dev->reap(~0ull);
	}
}

const char kLifetimeHelp[] =
	"Usage: htablectl lifetime [--kills N] [--rounds N] [--tables N] [--cgroup DIR]\n"
	"       htablectl lifetime --quick\n"
	"       htablectl lifetime --hold\n"
	"\n"
	"Object lifetimes against owners that go away at the worst moment (TAP):\n"
	"  close   threads run multi-CPU VERIFY jobs while a hat is destroyed under\n"
	"          them and the fd is closed (--rounds, default 3): every job\n"
	"          completes with correct results or fails with ENOENT / EBADF;\n"
	"  race    creates against destroys of the id the next create gets: no\n"
	"          debugfs directory outlives its hat;\n"
	"  steal   an fd closed while REAP (10 x --rounds times) or the shrinker\n"
	"          (4 x --rounds) steal its tables: the counters come back with no\n"
	"          further call into the module;\n"
	"  kill    a child busy with maps, long jobs, walks and reaps killed with\n"
	"          SIGKILL at random moments (--kills, default 20);\n"
	"  memcg   in a child cgroup of DIR (cgroup v2, default /sys/fs/cgroup) a\n"
	"          process maps a page at N places 2 MiB apart (--tables, default\n"
	"          2000): memory.stat kernel rises by about the module's pages and\n"
	"          falls back after; --cgroup none skips it.\n"
	"After each, hats_live, tables_live, pinned_pages (and pages_live,\n"
	"objects_live where the module has them) must be back.  Ends with a line\n"
	"  # figures \"key\":value,...\n"
	"for scripts/guest/lifetime.sh to put into its '# reliability' line.\n"
	"--quick: one short round of work (maps, jobs, a reap), silent unless\n"
	"something is wrong; exit status 0 or 1.  --hold: print 'ready', then keep\n"
	"an fd busy with jobs until killed.\n";

}  // namespace

int cmd_lifetime(std::span<char*> args)
{
	u64 kills = 20, rounds = 3, tables = 2000;
	std::string cgroup = "/sys/fs/cgroup";
	for (size_t i = 1; i < args.size(); i++) {
		std::string a = args[i];
		if (a == "--help" || a == "-h") {
			std::fputs(kLifetimeHelp, stdout);
			return 0;
		}
		if (a == "--quick" && args.size() == 2)
			return quick();
		if (a == "--hold" && args.size() == 2)
			hold();
		u64* out = a == "--kills" ? &kills : a == "--rounds" ? &rounds : a == "--tables" ? &tables : nullptr;
		if (a == "--cgroup" && i + 1 < args.size()) {
			cgroup = args[++i];
			continue;
		}
		if (!out || i + 1 >= args.size() || !parse_u64(args[i + 1], *out) || *out == 0) {
			std::fprintf(stderr, "htablectl lifetime: bad argument '%s'\n"
					     "Try 'htablectl lifetime --help'.\n", a.c_str());
			return 2;
		}
		i++;
	}
	const bool memcg = cgroup != "none";
	const int plan = int(rounds) + 1 + 3 + 2 + 2 + 2 + (memcg ? 4 : 0);
	std::printf("TAP version 13\n1..%d\n", plan);
	Tap tap;
	if (leak_counters().empty()) {
		std::printf("Bail out! cannot read the counters in %s\n", kStatsPath);
		return 1;
	}
	Rng rng(0x11fe);
	u64 leaks = 0;
	const auto t0 = Clock::now();
	test_close(tap, unsigned(rounds), rng);
	test_race(tap, 2000);
	test_steal_close(tap, unsigned(rounds) * 10, false, rng);
	test_steal_close(tap, unsigned(rounds) * 4, true, rng);
	test_kill(tap, unsigned(kills), rng, &leaks);
	test_killable_job(tap);
	MemcgFigures mf;
	if (memcg)
		test_memcg(tap, cgroup, tables, mf);
	std::printf("# figures \"kills\":%llu,\"kill_leaks\":%llu,\"close_rounds\":%llu,"
		    "\"memcg_tables\":%llu,\"memcg_kernel_rise_kib\":%lld,\"memcg_kernel_left_kib\":%lld,"
		    "\"lifetime_failed\":%d,\"lifetime_seconds\":%.1f\n", kills, leaks, rounds, mf.tables,
		    (mf.kernel1 - mf.kernel0) >> 10, (mf.kernel2 - mf.kernel0) >> 10, tap.failed(),
		    std::chrono::duration<double>(Clock::now() - t0).count());
	return tap.failed() ? 1 : 0;
}

}  // namespace htable
