// SPDX-License-Identifier: GPL-2.0
//
// Helpers that do not talk to the device: errno text, process memory,
// pattern/checksum, cpu lists, pagemap, debugfs stats, formatting.
#include "htablectl.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <system_error>
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

u64 fnv1a64(std::span<const u8> buf)
{
	u64 h = 0xcbf29ce484222325ull;
	for (u8 b : buf) {
		h ^= b;
		h *= 0x100000001b3ull;
	}
	return h;
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

// ---------------------------------------------------------------- misc

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
