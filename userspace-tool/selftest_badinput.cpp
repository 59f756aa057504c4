// SPDX-License-Identifier: GPL-2.0
//
// selftest: bad input, one table.  Each row names an ioctl, the class of
// field it breaks, how it breaks the ioctl's valid request, and the errno
// docs/ABI.md gives for that.  The runner builds the valid request (each of
// which is first shown to succeed on its own), applies the row's
// corruption, issues the call, and then checks that nothing changed: a full
// WALK of every hat involved, the bytes of every buffer mapped in them, and
// the module's hats_live, tables_live and pinned_pages.
#include "selftest.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <fcntl.h>
#include <functional>
#include <set>
#include <sys/mman.h>
#include <unistd.h>

namespace htable::st {
namespace {

// The requests of the table.  MAP is there twice: user and owned memory
// take different paths.  kUnknown is no ioctl: command numbers past the last.
enum Io : unsigned {
	kVersion, kCreate, kDestroy, kMapUser, kMapOwned, kUnmap, kTranslate, kJob, kProtect,
	kLock, kWalk, kShare, kReap, kStats, kUnknown, kNumIo
};

struct IoInfo {
	const char* name;
	unsigned long cmd;
	size_t min_size;  // the struct of the ABI version that introduced the command
};

const IoInfo kIo[kNumIo] = {
	{"VERSION", HTABLE_IOC_VERSION, sizeof(htable_version)},
	{"HAT_CREATE", HTABLE_IOC_HAT_CREATE, sizeof(htable_hat_create)},
	{"HAT_DESTROY", HTABLE_IOC_HAT_DESTROY, sizeof(htable_hat_destroy)},
	{"MAP user", HTABLE_IOC_MAP, sizeof(htable_map)},
	{"MAP owned", HTABLE_IOC_MAP, sizeof(htable_map)},
	{"UNMAP", HTABLE_IOC_UNMAP, sizeof(htable_unmap)},
	{"TRANSLATE", HTABLE_IOC_TRANSLATE, sizeof(htable_translate)},
	{"JOB", HTABLE_IOC_JOB, offsetof(htable_job, reloads)},
	{"PROTECT", HTABLE_IOC_PROTECT, sizeof(htable_protect)},
	{"LOCK", HTABLE_IOC_LOCK, sizeof(htable_lock)},
	{"WALK", HTABLE_IOC_WALK, sizeof(htable_walk)},
	{"SHARE", HTABLE_IOC_SHARE, sizeof(htable_share)},
	{"REAP", HTABLE_IOC_REAP, sizeof(htable_reap)},
	{"STATS", HTABLE_IOC_STATS, sizeof(htable_stats)},
	{"unknown nr", _IOWR(HTABLE_IOC_MAGIC, 0x0d, htable_reap), sizeof(htable_reap)},
};

// Where the ioctl's argument pointer points.
enum class ArgAt { Buffer, Null, Kernel, ReadOnly };

inline constexpr u64 kKernelAddr = 0xffff888000000000ull;  // the direct map
inline constexpr size_t kMaxIocSize = (1u << _IOC_SIZEBITS) - 1;

struct Req {
	Io io = kVersion;
	unsigned long cmd = 0;
	const Device* dev = nullptr;
	ArgAt at = ArgAt::Buffer;
	union {
		htable_version version;
		htable_hat_create create;
		htable_hat_destroy destroy;
		htable_map map;
		htable_unmap unmap;
		htable_translate translate;
		htable_job job;
		htable_protect protect;
		htable_lock lock;
		htable_walk walk;
		htable_share share;
		htable_reap reap;
		htable_stats stats;
		u8 bytes[kMaxIocSize + 1];
	};

	Req() { clear(); }
	void clear() { std::memset(bytes, 0, sizeof(bytes)); }
	size_t size() const { return _IOC_SIZE(cmd); }
	void resize(size_t n) { cmd = resized(cmd, n); }
	void set_dir(unsigned dir) { cmd = _IOC(dir, _IOC_TYPE(cmd), _IOC_NR(cmd), _IOC_SIZE(cmd)); }
};

// A private mapping made with mmap() and gone with the object.
class Mmap {
public:
	Mmap() = default;
	Mmap(size_t len, int prot, int flags, int fd = -1) : len_(len)
	{
		void* p = ::mmap(nullptr, len, prot, flags, fd, 0);
		p_ = p == MAP_FAILED ? nullptr : static_cast<u8*>(p);
	}
	Mmap(const Mmap&) = delete;
	Mmap& operator=(const Mmap&) = delete;
	~Mmap()
	{
		if (p_)
			::munmap(p_, len_);
	}
	u8* get() const { return p_; }
	u64 addr() const { return reinterpret_cast<uintptr_t>(p_); }
	// Unmaps [off, off + len): a hole inside the reservation.
	bool punch(size_t off, size_t len) { return p_ && ::munmap(p_ + off, len) == 0; }

private:
	u8* p_ = nullptr;
	size_t len_ = 0;
};

// VAs in the hats.
inline constexpr u64 kVa = kDemoVa;              // a: 4 user pages; b: 2 pages at +8 pages
inline constexpr u64 kFree = kDemoVa + 64 * P;   // nothing mapped: where MAP rows go
inline constexpr u64 kShareVa = kDemoVa + k1G;   // b: one owned page (SHARE's source table)

// What the rows run against.  The hats and buffers are rebuilt whenever a
// row changed something; the odd memory (PROT_NONE, files...) stays.
struct Env {
	Ctx& c;
	T& t;
	// a, b on dev; o on other, whose id is not one of dev's
	std::optional<Device> dev, other;
	std::optional<Buffer> abuf, bbuf, obuf, spare, big;
	std::optional<Hat> a, b, o;
	std::vector<Hat> o_more;
	u32 gone = 0;  // a destroyed id of dev
	std::vector<htable_walk_entry> walk_out;
	std::vector<htable_stat_entry> stat_out;
	std::optional<ParamGuard> param;  // a row's module parameter, restored after it

