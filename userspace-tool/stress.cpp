// SPDX-License-Identifier: GPL-2.0
//
// `htablectl stress`: many processes hammer the module at once, on every
// CPU, while another process steals their page tables (REAP) and another
// drives the shrinker (vm.drop_caches = 2).  Output is TAP; see kStressHelp.
//
// Each worker keeps a model of everything it mapped: per 4 KiB page whether
// it is mapped, its physical address (user memory: from /proc/self/pagemap
// once pinned; owned memory: from the first WALK), leaf size, protection and
// lock state, and a shadow of the bytes the page must hold.  Every answer of
// the module is compared with the model:
//   - user memory: after every job the process compares its whole buffer
//     with the shadow (pages the job could not reach must be untouched);
//   - owned memory: VERIFY and CHECKSUM results must equal what the shadow
//     gives (mismatch count, first bad offset, FNV-1a), and a fresh mapping
//     must read as zeroes;
//   - each job's bytes and faults must match the pages the model says are
//     reachable: a mapped page counted as a fault is a lost mapping;
//   - a range whose every page is locked must never need a reload;
//   - TRANSLATE and WALK must agree with the model exactly.
// Page tables stolen by the reaper and the shrinker are reloaded from each
// hat's record; the test fails if nothing was stolen or nothing reloaded,
// since then it proved nothing about reclaim.
#include "htablectl.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable {
namespace {

using Clock = std::chrono::steady_clock;

constexpr u64 kP = kPageSize;
constexpr u64 kStressVa = 0x300000000000ull;  // 48 TiB: valid with 4 and 5 levels
constexpr u64 kSlotSpan = 4 * k2M;           // private VA per slot
constexpr unsigned kSlots = 6;                // per hat
constexpr unsigned kHats = 2;                 // per worker: a plain one, a copied-top one
constexpr unsigned kMaxDiag = 12;             // diagnostics printed per worker

enum Op : unsigned {
	kMapUser, kMapThp, kMapOwned4k, kMapOwned2m, kUnmapAll, kUnmapPart, kProtect, kLock,
	kUnlock, kFill, kVerify, kChecksum, kRandomRw, kCopy, kTranslate, kWalk, kRecycle, kNumOps
};
const char* const kOpNames[kNumOps] = {
	"map-user", "map-thp", "map-owned-4k", "map-owned-2m", "unmap", "unmap-part", "protect",
	"lock", "unlock", "fill", "verify", "checksum", "random-rw", "copy", "translate", "walk",
	"recycle",
};
// How often each op is picked (an op that does not apply falls back to a map).
const unsigned kOpWeight[kNumOps] = {
	8, 4, 6, 3, 4, 6, 6, 4, 3, 12, 10, 6, 6, 6, 10, 5, 1,
};

// What a process sends its parent through its pipe when it is done.
struct Report {
	u64 ops, bytes_verified, mismatches, reloads, thp_leaves, skipped, jobs;
	u64 per_op[kNumOps];
	u64 calls, freed, errors;  // reaper, dropper
	u64 done;                  // the process reached its end normally
};
static_assert(sizeof(Report) <= PIPE_BUF, "one atomic pipe write");

struct PageModel {
	bool mapped = false;
	bool locked = false;
	u32 prot = 0;
	u64 leaf = 0;  // leaf size
	u64 pa = 0;    // of this 4 KiB page
};

// One 4 KiB page as WALK describes it.  WALK reports runs (one leaf, or a
// physically contiguous run once a large leaf was broken up), which the
// record's shape decides; pages are what the model can predict.
struct PageFact {
	u64 va = 0, pa = 0, leaf = 0;
	u32 prot = 0, flags = 0;
	bool operator==(const PageFact&) const = default;
};

struct Slot {
	enum class Kind { Empty, User, Owned } kind = Kind::Empty;
	u64 va = 0, len = 0;
	std::unique_ptr<Buffer> buf;  // user memory
	std::vector<u8> shadow;       // what the mapped pages hold (user: the whole buffer)
	std::vector<PageModel> pages;
	u64 seed = 0;  // of the last FILL

