// SPDX-License-Identifier: GPL-2.0
//
// Shared by the files of `htablectl selftest` (selftest*.cpp): the failure
// tracker T, the test context, fixtures and checking helpers.
//
// Each test is a function that gets a fresh T and builds what it needs
// itself (its own hat, its own buffer) so that one failure does not cascade.
// Negative tests use otherwise valid arguments, so the errno can only come
// from the one field under test, and most are followed by a positive control
// (the same call with the defect removed must succeed) or a check that the
// failed call had no side effect.
#pragma once

#include "htablectl.hpp"

#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <vector>

namespace htable::st {

inline constexpr u64 P = kPageSize;

std::string vfmt(const char* fmt, va_list ap);

// Failure tracker of one test.  Every helper prints a '# ' diagnostic when
// the expectation does not hold and returns whether it held.
class T {
public:
	bool ok() const { return ok_; }

	void diag(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
	bool check(bool cond, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
	bool want_ok(int err, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
	bool want_err(int err, int want, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
	void fail(const char* what);

private:
	bool ok_ = true;
};

struct Ctx {
	const Device& dev;
	htable_version ver;
	std::vector<u32> cpus;
	u64 end() const { return ver.user_va_end; }
	u64 all_cpus_mask() const { return cpu_mask_of(cpus); }
	u32 levels() const { return ver.paging_levels; }
};

// A hat plus a buffer of this process, optionally mapped at kDemoVa.
// buf is declared first so the hat is destroyed before the buffer goes.
struct Fixture {
	Buffer buf;
	Hat hat;
	u64 va = kDemoVa;

	u32 id() const { return hat.id(); }
	u8* at(u64 off) const { return buf.data() + off; }
};

// The buffer is made of 4 KiB pages (MADV_NOHUGEPAGE), so that AUTO maps
// it with 4 KiB leaves whatever the system's THP policy.
std::optional<Fixture> fixture(Ctx& c, T& t, size_t pages, bool map = true, u8 fill = 0,
			       u32 prot = kProtRW, u32 hat_flags = 0);

// A hat of c.dev that is destroyed at scope exit.
std::optional<Hat> new_hat(Ctx& c, T& t, u32 flags = 0);

// TRANSLATE must succeed and report `mapped`.
bool want_mapped(Ctx& c, T& t, u32 hat, u64 va, bool mapped, htable_translate* out = nullptr);

// JOB must succeed and report the given bytes and faults.
bool want_job(Ctx& c, T& t, htable_job& j, u32 hat, u32 op, u64 va, u64 len, u64 seed,
	      u64 bytes, u64 faults, u32 cpu = HTABLE_JOB_ANY_CPU);
// The same for a job split over cpu_mask; also checks cpus_ran == mask.
bool want_job_mask(Ctx& c, T& t, htable_job& j, u32 hat, u32 op, u64 va, u64 len, u64 seed,
		   u64 mask, u64 bytes, u64 faults, u64 dst_va = 0);

bool all_equal(std::span<const u8> s, u8 v);
void fill_random(std::span<u8> b, u64 seed);

// Same command as `cmd` but with _IOC_SIZE replaced.
inline unsigned long resized(unsigned long cmd, size_t size)
{
	return _IOC(_IOC_DIR(cmd), _IOC_TYPE(cmd), _IOC_NR(cmd), size);
}

// Issues `cmd` resized to sizeof(S) + tail.size(), with the tail bytes
// following the struct; copies the struct part back.
template <class S>
int ioctl_with_tail(const Device& dev, unsigned long cmd, S& s, std::span<const u8> tail)
{
	alignas(8) std::array<u8, 512> raw{};
	std::memcpy(raw.data(), &s, sizeof(S));
	std::memcpy(raw.data() + sizeof(S), tail.data(), tail.size());
	int err = dev.ioctl_raw(resized(cmd, sizeof(S) + tail.size()), raw.data());
	std::memcpy(&s, raw.data(), sizeof(S));
	return err;
}

struct Counters {
	u64 hats_live = 0;
	u64 pinned_pages = 0;
	u64 tables_live = 0;
};

// Reads the counters the tests compare; nullopt (and a diagnostic) if
// debugfs is not readable or lacks them.
std::optional<Counters> counters(T& t);

// Every counter of debugfs stats by name; empty (and a diagnostic) if
// unreadable.
std::map<std::string, u64> stats_map(T& t);
// stats[name], or 0 with a failure if missing.
u64 stat_of(T& t, const std::map<std::string, u64>& stats, const char* name);

// Polls until the counters equal `want` (hats_live, pinned_pages and
// tables_live) or the timeout passes; returns the last reading.
std::optional<Counters> wait_counters(T& t, const Counters& want, int timeout_ms);

// Runs fn in a forked child that reports through its exit status (0 = ok)
// and its own '# ' lines; returns whether the child passed.  fn gets a
// fresh T; exit status 3 from the child means "could not set up".
bool in_child(T& t, const char* what, void (*fn)(Ctx&, T&, void*), Ctx& c, void* arg);

// Forks a child that runs `child(fd)` and must not return: it writes 'r'
// to fd once it is set up, then goes on (usually into the module, to be
// killed there).  Returns the child's pid once it said ready within
// timeout_ms; otherwise fails the test (the child, if any, is killed and
// reaped) and returns -1.
pid_t fork_ready_child(T& t, const char* what, const std::function<void(int fd)>& child,
		       int timeout_ms = 20000);

// A module parameter set for the scope of a test, restored afterwards.
class ParamGuard {
public:
	ParamGuard(T& t, const char* name, std::string_view value);
	~ParamGuard();
	bool ok() const { return ok_; }
	const std::string& old() const { return old_; }

private:
	T& t_;
	const char* name_;
	std::string old_;
	bool ok_ = false;
};

// Capabilities of this thread: drop `drop` (CAP_* numbers) from the
// effective set, and from the permitted and inheritable sets too if
// `permanently`.  0 or errno.
int drop_caps(std::initializer_list<int> drop, bool permanently);

struct Case {
	const char* name;
	void (*fn)(Ctx&, T&);
};

// The groups, in the order they run.
std::vector<Case> basic_cases();     // selftest_basic.cpp: the ABI 1.0 ioctls
std::vector<Case> mapping_cases();   // selftest_map.cpp: page sizes, owned, protect, lock, walk, share
std::vector<Case> reclaim_cases();   // selftest_map.cpp: REAP (LOCK vs REAP is in t_lock)
std::vector<Case> job_cases();       // selftest_jobs.cpp: cpu masks, new ops
std::vector<Case> system_cases();    // selftest_system.cpp: limits, processes, CPUs, debugfs
std::vector<Case> badinput_cases();  // selftest_badinput.cpp: one table of invalid requests
std::vector<Case> security_cases();  // selftest_security.cpp: who may do what (docs/SECURITY.md)

}  // namespace htable::st