	// odd memory for MAP's uaddr
	Mmap none{2 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS};
	Mmap ro{2 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE};
	Mmap hole{4 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS};  // pages 1-2 punched
	Mmap part{2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE};
	int file = -1;
	std::optional<Mmap> file_private, file_shared;

	Env(Ctx& c_, T& t_) : c(c_), t(t_), walk_out(64), stat_out(8)
	{
		hole.punch(P, 2 * P);
		part.punch(P, P);  // its second page is gone
		file = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
		if (file >= 0) {
			file_private.emplace(2 * P, PROT_READ, MAP_PRIVATE, file);
			file_shared.emplace(2 * P, PROT_READ, MAP_SHARED, file);
		}
	}
	~Env()
	{
		if (file >= 0)
			::close(file);
	}

	u64 end() const { return c.end(); }
	bool odd_memory_ok()
	{
		return t.check(none.get() && ro.get() && hole.get() && part.get() && file_private &&
				       file_private->get() && file_shared->get(),
			       "could not set up the PROT_NONE, read-only, hole and file mappings");
	}

	void teardown()
	{
		a.reset();
		b.reset();
		o.reset();
		o_more.clear();
		dev.reset();
		other.reset();
		abuf.reset();
		bbuf.reset();
		obuf.reset();
		spare.reset();
		big.reset();
	}

	bool build()
	{
		teardown();
		auto d = Device::open(), od = Device::open();
		if (!t.want_ok(d ? 0 : d.error(), "open") || !t.want_ok(od ? 0 : od.error(), "open another"))
			return false;
		dev.emplace(std::move(*d));
		other.emplace(std::move(*od));
		abuf.emplace(4 * P, 0, P, Huge::Never);
		bbuf.emplace(2 * P, 0x22, P, Huge::Never);
		obuf.emplace(2 * P, 0x33, P, Huge::Never);
		spare.emplace(2 * P, 0x44, P, Huge::Never);
		// 2 MiB of 4 KiB pages, 2 MiB aligned: never one 2 MiB leaf
		big.emplace(k2M, 0x55, k2M, Huge::Never);
		auto ha = Hat::create(*dev), hb = Hat::create(*dev), hc = Hat::create(*dev);
		if (!t.want_ok(ha ? 0 : ha.error(), "HAT_CREATE a") ||
		    !t.want_ok(hb ? 0 : hb.error(), "HAT_CREATE b") ||
		    !t.want_ok(hc ? 0 : hc.error(), "HAT_CREATE c"))
			return false;
		a.emplace(std::move(*ha));
		b.emplace(std::move(*hb));
		gone = hc->id();
		if (!t.want_ok(hc->reset(), "HAT_DESTROY c"))
			return false;
		// other: ids 1.. up to one past dev's, the last one mapped
		const u32 top = std::max(a->id(), std::max(b->id(), gone));
		for (;;) {
			auto h = Hat::create(*other);
			if (!t.want_ok(h ? 0 : h.error(), "HAT_CREATE on the other fd"))
				return false;
			if (h->id() > top) {
				o.emplace(std::move(*h));
				break;
			}
			o_more.push_back(std::move(*h));
		}
		return t.want_ok(dev->map(a->id(), kVa, abuf->data(), 4 * P), "MAP a") &&
		       t.want_ok(dev->map(b->id(), kVa + 8 * P, bbuf->data(), 2 * P), "MAP b") &&
		       t.want_ok(dev->map_owned(b->id(), kShareVa, P), "MAP owned b") &&
		       t.want_ok(other->map(o->id(), kVa, obuf->data(), 2 * P), "MAP o");
	}
};

// What must not change: the mappings of every hat, the bytes behind them,
// and the module's counters.
struct State {
	std::vector<htable_walk_entry> walk;
	std::vector<u64> sums;
	Counters ctr;
};

bool same_entries(const std::vector<htable_walk_entry>& x, const std::vector<htable_walk_entry>& y)
{
	return x.size() == y.size() &&
	       (x.empty() || !std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])));
}

std::optional<State> snapshot(Env& e)
{
	State s;
	for (auto [d, h] : {std::pair{&*e.dev, &*e.a}, {&*e.dev, &*e.b}, {&*e.other, &*e.o}}) {
		std::vector<htable_walk_entry> w;
		if (int err = d->walk_all(h->id(), 0, e.end(), w)) {
			e.t.diag("WALK of hat %u: %s", h->id(), errno_desc(err).c_str());
			return std::nullopt;
		}
		htable_walk_entry sep{};
		sep.va = ~0ull;  // between hats
		s.walk.insert(s.walk.end(), w.begin(), w.end());
		s.walk.push_back(sep);
	}
	for (auto* b : {&*e.abuf, &*e.bbuf, &*e.obuf, &*e.spare})  // not big: 2 MiB, read only
		s.sums.push_back(fnv1a64(b->span(0, b->size())));
	auto ctr = counters(e.t);
	if (!ctr)
		return std::nullopt;
	s.ctr = *ctr;
	return s;
}

