// SPDX-License-Identifier: GPL-2.0
//
// `htablectl selftest`: TAP version 13 test suite against the live module.
// This file: the failure tracker, shared helpers and the runner.  The tests
// live in selftest_{basic,badinput,map,jobs,system,security}.cpp (see
// selftest.hpp).
#include "selftest.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <exception>
#include <linux/capability.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable {
namespace st {

std::string vfmt(const char* fmt, va_list ap)
{
	char buf[1024];
	std::vsnprintf(buf, sizeof(buf), fmt, ap);
	return buf;
}

void T::diag(const char* fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::printf("# %s\n", vfmt(fmt, ap).c_str());
	va_end(ap);
}

bool T::check(bool cond, const char* fmt, ...)
{
	if (!cond) {
		va_list ap;
		va_start(ap, fmt);
		std::printf("# FAIL: %s\n", vfmt(fmt, ap).c_str());
		va_end(ap);
		ok_ = false;
	}
	return cond;
}

bool T::want_ok(int err, const char* fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		std::printf("# FAIL: %s: expected success, got %s\n", vfmt(fmt, ap).c_str(),
			    errno_desc(err).c_str());
		va_end(ap);
		ok_ = false;
	}
	return err == 0;
}

bool T::want_err(int err, int want, const char* fmt, ...)
{
	if (err != want) {
		va_list ap;
		va_start(ap, fmt);
		std::printf("# FAIL: %s: expected %s, got %s\n", vfmt(fmt, ap).c_str(),
			    errno_desc(want).c_str(), errno_desc(err).c_str());
		va_end(ap);
		ok_ = false;
	}
	return err == want;
}

void T::fail(const char* what)
{
	std::printf("# FAIL: %s\n", what);
	ok_ = false;
}

std::optional<Fixture> fixture(Ctx& c, T& t, size_t pages, bool map, u8 fill, u32 prot,
			       u32 hat_flags)
{
	auto hat = Hat::create(c.dev, hat_flags);
	if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE flags 0x%x", hat_flags))
		return std::nullopt;
	Fixture f{Buffer(pages * P, fill, P, Huge::Never), std::move(*hat)};
	if (map && !t.want_ok(c.dev.map(f.id(), f.va, f.buf.data(), f.buf.size(), prot),
			      "MAP %zu pages at 0x%llx", pages, f.va))
		return std::nullopt;
	return f;
}

std::optional<Hat> new_hat(Ctx& c, T& t, u32 flags)
{
	auto hat = Hat::create(c.dev, flags);
	if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE flags 0x%x", flags))
		return std::nullopt;
	return std::move(*hat);
}

bool want_mapped(Ctx& c, T& t, u32 hat, u64 va, bool mapped, htable_translate* out)
{
	htable_translate tr{};
	if (!t.want_ok(c.dev.translate(hat, va, tr), "TRANSLATE 0x%llx", va))
		return false;
	if (out)
		*out = tr;
	if (!t.check(tr.mapped == (mapped ? 1u : 0u), "TRANSLATE 0x%llx: mapped=%u, expected %d",
		     va, tr.mapped, mapped))
		return false;
	if (!mapped)
		return t.check(tr.pa == 0, "TRANSLATE 0x%llx: unmapped but pa=0x%llx", va, tr.pa);
	return true;
}

bool want_job(Ctx& c, T& t, htable_job& j, u32 hat, u32 op, u64 va, u64 len, u64 seed,
	      u64 bytes, u64 faults, u32 cpu)
{
	if (!t.want_ok(c.dev.job(hat, op, va, len, seed, cpu, j), "JOB %s va 0x%llx len 0x%llx",
		       job_op_name(op), va, len))
		return false;
	bool ok = t.check(j.bytes == bytes, "JOB %s: bytes=%llu, expected %llu", job_op_name(op),
			  j.bytes, bytes);
	ok &= t.check(j.faults == faults, "JOB %s: faults=%llu, expected %llu", job_op_name(op),
		      j.faults, faults);
	return ok;
}

bool want_job_mask(Ctx& c, T& t, htable_job& j, u32 hat, u32 op, u64 va, u64 len, u64 seed,
		   u64 mask, u64 bytes, u64 faults, u64 dst_va)
{
	if (!t.want_ok(c.dev.job_mask(hat, op, va, len, seed, mask, j, dst_va),
		       "JOB %s va 0x%llx len 0x%llx cpu_mask 0x%llx", job_op_name(op), va, len, mask))
		return false;
	bool ok = t.check(j.bytes == bytes, "JOB %s mask 0x%llx: bytes=%llu, expected %llu",
			  job_op_name(op), mask, j.bytes, bytes);
	ok &= t.check(j.faults == faults, "JOB %s mask 0x%llx: faults=%llu, expected %llu",
		      job_op_name(op), mask, j.faults, faults);
	if (mask)
		ok &= t.check(j.cpus_ran == mask, "JOB %s: cpus_ran 0x%llx, cpu_mask 0x%llx",
			      job_op_name(op), j.cpus_ran, mask);
	else
		ok &= t.check(std::popcount(j.cpus_ran) == 1 && j.cpus_ran == 1ull << j.ran_on_cpu,
			      "JOB %s on one CPU: cpus_ran 0x%llx, ran_on_cpu %u", job_op_name(op),
			      j.cpus_ran, j.ran_on_cpu);
	return ok;
}

