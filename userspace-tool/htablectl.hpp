// SPDX-License-Identifier: GPL-2.0
//
// htablectl: userspace tool for /dev/htable.  Shared declarations.
//
// Conventions used throughout the tool:
//  * Functions talking to the kernel return an `int`: 0 on success, a
//    positive errno value on failure (never -1 + global errno).
//  * Result<T> carries either a value or such an errno.
//  * Integers exchanged with the module use the uapi types (__u32/__u64),
//    printed with %u / %llu / %llx.
#pragma once

#include <linux/htable.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <sys/types.h>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace htable {

using u8 = __u8;
using u32 = __u32;
using u64 = __u64;

inline constexpr u64 kPageSize = 4096;
inline constexpr const char* kDevicePath = "/dev/htable";
inline constexpr const char* kDebugfsDir = "/sys/kernel/debug/htable";
inline constexpr const char* kStatsPath = "/sys/kernel/debug/htable/stats";
inline constexpr const char* kParamDir = "/sys/module/htable/parameters";
// Private VA used by demo and selftest: 16 TiB, valid with 4- and 5-level paging.
inline constexpr u64 kDemoVa = 0x100000000000ull;
inline constexpr u32 kProtRW = HTABLE_PROT_READ | HTABLE_PROT_WRITE;
inline constexpr u64 k2M = HTABLE_PAGE_2M;
inline constexpr u64 k1G = HTABLE_PAGE_1G;

// ---------------------------------------------------------------- errors

// "EINVAL (Invalid argument)", or "success" for 0.
std::string errno_desc(int err);
// Prints "htablectl: <what>: <strerror> (<ENAME>)" to stderr.
void print_error(std::string_view what, int err);

struct Err {
	int value;
};

// Minimal stand-in for std::expected<T, int> (GCC 12 has no <expected>).
template <class T>
class Result {
public:
	Result(T v) : val_(std::move(v)) {}
	Result(Err e) : err_(e.value) {}

	explicit operator bool() const { return val_.has_value(); }
	int error() const { return err_; }
	T& operator*() { return *val_; }
	T* operator->() { return &*val_; }

private:
	std::optional<T> val_;
	int err_ = 0;
};

// ---------------------------------------------------------------- device

// RAII owner of an fd on /dev/htable with one thin wrapper per ioctl.
// Every wrapper returns 0 or a positive errno; argument structs are passed
// whole so that callers (the selftest) can set any field, including the
// must-be-zero ones.
class Device {
public:
	static Result<Device> open(const char* path = kDevicePath);

