// SPDX-License-Identifier: GPL-2.0
//
// Helpers that do not talk to the device: errno text, process memory,
// pattern/checksum, cpu lists, pagemap, debugfs stats, formatting.
#include "htablectl.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <dirent.h>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace htable {

// ---------------------------------------------------------------- errors

std::string errno_desc(int err)
{
	if (err == 0)
		return "success";
	const char* name = strerrorname_np(err);
	std::string s = name ? name : "E" + std::to_string(err);
	return s + " (" + std::strerror(err) + ")";
}

void print_error(std::string_view what, int err)
{
	const char* name = strerrorname_np(err);
	std::fprintf(stderr, "htablectl: %.*s: %s (%s)\n", int(what.size()), what.data(),
		     std::strerror(err), name ? name : "unknown errno");
	if (what.find(kDevicePath) != std::string_view::npos) {
		if (err == ENOENT || err == ENODEV || err == ENXIO)
			std::fprintf(stderr, "htablectl: hint: is the htable module loaded?\n");
		else if (err == EACCES || err == EPERM)
			std::fprintf(stderr, "htablectl: hint: %s is mode 0600 and needs "
					     "CAP_SYS_ADMIN; run as root\n", kDevicePath);
	}
}

// ---------------------------------------------------------------- memory

Buffer::Buffer(size_t length, u8 fill) : len_(length)
{
	void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		throw std::system_error(errno, std::generic_category(), "mmap of a buffer");
	ptr_ = static_cast<u8*>(p);
	// MAP_POPULATE already faulted the pages in; writing every byte
	// guarantees each page is a private, writable page of its own.
	std::memset(ptr_, fill, length);
}

Buffer::Buffer(size_t length, u8 fill, size_t align, Huge huge) : len_(length)
{
	if (align < kPageSize)
		align = kPageSize;
	// Over-allocate, then give back the slack on both sides.
	const size_t total = length + align;
	void* p = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		throw std::system_error(errno, std::generic_category(), "mmap of an aligned buffer");
	const uintptr_t base = reinterpret_cast<uintptr_t>(p);
	const uintptr_t start = (base + align - 1) & ~uintptr_t(align - 1);
	if (start > base)
		::munmap(p, start - base);
	if (base + total > start + length)
		::munmap(reinterpret_cast<void*>(start + length), base + total - start - length);
	ptr_ = reinterpret_cast<u8*>(start);
	// The advice: madvise() where the kernel has it (it fails with EINVAL
	// without THP, and with ENOSYS without CONFIG_ADVISE_SYSCALLS), and the
	// process-wide THP switch (PR_SET_THP_DISABLE, always there) for the
	// time the pages are faulted in, which decides their size.
	const int thp_off = ::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	if (huge != Huge::Default) {
		(void)::madvise(ptr_, length, huge == Huge::Want ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		if (thp_off >= 0)
			(void)::prctl(PR_SET_THP_DISABLE, huge == Huge::Never ? 1 : 0, 0, 0, 0);
	}
	if (huge == Huge::Never) {
		// Even pages first, then odd ones: the page allocator often hands out
		// consecutive frames, and 4 KiB pages touched in order can end up
		// physically contiguous and 2 MiB aligned -- as good as a huge page
		// for the module.  Interleaved, neighbours never are.
		for (size_t pass = 0; pass < 2; pass++)
			for (size_t o = pass * kPageSize; o < length; o += 2 * kPageSize)
				std::memset(ptr_ + o, fill, std::min<size_t>(kPageSize, length - o));
	} else {
		std::memset(ptr_, fill, length);
	}
	if (huge != Huge::Default && thp_off >= 0)
		(void)::prctl(PR_SET_THP_DISABLE, thp_off, 0, 0, 0);
}

Buffer::~Buffer()
{
	if (ptr_)
		::munmap(ptr_, len_);
}

void Buffer::shrink(size_t new_length)
{
	if (new_length >= len_)
		return;
	if (::munmap(ptr_ + new_length, len_ - new_length) != 0)
		throw std::system_error(errno, std::generic_category(), "munmap of a buffer tail");
	len_ = new_length;
}

// ---------------------------------------------------------------- data

void fill_pattern(std::span<u8> buf, u64 seed)
{
	for (size_t i = 0; i < buf.size(); i++)
		buf[i] = htable_pattern_byte(seed, i);
}

u64 count_mismatches(std::span<const u8> buf, u64 seed, u64 base, u64* first_bad)
{
	u64 n = 0, first = ~0ull;
	for (size_t i = 0; i < buf.size(); i++) {
		if (buf[i] != htable_pattern_byte(seed, base + i)) {
			if (n++ == 0)
				first = base + i;
		}
	}
	if (first_bad)
		*first_bad = first;
	return n;
}

u64 fnv1a64(std::span<const u8> buf, u64 h)
{
	for (u8 b : buf) {
		h ^= b;
		h *= 0x100000001b3ull;
	}
	return h;
}

u64 pattern_fnv1a64(u64 seed, u64 length)
{
	u64 h = 0xcbf29ce484222325ull;
	for (u64 i = 0; i < length; i++) {
		h ^= htable_pattern_byte(seed, i);
		h *= 0x100000001b3ull;
	}
	return h;
}

u64 for_each_random_rw(u64 length, u64 seed, u64 n, const std::function<void(u64 off)>& fn)
{
	u64 iterations = 0;
	for (u64 i = 0; i < n; i++) {
		const u64 a = job_slice(length, n, i), b = job_slice(length, n, i + 1);
		const u64 words = (b - a) / 8;
		if (!words)
			continue;  // an empty slice does nothing
		const u64 iters = std::max<u64>(1, (b - a) / 64);
		u64 state = htable_random_rw_seed(seed, a);
		for (u64 k = 0; k < iters; k++)
			fn(a + 8 * (htable_xorshift64(&state) % words));
		iterations += iters;
	}
	return iterations;
}

u64 replay_random_rw(std::span<u8> buf, u64 seed, u64 n)
{
	return for_each_random_rw(buf.size(), seed, n, [&](u64 off) {
		for (u64 j = 0; j < 8; j++)
			buf[off + j] = htable_pattern_byte(seed, off + j);
	});
}

u64 touch_count(u64 va, u64 length, u64 n)
{
	u64 count = 0;
	for (u64 i = 0; i < n; i++) {
		const u64 a = va + job_slice(length, n, i), b = va + job_slice(length, n, i + 1);
		if (b > a)
			count += (b - 1) / kPageSize - a / kPageSize + 1;
	}
	return count;
}

u64 cpu_mask_of(const std::vector<u32>& cpus)
{
	u64 mask = 0;
	for (u32 c : cpus)
		if (c < 64)
			mask |= 1ull << c;
	return mask;
}

// ---------------------------------------------------------------- files

// Reads a whole (small, pseudo-) file: 0 or errno.
static int slurp(const char* path, std::string& out)
{
	int fd = ::open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	out.clear();
	char buf[4096];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			::close(fd);
			return err;
		}
		if (n == 0)
			break;
		out.append(buf, size_t(n));
	}
	::close(fd);
	return 0;
}