std::string differences(const State& x, const State& y)
{
	std::string d;
	if (!same_entries(x.walk, y.walk))
		d += " the hats' mappings (WALK)";
	if (x.sums != y.sums)
		d += " the bytes of a mapped buffer";
	if (x.ctr.hats_live != y.ctr.hats_live)
		d += " hats_live " + std::to_string(x.ctr.hats_live) + "->" + std::to_string(y.ctr.hats_live);
	if (x.ctr.tables_live != y.ctr.tables_live)
		d += " tables_live " + std::to_string(x.ctr.tables_live) + "->" +
		     std::to_string(y.ctr.tables_live);
	if (x.ctr.pinned_pages != y.ctr.pinned_pages)
		d += " pinned_pages " + std::to_string(x.ctr.pinned_pages) + "->" +
		     std::to_string(y.ctr.pinned_pages);
	return d;
}

// The valid request of each command, against the environment.
void base(Env& e, Io io, Req& r)
{
	r.clear();
	r.at = ArgAt::Buffer;
	r.io = io;
	r.cmd = kIo[io].cmd;
	r.dev = &*e.dev;
	switch (io) {
	case kVersion:
	case kCreate:
	case kUnknown:
		break;
	case kDestroy:
		r.destroy.hat_id = e.a->id();
		break;
	case kMapUser:
	case kMapOwned:
		r.map.hat_id = e.a->id();
		r.map.prot = kProtRW;
		r.map.va = kFree;
		r.map.length = 2 * P;
		if (io == kMapUser)
			r.map.uaddr = reinterpret_cast<uintptr_t>(e.spare->data());
		else
			r.map.flags = HTABLE_MAP_OWNED;
		break;
	case kUnmap:
		r.unmap.hat_id = e.a->id();
		r.unmap.va = kVa;
		r.unmap.length = P;
		break;
	case kTranslate:
		r.translate.hat_id = e.a->id();
		r.translate.va = kVa;
		break;
	case kJob:
		r.job.hat_id = e.a->id();
		r.job.op = HTABLE_JOB_FILL;
		r.job.cpu = HTABLE_JOB_ANY_CPU;
		r.job.va = kVa;
		r.job.length = P;
		r.job.seed = 0x5eed;
		break;
	case kProtect:
		r.protect.hat_id = e.a->id();
		r.protect.prot = HTABLE_PROT_READ;
		r.protect.va = kVa;
		r.protect.length = P;
		break;
	case kLock:
		r.lock.hat_id = e.a->id();
		r.lock.lock = 1;
		r.lock.va = kVa;
		r.lock.length = P;
		break;
	case kWalk:
		r.walk.hat_id = e.a->id();
		r.walk.max_entries = u32(e.walk_out.size());
		r.walk.end = e.end();
		r.walk.entries = reinterpret_cast<uintptr_t>(e.walk_out.data());
		break;
	case kShare:
		r.share.dst_hat_id = e.a->id();
		r.share.src_hat_id = e.b->id();
		r.share.va = kShareVa;
		break;
	case kReap:
		r.reap.nr = 1ull << 20;
		break;
	case kStats:
		r.stats.max_entries = u32(e.stat_out.size());
		r.stats.entries = reinterpret_cast<uintptr_t>(e.stat_out.data());
		break;
	case kNumIo:
		break;
	}
}