	size_t npages() const { return pages.size(); }
	bool empty() const { return kind == Kind::Empty; }
	size_t count(bool (*pred)(const PageModel&)) const
	{
		return size_t(std::count_if(pages.begin(), pages.end(), pred));
	}
	size_t mapped() const { return count([](const PageModel& p) { return p.mapped; }); }
	// First page of the leaf holding page p.
	size_t leaf_first(size_t p) const
	{
		const u64 va_p = va + p * kP;
		return size_t(((va_p & ~(pages[p].leaf - 1)) - va) / kP);
	}
};

// The 8 pattern bytes at an 8-aligned offset, as one little-endian word
// (htable_pattern_byte() of each, computed once): the process checks
// megabytes per operation, and TCG makes every instruction count.
u64 pattern_word(u64 seed, u64 off)
{
	u64 x = (seed ^ (off >> 3)) * 0x9e3779b97f4a7c15ull;
	return x ^ (x >> 29);
}

// pattern(seed, base + i) into p[0, len), base and len 8-aligned.
void put_pattern(u8* p, u64 len, u64 seed, u64 base)
{
	for (u64 o = 0; o < len; o += 8) {
		const u64 w = pattern_word(seed, base + o);
		std::memcpy(p + o, &w, 8);
	}
}

bool writable(const PageModel& p)
{
	return p.mapped && (p.prot & HTABLE_PROT_WRITE);
}

u64 slot_va(unsigned s)
{
	return kStressVa + s * kSlotSpan;
}

class Worker {
public:
	Worker(unsigned id, u64 seed, std::vector<u32> cpus) : id_(id), rng_(seed), cpus_(std::move(cpus)) {}
	Report run(Clock::time_point deadline, u64 max_ops);

private:
	void mismatch(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
	bool ok(int err, const char* what);
	bool open_all();
	bool create_hat(unsigned h);
	void release(Slot& sl);
	void check_buffer(const Slot& sl, const char* what);
	bool check_job(const char* what, const htable_job& j, u64 bytes, u64 faults);
	u64 pick_mask();
	int cut_check(const Slot& sl, size_t a, size_t b, bool demotable) const;
	void demote_ends(Slot& sl, size_t a, size_t b);
	void check_translate(unsigned h, unsigned s, u64 off);
	bool any_slot(unsigned h, bool want_empty, unsigned& s);
	bool step(Op op, unsigned h);

	void map_user(unsigned h, unsigned s, bool thp);
	void map_owned(unsigned h, unsigned s, bool big);
	void unmap(unsigned h, unsigned s, bool part);
	void protect(unsigned h, unsigned s);
	void lock(unsigned h, unsigned s, bool lock_it);
	void fill(unsigned h, unsigned s);
	void verify(unsigned h, unsigned s);
	void checksum(unsigned h, unsigned s);
	bool random_rw(unsigned h, unsigned s);
	bool copy(unsigned h, unsigned s);
	bool expand(const std::vector<htable_walk_entry>& es, std::vector<PageFact>& out);
	void walk(unsigned h);
	void recycle(unsigned h);

	unsigned id_;
	Rng rng_;
	std::vector<u32> cpus_;
	Report rep_{};
	unsigned diags_ = 0;
	// Destroyed in reverse: the hats, then the buffers behind them, then the fd.
	std::optional<Device> dev_;
	Slot slots_[kHats][kSlots];
	Hat hats_[kHats];
};

void Worker::mismatch(const char* fmt, ...)
{
	rep_.mismatches++;
	if (diags_++ >= kMaxDiag)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	std::vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	// One write per line: the workers share stdout.
	std::string line = strfmt("# worker %u: %s%s\n", id_, buf,
				  diags_ == kMaxDiag ? " (further diagnostics suppressed)" : "");
	if (::write(STDOUT_FILENO, line.data(), line.size()) < 0) {
	}
}

bool Worker::ok(int err, const char* what)
{
	if (err)
		mismatch("%s: %s", what, errno_desc(err).c_str());
	return !err;
}

bool Worker::create_hat(unsigned h)
{
	// One hat of each kind: a copied top level takes another CR3 path.
	auto hat = Hat::create(*dev_, h == 1 ? HTABLE_HAT_COPIED_TOP : 0);
	if (!hat)
		return ok(hat.error(), "HAT_CREATE");
	hats_[h] = std::move(*hat);
	return true;
}

bool Worker::open_all()
{
	auto dev = Device::open();
	if (!dev)
		return ok(dev.error(), "open /dev/htable");
	dev_.emplace(std::move(*dev));
	for (unsigned h = 0; h < kHats; h++)
		if (!create_hat(h))
			return false;
	return true;
}

void Worker::check_buffer(const Slot& sl, const char* what)
{
	if (sl.kind != Slot::Kind::User)
		return;
	const u8* b = sl.buf->data();
	if (std::memcmp(b, sl.shadow.data(), sl.len) != 0) {
		size_t i = 0, n = 0;
		while (b[i] == sl.shadow[i])
			i++;
		for (size_t k = i; k < sl.len; k++)
			n += b[k] != sl.shadow[k];
		mismatch("%s: user memory at 0x%llx differs from what the jobs wrote: %zu bytes, "
			 "first at +0x%zx (page %zu: %s)", what, sl.va, n, i, i / size_t(kP),
			 sl.pages[i / kP].mapped ? "mapped" : "unmapped");
		return;
	}
	rep_.bytes_verified += sl.len;
}

bool Worker::check_job(const char* what, const htable_job& j, u64 bytes, u64 faults)
{
	if (j.bytes == bytes && j.faults == faults)
		return true;
	mismatch("%s: bytes %llu faults %llu, expected %llu and %llu (reloads %llu)", what, j.bytes,
		 j.faults, bytes, faults, j.reloads);
	return false;
}

u64 Worker::pick_mask()
{
	const u64 all = cpu_mask_of(cpus_);
	if (rng_.chance(70) || std::popcount(all) == 1)
		return all;
	u64 m = 0;
	while (!m)
		m = all & rng_.next();
	return m;
}

// What the module answers for an operation on pages [a, b) of a slot: it
// checks the two ends of the range; a 2 MiB leaf cut there is demoted to
// 4 KiB leaves, unless it is locked (EBUSY) or the operation never demotes
// (LOCK: EINVAL).
int Worker::cut_check(const Slot& sl, size_t a, size_t b, bool demotable) const
{
	for (size_t p : {a, b - 1}) {
		const PageModel& pm = sl.pages[p];
		if (!pm.mapped || pm.leaf == kP)
			continue;
		const size_t first = sl.leaf_first(p), last = first + pm.leaf / kP;
		if (first >= a && last <= b)
			continue;
		if (!demotable)
			return EINVAL;
		if (pm.locked)
			return EBUSY;
	}
	return 0;
}

void Worker::demote_ends(Slot& sl, size_t a, size_t b)
{
	for (size_t p : {a, b - 1}) {
		if (!sl.pages[p].mapped || sl.pages[p].leaf == kP)
			continue;
		const size_t first = sl.leaf_first(p), last = first + sl.pages[p].leaf / kP;
		if (first >= a && last <= b)
			continue;
		for (size_t k = first; k < last; k++)
			sl.pages[k].leaf = kP;
	}
}

void Worker::release(Slot& sl)
{
	check_buffer(sl, "released slot");
	sl = Slot{};
}

void Worker::check_translate(unsigned h, unsigned s, u64 off)
{
	const Slot& sl = slots_[h][s];
	const u64 va = slot_va(s) + off;
	htable_translate t{};
	if (!ok(dev_->translate(hats_[h].id(), va, t), "TRANSLATE"))
		return;
	rep_.per_op[kTranslate]++;
	const PageModel none{};
	const PageModel& pm = !sl.empty() && va >= sl.va && va < sl.va + sl.len
				      ? sl.pages[(va - sl.va) / kP] : none;
	if (!pm.mapped) {
		if (t.mapped)
			mismatch("TRANSLATE 0x%llx: mapped (pa 0x%llx), expected a hole", va, t.pa);
		return;
	}
	const u64 pa = pm.pa + (va & (kP - 1));
	const u64 level = pm.leaf == k2M ? 1 : 0;
	if (!t.mapped || t.pa != pa || t.prot != pm.prot || t.page_size != pm.leaf || t.level != level)
		mismatch("TRANSLATE 0x%llx: mapped %u pa 0x%llx prot %s size 0x%llx level %llu, expected "
			 "pa 0x%llx prot %s size 0x%llx", va, t.mapped, t.pa, prot_string(t.prot).c_str(),
			 t.page_size, t.level, pa, prot_string(pm.prot).c_str(), pm.leaf);
}

void Worker::map_user(unsigned h, unsigned s, bool thp)
{
	Slot& sl = slots_[h][s];
	u64 va = slot_va(s), len = k2M;
	if (thp) {
		sl.buf = std::make_unique<Buffer>(len, 0, k2M, Huge::Want);
	} else {
		len = (1 + rng_.below(64)) * kP;
		va += rng_.below(512) * kP;
		sl.buf = std::make_unique<Buffer>(len, 0, kP, Huge::Never);
	}
	for (u64 o = 0; o < len; o += 8) {
		const u64 x = rng_.next();
		std::memcpy(sl.buf->data() + o, &x, 8);
	}
	int err = dev_->map(hats_[h].id(), va, sl.buf->data(), len, kProtRW, HTABLE_PAGE_AUTO);
	if (err == ENOMEM) {  // memory is tight in a small guest: not a finding
		rep_.skipped++;
		sl = Slot{};
		return;
	}
	if (!ok(err, "MAP user memory")) {
		sl = Slot{};
		return;
	}
	sl.kind = Slot::Kind::User;
	sl.va = va;
	sl.len = len;
	sl.shadow.assign(sl.buf->data(), sl.buf->data() + len);
	// Pinned pages do not move: what pagemap says now is what the hat maps.
	// Leaves as the module picks them for HTABLE_PAGE_AUTO: 2 MiB where the
	// VA is aligned and 512 pages are contiguous from an aligned frame.
	std::vector<u64> pfns;
	std::string why;
	const size_t n = len / kP;
	if (!pagemap_pfns(sl.buf->data(), n, pfns, &why)) {
		mismatch("pagemap of a mapped buffer: %s", why.c_str());
		pfns.assign(n, 0);
	}
	sl.pages.resize(n);
	for (size_t i = 0; i < n;) {
		bool big = !((va + i * kP) & (k2M - 1)) && i + 512 <= n && !(pfns[i] & 511);
		for (size_t k = 1; big && k < 512; k++)
			big = pfns[i + k] == pfns[i] + k;
		const size_t step = big ? 512 : 1;
		for (size_t k = 0; k < step; k++)
			sl.pages[i + k] = PageModel{true, false, kProtRW, big ? k2M : kP, pfns[i + k] * kP};
		rep_.thp_leaves += big;
		i += step;
	}
	rep_.per_op[thp ? kMapThp : kMapUser]++;
	check_translate(h, s, va - slot_va(s));
	check_translate(h, s, va - slot_va(s) + rng_.below(len));
}

void Worker::map_owned(unsigned h, unsigned s, bool big)
{
	Slot& sl = slots_[h][s];
	const u64 leaf = big ? k2M : kP;
	u64 va = slot_va(s), len = k2M;
	if (!big) {
		len = (1 + rng_.below(128)) * kP;
		va += rng_.below(512) * kP;
	}
	int err = dev_->map_owned(hats_[h].id(), va, len, kProtRW, leaf);
	if (err == ENOMEM) {  // a free 2 MiB block is not always there
		rep_.skipped++;
		return;
	}
	if (!ok(err, big ? "MAP owned 2 MiB" : "MAP owned 4 KiB"))
		return;
	sl.kind = Slot::Kind::Owned;
	sl.va = va;
	sl.len = len;
	sl.shadow.assign(len, 0);
	sl.pages.assign(len / kP, PageModel{true, false, kProtRW, leaf, 0});
	rep_.per_op[big ? kMapOwned2m : kMapOwned4k]++;
	// The physical pages are the module's: learn them once from WALK, then
	// hold every later TRANSLATE and WALK to them.
	std::vector<htable_walk_entry> es;
	std::vector<PageFact> got;
	if (!ok(dev_->walk_all(hats_[h].id(), va, va + len, es, 64), "WALK a new owned mapping") ||
	    !expand(es, got))
		return;
	rep_.per_op[kWalk]++;
	if (got.size() != sl.npages()) {
		mismatch("WALK of a new owned mapping of %zu pages: %zu pages", sl.npages(), got.size());
		return;
	}
	for (size_t p = 0; p < got.size(); p++) {
		const PageFact& g = got[p];
		if (g.va != va + p * kP || g.leaf != leaf || g.prot != kProtRW || g.flags || !g.pa ||
		    (p % (leaf / kP) == 0 && (g.pa & (leaf - 1)))) {
			mismatch("WALK of a new owned mapping: page %zu va 0x%llx pa 0x%llx leaf 0x%llx prot "
				 "%s flags %s", p, g.va, g.pa, g.leaf, prot_string(g.prot).c_str(),
				 walk_flags_string(g.flags).c_str());
			return;
		}
		sl.pages[p].pa = g.pa;
	}
	// Fresh owned memory must read as zeroes.
	htable_job j{};
	const u32 cpu = cpus_[rng_.below(cpus_.size())];
	if (!ok(dev_->job(hats_[h].id(), HTABLE_JOB_CHECKSUM, va, len, 0, cpu, j),
		"CHECKSUM of new owned memory"))
		return;
	rep_.jobs++;
	rep_.reloads += j.reloads;
	if (check_job("CHECKSUM of new owned memory", j, len, 0)) {
		if (j.result != fnv1a64(sl.shadow))
			mismatch("new owned memory at 0x%llx is not zeroed (checksum 0x%llx)", va, j.result);
		else
			rep_.bytes_verified += len;
	}
}

void Worker::unmap(unsigned h, unsigned s, bool part)
{
	Slot& sl = slots_[h][s];
	const size_t n = sl.npages();
	size_t a = 0, b = n;
	if (part) {
		a = rng_.below(n);
		b = a + 1 + rng_.below(n - a);
	}
	const int want = cut_check(sl, a, b, true);
	const int err = dev_->unmap(hats_[h].id(), sl.va + a * kP, (b - a) * kP);
	rep_.per_op[part ? kUnmapPart : kUnmapAll]++;
	if (err != want) {
		mismatch("UNMAP pages [%zu, %zu) of %zu at 0x%llx: %s, expected %s", a, b, n, sl.va,
			 errno_desc(err).c_str(), errno_desc(want).c_str());
		if (err)
			return;
	}
	if (err)
		return;
	demote_ends(sl, a, b);
	for (size_t p = a; p < b; p++)
		sl.pages[p] = PageModel{};
	check_translate(h, s, sl.va - slot_va(s) + (a + rng_.below(b - a)) * kP);
	if (b < n)
		check_translate(h, s, sl.va - slot_va(s) + b * kP);
	check_buffer(sl, "UNMAP");
	if (!sl.mapped())
		release(sl);
}

void Worker::protect(unsigned h, unsigned s)
{
	Slot& sl = slots_[h][s];
	const size_t n = sl.npages(), a = rng_.below(n), b = a + 1 + rng_.below(n - a);
	const u32 prot = rng_.chance(50) ? u32(HTABLE_PROT_READ) : kProtRW;
	const int want = cut_check(sl, a, b, true);
	const int err = dev_->protect(hats_[h].id(), sl.va + a * kP, (b - a) * kP, prot);
	rep_.per_op[kProtect]++;
	if (err != want) {
		mismatch("PROTECT pages [%zu, %zu) of %zu at 0x%llx %s: %s, expected %s", a, b, n, sl.va,
			 prot_string(prot).c_str(), errno_desc(err).c_str(), errno_desc(want).c_str());
		return;
	}
	if (err)
		return;
	demote_ends(sl, a, b);
	for (size_t p = a; p < b; p++)
		if (sl.pages[p].mapped)
			sl.pages[p].prot = prot;
	check_translate(h, s, sl.va - slot_va(s) + (a + rng_.below(b - a)) * kP);
}

void Worker::lock(unsigned h, unsigned s, bool lock_it)
{
	Slot& sl = slots_[h][s];
	const size_t n = sl.npages();
	size_t a = 0, b = n;
	if (rng_.chance(50)) {
		a = rng_.below(n);
		b = a + 1 + rng_.below(n - a);
	}
	const int want = cut_check(sl, a, b, false);
	const int err = dev_->lock(hats_[h].id(), sl.va + a * kP, (b - a) * kP, lock_it);
	rep_.per_op[lock_it ? kLock : kUnlock]++;
	if (err == ENOMEM && lock_it) {  // making the range resident may need tables
		rep_.skipped++;
		return;
	}
	if (err != want) {
		mismatch("%s pages [%zu, %zu) of %zu at 0x%llx: %s, expected %s",
			 lock_it ? "LOCK" : "UNLOCK", a, b, n, sl.va, errno_desc(err).c_str(),
			 errno_desc(want).c_str());
		return;
	}
	if (err)
		return;
	for (size_t p = a; p < b; p++)
		if (sl.pages[p].mapped)
			sl.pages[p].locked = lock_it;
}

// Locked tables are never stolen: a job over a range whose every page is
// mapped, locked and (for a write) writable must not need a single reload.
bool never_reloads(const Slot& sl, size_t pages, bool writes)
{
	for (size_t p = 0; p < pages; p++)
		if (!sl.pages[p].mapped || !sl.pages[p].locked || (writes && !writable(sl.pages[p])))
			return false;
	return true;
}

// A job's faults count pieces, not pages: with a cpu_mask, a page cut by a
// slice boundary is a piece in each slice.
template <class Pred>
u64 fault_pieces(size_t npages, u64 mask, Pred unreachable)
{
	const u64 len = npages * kP, n = u64(std::popcount(mask));
	u64 f = 0;
	for (u64 i = 0; i < n; i++) {
		const u64 a = job_slice(len, n, i), b = job_slice(len, n, i + 1);
		for (u64 p = a / kP; a < b && p <= (b - 1) / kP; p++)
			f += unreachable(size_t(p));
	}
	return f;
}

void Worker::fill(unsigned h, unsigned s)
{
	Slot& sl = slots_[h][s];
	const u64 seed = rng_.next(), mask = pick_mask();
	const bool locked = never_reloads(sl, sl.npages(), true);
	htable_job j{};
	if (!ok(dev_->job_mask(hats_[h].id(), HTABLE_JOB_FILL, sl.va, sl.len, seed, mask, j), "FILL"))
		return;
	rep_.jobs++;
	rep_.per_op[kFill]++;
	rep_.reloads += j.reloads;
	const size_t w = sl.count(writable);
	// Update the shadow first: then the buffer check below tells what the
	// job wrote wrongly, whatever the counts say.
	for (size_t p = 0; p < sl.npages(); p++)
		if (writable(sl.pages[p]))
			put_pattern(&sl.shadow[p * kP], kP, seed, p * kP);
	sl.seed = seed;
	check_job("FILL", j, w * kP,
		  fault_pieces(sl.npages(), mask, [&](size_t p) { return !writable(sl.pages[p]); }));
	if (locked && j.reloads)
		mismatch("FILL over a locked range at 0x%llx needed %llu reloads", sl.va, j.reloads);
	check_buffer(sl, "FILL");
}

void Worker::verify(unsigned h, unsigned s)
{
	Slot& sl = slots_[h][s];
	u64 seed = rng_.chance(90) ? sl.seed : rng_.next();
	if (sl.kind == Slot::Kind::User && rng_.chance(50)) {
		// Write a pattern ourselves, then spoil a few bytes of mapped pages:
		// VERIFY must find exactly those.
		seed = rng_.next();
		put_pattern(sl.shadow.data(), sl.len, seed, 0);
		for (u64 k = rng_.below(4); k; k--) {
			const u64 o = rng_.below(sl.len);
			if (sl.pages[o / kP].mapped)
				sl.shadow[o] ^= u8(1 + rng_.below(255));
		}
		std::memcpy(sl.buf->data(), sl.shadow.data(), sl.len);
	}
	u64 bad = 0, first = ~0ull;
	for (size_t p = 0; p < sl.npages(); p++) {
		if (!sl.pages[p].mapped)
			continue;
		for (u64 o = p * kP; o < (p + 1) * kP; o += 8) {
			const u64 want = pattern_word(seed, o);
			if (std::memcmp(&sl.shadow[o], &want, 8) == 0)
				continue;
			for (u64 k = 0; k < 8; k++) {
				if (sl.shadow[o + k] != htable_pattern_byte(seed, o + k)) {
					first = std::min(first, o + k);
					bad++;
				}
			}
		}
	}
	const bool locked = never_reloads(sl, sl.npages(), false);
	const u64 mask = pick_mask();
	htable_job j{};
	if (!ok(dev_->job_mask(hats_[h].id(), HTABLE_JOB_VERIFY, sl.va, sl.len, seed, mask, j),
		"VERIFY"))
		return;
	rep_.jobs++;
	rep_.per_op[kVerify]++;
	rep_.reloads += j.reloads;
	const size_t m = sl.mapped();
	if (check_job("VERIFY", j, m * kP,
		      fault_pieces(sl.npages(), mask, [&](size_t p) { return !sl.pages[p].mapped; }))) {
		if (j.result != bad || j.first_bad != first)
			mismatch("VERIFY at 0x%llx: %llu bad bytes, first at 0x%llx; expected %llu, first at "
				 "0x%llx", sl.va, j.result, j.first_bad, bad, first);
		else
			rep_.bytes_verified += m * kP;
	}
	if (locked && j.reloads)
		mismatch("VERIFY over a locked range at 0x%llx needed %llu reloads", sl.va, j.reloads);
	check_buffer(sl, "VERIFY");
}

void Worker::checksum(unsigned h, unsigned s)
{
	Slot& sl = slots_[h][s];
	u64 hash = 0xcbf29ce484222325ull;
	for (size_t p = 0; p < sl.npages(); p++) {
		if (!sl.pages[p].mapped)
			continue;
		for (u64 o = p * kP; o < (p + 1) * kP; o++) {
			hash ^= sl.shadow[o];
			hash *= 0x100000001b3ull;
		}
	}
	const u32 cpu = cpus_[rng_.below(cpus_.size())];
	htable_job j{};
	if (!ok(dev_->job(hats_[h].id(), HTABLE_JOB_CHECKSUM, sl.va, sl.len, 0, cpu, j), "CHECKSUM"))
		return;
	rep_.jobs++;
	rep_.per_op[kChecksum]++;
	rep_.reloads += j.reloads;
	const size_t m = sl.mapped();
	if (j.ran_on_cpu != cpu)
		mismatch("CHECKSUM asked for CPU %u ran on %u", cpu, j.ran_on_cpu);
	if (check_job("CHECKSUM", j, m * kP, sl.npages() - m)) {
		if (j.result != hash)
			mismatch("CHECKSUM at 0x%llx: 0x%llx, expected 0x%llx", sl.va, j.result, hash);
		else
			rep_.bytes_verified += m * kP;
	}
}

bool Worker::random_rw(unsigned h, unsigned s)
{
	Slot& sl = slots_[h][s];
	// At most 16 pages: two windows per iteration, len / 64 iterations,
	// and a reload for most of them while the reaper runs.
	const size_t n = sl.npages(), a = rng_.below(n), b = std::min<size_t>(n, a + 1 + rng_.below(16));
	// Replaying needs every access to land: mapped, writable pages.
	for (size_t p = a; p < b; p++)
		if (!writable(sl.pages[p]))
			return false;
	const u64 va = sl.va + a * kP, len = (b - a) * kP;
	const u64 seed = rng_.chance(50) ? sl.seed : rng_.next(), mask = pick_mask();
	bool locked = true;
	for (size_t p = a; p < b; p++)
		locked &= sl.pages[p].locked;
	htable_job j{};
	if (!ok(dev_->job_mask(hats_[h].id(), HTABLE_JOB_RANDOM_RW, va, len, seed, mask, j), "RANDOM_RW"))
		return true;
	rep_.jobs++;
	rep_.per_op[kRandomRw]++;
	rep_.reloads += j.reloads;
	const u64 iters = replay_random_rw(std::span<u8>(&sl.shadow[a * kP], len), seed,
					   u64(std::popcount(mask)));
	if (check_job("RANDOM_RW", j, 16 * iters, 0) && j.result != iters)
		mismatch("RANDOM_RW: %llu iterations, expected %llu", j.result, iters);
	if (locked && j.reloads)
		mismatch("RANDOM_RW over a locked range at 0x%llx needed %llu reloads", va, j.reloads);
	check_buffer(sl, "RANDOM_RW");
	return true;
}

bool Worker::copy(unsigned h, unsigned s)
{
	unsigned d = unsigned(rng_.below(kSlots));
	for (unsigned k = 0; k < kSlots && (d == s || slots_[h][d].empty()); k++)
		d = (d + 1) % kSlots;
	if (d == s || slots_[h][d].empty())
		return false;
	Slot &src = slots_[h][s], &dst = slots_[h][d];
	// Now and then source and destination sit at different offsets in
	// their pages, so that a piece of the source spans two destination pages.
	const bool skew = rng_.chance(40);
	const u64 so = skew ? 8 * rng_.below(kP / 8) : 0, dof = skew ? 8 * rng_.below(kP / 8) : 0;
	if (src.len <= so || dst.len <= dof)
		return false;
	const u64 len = std::min(src.len - so, dst.len - dof);
	const bool locked = never_reloads(src, (so + len + kP - 1) / kP, false) &&
			    never_reloads(dst, (dof + len + kP - 1) / kP, true);
	const u64 mask = pick_mask(), nslices = u64(std::popcount(mask));
	htable_job j{};
	if (!ok(dev_->job_mask(hats_[h].id(), HTABLE_JOB_COPY, src.va + so, len, 0, mask, j,
			       dst.va + dof), "COPY"))
		return true;
	rep_.jobs++;
	rep_.per_op[kCopy]++;
	rep_.reloads += j.reloads;
	// The pieces as docs/ABI.md has them: a source page's part of a slice.
	// A piece copies whole or faults; when its destination spans two pages
	// and only the second faults, its part in the first is written anyway.
	u64 bytes = 0, faults = 0;
	for (u64 i = 0; i < nslices; i++) {
		const u64 a = job_slice(len, nslices, i), b = job_slice(len, nslices, i + 1);
		for (u64 o = a, e; o < b; o = e) {
			e = std::min(b, (so + o) / kP * kP + kP - so);
			const size_t first = (dof + o) / kP, last = (dof + e - 1) / kP;
			u64 upto = o;  // written up to here
			if (!src.pages[(so + o) / kP].mapped || !writable(dst.pages[first])) {
				faults++;
			} else if (first != last && !writable(dst.pages[last])) {
				faults++;
				upto = (first + 1) * kP - dof;
			} else {
				bytes += e - o;
				upto = e;
			}
			std::memcpy(&dst.shadow[dof + o], &src.shadow[so + o], upto - o);
		}
	}
	if (j.bytes != bytes || j.faults != faults)
		mismatch("COPY 0x%llx bytes from +0x%llx to +0x%llx over %llu slices: bytes %llu faults "
			 "%llu, expected %llu and %llu (reloads %llu)", len, so, dof, nslices, j.bytes,
			 j.faults, bytes, faults, j.reloads);
	if (locked && j.reloads)
		mismatch("COPY between locked ranges needed %llu reloads", j.reloads);
	check_buffer(dst, "COPY destination");
	check_buffer(src, "COPY source");
	return true;
}

bool Worker::expand(const std::vector<htable_walk_entry>& es, std::vector<PageFact>& out)
{
	out.clear();
	u64 end = 0;
	for (const auto& e : es) {
		if (!e.length || (e.length & (kP - 1)) || (e.va & (kP - 1)) || e.va < end ||
		    (e.page_size != kP && e.page_size != k2M) || (e.pa & (kP - 1))) {
			mismatch("WALK entry va 0x%llx len 0x%llx pa 0x%llx size 0x%llx after 0x%llx is "
				 "malformed", e.va, e.length, e.pa, e.page_size, end);
			return false;
		}
		for (u64 o = 0; o < e.length; o += kP)
			out.push_back(PageFact{e.va + o, e.pa + o, e.page_size, e.prot, e.flags});
		end = e.va + e.length;
	}
	return true;
}

void Worker::walk(unsigned h)
{
	std::vector<PageFact> want, got;
	for (unsigned s = 0; s < kSlots; s++) {
		const Slot& sl = slots_[h][s];
		for (size_t p = 0; p < sl.npages(); p++) {
			const PageModel& pm = sl.pages[p];
			if (pm.mapped)
				want.push_back(PageFact{sl.va + p * kP, pm.pa, pm.leaf, pm.prot,
							pm.locked ? u32(HTABLE_WALK_LOCKED) : 0});
		}
	}
	std::vector<htable_walk_entry> es;
	const u32 batch = u32(1 + rng_.below(64));
	if (!ok(dev_->walk_all(hats_[h].id(), kStressVa, kStressVa + kSlots * kSlotSpan, es, batch),
		"WALK") || !expand(es, got))
		return;
	rep_.per_op[kWalk]++;
	for (size_t i = 0; i < std::max(want.size(), got.size()); i++) {
		const PageFact none{};
		const auto& w = i < want.size() ? want[i] : none;
		const auto& g = i < got.size() ? got[i] : none;
		if (!(w == g)) {
			mismatch("WALK page %zu of %zu (%zu expected): va 0x%llx pa 0x%llx leaf 0x%llx prot %s "
				 "flags %s; expected va 0x%llx pa 0x%llx leaf 0x%llx prot %s flags %s", i,
				 got.size(), want.size(), g.va, g.pa, g.leaf, prot_string(g.prot).c_str(),
				 walk_flags_string(g.flags).c_str(), w.va, w.pa, w.leaf,
				 prot_string(w.prot).c_str(), walk_flags_string(w.flags).c_str());
			return;
		}
	}
}

void Worker::recycle(unsigned h)
{
	rep_.per_op[kRecycle]++;
	if (rng_.chance(80)) {
		ok(hats_[h].reset(), "HAT_DESTROY");
		for (auto& sl : slots_[h])
			release(sl);
		create_hat(h);
		return;
	}
	// Now and then the whole file: closing it destroys every hat.
	for (auto& hat : hats_)
		hat.release();
	dev_.reset();
	for (auto& row : slots_)
		for (auto& sl : row)
			release(sl);
	open_all();
}

bool Worker::any_slot(unsigned h, bool want_empty, unsigned& s)
{
	const unsigned start = unsigned(rng_.below(kSlots));
	for (unsigned k = 0; k < kSlots; k++) {
		s = (start + k) % kSlots;
		if (slots_[h][s].empty() == want_empty)
			return true;
	}
	return false;
}

// One operation; false if it did not apply (nothing to work on).
bool Worker::step(Op op, unsigned h)
{
	unsigned s = 0;
	const bool mapping = op <= kMapOwned2m;
	if (op != kWalk && op != kRecycle && op != kTranslate && !any_slot(h, mapping, s))
		return false;
	switch (op) {
	case kMapUser: map_user(h, s, false); break;
	case kMapThp: map_user(h, s, true); break;
	case kMapOwned4k: map_owned(h, s, false); break;
	case kMapOwned2m: map_owned(h, s, true); break;
	case kUnmapAll: unmap(h, s, false); break;
	case kUnmapPart: unmap(h, s, true); break;
	case kProtect: protect(h, s); break;
	case kLock: lock(h, s, true); break;
	case kUnlock: lock(h, s, false); break;
	case kFill: fill(h, s); break;
	case kVerify: verify(h, s); break;
	case kChecksum: checksum(h, s); break;
	case kRandomRw: return random_rw(h, s);
	case kCopy: return copy(h, s);
	case kTranslate:
		s = unsigned(rng_.below(kSlots));
		check_translate(h, s, rng_.below(kSlotSpan));
		break;
	case kWalk: walk(h); break;
	case kRecycle: recycle(h); break;
	case kNumOps: return false;
	}
	return true;
}

Report Worker::run(Clock::time_point deadline, u64 max_ops)
{
	unsigned total = 0;
	for (unsigned w : kOpWeight)
		total += w;
	if (open_all()) {
		while (Clock::now() < deadline && rep_.ops < max_ops) {
			const unsigned h = unsigned(rng_.below(kHats));
			unsigned r = unsigned(rng_.below(total)), op = 0;
			while (r >= kOpWeight[op])
				r -= kOpWeight[op++];
			if (!step(Op(op), h))
				step(Op(kMapUser + rng_.below(4)), h);
			rep_.ops++;
			// A failed reopen leaves nothing to work with.
			if (!dev_)
				break;
		}
		for (auto& row : slots_)
			for (auto& sl : row)
				check_buffer(sl, "at the end");
	}
	rep_.done = 1;
	return rep_;
}

// ---------------------------------------------------------------- helpers

// The reaper: steals page tables from every hat as fast as it can.
Report reaper(const std::atomic<int>& stop)
{
	Report r{};
	auto dev = Device::open();
	if (!dev) {
		r.errors++;
		return r;
	}
	static const u64 sizes[] = {1, 8, 64, 512, ~0ull};
	Rng rng{u64(getpid())};
	while (!stop.load(std::memory_order_relaxed)) {
		u64 freed = 0;
		if (dev->reap(sizes[rng.below(std::size(sizes))], &freed))
			r.errors++;
		r.calls++;
		r.freed += freed;
		// Mostly back to back; now and then a short pause, so that the
		// workers' jobs also run on tables that live a little while.
		if (rng.chance(10))
			std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng.below(5)));
	}
	r.done = 1;
	return r;
}