bool all_equal(std::span<const u8> s, u8 v)
{
	return std::all_of(s.begin(), s.end(), [v](u8 b) { return b == v; });
}

void fill_random(std::span<u8> b, u64 seed)
{
	u64 x = seed | 1;
	for (auto& c : b) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		c = u8(x >> 24);
	}
}

std::optional<Counters> counters(T& t)
{
	std::vector<Stat> st;
	if (int err = read_stats(st)) {
		t.diag("cannot read %s: %s", kStatsPath, errno_desc(err).c_str());
		return std::nullopt;
	}
	auto h = stat_u64(st, "hats_live"), p = stat_u64(st, "pinned_pages");
	auto tl = stat_u64(st, "tables_live");
	if (!h || !p || !tl) {
		t.diag("%s lacks hats_live, pinned_pages or tables_live", kStatsPath);
		return std::nullopt;
	}
	return Counters{*h, *p, *tl};
}

std::map<std::string, u64> stats_map(T& t)
{
	std::map<std::string, u64> out;
	std::vector<Stat> st;
	if (int err = read_stats(st)) {
		t.diag("cannot read %s: %s", kStatsPath, errno_desc(err).c_str());
		return out;
	}
	for (const auto& s : st)
		if (auto v = stat_u64(st, s.name))
			out[s.name] = *v;
	return out;
}

u64 stat_of(T& t, const std::map<std::string, u64>& stats, const char* name)
{
	auto it = stats.find(name);
	if (it == stats.end()) {
		t.fail((std::string("debugfs stats lack ") + name).c_str());
		return 0;
	}
	return it->second;
}

std::optional<Counters> wait_counters(T& t, const Counters& want, int timeout_ms)
{
	std::optional<Counters> now;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	do {
		now = counters(t);
		if (now && now->hats_live == want.hats_live && now->pinned_pages == want.pinned_pages &&
		    now->tables_live == want.tables_live)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	} while (std::chrono::steady_clock::now() < deadline);
	return now;
}

bool in_child(T& t, const char* what, void (*fn)(Ctx&, T&, void*), Ctx& c, void* arg)
{
	std::fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		t.check(false, "fork: %s", std::strerror(errno));
		return false;
	}
	if (pid == 0) {
		T ct;
		try {
			fn(c, ct, arg);
		} catch (const std::exception& e) {
			ct.fail((std::string("exception in child: ") + e.what()).c_str());
		}
		std::fflush(stdout);
		_exit(ct.ok() ? 0 : 1);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		t.check(false, "%s: the child could not set itself up", what);
		return false;
	}
	return t.check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child wait status 0x%x",
		       what, status);
}

pid_t fork_ready_child(T& t, const char* what, const std::function<void(int fd)>& child, int timeout_ms)
{
	int fds[2];
	if (!t.check(pipe(fds) == 0, "%s: pipe: %s", what, std::strerror(errno)))
		return -1;
	std::fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		child(fds[1]);
		_exit(3);
	}
	close(fds[1]);
	pollfd pfd{fds[0], POLLIN, 0};
	char ch = 0;
	const bool ready = pid > 0 && poll(&pfd, 1, timeout_ms) == 1 && read(fds[0], &ch, 1) == 1 && ch == 'r';
	const int err = errno;
	close(fds[0]);
	if (ready)
		return pid;
	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
		}
	}
	t.check(false, "%s: %s", what, pid > 0 ? "the child did not get ready" : std::strerror(err));
	return -1;
}

ParamGuard::ParamGuard(T& t, const char* name, std::string_view value) : t_(t), name_(name)
{
	if (int err = read_param(name, old_)) {
		t.check(false, "read %s/%s: %s", kParamDir, name, errno_desc(err).c_str());
		return;
	}
	if (int err = write_param(name, value)) {
		t.check(false, "write '%.*s' to %s/%s: %s", int(value.size()), value.data(), kParamDir,
			name, errno_desc(err).c_str());
		return;
	}
	ok_ = true;
}

ParamGuard::~ParamGuard()
{
	if (!ok_)
		return;
	if (int err = write_param(name_, old_))
		t_.check(false, "restore %s/%s to %s: %s", kParamDir, name_, old_.c_str(),
			 errno_desc(err).c_str());
}