	Device(Device&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
	Device& operator=(Device&& o) noexcept;
	Device(const Device&) = delete;
	Device& operator=(const Device&) = delete;
	~Device() { close(); }

	int fd() const { return fd_; }
	void close();

	// Any command number, e.g. one built by hand with _IOC().
	int ioctl_raw(unsigned long cmd, void* arg) const;

	int version(htable_version& v) const { return ioctl_raw(HTABLE_IOC_VERSION, &v); }
	int hat_create(htable_hat_create& c) const { return ioctl_raw(HTABLE_IOC_HAT_CREATE, &c); }
	int hat_destroy(htable_hat_destroy& d) const { return ioctl_raw(HTABLE_IOC_HAT_DESTROY, &d); }
	int map(htable_map& m) const { return ioctl_raw(HTABLE_IOC_MAP, &m); }
	int unmap(htable_unmap& u) const { return ioctl_raw(HTABLE_IOC_UNMAP, &u); }
	int translate(htable_translate& t) const { return ioctl_raw(HTABLE_IOC_TRANSLATE, &t); }
	int job(htable_job& j) const { return ioctl_raw(HTABLE_IOC_JOB, &j); }
	int protect(htable_protect& p) const { return ioctl_raw(HTABLE_IOC_PROTECT, &p); }
	int lock(htable_lock& l) const { return ioctl_raw(HTABLE_IOC_LOCK, &l); }
	int walk(htable_walk& w) const { return ioctl_raw(HTABLE_IOC_WALK, &w); }
	int share(htable_share& s) const { return ioctl_raw(HTABLE_IOC_SHARE, &s); }
	int reap(htable_reap& r) const { return ioctl_raw(HTABLE_IOC_REAP, &r); }
	int stats(htable_stats& s) const { return ioctl_raw(HTABLE_IOC_STATS, &s); }

	// Conveniences with all must-be-zero fields zeroed.
	int hat_destroy(u32 hat_id) const;
	// page_size 0 is HTABLE_PAGE_AUTO: the largest leaves the memory allows.
	int map(u32 hat_id, u64 va, const void* uaddr, u64 length, u32 prot = kProtRW,
		u64 page_size = HTABLE_PAGE_AUTO) const;
	// HTABLE_MAP_OWNED: zeroed memory allocated by the module.
	int map_owned(u32 hat_id, u64 va, u64 length, u32 prot = kProtRW,
		      u64 page_size = HTABLE_PAGE_AUTO) const;
	int unmap(u32 hat_id, u64 va, u64 length) const;
	int translate(u32 hat_id, u64 va, htable_translate& out) const;
	int protect(u32 hat_id, u64 va, u64 length, u32 prot) const;
	int lock(u32 hat_id, u64 va, u64 length, bool lock) const;
	int share(u32 dst_hat_id, u32 src_hat_id, u64 va, u32 level) const;
	int reap(u64 nr, u64* freed = nullptr) const;
	// Every counter through HTABLE_IOC_STATS (asks for the count first).
	int stats_all(std::vector<std::pair<std::string, u64>>& out) const;
	// Every mapping of [va, end), calling WALK as often as needed with at
	// most `batch` entries per call.  *calls (if given) counts the calls.
	int walk_all(u32 hat_id, u64 va, u64 end, std::vector<htable_walk_entry>& out,
		     u32 batch = 256, unsigned* calls = nullptr) const;
	// A single-CPU job (cpu may be HTABLE_JOB_ANY_CPU).
	int job(u32 hat_id, u32 op, u64 va, u64 length, u64 seed, u32 cpu, htable_job& out) const;
	// A job split over the CPUs of cpu_mask (cpu = HTABLE_JOB_ANY_CPU).
	int job_mask(u32 hat_id, u32 op, u64 va, u64 length, u64 seed, u64 cpu_mask,
		     htable_job& out, u64 dst_va = 0) const;

private:
	explicit Device(int fd) : fd_(fd) {}
	int fd_ = -1;
};

// A hat that is destroyed when this object goes away (the module would also
// destroy it when the fd is closed; doing it explicitly keeps runs tidy).
class Hat {
public:
	static Result<Hat> create(const Device& dev, u32 flags = 0);

	Hat() = default;
	Hat(Hat&& o) noexcept
		: dev_(o.dev_), id_(std::exchange(o.id_, 0)), levels_(o.levels_) {}
	Hat& operator=(Hat&& o) noexcept;
	Hat(const Hat&) = delete;
	Hat& operator=(const Hat&) = delete;
	~Hat() { reset(); }