int read_file(const std::string& path, std::string& out)
{
	return slurp(path.c_str(), out);
}

int write_file(const std::string& path, std::string_view data)
{
	int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	ssize_t n = ::write(fd, data.data(), data.size());
	int err = n < 0 ? errno : size_t(n) != data.size() ? EIO : 0;
	if (::close(fd) != 0 && !err)
		err = errno;
	return err;
}

std::vector<std::pair<std::string, std::string>> parse_kv(std::string_view text)
{
	std::vector<std::pair<std::string, std::string>> out;
	size_t pos = 0;
	while (pos < text.size()) {
		size_t eol = text.find('\n', pos);
		if (eol == std::string_view::npos)
			eol = text.size();
		std::string_view line = text.substr(pos, eol - pos);
		pos = eol + 1;
		size_t a = line.find_first_not_of(" \t");
		if (a == std::string_view::npos)
			continue;
		size_t b = line.find_first_of(" \t:", a);
		std::string key(line.substr(a, b == std::string_view::npos ? std::string_view::npos : b - a));
		std::string value;
		if (b != std::string_view::npos) {
			size_t c = line.find_first_not_of(" \t:", b);
			if (c != std::string_view::npos) {
				size_t d = line.find_first_of(" \t", c);
				value = std::string(line.substr(c, d == std::string_view::npos ? std::string_view::npos : d - c));
			}
		}
		out.emplace_back(std::move(key), std::move(value));
	}
	return out;
}

std::optional<u64> meminfo_kib(std::string_view name)
{
	std::string text;
	if (slurp("/proc/meminfo", text) != 0)
		return std::nullopt;
	for (const auto& [k, v] : parse_kv(text)) {
		u64 x;
		if (k == name && parse_u64(v, x))
			return x;
	}
	return std::nullopt;
}

int read_param(const char* name, std::string& value)
{
	int err = slurp((std::string(kParamDir) + "/" + name).c_str(), value);
	while (!err && !value.empty() && (value.back() == '\n' || value.back() == ' '))
		value.pop_back();
	return err;
}