int drop_caps(std::initializer_list<int> drop, bool permanently)
{
	__user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	if (syscall(SYS_capget, &hdr, data) != 0)
		return errno;
	for (int cap : drop) {
		data[CAP_TO_INDEX(cap)].effective &= ~CAP_TO_MASK(cap);
		if (permanently) {
			data[CAP_TO_INDEX(cap)].permitted &= ~CAP_TO_MASK(cap);
			data[CAP_TO_INDEX(cap)].inheritable &= ~CAP_TO_MASK(cap);
		}
	}
	if (syscall(SYS_capset, &hdr, data) != 0)
		return errno;
	return 0;
}

}  // namespace st

namespace {

const char kSelftestHelp[] =
	"Usage: htablectl selftest [--list] [PATTERN...]\n"
	"\n"
	"Run the test suite against /dev/htable (needs root and debugfs).\n"
	"Output is TAP version 13 on stdout: a plan line '1..N', one 'ok N - name'\n"
	"or 'not ok N - name' per test, diagnostics as '# ...' lines.\n"
	"With PATTERNs, only the tests whose name contains one of them run.\n"
	"--list prints the test names and exits.\n"
	"Some tests change global state for their duration and restore it: module\n"
	"parameters max_hats_per_fd / max_tables_per_fd, CPU 1 offline, and\n"
	"vm.drop_caches; run them on a test machine.\n"
	"Exit status 0 only if every test passed.\n";

std::vector<st::Case> all_cases()
{
	std::vector<st::Case> all;
	for (auto group : {st::basic_cases, st::badinput_cases, st::mapping_cases, st::reclaim_cases,
			   st::job_cases, st::system_cases, st::security_cases}) {
		auto g = group();
		all.insert(all.end(), g.begin(), g.end());
	}
	return all;
}

}  // namespace

int cmd_selftest(std::span<char*> args)
{
	bool list = false;
	std::vector<std::string> patterns;
	for (size_t i = 1; i < args.size(); i++) {
		std::string a = args[i];
		if (a == "--help" || a == "-h") {
			std::fputs(kSelftestHelp, stdout);
			return 0;
		}
		if (a == "--list") {
			list = true;
		} else if (!a.empty() && a[0] == '-') {
			std::fprintf(stderr, "htablectl selftest: unexpected argument '%s'\n"
					     "Try 'htablectl selftest --help'.\n", a.c_str());
			return 2;
		} else {
			patterns.push_back(a);
		}
	}
	std::vector<st::Case> cases;
	for (const auto& c : all_cases()) {
		bool want = patterns.empty();
		for (const auto& p : patterns)
			want |= std::string_view(c.name).find(p) != std::string_view::npos;
		if (want)
			cases.push_back(c);
	}
	if (list) {
		for (const auto& c : cases)
			std::printf("%s\n", c.name);
		return 0;
	}

	const size_t n = cases.size();
	std::printf("TAP version 13\n");
	auto dev = Device::open();
	if (!dev) {
		std::printf("1..%zu\nBail out! cannot open %s: %s\n", n, kDevicePath,
			    errno_desc(dev.error()).c_str());
		return 1;
	}
	st::Ctx ctx{*dev, {}, online_cpus()};
	if (int err = dev->version(ctx.ver)) {
		std::printf("1..%zu\nBail out! HTABLE_IOC_VERSION: %s\n", n, errno_desc(err).c_str());
		return 1;
	}
	// Transparent huge pages off for this process (and its children), so
	// that buffers are made of 4 KiB pages unless a test asks for huge ones
	// (Huge::Want turns THP on while it faults its pages in), and khugepaged
	// does not collapse a test's buffer behind its back.
	const int thp_off = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	std::printf("1..%zu\n", n);
	std::printf("# htable ABI v%u, %u-level paging, CPUs %s, features: %s\n", ctx.ver.abi_version,
		    ctx.ver.paging_levels, format_cpu_list(ctx.cpus).c_str(),
		    feature_string(ctx.ver.features).c_str());

	size_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		st::T t;
		auto t0 = std::chrono::steady_clock::now();
		try {
			cases[i].fn(ctx, t);
		} catch (const std::exception& e) {
			t.fail((std::string("exception: ") + e.what()).c_str());
		}
		auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
				  std::chrono::steady_clock::now() - t0).count();
		if (ms >= 1000)
			std::printf("# took %lld ms\n", (long long)ms);
		if (!t.ok())
			failed++;
		std::printf("%s %zu - %s\n", t.ok() ? "ok" : "not ok", i + 1, cases[i].name);
		std::fflush(stdout);
	}
	std::printf("# %zu of %zu tests passed\n", n - failed, n);
	if (thp_off >= 0)
		(void)prctl(PR_SET_THP_DISABLE, thp_off, 0, 0, 0);
	return failed ? 1 : 0;
}

}  // namespace htable