int issue(Env& e, Req& r)
{
	switch (r.at) {
	case ArgAt::Buffer:
		return r.dev->ioctl_raw(r.cmd, r.bytes);
	case ArgAt::Null:
		return r.dev->ioctl_raw(r.cmd, nullptr);
	case ArgAt::Kernel:
		return r.dev->ioctl_raw(r.cmd, reinterpret_cast<void*>(kKernelAddr));
	case ArgAt::ReadOnly: {
		// the request, in a page the module may read but not write
		Mmap page(4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
		if (!e.t.check(page.get() != nullptr, "mmap: %s", std::strerror(errno)))
			return -1;
		std::memcpy(page.get(), r.bytes, std::min<size_t>(r.size(), 4 * P));
		if (!e.t.check(::mprotect(page.get(), 4 * P, PROT_READ) == 0, "mprotect: %s",
			       std::strerror(errno)))
			return -1;
		return r.dev->ioctl_raw(r.cmd, page.get());
	}
	}
	return -1;
}

std::string hex(u64 v)
{
	char b[24];
	std::snprintf(b, sizeof(b), "0x%llx", static_cast<unsigned long long>(v));
	return b;
}

struct Row {
	Io io;
	const char* field;  // the class of field broken
	std::string how;
	int want;           // docs/ABI.md's errno; 0: accepted, as documented
	std::function<void(Env&, Req&)> corrupt;
};

using Fn = std::function<void(Env&, Req&)>;

// Rows that apply to every command: its number, its size, its pointer.
void generic_rows(std::vector<Row>& rows, Io io)
{
	const unsigned dir = _IOC_DIR(kIo[io].cmd);
	const size_t min = kIo[io].min_size;
	for (unsigned d : {unsigned(_IOC_READ), unsigned(_IOC_WRITE), unsigned(_IOC_READ | _IOC_WRITE)}) {
		if (d == dir)
			continue;
		rows.push_back({io, "cmd", std::string("direction ") +
				(d == _IOC_READ ? "_IOR" : d == _IOC_WRITE ? "_IOW" : "_IOWR"),
				ENOTTY, [d](Env&, Req& r) { r.set_dir(d); }});
	}
	rows.push_back({io, "cmd", "_IO: no direction, size 0", ENOTTY,
			[](Env&, Req& r) { r.cmd = _IO(HTABLE_IOC_MAGIC, _IOC_NR(r.cmd)); }});
	rows.push_back({io, "cmd", "magic 0xbb", ENOTTY, [](Env&, Req& r) {
				r.cmd = _IOC(_IOC_DIR(r.cmd), HTABLE_IOC_MAGIC + 1, _IOC_NR(r.cmd),
					     _IOC_SIZE(r.cmd));
			}});
	if (io == kUnknown)
		return;
	rows.push_back({io, "size", "_IOC_SIZE 0", EINVAL, [](Env&, Req& r) { r.resize(0); }});
	rows.push_back({io, "size", "_IOC_SIZE " + std::to_string(min - 1) + " (one below the first "
			"version's struct)", EINVAL, [min](Env&, Req& r) { r.resize(min - 1); }});
	// VERSION has no input: its tail is never read, only zeroed
	rows.push_back({io, "size", "8 bytes more, the last one non-zero", io == kVersion ? 0 : E2BIG,
			[](Env&, Req& r) {
				const size_t n = r.size();
				r.bytes[n + 7] = 1;
				r.resize(n + 8);
			}});
	rows.push_back({io, "size", "_IOC_SIZE 4097, zero tail", E2BIG,
			[](Env&, Req& r) { r.resize(4097); }});
	rows.push_back({io, "size", "_IOC_SIZE " + std::to_string(kMaxIocSize) + " (the largest), zero tail",
			E2BIG, [](Env&, Req& r) { r.resize(kMaxIocSize); }});
	rows.push_back({io, "arg", "pointer NULL", EFAULT, [](Env&, Req& r) { r.at = ArgAt::Null; }});
	rows.push_back({io, "arg", "pointer into the kernel", EFAULT,
			[](Env&, Req& r) { r.at = ArgAt::Kernel; }});
	if (dir & _IOC_READ) {
		// The command runs, its answer cannot be written back.  JOB and
		// REAP then ask for nothing with an effect; HAT_CREATE's hat must
		// not stay behind.
		rows.push_back({io, "arg", "in a read-only page (no write-back)", EFAULT, [](Env&, Req& r) {
					r.at = ArgAt::ReadOnly;
					if (r.io == kJob)
						r.job.op = HTABLE_JOB_CHECKSUM;
					if (r.io == kReap)
						r.reap.nr = 0;
				}});
	}
}

// The hat-id rows of a command whose id field is at `field`.
template <class F>
void id_rows(std::vector<Row>& rows, Io io, const char* what, F field)
{
	rows.push_back({io, "hat id", std::string(what) + " 0", ENOENT,
			[field](Env&, Req& r) { field(r) = 0; }});
	rows.push_back({io, "hat id", std::string(what) + " 0x7fffffff (never created)", ENOENT,
			[field](Env&, Req& r) { field(r) = 0x7fffffff; }});
	rows.push_back({io, "hat id", std::string(what) + " 0xffffffff", ENOENT,
			[field](Env&, Req& r) { field(r) = 0xffffffffu; }});
	rows.push_back({io, "hat id", std::string(what) + " of a destroyed hat", ENOENT,
			[field](Env& e, Req& r) { field(r) = e.gone; }});
	rows.push_back({io, "hat id", std::string(what) + " of another fd's hat", ENOENT,
			[field](Env& e, Req& r) { field(r) = e.o->id(); }});
}

// The range rows of a command with `va` and `length` fields (page granular
// unless `align` is 8).
template <class VA, class LEN>
void range_rows(std::vector<Row>& rows, Io io, VA va, LEN len, u64 align = P)
{
	const std::string a = align == P ? "4096" : "8";
	rows.push_back({io, "alignment", "va + " + std::to_string(align / 2), EINVAL,
			[=](Env&, Req& r) { va(r) += align / 2; }});
	rows.push_back({io, "alignment", "length + " + std::to_string(align / 2), EINVAL,
			[=](Env&, Req& r) { len(r) += align / 2; }});
	rows.push_back({io, "length", "length 0", EINVAL, [=](Env&, Req& r) { len(r) = 0; }});
	rows.push_back({io, "va", "va = user_va_end (the guard page)", EINVAL,
			[=](Env& e, Req& r) { va(r) = e.end(); }});
	rows.push_back({io, "va", "va non-canonical (user_va_end + 4 KiB)", EINVAL,
			[=](Env& e, Req& r) { va(r) = e.end() + P; }});
	rows.push_back({io, "va", "va in the kernel half", EINVAL,
			[=](Env&, Req& r) { va(r) = kKernelAddr; }});
	rows.push_back({io, "range", "[user_va_end - 4 KiB, + 8 KiB): past user_va_end", EINVAL,
			[=](Env& e, Req& r) {
				va(r) = e.end() - P;
				len(r) = 2 * P;
			}});
	rows.push_back({io, "range", "va 4 KiB, length 2^64 - 4 KiB: va + length wraps to 0", EINVAL,
			[=](Env&, Req& r) {
				va(r) = P;
				len(r) = 0 - P;
			}});
	rows.push_back({io, "range", "va user_va_end - 4 KiB, va + length wraps to 4 KiB", EINVAL,
			[=](Env& e, Req& r) {
				va(r) = e.end() - P;
				len(r) = 0 - (e.end() - P) + P;
			}});
}

std::vector<Row> table(Env& e)
{
	std::vector<Row> rows;
	const u64 end = e.end();
	const bool has1g = e.c.ver.features & HTABLE_FEAT_1G;
	for (unsigned io = 0; io < kNumIo; io++)
		generic_rows(rows, Io(io));

	// unknown command numbers
	for (u32 nr : {0x0du, 0x3fu, 0xffu}) {
		rows.push_back({kUnknown, "cmd", "nr " + hex(nr) + ", _IOWR", ENOTTY,
				[nr](Env&, Req& r) { r.cmd = _IOWR(HTABLE_IOC_MAGIC, nr, htable_reap); }});
		rows.push_back({kUnknown, "cmd", "nr " + hex(nr) + ", _IO", ENOTTY,
				[nr](Env&, Req& r) { r.cmd = _IO(HTABLE_IOC_MAGIC, nr); }});
	}

	// HAT_CREATE
	for (u32 f : {2u, 1u << 31, HTABLE_HAT_COPIED_TOP | 4u})
		rows.push_back({kCreate, "flags", "flags " + hex(f) + " (unknown bits)", EINVAL,
				[f](Env&, Req& r) { r.create.flags = f; }});
	rows.push_back({kCreate, "__pad", "__pad 1", EINVAL, [](Env&, Req& r) { r.create.__pad = 1; }});
	rows.push_back({kCreate, "__pad", "__pad 1 with COPIED_TOP", EINVAL, [](Env&, Req& r) {
				r.create.flags = HTABLE_HAT_COPIED_TOP;
				r.create.__pad = 1;
			}});
	rows.push_back({kCreate, "caps", "max_hats_per_fd = the 2 hats held", ENOSPC,
			[](Env& e, Req&) { e.param.emplace(e.t, "max_hats_per_fd", "2"); }});

	// HAT_DESTROY
	rows.push_back({kDestroy, "__pad", "__pad 1", EINVAL, [](Env&, Req& r) { r.destroy.__pad = 1; }});
	id_rows(rows, kDestroy, "hat_id", [](Req& r) -> u32& { return r.destroy.hat_id; });

	// MAP, user and owned memory
	for (Io io : {kMapUser, kMapOwned}) {
		const bool owned = io == kMapOwned;
		for (u64 f : {2ull, 1ull << 63})
			rows.push_back({io, "flags", "flags |= " + hex(f) + " (unknown)", EINVAL,
					[f](Env&, Req& r) { r.map.flags |= f; }});
		for (u32 p : {0u, u32(HTABLE_PROT_WRITE), u32(HTABLE_PROT_WRITE | HTABLE_PROT_EXEC)})
			rows.push_back({io, "prot", "prot " + prot_string(p) + " (no READ)", EINVAL,
					[p](Env&, Req& r) { r.map.prot = p; }});
		for (u32 p : {HTABLE_PROT_READ | (1u << 3), HTABLE_PROT_ALL | (1u << 31)})
			rows.push_back({io, "prot", "prot unknown bit", EINVAL,
					[p](Env&, Req& r) { r.map.prot = p; }});
		range_rows(rows, io, [](Req& r) -> u64& { return r.map.va; },
			   [](Req& r) -> u64& { return r.map.length; });
		rows.push_back({io, "length", "2^31 pages (more than the module takes)", EINVAL,
				[](Env&, Req& r) {
					r.map.va = 0;
					r.map.length = (1ull << 31) * P;
				}});
		for (u64 ps : {2 * P, u64(3), 1ull << 20, 1ull << 39, 1ull << 63})
			rows.push_back({io, "page_size", "page_size " + hex(ps) + " (bogus)",
					EOPNOTSUPP, [ps](Env&, Req& r) { r.map.page_size = ps; }});
		// 1 GiB: the CPU may lack it; with it, this request is not 1 GiB aligned
		rows.push_back({io, "page_size", has1g ? "1 GiB, CPU has it, range not 1 GiB aligned"
						       : "1 GiB without HTABLE_FEAT_1G",
				has1g ? EINVAL : EOPNOTSUPP,
				[](Env&, Req& r) { r.map.page_size = k1G; }});
		rows.push_back({io, "page_size", "2 MiB, va 4 KiB aligned only", EINVAL,
				[](Env&, Req& r) { r.map.page_size = k2M; }});
		rows.push_back({io, "EEXIST", "over a's 4 pages", EEXIST, [](Env&, Req& r) {
					r.map.va = kVa;
					r.map.length = 2 * P;
				}});
		rows.push_back({io, "EEXIST", "ending on a's first page", EEXIST,
				[](Env&, Req& r) { r.map.va = kVa - P; }});
		rows.push_back({io, "EEXIST", "starting on a's last page", EEXIST,
				[](Env&, Req& r) { r.map.va = kVa + 3 * P; }});
		id_rows(rows, io, "hat_id", [](Req& r) -> u32& { return r.map.hat_id; });
		rows.push_back({io, "caps", "max_tables_per_fd = 1", ENOSPC,
				[](Env& e, Req&) { e.param.emplace(e.t, "max_tables_per_fd", "1"); }});
		if (owned) {
			rows.push_back({io, "uaddr", "uaddr != 0", EINVAL, [](Env& e, Req& r) {
						r.map.uaddr = reinterpret_cast<uintptr_t>(e.spare->data());
					}});
			rows.push_back({io, "page_size", "1 GiB, 1 GiB aligned (no 1 GiB allocations)",
					EOPNOTSUPP, [](Env&, Req& r) {
						r.map.page_size = k1G;
						r.map.va = 0;
						r.map.length = k1G;
					}});
			// the bookkeeping alone (8 bytes a page) is more than kvmalloc gives
			rows.push_back({io, "length", "1 TiB in 4 KiB leaves", ENOMEM, [](Env&, Req& r) {
						r.map.va = 0;
						r.map.length = 1ull << 40;
						r.map.page_size = P;
					}});
			continue;
		}
		rows.push_back({io, "uaddr", "uaddr + 8", EINVAL, [](Env&, Req& r) { r.map.uaddr += 8; }});
		rows.push_back({io, "uaddr", "uaddr + length wraps", EINVAL, [](Env&, Req& r) {
					r.map.uaddr = 0 - P;
				}});
		rows.push_back({io, "uaddr", "uaddr 0", EFAULT, [](Env&, Req& r) { r.map.uaddr = 0; }});
		rows.push_back({io, "uaddr", "uaddr in the kernel", EFAULT,
				[](Env&, Req& r) { r.map.uaddr = kKernelAddr; }});
		rows.push_back({io, "uaddr", "uaddr non-canonical", EFAULT,
				[end](Env&, Req& r) { r.map.uaddr = end + P; }});
		rows.push_back({io, "memory", "a hole (munmapped)", EFAULT, [](Env& e, Req& r) {
					r.map.uaddr = e.hole.addr() + P;
				}});
		rows.push_back({io, "memory", "second page not mapped", EFAULT,
				[](Env& e, Req& r) { r.map.uaddr = e.part.addr(); }});
		rows.push_back({io, "memory", "PROT_NONE", EFAULT,
				[](Env& e, Req& r) { r.map.uaddr = e.none.addr(); }});
		rows.push_back({io, "memory", "PROT_READ anonymous (MAP pins writable)", EFAULT,
				[](Env& e, Req& r) { r.map.uaddr = e.ro.addr(); }});
		rows.push_back({io, "memory", "PROT_READ MAP_PRIVATE file, prot READ", EFAULT,
				[](Env& e, Req& r) {
					r.map.uaddr = e.file_private->addr();
					r.map.prot = HTABLE_PROT_READ;
				}});
		rows.push_back({io, "memory", "PROT_READ MAP_SHARED file", EFAULT,
				[](Env& e, Req& r) { r.map.uaddr = e.file_shared->addr(); }});
		rows.push_back({io, "page_size", "2 MiB of 4 KiB pages, 2 MiB aligned", EINVAL,
				[](Env& e, Req& r) {
					r.map.uaddr = reinterpret_cast<uintptr_t>(e.big->data());
					r.map.va = kDemoVa + 2 * k1G;
					r.map.length = k2M;
					r.map.page_size = k2M;
				}});
		// root has CAP_IPC_LOCK: the array of 2^28 page pointers is refused
		rows.push_back({io, "length", "1 TiB", ENOMEM, [](Env&, Req& r) {
					r.map.va = 0;
					r.map.length = 1ull << 40;
				}});
	}

	// UNMAP
	rows.push_back({kUnmap, "__pad", "__pad 1", EINVAL, [](Env&, Req& r) { r.unmap.__pad = 1; }});
	range_rows(rows, kUnmap, [](Req& r) -> u64& { return r.unmap.va; },
		   [](Req& r) -> u64& { return r.unmap.length; });
	id_rows(rows, kUnmap, "hat_id", [](Req& r) -> u32& { return r.unmap.hat_id; });

	// TRANSLATE
	rows.push_back({kTranslate, "__pad", "__pad 1", EINVAL,
			[](Env&, Req& r) { r.translate.__pad = 1; }});
	for (u64 va : {end, end + P, end + 0x1234, kKernelAddr, ~0ull})
		rows.push_back({kTranslate, "va", "va " + hex(va) + " (>= user_va_end)", EINVAL,
				[va](Env&, Req& r) { r.translate.va = va; }});
	id_rows(rows, kTranslate, "hat_id", [](Req& r) -> u32& { return r.translate.hat_id; });

	// JOB
	for (u32 f : {1u, 1u << 31})
		rows.push_back({kJob, "flags", "flags " + hex(f), EINVAL,
				[f](Env&, Req& r) { r.job.flags = f; }});
	for (u32 op : {0u, u32(HTABLE_JOB_COPY + 1), 0xffffffffu})
		rows.push_back({kJob, "op", "op " + hex(op), EINVAL,
				[op](Env&, Req& r) { r.job.op = op; }});
	range_rows(rows, kJob, [](Req& r) -> u64& { return r.job.va; },
		   [](Req& r) -> u64& { return r.job.length; }, 8);
	{
		std::vector<u32> bad = {4096, 0xfffffffeu, 0x80000000u};
		auto possible = possible_cpus();
		if (!possible.empty() && possible.back() + 1 < 4096)
			bad.push_back(possible.back() + 1);  // nr_cpu_ids
		for (u32 p : possible)
			if (std::find(e.c.cpus.begin(), e.c.cpus.end(), p) == e.c.cpus.end()) {
				bad.push_back(p);  // possible but offline
				break;
			}
		for (u32 cpu : bad)
			rows.push_back({kJob, "cpu", "cpu " + hex(cpu), EINVAL,
					[cpu](Env&, Req& r) { r.job.cpu = cpu; }});
		rows.push_back({kJob, "cpu_mask", "cpu_mask with cpu 0 (not ANY)", EINVAL,
				[](Env& e, Req& r) {
					r.job.cpu = e.c.cpus[0];
					r.job.cpu_mask = 1ull << e.c.cpus[0];
				}});
		if (!possible.empty() && possible.back() < 63) {
			const u32 nr_ids = possible.back() + 1;
			rows.push_back({kJob, "cpu_mask", "cpu_mask bit 63 (past nr_cpu_ids)", EINVAL,
					[](Env& e, Req& r) { r.job.cpu_mask = e.c.all_cpus_mask() | 1ull << 63; }});
			rows.push_back({kJob, "cpu_mask", "cpu_mask bit nr_cpu_ids", EINVAL,
					[nr_ids](Env&, Req& r) { r.job.cpu_mask = 1ull << nr_ids; }});
		}
		for (u32 p : possible)
			if (p < 64 && std::find(e.c.cpus.begin(), e.c.cpus.end(), p) == e.c.cpus.end()) {
				rows.push_back({kJob, "cpu_mask", "cpu_mask with offline CPU " + std::to_string(p),
						EINVAL, [p](Env& e, Req& r) {
							r.job.cpu_mask = e.c.all_cpus_mask() | 1ull << p;
						}});
				break;
			}
		if (e.c.cpus.size() >= 2)
			rows.push_back({kJob, "cpu_mask", "CHECKSUM over 2 CPUs", EINVAL, [](Env& e, Req& r) {
						r.job.op = HTABLE_JOB_CHECKSUM;
						r.job.cpu_mask = e.c.all_cpus_mask();
					}});
	}
	rows.push_back({kJob, "dst_va", "dst_va with FILL", EINVAL,
			[](Env&, Req& r) { r.job.dst_va = kFree; }});
	rows.push_back({kJob, "dst_va", "COPY, dst_va + 4", EINVAL, [](Env&, Req& r) {
				r.job.op = HTABLE_JOB_COPY;
				r.job.dst_va = kFree + 4;
			}});
	rows.push_back({kJob, "dst_va", "COPY onto its own range + 8", EINVAL, [](Env&, Req& r) {
				r.job.op = HTABLE_JOB_COPY;
				r.job.dst_va = kVa + 8;
			}});
	rows.push_back({kJob, "dst_va", "COPY, dst past user_va_end", EINVAL, [end](Env&, Req& r) {
				r.job.op = HTABLE_JOB_COPY;
				r.job.dst_va = end - 8;
			}});
	id_rows(rows, kJob, "hat_id", [](Req& r) -> u32& { return r.job.hat_id; });

	// PROTECT
	for (u32 p : {0u, u32(HTABLE_PROT_WRITE), HTABLE_PROT_READ | (1u << 3)})
		rows.push_back({kProtect, "prot", "prot " + hex(p), EINVAL,
				[p](Env&, Req& r) { r.protect.prot = p; }});
	range_rows(rows, kProtect, [](Req& r) -> u64& { return r.protect.va; },
		   [](Req& r) -> u64& { return r.protect.length; });
	id_rows(rows, kProtect, "hat_id", [](Req& r) -> u32& { return r.protect.hat_id; });

	// LOCK
	for (u32 l : {2u, 0xffffffffu})
		rows.push_back({kLock, "lock", "lock " + hex(l), EINVAL,
				[l](Env&, Req& r) { r.lock.lock = l; }});
	range_rows(rows, kLock, [](Req& r) -> u64& { return r.lock.va; },
		   [](Req& r) -> u64& { return r.lock.length; });
	id_rows(rows, kLock, "hat_id", [](Req& r) -> u32& { return r.lock.hat_id; });

	// WALK
	rows.push_back({kWalk, "__pad", "__pad 1", EINVAL, [](Env&, Req& r) { r.walk.__pad = 1; }});
	for (u32 n : {0u, 4097u, 0xffffffffu})
		rows.push_back({kWalk, "max_entries", "max_entries " + hex(n), EINVAL,
				[n](Env&, Req& r) { r.walk.max_entries = n; }});
	rows.push_back({kWalk, "range", "va == end", EINVAL, [](Env&, Req& r) { r.walk.va = r.walk.end; }});
	rows.push_back({kWalk, "range", "va > end", EINVAL, [](Env&, Req& r) {
				r.walk.va = kFree;
				r.walk.end = kVa;
			}});
	rows.push_back({kWalk, "range", "end = user_va_end + 4 KiB", EINVAL,
			[end](Env&, Req& r) { r.walk.end = end + P; }});
	rows.push_back({kWalk, "range", "end = ~0", EINVAL, [](Env&, Req& r) { r.walk.end = ~0ull; }});
	rows.push_back({kWalk, "entries", "entries NULL (a's mapping to write)", EFAULT,
			[](Env&, Req& r) { r.walk.entries = 0; }});
	rows.push_back({kWalk, "entries", "entries in the kernel", EFAULT,
			[](Env&, Req& r) { r.walk.entries = kKernelAddr; }});
	rows.push_back({kWalk, "entries", "entries read-only", EFAULT,
			[](Env& e, Req& r) { r.walk.entries = e.ro.addr(); }});
	id_rows(rows, kWalk, "hat_id", [](Req& r) -> u32& { return r.walk.hat_id; });

	// SHARE
	rows.push_back({kShare, "__pad", "__pad 1", EINVAL, [](Env&, Req& r) { r.share.__pad = 1; }});
	rows.push_back({kShare, "level", "level = the top level", EINVAL,
			[](Env& e, Req& r) { r.share.level = e.c.levels() - 1; }});
	rows.push_back({kShare, "level", "level 0xffffffff", EINVAL,
			[](Env&, Req& r) { r.share.level = 0xffffffffu; }});
	rows.push_back({kShare, "hat id", "dst == src", EINVAL,
			[](Env&, Req& r) { r.share.dst_hat_id = r.share.src_hat_id; }});
	rows.push_back({kShare, "alignment", "va + 4 KiB (level 0 spans 2 MiB)", EINVAL,
			[](Env&, Req& r) { r.share.va += P; }});
	rows.push_back({kShare, "alignment", "level 1, va 2 MiB aligned only", EINVAL, [](Env&, Req& r) {
				r.share.level = 1;
				r.share.va = kShareVa + k2M;
			}});
	rows.push_back({kShare, "va", "span past user_va_end", EINVAL,
			[end](Env&, Req& r) { r.share.va = (end & ~(k2M - 1)); }});
	rows.push_back({kShare, "va", "va non-canonical", EINVAL,
			[end](Env&, Req& r) { r.share.va = end + P; }});
	rows.push_back({kShare, "va", "va in the kernel half", EINVAL,
			[](Env&, Req& r) { r.share.va = kKernelAddr; }});
	rows.push_back({kShare, "va", "src maps nothing there", ENOENT,
			[](Env&, Req& r) { r.share.va = kShareVa + k2M; }});
	rows.push_back({kShare, "EEXIST", "dst maps pages in the span", EEXIST,
			[](Env&, Req& r) { r.share.va = kVa; }});
	id_rows(rows, kShare, "dst_hat_id", [](Req& r) -> u32& { return r.share.dst_hat_id; });
	id_rows(rows, kShare, "src_hat_id", [](Req& r) -> u32& { return r.share.src_hat_id; });

	// STATS
	for (u32 n : {129u, 0xffffffffu})
		rows.push_back({kStats, "max_entries", "max_entries " + hex(n), EINVAL,
				[n](Env&, Req& r) { r.stats.max_entries = n; }});
	rows.push_back({kStats, "entries", "entries NULL", EFAULT, [](Env&, Req& r) { r.stats.entries = 0; }});
	rows.push_back({kStats, "entries", "entries in the kernel", EFAULT,
			[](Env&, Req& r) { r.stats.entries = kKernelAddr; }});
	rows.push_back({kStats, "entries", "entries read-only", EFAULT,
			[](Env& e, Req& r) { r.stats.entries = e.ro.addr(); }});
	// REAP has no field that can be wrong: nr is any count.
	return rows;
}

void t_badinput(Ctx& c, T& t)
{
	Env e(c, t);
	if (!e.odd_memory_ok())
		return;
	// Controls: each valid request succeeds as it is, so a row's errno
	// can only come from its corruption.
	for (unsigned io = 0; io < kUnknown; io++) {
		if (!e.build())
			return;
		Req r;
		base(e, Io(io), r);
		t.want_ok(issue(e, r), "%s: the valid request (control)", kIo[io].name);
	}
	if (!e.build())
		return;
	auto before = snapshot(e);
	if (!t.check(before.has_value(), "cannot take the state (WALK, debugfs stats)"))
		return;

	const auto rows = table(e);
	std::set<Io> ioctls;
	unsigned mismatches = 0;
	for (const auto& row : rows) {
		if (row.io != kUnknown)
			ioctls.insert(row.io);
		Req r;
		base(e, row.io, r);
		row.corrupt(e, r);
		const int err = issue(e, r);
		e.param.reset();
		bool ok = t.want_err(err, row.want, "%s, %s: %s", kIo[row.io].name, row.field,
				     row.how.c_str());
		if (row.io == kVersion && row.want == 0 && err == 0)  // the tail comes back zeroed
			ok &= t.check(r.bytes[sizeof(htable_version) + 7] == 0,
				      "VERSION left a non-zero tail byte in place");
		auto now = snapshot(e);
		std::string diff = now ? differences(*before, *now) : " (state unreadable)";
		ok &= t.check(diff.empty(), "%s, %s: %s: changed%s", kIo[row.io].name, row.field,
			      row.how.c_str(), diff.c_str());
		if (!ok) {
			mismatches++;
			if (!diff.empty()) {  // start again from a known state
				if (!e.build() || !(before = snapshot(e)))
					return;
			}
		}
	}
	t.diag("reliability {\"test\":\"badinput\",\"rows\":%zu,\"ioctls\":%zu,\"mismatches\":%u}",
	       rows.size(), ioctls.size(), mismatches);
	t.check(ioctls.size() == kUnknown, "the table covers %zu of %u ioctls", ioctls.size(),
		unsigned(kUnknown));
}

}  // namespace

std::vector<Case> badinput_cases()
{
	return {
		{"bad input: one table, every ioctl x every invalid field class, errno and no change",
		 t_badinput},
	};
}

}  // namespace htable::st