int write_param(const char* name, std::string_view value)
{
	return write_file(std::string(kParamDir) + "/" + name, value);
}

std::string hat_debugfs_dir(u32 gid)
{
	return std::string(kDebugfsDir) + "/hats/" + std::to_string(gid);
}

std::vector<u32> find_hat_gids(pid_t pid, u32 fd_id)
{
	std::vector<u32> gids;
	DIR* d = ::opendir((std::string(kDebugfsDir) + "/hats").c_str());
	if (!d)
		return gids;
	while (struct dirent* e = ::readdir(d)) {
		u64 gid;
		if (e->d_name[0] == '.' || !parse_u64(e->d_name, gid))
			continue;
		std::string text;
		if (slurp((hat_debugfs_dir(u32(gid)) + "/info").c_str(), text) != 0)
			continue;  // destroyed meanwhile
		bool pid_ok = false, id_ok = false;
		for (const auto& [k, v] : parse_kv(text)) {
			if (k == "owner_pid")
				pid_ok = v == std::to_string(pid);
			else if (k == "fd_id")
				id_ok = !fd_id || v == std::to_string(fd_id);
		}
		if (pid_ok && id_ok)
			gids.push_back(u32(gid));
	}
	::closedir(d);
	std::sort(gids.begin(), gids.end());
	return gids;
}

// ---------------------------------------------------------------- cpus

std::vector<u32> parse_cpu_list(std::string_view s)
{
	std::vector<u32> cpus;
	size_t i = 0;
	auto number = [&](u32& v) {
		if (i >= s.size() || s[i] < '0' || s[i] > '9')
			return false;
		v = 0;
		while (i < s.size() && s[i] >= '0' && s[i] <= '9')
			v = v * 10 + u32(s[i++] - '0');
		return true;
	};
	while (i < s.size()) {
		u32 lo, hi;
		if (!number(lo))
			break;
		hi = lo;
		if (i < s.size() && s[i] == '-') {
			i++;
			if (!number(hi))
				break;
		}
		for (u32 c = lo; c <= hi && c < 65536; c++)
			cpus.push_back(c);
		if (i < s.size() && s[i] == ',')
			i++;
		else
			break;
	}
	return cpus;
}

std::string format_cpu_list(const std::vector<u32>& cpus)
{
	std::string s;
	for (size_t i = 0; i < cpus.size();) {
		size_t j = i;
		while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
			j++;
		if (!s.empty())
			s += ',';
		s += std::to_string(cpus[i]);
		if (j > i)
			s += '-' + std::to_string(cpus[j]);
		i = j + 1;
	}
	return s;
}

std::vector<u32> online_cpus()
{
	std::string s;
	if (slurp("/sys/devices/system/cpu/online", s) == 0) {
		auto cpus = parse_cpu_list(s);
		if (!cpus.empty())
			return cpus;
	}
	std::vector<u32> cpus;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	for (long c = 0; c < n; c++)
		cpus.push_back(u32(c));
	return cpus;
}

std::vector<u32> possible_cpus()
{
	std::string s;
	if (slurp("/sys/devices/system/cpu/possible", s) != 0)
		return {};
	return parse_cpu_list(s);
}

// ---------------------------------------------------------------- pagemap

std::optional<u64> pagemap_pfn(const void* addr, std::string* why)
{
	auto fail = [&](std::string reason) -> std::optional<u64> {
		if (why)
			*why = std::move(reason);
		return std::nullopt;
	};
	int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(std::string("/proc/self/pagemap: ") + std::strerror(errno));
	// One 64-bit entry per virtual page: bit 63 = present, bits 0-54 = PFN
	// (reads as 0 without CAP_SYS_ADMIN).
	u64 entry = 0;
	off_t off = off_t(reinterpret_cast<uintptr_t>(addr) / kPageSize * sizeof(entry));
	ssize_t n = ::pread(fd, &entry, sizeof(entry), off);
	int err = errno;
	::close(fd);
	if (n != ssize_t(sizeof(entry)))
		return fail(std::string("/proc/self/pagemap read: ") +
			    (n < 0 ? std::strerror(err) : "short read"));
	if (!(entry >> 63))
		return fail("page not present");
	u64 pfn = entry & ((1ull << 55) - 1);
	if (pfn == 0)
		return fail("PFN hidden by the kernel (needs CAP_SYS_ADMIN)");
	return pfn;
}