// The dropper: every shrinker in the system, ours among them, asked to
// free what it can, over and over.
Report dropper(const std::atomic<int>& stop)
{
	Report r{};
	while (!stop.load(std::memory_order_relaxed)) {
		if (write_file("/proc/sys/vm/drop_caches", "2"))
			r.errors++;
		r.calls++;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	r.done = 1;
	return r;
}

struct Child {
	pid_t pid = -1;
	int fd = -1;  // read end of its pipe
	Report rep{};
	int status = 0;
	bool reported = false;
};

// Runs fn in a child that sends its Report through a pipe.
template <class Fn>
Child spawn(Fn fn)
{
	Child c;
	int fds[2];
	if (pipe(fds) != 0)
		return c;
	std::fflush(stdout);
	c.pid = fork();
	if (c.pid == 0) {
		close(fds[0]);
		Report r{};
		try {
			r = fn();
		} catch (const std::exception& e) {
			std::printf("# child %d: exception: %s\n", int(getpid()), e.what());
			r.mismatches++;
		}
		std::fflush(stdout);
		_exit(::write(fds[1], &r, sizeof(r)) == ssize_t(sizeof(r)) ? 0 : 1);
	}
	close(fds[1]);
	c.fd = fds[0];
	return c;
}

// Waits for the child until `deadline`, then kills it; reads its report.
void reap_child(Child& c, Clock::time_point deadline)
{
	if (c.pid <= 0)
		return;
	for (;;) {
		pid_t w = waitpid(c.pid, &c.status, WNOHANG);
		if (w == c.pid)
			break;
		if (Clock::now() >= deadline) {
			std::printf("# pid %d still running at the deadline: killed\n", int(c.pid));
			kill(c.pid, SIGKILL);
			waitpid(c.pid, &c.status, 0);
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	c.reported = read(c.fd, &c.rep, sizeof(c.rep)) == ssize_t(sizeof(c.rep)) && c.rep.done;
	close(c.fd);
}

const char kStressHelp[] =
	"Usage: htablectl stress [--procs P] [--seconds T] [--ops N] [--seed S]\n"
	"\n"
	"Concurrency stress test (TAP).  P worker processes (default 4), each with its\n"
	"own /dev/htable fd and two hats (one with a copied top level), loop for T\n"
	"seconds (default 60) or N operations each: map their own memory (4 KiB pages\n"
	"and transparent huge pages) and module-owned memory (4 KiB and 2 MiB),\n"
	"unmap (whole and partial), protect, lock, unlock, and run FILL, VERIFY,\n"
	"CHECKSUM, RANDOM_RW and COPY jobs over the CPUs, checking every byte, every\n"
	"job count, TRANSLATE and WALK against a model of what they mapped.\n"
	"Meanwhile one process calls REAP without pause and another writes 2 to\n"
	"/proc/sys/vm/drop_caches in a loop.  Afterwards hats_live, tables_live and\n"
	"pinned_pages (and pages_live, objects_live where the module has them) must\n"
	"be back where they started.  Ends with one line\n"
	"  # reliability {\"test\":\"stress\",...}\n"
	"Needs root, debugfs and the htable module.  Exit status 0 only if every\n"
	"check passed.\n";

}  // namespace

int cmd_stress(std::span<char*> args)
{
	u64 procs = 4, seconds = 60, max_ops = ~0ull, seed = 0x5eed;
	for (size_t i = 1; i < args.size(); i++) {
		std::string a = args[i];
		u64* out = a == "--procs" ? &procs : a == "--seconds" ? &seconds : a == "--ops" ? &max_ops
			 : a == "--seed" ? &seed : nullptr;
		if (a == "--help" || a == "-h") {
			std::fputs(kStressHelp, stdout);
			return 0;
		}
		if (!out || i + 1 >= args.size() || !parse_u64(args[i + 1], *out)) {
			std::fprintf(stderr, "htablectl stress: bad argument '%s'\n"
					     "Try 'htablectl stress --help'.\n", a.c_str());
			return 2;
		}
		i++;
	}
	if (procs == 0 || procs > 64 || seconds == 0 || max_ops == 0) {
		std::fprintf(stderr, "htablectl stress: --procs 1..64, --seconds and --ops > 0\n");
		return 2;
	}
	const int nchecks = int(procs) + 6;
	std::printf("TAP version 13\n1..%d\n", nchecks);
	int n = 0, failed = 0;
	auto result = [&](bool ok, const std::string& name) {
		std::printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n, name.c_str());
		std::fflush(stdout);
		failed += !ok;
	};
	std::vector<u32> cpus;
	for (u32 c : online_cpus())
		if (c < 64)
			cpus.push_back(c);
	const CounterSet base = leak_counters();
	std::vector<Stat> st0;
	if (base.empty() || read_stats(st0) != 0) {
		std::printf("Bail out! cannot read the counters in %s\n", kStatsPath);
		return 1;
	}
	std::printf("# %llu workers on CPUs %s for %llu s (at most %llu ops each), seed 0x%llx, THP %s\n",
		    procs, format_cpu_list(cpus).c_str(), seconds, max_ops, seed, thp_mode().c_str());

	// The stop flag lives in memory shared with the helpers.
	void* shm = mmap(nullptr, kP, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		std::printf("Bail out! mmap: %s\n", std::strerror(errno));
		return 1;
	}
	auto* stop = new (shm) std::atomic<int>(0);
	const auto t0 = Clock::now();
	const auto deadline = t0 + std::chrono::seconds(seconds);
	Child reap = spawn([&] { return reaper(*stop); });
	Child drop = spawn([&] { return dropper(*stop); });
	std::vector<Child> workers;
	for (unsigned w = 0; w < procs; w++)
		workers.push_back(spawn([&, w] {
			return Worker(w + 1, seed * 0x9e3779b97f4a7c15ull + w, cpus).run(deadline, max_ops);
		}));
	// A worker finishes its operation in progress after the deadline; one
	// stuck in the module for minutes more is a finding of its own.
	for (auto& c : workers)
		reap_child(c, deadline + std::chrono::seconds(120));
	const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
	stop->store(1);
	reap_child(reap, Clock::now() + std::chrono::seconds(60));
	reap_child(drop, Clock::now() + std::chrono::seconds(60));

	Report total{};
	for (unsigned w = 0; w < procs; w++) {
		const Child& c = workers[w];
		const Report& r = c.rep;
		total.ops += r.ops;
		total.bytes_verified += r.bytes_verified;
		total.mismatches += r.mismatches;
		total.reloads += r.reloads;
		total.thp_leaves += r.thp_leaves;
		total.skipped += r.skipped;
		total.jobs += r.jobs;
		for (unsigned o = 0; o < kNumOps; o++)
			total.per_op[o] += r.per_op[o];
		const bool clean = c.pid > 0 && WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0 && c.reported;
		if (!clean)
			total.mismatches += !r.mismatches;  // a worker that died proves nothing
		result(clean && r.mismatches == 0 && r.ops > 0,
		       strfmt("worker %u: %llu ops, %llu jobs, %llu bytes verified, %llu mismatches, %llu "
			      "reloads%s", w + 1, r.ops, r.jobs, r.bytes_verified, r.mismatches, r.reloads,
			      clean ? "" : strfmt(" (died: wait status 0x%x)", c.status).c_str()));
	}
	std::string mix;
	for (unsigned o = 0; o < kNumOps; o++)
		mix += strfmt("%s%s %llu", o ? ", " : "", kOpNames[o], total.per_op[o]);
	std::printf("# operations: %s; %llu THP leaves mapped; %llu skipped for ENOMEM\n", mix.c_str(),
		    total.thp_leaves, total.skipped);
	// Every kind of operation must have run, or the mix proved less than it says.
	std::string missing;
	for (unsigned o = 0; o < kNumOps; o++)
		if (!total.per_op[o] && o != kMapThp && o != kMapOwned2m && o != kRecycle)
			missing += std::string(missing.empty() ? "" : ", ") + kOpNames[o];
	result(missing.empty(), "every operation ran" + (missing.empty() ? "" : " (never: " + missing + ")"));

	result(reap.reported && !reap.rep.errors && reap.rep.freed > 0,
	       strfmt("reaper: %llu REAP calls took %llu page tables, %llu errors", reap.rep.calls,
		      reap.rep.freed, reap.rep.errors));
	std::vector<Stat> st1;
	(void)read_stats(st1);
	auto grew = [&](const char* name) {
		u64 a = stat_u64(st0, name).value_or(0), b = stat_u64(st1, name).value_or(0);
		return b > a ? b - a : 0;
	};
	result(drop.reported && !drop.rep.errors && drop.rep.calls > 0 && grew("shrinker_calls") > 0,
	       strfmt("drop_caches: %llu writes, %llu errors; shrinker_calls +%llu, shrinker_freed +%llu",
		      drop.rep.calls, drop.rep.errors, grew("shrinker_calls"), grew("shrinker_freed")));
	result(total.reloads > 0,
	       strfmt("jobs reloaded %llu stolen translations (steals +%llu, reloads +%llu)",
		      total.reloads, grew("steals"), grew("reloads")));
	result(grew("invariant_failures") == 0,
	       strfmt("no invariant failures (+%llu)", grew("invariant_failures")));

	// Every worker is gone, so every hat is: the counters must come back by
	// themselves, with no further call into the module to nudge them.
	const CounterSet after = wait_leak_counters(base, 10000);
	u64 leaks = 0;
	const std::string diff = counter_diff(base, after, false, &leaks);
	result(after == base, "counters back: " + counter_diff(base, after, true) +
				      (diff.empty() ? "" : " (differ: " + diff + ")"));
	std::printf("# reliability {\"test\":\"stress\",\"procs\":%llu,\"cpus\":%zu,\"ops\":%llu,"
		    "\"bytes_verified\":%llu,\"mismatches\":%llu,\"reaped\":%llu,\"drop_caches\":%llu,"
		    "\"seconds\":%.1f,\"leaks\":%llu}\n", procs, cpus.size(), total.ops,
		    total.bytes_verified, total.mismatches, reap.rep.freed, drop.rep.calls, secs, leaks);
	munmap(shm, kP);
	return failed ? 1 : 0;
}

}  // namespace htable