	u32 id() const { return id_; }
	u32 levels() const { return levels_; }
	// Destroys the hat now; returns the HAT_DESTROY errno (0 if none held).
	int reset();
	// Forget the hat without destroying it.
	u32 release() { return std::exchange(id_, 0); }

private:
	Hat(const Device& dev, u32 id, u32 levels) : dev_(&dev), id_(id), levels_(levels) {}
	const Device* dev_ = nullptr;
	u32 id_ = 0;
	u32 levels_ = 0;
};

// ---------------------------------------------------------------- memory

// An anonymous private mapping of the process, every page faulted in for
// write so it is backed by its own page (not the shared zero page).
// Throws std::system_error if mmap fails.
enum class Huge {
	Default,  // whatever the system's THP policy gives
	Never,    // 4 KiB pages (MADV_NOHUGEPAGE, THP off while faulting them
	          // in), touched so that no two neighbours are physically
	          // adjacent: never usable for a large leaf
	Want,     // transparent huge pages where possible (MADV_HUGEPAGE, THP
	          // on while faulting them in)
};

class Buffer {
public:
	explicit Buffer(size_t length, u8 fill = 0);
	// `length` bytes whose start is aligned to `align` (a power of two, at
	// least 4 KiB), with the given huge page advice given before the pages
	// are touched.
	Buffer(size_t length, u8 fill, size_t align, Huge huge);
	Buffer(Buffer&& o) noexcept
		: ptr_(std::exchange(o.ptr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
	Buffer& operator=(Buffer&&) = delete;
	Buffer(const Buffer&) = delete;
	Buffer& operator=(const Buffer&) = delete;
	~Buffer();

	u8* data() const { return ptr_; }
	size_t size() const { return len_; }
	u8& operator[](size_t i) const { return ptr_[i]; }
	std::span<u8> span(size_t off, size_t len) const { return {ptr_ + off, len}; }

	// munmap the pages from new_length on, leaving unmapped address space
	// right after the (shorter) buffer (for EFAULT tests).
	void shrink(size_t new_length);

private:
	u8* ptr_ = nullptr;
	size_t len_ = 0;
};

// ---------------------------------------------------------------- data

// Process-side versions of what the module's jobs compute.
void fill_pattern(std::span<u8> buf, u64 seed);
// Number of bytes of buf differing from the pattern, where buf[i] is
// expected to hold htable_pattern_byte(seed, base + i) (base = offset of buf
// from the job's va); *first_bad = offset (base-relative) of the first one,
// or ~0ull.
u64 count_mismatches(std::span<const u8> buf, u64 seed, u64 base = 0,
		     u64* first_bad = nullptr);
// h: where an earlier part of the data left the hash.
u64 fnv1a64(std::span<const u8> buf, u64 h = 0xcbf29ce484222325ull);
// FNV-1a 64 of pattern(seed, 0 .. length-1), without a buffer.
u64 pattern_fnv1a64(u64 seed, u64 length);

// The slices of a job of `length` bytes over n CPUs: [slice(i), slice(i+1)).
inline u64 job_slice(u64 length, u64 n, u64 i) { return htable_job_slice(length, n, i); }
// Applies the writes of a RANDOM_RW job over `n` slices to `buf` (buf[0] is
// the job's va), exactly as include/uapi/linux/htable.h documents; returns
// the number of iterations (the job's result when nothing faults).
u64 replay_random_rw(std::span<u8> buf, u64 seed, u64 n);
// The offsets (from the job's va) a RANDOM_RW job of `length` bytes over
// `n` slices reads and then writes 8 bytes at, in slice order; returns the
// number of iterations.
u64 for_each_random_rw(u64 length, u64 seed, u64 n, const std::function<void(u64 off)>& fn);
// Pages a TOUCH job over [va, va + length) split in n slices touches.
u64 touch_count(u64 va, u64 length, u64 n);
// Bit mask of the CPUs (only those below 64).
u64 cpu_mask_of(const std::vector<u32>& cpus);

// The tests' random numbers: xorshift64 (the module's own generator),
// seeded through splitmix64 so that neighbouring seeds (seed + worker,
// seed + i) give unrelated streams.  A plain `seed | 1` made seeds 2k and
// 2k + 1 one stream: two stress workers ran the same operations.
class Rng {
public:
	explicit Rng(u64 seed)
	{
		u64 z = seed + 0x9e3779b97f4a7c15ull;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		s_ = (z ^ (z >> 31)) | 1;
	}
	u64 next() { return htable_xorshift64(&s_); }
	u64 below(u64 n) { return n ? next() % n : 0; }
	bool chance(unsigned pct) { return below(100) < pct; }
	// Skewed towards small values: mostly 1..4, sometimes up to max.
	u64 small(u64 max) { return 1 + (chance(70) ? below(std::min<u64>(4, max)) : below(max)); }
	template <class T>
	const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }

private:
	u64 s_;
};

// ---------------------------------------------------------------- system

// Online CPUs from /sys/devices/system/cpu/online, falling back to
// 0 .. sysconf(_SC_NPROCESSORS_ONLN) - 1.
std::vector<u32> online_cpus();
// Possible CPUs (may be empty if sysfs is not readable).
std::vector<u32> possible_cpus();
// Parses a kernel cpu list such as "0-3,5,7-8".
std::vector<u32> parse_cpu_list(std::string_view s);
std::string format_cpu_list(const std::vector<u32>& cpus);

// Physical frame number backing `addr` in this process, via
// /proc/self/pagemap.  nullopt (with *why set) if the file is not readable,
// the page is not present, or the kernel hides PFNs (no CAP_SYS_ADMIN).
std::optional<u64> pagemap_pfn(const void* addr, std::string* why);
// The PFNs of `pages` pages from `addr` (one read of pagemap, through `fd`
// if it is an open /proc/self/pagemap); false (with *why) if one is not
// present or PFNs are hidden.
bool pagemap_pfns(const void* addr, size_t pages, std::vector<u64>& out, std::string* why, int fd = -1);
// True if [addr, addr + length) is backed by physically contiguous pages
// whose first PFN is aligned to length (what a 2 MiB leaf needs).
bool physically_contiguous(const void* addr, size_t length, std::string* why);
// Transparent huge pages: "always", "madvise", "never", or "" (no THP).
std::string thp_mode();

// Whole (small, pseudo-) files: 0 or errno.
int read_file(const std::string& path, std::string& out);
int write_file(const std::string& path, std::string_view data);
// "name value" lines (debugfs, meminfo...) as a map of the first two words.
std::vector<std::pair<std::string, std::string>> parse_kv(std::string_view text);
// A field of /proc/meminfo in KiB.
std::optional<u64> meminfo_kib(std::string_view name);

// Module parameters in /sys/module/htable/parameters.
int read_param(const char* name, std::string& value);
int write_param(const char* name, std::string_view value);

// debugfs hats/<gid> directories: the gids of live hats owned by `pid`
// with fd-local id `fd_id` (normally one; 0: all of them).
std::vector<u32> find_hat_gids(pid_t pid, u32 fd_id);
std::string hat_debugfs_dir(u32 gid);

// ---------------------------------------------------------------- stats

struct Stat {
	std::string name;
	std::string value;
};
// Reads the debugfs stats file: 0 or errno.
int read_stats(std::vector<Stat>& out);
std::optional<u64> stat_u64(const std::vector<Stat>& stats, std::string_view name);
// One counter, straight from debugfs.
std::optional<u64> read_stat(std::string_view name);

// ---------------------------------------------------------------- leaks

// The debugfs counters that must return to where they were once every hat
// of a run is gone: tables_live, hats_live, pinned_pages, and pages_live /
// objects_live where the module has them.  Empty if debugfs is unreadable
// or lacks the first three.
using CounterSet = std::vector<std::pair<std::string, u64>>;
CounterSet leak_counters();
// Polls leak_counters() until it equals `base` or `timeout_ms` passes;
// returns the last reading.
CounterSet wait_leak_counters(const CounterSet& base, int timeout_ms);
// "tables_live 12 -> 14, ..." for the counters that differ (all of them if
// `all`); *total (if given) = sum of |now - base|.  A counter missing from
// one side counts as a difference of 1.
std::string counter_diff(const CounterSet& base, const CounterSet& now, bool all = false,
			 u64* total = nullptr);

// ---------------------------------------------------------------- misc

// printf into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "4 KiB", "2 MiB", "128 TiB"; exact powers of 1024 only, bytes otherwise.
std::string human_size(u64 bytes);
std::string prot_string(u32 prot);  // "rwx" style
std::string feature_string(u32 features);
const char* job_op_name(u32 op);  // "fill", "verify"... or "op?"
std::string walk_flags_string(u32 flags);
// Parses "123", "0x1f", "4k", "2M", "1g" (binary suffixes): false if invalid.
bool parse_u64(std::string_view s, u64& out);

// ---------------------------------------------------------------- pressure

// The memory-pressure scenario of `htablectl pressure` (pressure.cpp), also
// run reduced by the selftest: hats holding many page tables (4 KiB user
// pages at 2 MiB strides: one level-0 table each), filled; then memory
// pressure (a memory hog, then vm.drop_caches = 2); then checks that the
// shrinker took the tables back and that every byte still verifies.
struct PressureConfig {
	u64 tables = 40000;        // level-0 tables wanted
	u32 hats = 0;              // 0: one per 5000 tables (at most 16)
	bool scale = true;         // use at most mem_pct % of MemAvailable
	unsigned mem_pct = 60;
	bool hog = true;           // run the memory hog before drop_caches
	unsigned hog_left_pct = 15;  // the hog stops at this % of MemTotal available...
	unsigned overcommit_pct = 0;  // ...then takes this % of the tables' memory more
	unsigned threads = 0;      // job threads; 0: one per online CPU (at most 8)
};

class PressureReport {
public:
	virtual ~PressureReport() = default;
	virtual void note(const std::string& line) = 0;
	// One check; skip: not applicable in this configuration.
	virtual void result(bool ok, const std::string& name, const char* skip = nullptr) = 0;
	// The run's figures as one JSON object (`htablectl pressure` prints it
	// for summary.json); others may ignore them.
	virtual void figures(const std::string&) {}
};

// How many results run_pressure() reports, whatever happens.
inline constexpr int kPressureChecks = 8;
// Returns the number of failed checks.
int run_pressure(const PressureConfig& cfg, PressureReport& report);

// Subcommands (argv[0] is the subcommand name).
int cmd_info(std::span<char*> args);
int cmd_stats(std::span<char*> args);
int cmd_demo(std::span<char*> args);
int cmd_selftest(std::span<char*> args);
int cmd_reap(std::span<char*> args);
int cmd_shell(std::span<char*> args);
int cmd_pressure(std::span<char*> args);
int cmd_fuzz(std::span<char*> args);
int cmd_stress(std::span<char*> args);
int cmd_lifetime(std::span<char*> args);

// Shared argument handling for subcommands that only take flags.
// Returns -1 to continue, otherwise the exit status to return.
int parse_simple_args(std::span<char*> args, const char* help,
		      std::vector<std::pair<const char*, bool*>> flags);

}  // namespace htable