bool pagemap_pfns(const void* addr, size_t pages, std::vector<u64>& out, std::string* why, int fd)
{
	const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
	std::vector<u64> entries(pages);
	const bool mine = fd < 0;
	if (mine)
		fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (why)
			*why = std::string("/proc/self/pagemap: ") + std::strerror(errno);
		return false;
	}
	ssize_t got = ::pread(fd, entries.data(), pages * sizeof(u64), off_t(a / kPageSize * sizeof(u64)));
	if (mine)
		::close(fd);
	if (got != ssize_t(pages * sizeof(u64))) {
		if (why)
			*why = "short read of /proc/self/pagemap";
		return false;
	}
	const u64 pfn_mask = (1ull << 55) - 1;
	out.resize(pages);
	for (size_t i = 0; i < pages; i++) {
		out[i] = entries[i] & pfn_mask;
		if (!(entries[i] >> 63) || !out[i]) {
			if (why)
				*why = "page " + std::to_string(i) + " not present or PFN hidden";
			return false;
		}
	}
	return true;
}

bool physically_contiguous(const void* addr, size_t length, std::string* why)
{
	const size_t n = length / kPageSize;
	std::vector<u64> pfns;
	if (!pagemap_pfns(addr, n, pfns, why))
		return false;
	if (pfns[0] & (n - 1)) {
		if (why)
			*why = "first PFN " + std::to_string(pfns[0]) + " not aligned";
		return false;
	}
	for (size_t i = 1; i < n; i++) {
		if (pfns[i] != pfns[0] + i) {
			if (why)
				*why = "page " + std::to_string(i) + " is not PFN first + " + std::to_string(i);
			return false;
		}
	}
	return true;
}

std::string thp_mode()
{
	std::string s;
	if (slurp("/sys/kernel/mm/transparent_hugepage/enabled", s) != 0)
		return "";
	size_t a = s.find('['), b = s.find(']');
	if (a == std::string::npos || b == std::string::npos || b < a)
		return "";
	return s.substr(a + 1, b - a - 1);
}

// ---------------------------------------------------------------- stats

int read_stats(std::vector<Stat>& out)
{
	std::string text;
	if (int err = slurp(kStatsPath, text))
		return err;
	out.clear();
	size_t pos = 0;
	while (pos < text.size()) {
		size_t eol = text.find('\n', pos);
		if (eol == std::string::npos)
			eol = text.size();
		std::string_view line(text.data() + pos, eol - pos);
		pos = eol + 1;
		auto trim = [](std::string_view v) {
			while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
				v.remove_prefix(1);
			while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
				v.remove_suffix(1);
			return v;
		};
		line = trim(line);
		if (line.empty())
			continue;
		size_t sp = line.find_first_of(" \t");
		Stat s;
		s.name = std::string(line.substr(0, sp));
		if (sp != std::string_view::npos)
			s.value = std::string(trim(line.substr(sp)));
		out.push_back(std::move(s));
	}
	return 0;
}

std::optional<u64> stat_u64(const std::vector<Stat>& stats, std::string_view name)
{
	for (const auto& s : stats) {
		if (s.name != name)
			continue;
		if (s.value.empty())
			return std::nullopt;
		u64 v = 0;
		for (char c : s.value) {
			if (c < '0' || c > '9')
				return std::nullopt;
			v = v * 10 + u64(c - '0');
		}
		return v;
	}
	return std::nullopt;
}

std::optional<u64> read_stat(std::string_view name)
{
	std::vector<Stat> st;
	if (read_stats(st) != 0)
		return std::nullopt;
	return stat_u64(st, name);
}

// ---------------------------------------------------------------- leaks

CounterSet leak_counters()
{
	static const char* const names[] = {"tables_live", "hats_live", "pinned_pages",
					    "pages_live", "objects_live"};
	std::vector<Stat> st;
	if (read_stats(st) != 0)
		return {};
	CounterSet out;
	for (size_t i = 0; i < std::size(names); i++) {
		auto v = stat_u64(st, names[i]);
		if (!v && i < 3)
			return {};  // the first three are required
		if (v)
			out.emplace_back(names[i], *v);
	}
	return out;
}

CounterSet wait_leak_counters(const CounterSet& base, int timeout_ms)
{
	CounterSet now;
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	do {
		now = leak_counters();
		if (!now.empty() && now == base)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	} while (std::chrono::steady_clock::now() < deadline);
	return now;
}

std::string counter_diff(const CounterSet& base, const CounterSet& now, bool all, u64* total)
{
	std::string s;
	u64 sum = 0;
	auto find = [](const CounterSet& set, const std::string& name) -> std::optional<u64> {
		for (const auto& [n, v] : set)
			if (n == name)
				return v;
		return std::nullopt;
	};
	std::vector<std::string> names;
	for (const auto& [n, v] : base)
		names.push_back(n);
	for (const auto& [n, v] : now)
		if (!find(base, n))
			names.push_back(n);
	for (const auto& n : names) {
		auto b = find(base, n), a = find(now, n);
		if (b && a && *a == *b && !all)
			continue;
		sum += b && a ? (*a > *b ? *a - *b : *b - *a) : 1;
		if (!s.empty())
			s += ", ";
		s += n + " " + (b ? std::to_string(*b) : "?") + " -> " + (a ? std::to_string(*a) : "?");
	}
	if (total)
		*total = sum;
	return s;
}

// ---------------------------------------------------------------- misc

std::string strfmt(const char* fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

const char* job_op_name(u32 op)
{
	switch (op) {
	case HTABLE_JOB_FILL: return "fill";
	case HTABLE_JOB_VERIFY: return "verify";
	case HTABLE_JOB_CHECKSUM: return "checksum";
	case HTABLE_JOB_TOUCH: return "touch";
	case HTABLE_JOB_RANDOM_RW: return "random";
	case HTABLE_JOB_COPY: return "copy";
	}
	return "op?";
}

std::string walk_flags_string(u32 flags)
{
	std::string s;
	if (flags & HTABLE_WALK_LOCKED)
		s += "locked";
	if (flags & HTABLE_WALK_SHARED)
		s += s.empty() ? "shared" : ",shared";
	if (flags & ~(HTABLE_WALK_LOCKED | HTABLE_WALK_SHARED)) {
		char extra[32];
		std::snprintf(extra, sizeof(extra), "%s0x%x", s.empty() ? "" : ",",
			      flags & ~(HTABLE_WALK_LOCKED | HTABLE_WALK_SHARED));
		s += extra;
	}
	return s.empty() ? "-" : s;
}

bool parse_u64(std::string_view s, u64& out)
{
	if (s.empty())
		return false;
	std::string str(s);
	u64 mult = 1;
	switch (str.back()) {
	case 'k': case 'K': mult = 1ull << 10; break;
	case 'm': case 'M': mult = 1ull << 20; break;
	case 'g': case 'G': mult = 1ull << 30; break;
	case 't': case 'T': mult = 1ull << 40; break;
	}
	if (mult != 1)
		str.pop_back();
	if (str.empty() || str[0] == '-' || str[0] == '+')
		return false;
	errno = 0;
	char* end = nullptr;
	unsigned long long v = std::strtoull(str.c_str(), &end, 0);
	if (errno || !end || *end)
		return false;
	if (v && mult > ~0ull / v)
		return false;
	out = v * mult;
	return true;
}

std::string human_size(u64 bytes)
{
	static const char* const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;
	u64 v = bytes;
	while (v != 0 && v % 1024 == 0 && u + 1 < std::size(units)) {
		v /= 1024;
		u++;
	}
	return std::to_string(v) + " " + units[u];
}

std::string prot_string(u32 prot)
{
	std::string s;
	s += (prot & HTABLE_PROT_READ) ? 'r' : '-';
	s += (prot & HTABLE_PROT_WRITE) ? 'w' : '-';
	s += (prot & HTABLE_PROT_EXEC) ? 'x' : '-';
	if (prot & ~HTABLE_PROT_ALL) {
		char extra[32];
		std::snprintf(extra, sizeof(extra), "+0x%x", prot & ~HTABLE_PROT_ALL);
		s += extra;
	}
	return s;
}

std::string feature_string(u32 features)
{
	static const struct {
		u32 bit;
		const char* name;
	} names[] = {
		{HTABLE_FEAT_LA57, "la57 (5-level paging)"},
		{HTABLE_FEAT_1G, "1g (1 GiB pages)"},
		{HTABLE_FEAT_NX, "nx"},
		{HTABLE_FEAT_PTI, "pti (page-table isolation)"},
		{HTABLE_FEAT_PCID, "pcid"},
	};
	std::string s;
	u32 known = 0;
	for (const auto& n : names) {
		known |= n.bit;
		if (features & n.bit) {
			if (!s.empty())
				s += ", ";
			s += n.name;
		}
	}
	if (features & ~known) {
		char extra[40];
		std::snprintf(extra, sizeof(extra), "unknown bits 0x%x", features & ~known);
		if (!s.empty())
			s += ", ";
		s += extra;
	}
	return s.empty() ? "none" : s;
}

}  // namespace htable
