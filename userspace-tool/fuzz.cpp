// SPDX-License-Identifier: GPL-2.0
//
// `htablectl fuzz`: random ioctls on /dev/htable, each checked against an
// in-process reference model of what docs/ABI.md says the module must do.
// Output is TAP; see kFuzzHelp.
//
// The model.  Per hat, the extents of its record, split exactly where the
// core splits them: SHARE refuses a source range an extent crosses, so
// whether a share succeeds depends on those boundaries (MAP makes one
// extent per run of equal leaves; UNMAP, PROTECT and LOCK split at their
// ends; cutting a large leaf demotes it to a 4 KiB extent).  Per hat also
// the tables it shares out: one its owner emptied still occupies its slot,
// so a large leaf or a share there gets EEXIST.  Every mapped page has a
// backing: a page of one of our buffers (the bytes are ours to read; the
// model keeps a shadow to compare them with) or a module-owned page
// (shadow only), whose physical address the model learns from a WALK right
// after the MAP.  Jobs are simulated piece by piece (a slice's part of a
// page), so bytes, faults, result and first_bad are exact.
//
// Determinism.  Every choice comes from the seed; what only the kernel
// knows (which chunks of a buffer are huge pages, physical addresses,
// injected failures) is read back, never guessed.  A job that writes is
// only issued when no backing page is reached twice: otherwise the order of
// concurrent slices, or of pieces retried after a reload, would decide the
// bytes.  A COPY piece whose destination runs from a writable into a
// read-only page is avoided too (copy_to_user() writes the first part, and
// the piece still counts as a fault).
//
// Injection (--inject PCT).  failslab and fail_page_alloc are set up for
// this thread only; /proc/thread-self/make-it-fail is 1 only around each
// ioctl that changes something.  Such an ioctl may then fail with ENOMEM
// when the module may have allocated before it decided; the hat must be
// exactly as it was, which a full WALK and the pinned_pages counter check.
#include "htablectl.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace htable {
namespace {

constexpr u64 P = kPageSize;
constexpr u64 kNoBad = ~0ull;
constexpr u64 kFnvBasis = 0xcbf29ce484222325ull;
constexpr u32 R = HTABLE_PROT_READ, W = HTABLE_PROT_WRITE, X = HTABLE_PROT_EXEC;
constexpr u64 kFullCheckEvery = 1000;
// Keep the state small enough that every check stays cheap under TCG.
constexpr size_t kMaxExtents = 400;       // over all hats
constexpr u64 kMaxOwnedBytes = 24ull << 20;
constexpr size_t kMaxHats = 8;
constexpr u64 kMaxShareLeaves = 8192;     // what a SHARE or LOCK makes resident

const char kFuzzHelp[] =
	"Usage: htablectl fuzz --seed S --ops N [--cpus C] [--inject PCT]\n"
	"                      [--verbose-from K] [--concurrent]\n"
	"\n"
	"Issue N random ioctls on /dev/htable (hats created and destroyed, maps of\n"
	"this process's memory and of module-owned memory, unmap, protect, lock,\n"
	"share, jobs, reap, walk, translate, and invalid variants of each) and\n"
	"check every result against an in-process model of docs/ABI.md: the errno,\n"
	"job outputs and the bytes jobs read and write, TRANSLATE (against\n"
	"/proc/self/pagemap for our memory), a WALK around one change in three,\n"
	"and every 1000 ops a full WALK of every hat, our buffers against their\n"
	"shadows and the module's counters.  All randomness comes from the seed.\n"
	"\n"
	"  --seed S          the seed (default 1)\n"
	"  --ops N           ioctls to issue (default 10000)\n"
	"  --cpus C          jobs run on up to C CPUs (cpu or cpu_mask; default 1)\n"
	"  --inject PCT      fail PCT% of the module's allocations in this thread's\n"
	"                    mutating ioctls (failslab + fail_page_alloc, restored at\n"
	"                    the end): each op must then succeed as modelled or fail\n"
	"                    with ENOMEM leaving its hat exactly as it was\n"
	"  --verbose-from K  print every op from index K on\n"
	"  --concurrent      other processes use the module at the same time: compare\n"
	"                    this process's hats (debugfs owner_pid) and pins (VmLck)\n"
	"                    with the model instead of the module's global counters\n"
	"\n"
	"Output: TAP (1..3: the ops, the final WALK of every hat, the counters\n"
	"tables_live/hats_live/pinned_pages back after close) and one line\n"
	"'# reliability {json}'.  On a mismatch: the seed, op index, the op,\n"
	"expected and got, and the command that replays it.  Needs root and debugfs.\n";

std::string ename(int err)
{
	if (!err)
		return "0";
	const char* n = strerrorname_np(err);
	return n ? n : "E" + std::to_string(err);
}

u64 level_size(unsigned level) { return 1ull << (12 + 9 * level); }

// ---------------------------------------------------------------- fault injection

class Inject {
public:
	~Inject() { restore(); }

	// Saves the knobs it changes, then sets them.  Empty on success.
	std::string setup(unsigned pct)
	{
		// The probabilities go last, once the filters are in place: in
		// between, every task's allocations could fail (task-filter
		// still N) and each failure print a stack trace (verbose 2) --
		// the other fuzzer's, and this thread's own open() of the next
		// knob.
		const std::string p = std::to_string(pct);
		const std::pair<const char*, std::string> knobs[] = {
			{"failslab/interval", "1"},
			{"failslab/times", "-1"},
			{"failslab/verbose", "0"},
			{"failslab/task-filter", "Y"},
			{"failslab/ignore-gfp-wait", "N"},
			{"failslab/cache-filter", "Y"},
			{"fail_page_alloc/interval", "1"},
			{"fail_page_alloc/times", "-1"},
			{"fail_page_alloc/verbose", "0"},
			{"fail_page_alloc/task-filter", "Y"},
			{"fail_page_alloc/ignore-gfp-wait", "N"},
			{"fail_page_alloc/ignore-gfp-highmem", "Y"},
			{"fail_page_alloc/min-order", "0"},
		};
		fd_ = ::open("/proc/thread-self/make-it-fail", O_WRONLY | O_CLOEXEC);
		if (fd_ < 0)
			return std::string("/proc/thread-self/make-it-fail: ") + std::strerror(errno);
		for (const auto& [name, value] : knobs)
			if (std::string err = set(std::string("/sys/kernel/debug/") + name, value); !err.empty())
				return err;
		// cache-filter: only the caches marked fail, which are the core's
		// own (module/shim_mm.c): kmalloc's belong to everyone.
		caches_ = 0;
		if (DIR* d = ::opendir("/sys/kernel/slab")) {
			while (struct dirent* e = ::readdir(d)) {
				if (std::strncmp(e->d_name, "htable-", 7))
					continue;
				const std::string path = std::string("/sys/kernel/slab/") + e->d_name + "/failslab";
				if (std::string err = set(path, "1"); !err.empty()) {
					::closedir(d);
					return err;
				}
				caches_++;
			}
			::closedir(d);
		}
		for (const char* name : {"failslab/probability", "fail_page_alloc/probability"})
			if (std::string err = set(std::string("/sys/kernel/debug/") + name, p); !err.empty())
				return err;
		return "";
	}

	// The module's slab caches failslab may fail (0: only pages can).
	unsigned caches() const { return caches_; }

	void restore()
	{
		off();
		// Probabilities first, so that nothing fails while the rest is undone.
		std::stable_partition(saved_.begin(), saved_.end(), [](const auto& s) {
			return s.first.find("probability") != std::string::npos;
		});
		for (const auto& [path, value] : saved_)
			(void)write_file(path, value);
		saved_.clear();
		if (fd_ >= 0)
			::close(fd_);
		fd_ = -1;
	}

	bool active() const { return fd_ >= 0; }
	void on() { make_it_fail('1'); }
	void off() { make_it_fail('0'); }

private:
	void make_it_fail(char c)
	{
		if (fd_ >= 0 && ::pwrite(fd_, &c, 1, 0) != 1)
			std::fprintf(stderr, "htablectl fuzz: make-it-fail: %s\n", std::strerror(errno));
	}

	// Saves a knob, then sets it.  Empty on success.
	std::string set(const std::string& path, const std::string& value)
	{
		std::string old;
		if (int err = read_file(path, old))
			return path + ": " + std::strerror(err);
		while (!old.empty() && (old.back() == '\n' || old.back() == ' '))
			old.pop_back();
		saved_.push_back({path, old});
		if (int err = write_file(path, value))
			return path + " = " + value + ": " + std::strerror(err);
		return "";
	}

	std::vector<std::pair<std::string, std::string>> saved_;
	int fd_ = -1;
	unsigned caches_ = 0;
};

// ---------------------------------------------------------------- the model

enum class Kind : u8 { User, Owned, Link };

// One extent of a hat's record: a run of leaves of one size with one
// protection, backed linearly by a buffer or by owned pages, or a range
// linked from another hat's table.
struct Ext {
	u64 len = 0;
	Kind kind = Kind::User;
	u8 level = 0;	// leaf level; for a link, the level of the linked table
	bool locked = false;
	u32 prot = 0;
	u32 space = 0;	// User: buffer index; Link: the source hat's id
	u64 boff = 0;	// User: byte offset in the buffer; Owned: in the owned space
	u64 leaf() const { return level_size(level); }
};

struct MHat {
	u32 id = 0;
	bool copied = false;
	bool no_debugfs = false;	// created while allocations failed: no hats/<gid>/
	std::map<u64, Ext> ext;
	// Tables this hat shares out: (va, level) -> number of links.
	std::map<std::pair<u64, u32>, u32> pinned;
	// Where a LOCK that failed with ENOMEM may have split the record (it
	// splits before it makes leaves resident); only SHARE can tell.
	std::set<u64> maybe_split;
};

using ExtIt = std::map<u64, Ext>::iterator;

ExtIt find_ext(MHat& h, u64 a)
{
	auto it = h.ext.upper_bound(a);
	if (it == h.ext.begin())
		return h.ext.end();
	--it;
	return a < it->first + it->second.len ? it : h.ext.end();
}

bool overlaps(MHat& h, u64 va, u64 end)
{
	auto it = h.ext.lower_bound(va);
	if (it != h.ext.end() && it->first < end)
		return true;
	return it != h.ext.begin() && std::prev(it)->first + std::prev(it)->second.len > va;
}

// Extents intersecting [va, end), in order.
std::vector<ExtIt> within(MHat& h, u64 va, u64 end)
{
	std::vector<ExtIt> v;
	auto it = h.ext.upper_bound(va);
	if (it != h.ext.begin() && std::prev(it)->first + std::prev(it)->second.len > va)
		v.push_back(std::prev(it));
	for (; it != h.ext.end() && it->first < end; ++it)
		v.push_back(it);
	return v;
}

// A user buffer of this process: `size` usable bytes followed by a
// PROT_NONE guard (MAP of a range reaching into it gives EFAULT).
struct UserBuf {
	const char* name;
	std::unique_ptr<Buffer> mem;
	u64 size = 0;
	std::vector<u8> shadow;	// what the bytes must be
	std::vector<u64> pfn;	// per page, read from pagemap when it was last mapped
	std::vector<bool> thp;	// per 2 MiB chunk: one huge page
	u8* base() const { return mem->data(); }
};

// Where a byte of a hat's VA lands, according to the model.
struct Loc {
	bool mapped = false;
	bool link = false;	// through a range shared into the hat
	bool locked = false;
	u8 level = 0;
	u32 prot = 0;
	Kind kind = Kind::User;
	u32 space = 0;
	u64 boff = 0;	// backing offset of the byte
	u64 pa = 0;	// physical address of the byte
	bool writable() const { return mapped && (prot & W); }
	// One key per backing page: aliases have equal keys.
	u64 page_key() const { return (u64(kind) << 62) | (u64(space) << 44) | (boff / P); }
};

struct WEnt {
	u64 va, len, pa;
	u32 prot, flags;
	u64 ps;
	bool operator==(const WEnt&) const = default;
};

std::string went_str(const WEnt& e)
{
	return strfmt("[0x%llx +0x%llx) pa 0x%llx prot %s flags %s page_size 0x%llx", e.va, e.len, e.pa,
		   prot_string(e.prot).c_str(), walk_flags_string(e.flags).c_str(), e.ps);
}

// Adjacent entries that continue each other (virtually and physically, with
// equal attributes) become one: the module reports a run of an array extent
// leaf by leaf and a demoted leaf as one run, and the model need not know
// where its record happens to be split.
void normalize(std::vector<WEnt>& v)
{
	std::vector<WEnt> out;
	for (const WEnt& e : v) {
		if (!out.empty()) {
			WEnt& p = out.back();
			if (!(p.flags & HTABLE_WALK_SHARED) && !(e.flags & HTABLE_WALK_SHARED) &&
			    p.va + p.len == e.va && p.pa + p.len == e.pa && p.prot == e.prot &&
			    p.flags == e.flags && p.ps == e.ps) {
				p.len += e.len;
				continue;
			}
		}
		out.push_back(e);
	}
	v.swap(out);
}

struct Config {
	u64 seed = 1;
	u64 ops = 10000;
	u32 cpus = 1;
	u32 inject = 0;
	u64 verbose_from = ~0ull;
	bool concurrent = false;
};

// What the model predicts for one ioctl.
struct Want {
	int err = 0;
	// Decided only after the module may have allocated: under injection
	// ENOMEM is then a correct answer as well.
	bool late = false;
	int alt = -1;	// another acceptable errno
};

struct JobSim {
	u64 bytes = 0, faults = 0, result = 0, first_bad = kNoBad;
	bool hazard = false;	// COPY: destination piece writable, then not
	bool alias = false;	// a written backing page reached from two VA pages
	bool reload_free = true;	// no piece can make the runner reload (all locked)
	std::set<std::pair<u32, u64>> user_pages;	// (buffer, page) written
};

// ---------------------------------------------------------------- the fuzzer

class Fuzzer {
public:
	Fuzzer(const Config& cfg, Device& dev) : cfg_(cfg), dev_(dev), rng_(cfg.seed)
	{
		pagemap_fd_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	}
	~Fuzzer()
	{
		if (pagemap_fd_ >= 0)
			::close(pagemap_fd_);
	}
	int run();

private:
	// ---- setup and reporting
	std::string setup();
	bool verbose() const { return op_ >= cfg_.verbose_from; }
	void note(const char* f, ...) __attribute__((format(printf, 2, 3)));
	void fail(const char* f, ...) __attribute__((format(printf, 2, 3)));
	void model_bug(const char* what) { fail("model inconsistency: %s", what); }
	// What a mismatch report shows the model's and the module's state of.
	void focus(u64 va, std::initializer_list<u32> ids)
	{
		focus_va_ = va;
		focus_hats_.assign(ids);
	}
	void dump_focus();
	int judge(int got, const Want& w, bool mutating);
	int mut(unsigned long cmd, void* arg);
	std::optional<std::map<std::string, u64>> counters();

	// ---- the model
	MHat* hat(u32 id)
	{
		auto it = hats_.find(id);
		return it == hats_.end() ? nullptr : &it->second;
	}
	void split_at(MHat& h, u64 a);
	void demote(MHat& h, u64 a);
	void cut_ends(MHat& h, u64 va, u64 end);
	int check_ends(MHat& h, u64 va, u64 end, bool demotable);
	bool pinned_in(MHat& h, u64 va, u64 end, u32 below, u32 from = 0);
	void drop_range(MHat& h, u64 va, u64 end);
	void unpin(u32 src, u64 va, u32 level);
	u64 leaf_pa(const Ext& e, u64 eva, u64 leaf_va);
	Loc resolve(u32 hid, u64 va, int depth = 0);
	u8* backing(const Loc& l, bool write);
	std::vector<WEnt> model_walk(u32 hid, u64 lo, u64 hi);
	u64 model_pins();
	u64 owned_bytes() const { return owned_pa_.size() * P; }
	size_t nr_extents() const;

	// ---- dev.c's checks of each command's own fields, in its order, and
	// the hat lookup: 0 when they all pass.
	bool range_ok(u64 va, u64 len) const { return len && va < end_ && len <= end_ - va; }
	int map_args(const htable_map& m);
	int range_args(u32 hat_id, u64 va, u64 len);
	int job_args(const htable_job& j);
	int share_args(const htable_share& s);

	// ---- checks
	bool check_walk(u32 hid, u64 lo, u64 hi, const char* why, u32 batch = 0);
	bool check_around(u32 hid, u64 va, u64 end, const char* why);
	bool check_after_enomem(std::initializer_list<u32> ids);
	bool check_buffers(const char* why);
	bool check_owned_contents(const char* why);
	bool check_counters(const char* why);
	bool full_check(const char* why);

	// ---- choosing arguments
	u32 pick_hat_id();
	u32 bad_hat_id();
	u64 slot_va(u64 align);
	u64 near_va(MHat& h, u64 align);
	u32 pick_prot();
	bool random_range(MHat& h, u64& va, u64& len);

	// ---- operations
	void step();
	void op_create();
	void op_destroy();
	void op_map_user();
	void op_map_owned();
	void map_common(const htable_map& m, Want w, const std::vector<struct Run>& runs, Kind kind, u32 buf);
	void op_unmap();
	void op_protect();
	void op_lock();
	void op_share();
	void op_job();
	void op_translate();
	void op_walk();
	void op_reap();
	void op_abi();
	JobSim simulate(u32 hid, u32 op, u64 va, u64 len, u64 seed, u64 n, u64 dst, bool apply);
	bool run_job(htable_job& j, u64 n, bool abi10, const Want& w);

	const Config cfg_;
	Device& dev_;
	int pagemap_fd_ = -1;	// ours: one pread per look-up
	Rng rng_;
	Inject inject_;
	htable_version ver_{};
	u64 end_ = 0;
	u32 nr_cpu_ids_ = 1;
	std::vector<u32> cpus_;
	u32 max_hats_ = 64;
	u64 max_tables_ = ~0ull;
	std::map<std::string, u64> base_;	// counters at the start

	std::map<u32, MHat> hats_;
	std::vector<UserBuf> bufs_;
	u64 owned_next_ = 0;	// next owned byte offset
	std::unordered_map<u64, u64> owned_pa_;	// owned page -> physical address
	std::unordered_map<u64, u64> owned_by_pa_;	// and back: no page is handed out twice
	std::unordered_map<u64, std::vector<u8>> owned_data_;	// owned page -> bytes (absent: 0)
	std::vector<u8> zero_page_ = std::vector<u8>(P);
	struct Fill {
		u32 hat;
		u64 va, len, seed;
	};
	std::vector<Fill> fills_;	// recent FILLs, for VERIFY to find them again

	u64 op_ = 0;
	std::string desc_;
	u64 focus_va_ = 0;
	std::vector<u32> focus_hats_;
	bool failed_ = false;
	u64 errors_expected_ = 0, enomem_ = 0, skipped_ = 0;
	std::map<std::string, u64> counts_;
	std::map<std::string, double> secs_;	// time spent per kind of op
	size_t max_extents_ = 0, max_hats_seen_ = 0;
};

// ---------------------------------------------------------------- reporting

void Fuzzer::note(const char* f, ...)
{
	char buf[768];
	va_list ap;
	va_start(ap, f);
	std::vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	desc_ = buf;
}

void Fuzzer::fail(const char* f, ...)
{
	if (failed_)
		return;
	failed_ = true;
	char buf[2048];
	va_list ap;
	va_start(ap, f);
	std::vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	std::printf("# MISMATCH seed %llu op %llu: %s\n", cfg_.seed, op_, desc_.c_str());
	for (const char* p = buf; *p;) {
		const char* nl = std::strchr(p, '\n');
		size_t n = nl ? size_t(nl - p) : std::strlen(p);
		std::printf("# %.*s\n", int(n), p);
		p += n + (nl ? 1 : 0);
	}
	std::string extra;
	if (cfg_.cpus != 1)
		extra += strfmt(" --cpus %u", cfg_.cpus);
	if (cfg_.inject)
		extra += strfmt(" --inject %u", cfg_.inject);
	std::printf("# replay: htablectl fuzz --seed %llu --ops %llu --verbose-from %llu%s%s\n", cfg_.seed,
		    op_ + 1, op_, extra.c_str(),
		    cfg_.inject ? "  (injected failures are not replayed exactly)" : "");
	dump_focus();
	std::fflush(stdout);
}

// The model's record and the module's WALK around the address the failed
// op was about, for the hats it involved.
void Fuzzer::dump_focus()
{
	const u64 lo = focus_va_ >= 4 * k2M ? (focus_va_ & ~(k2M - 1)) - 4 * k2M : 0;
	const u64 hi = std::min(end_, (focus_va_ & ~(k2M - 1)) + 4 * k2M);
	for (u32 id : focus_hats_) {
		MHat* h = hat(id);
		if (!h)
			continue;
		std::printf("# hat %u%s, model [0x%llx, 0x%llx):\n", id, h->copied ? " (copied top)" : "", lo, hi);
		for (ExtIt it : within(*h, lo, hi)) {
			const Ext& e = it->second;
			std::printf("#   [0x%llx +0x%llx) %s level %u prot %s%s space %u off 0x%llx\n", it->first,
				    e.len, e.kind == Kind::User ? "user" : e.kind == Kind::Owned ? "owned" : "LINK",
				    e.level, prot_string(e.prot).c_str(), e.locked ? " locked" : "", e.space, e.boff);
		}
		for (const auto& [k, n] : h->pinned)
			std::printf("#   shares out the level-%u table at 0x%llx (%u links)\n", k.second, k.first, n);
		for (u64 p : h->maybe_split)
			std::printf("#   may be split at 0x%llx\n", p);
		std::vector<htable_walk_entry> ents;
		if (int err = dev_.walk_all(id, lo, hi, ents, 4096)) {
			std::printf("#   WALK: %s\n", ename(err).c_str());
			continue;
		}
		std::printf("# hat %u, module WALK:\n", id);
		for (const auto& e : ents)
			std::printf("#   %s\n", went_str({e.va, e.length, e.pa, e.prot, e.flags, e.page_size}).c_str());
	}
}

// Compares an errno with the prediction.  1: as predicted; 2: ENOMEM
// accepted (injection); 3: the alternative; 0: a mismatch (reported).
int Fuzzer::judge(int got, const Want& w, bool mutating)
{
	if (verbose())
		std::printf("# %llu: %s -> %s\n", op_, desc_.c_str(), ename(got).c_str());
	if (got == w.err) {
		if (w.err)
			errors_expected_++;
		return 1;
	}
	if (got == ENOMEM && mutating && inject_.active() && (w.err == 0 || w.late)) {
		enomem_++;
		return 2;
	}
	if (w.alt >= 0 && got == w.alt) {
		if (got)
			errors_expected_++;
		return 3;
	}
	fail("expected: %s%s\ngot: %s", ename(w.err).c_str(),
	     w.alt >= 0 ? (" or " + ename(w.alt)).c_str() : "", ename(got).c_str());
	return 0;
}

// A mutating ioctl: with --inject, the module's allocations may fail only
// inside it.
int Fuzzer::mut(unsigned long cmd, void* arg)
{
	if (inject_.active())
		inject_.on();
	int err = dev_.ioctl_raw(cmd, arg);
	if (inject_.active())
		inject_.off();
	return err;
}

// The module's counters, or with --concurrent (other processes have hats
// too) this process's share: its hats in debugfs and its VmLck (the pins
// count against the opener's locked_vm).
std::optional<std::map<std::string, u64>> Fuzzer::counters()
{
	if (cfg_.concurrent) {
		std::map<std::string, u64> out;
		out["hats_live"] = find_hat_gids(getpid(), 0).size();
		std::string status;
		if (read_file("/proc/self/status", status))
			return std::nullopt;
		for (const auto& [k, v] : parse_kv(status)) {
			u64 kib;
			if (k == "VmLck" && parse_u64(v, kib))
				out["pinned_pages"] = kib * 1024 / P;
		}
		if (!out.count("pinned_pages"))
			return std::nullopt;
		return out;
	}
	std::vector<Stat> st;
	if (read_stats(st))
		return std::nullopt;
	std::map<std::string, u64> out;
	for (const char* name : {"tables_live", "hats_live", "pinned_pages"}) {
		auto v = stat_u64(st, name);
		if (!v)
			return std::nullopt;
		out[name] = *v;
	}
	return out;
}

// ---------------------------------------------------------------- model operations

// Make `a` an extent boundary (callers keep it on a leaf boundary).
void Fuzzer::split_at(MHat& h, u64 a)
{
	auto it = find_ext(h, a);
	if (it == h.ext.end() || it->first == a)
		return;
	if (it->second.kind == Kind::Link)
		return model_bug("split of a shared range");
	Ext hi = it->second;
	const u64 start = it->first;
	if ((a - start) % hi.leaf())
		return model_bug("split inside a leaf");
	hi.len = start + it->second.len - a;
	hi.boff = it->second.boff + (a - start);
	it->second.len = a - start;
	h.ext[a] = hi;
}

// The large leaf containing `a` becomes 4 KiB leaves of the same memory.
void Fuzzer::demote(MHat& h, u64 a)
{
	auto it = find_ext(h, a);
	if (it == h.ext.end() || it->second.kind == Kind::Link || it->second.level == 0)
		return;
	const u64 leaf = it->second.leaf(), base = a & ~(leaf - 1);
	split_at(h, base);
	split_at(h, base + leaf);
	h.ext.at(base).level = 0;
	counts_["demotions"]++;
}

// What an UNMAP or PROTECT of [va, end) does to the record before it
// changes anything: a large leaf the range starts or ends inside is broken
// up, and the extents are split at both ends.
void Fuzzer::cut_ends(MHat& h, u64 va, u64 end)
{
	for (u64 p : {va, end - 1}) {
		auto it = find_ext(h, p);
		if (it == h.ext.end() || it->second.kind == Kind::Link || !it->second.level)
			continue;
		const u64 base = p & ~(it->second.leaf() - 1);
		if (base < va || base + it->second.leaf() > end)
			demote(h, p);
	}
	split_at(h, va);
	split_at(h, end);
}

// The ends of [va, end): a shared range is never cut (EINVAL), a large leaf
// only when the operation may demote it and it is not locked (EBUSY), else
// EINVAL.  In the order the core probes them.
int Fuzzer::check_ends(MHat& h, u64 va, u64 end, bool demotable)
{
	for (u64 p : {va, end - 1}) {
		auto it = find_ext(h, p);
		if (it == h.ext.end())
			continue;
		const Ext& e = it->second;
		if (e.kind == Kind::Link) {
			if (it->first < va || it->first + e.len > end)
				return EINVAL;
			continue;
		}
		const u64 base = p & ~(e.leaf() - 1);
		if (base >= va && base + e.leaf() <= end)
			continue;
		if (!demotable)
			return EINVAL;
		if (e.locked)
			return EBUSY;
	}
	return 0;
}

// Does `h` share out a table of level in [from, below) intersecting [va, end)?
bool Fuzzer::pinned_in(MHat& h, u64 va, u64 end, u32 below, u32 from)
{
	for (const auto& [k, n] : h.pinned) {
		const u64 tva = k.first, tend = tva + level_size(k.second + 1);
		if (k.second >= from && k.second < below && tva < end && va < tend)
			return true;
	}
	return false;
}

void Fuzzer::unpin(u32 src, u64 va, u32 level)
{
	MHat* s = hat(src);
	if (!s)
		return;	// the source is gone: its links went first
	auto it = s->pinned.find({va, level});
	if (it == s->pinned.end())
		return model_bug("unpin of a table not shared out");
	if (--it->second == 0)
		s->pinned.erase(it);
}

// Remove [va, end) from the record (its ends are extent boundaries).
void Fuzzer::drop_range(MHat& h, u64 va, u64 end)
{
	for (auto it = h.ext.lower_bound(va); it != h.ext.end() && it->first < end;) {
		const Ext& e = it->second;
		if (it->first + e.len > end)
			return model_bug("drop of a range that is not whole extents");
		if (e.kind == Kind::Link) {
			unpin(e.space, it->first, e.level);
		} else if (e.kind == Kind::Owned) {
			for (u64 o = e.boff; o < e.boff + e.len; o += P) {
				auto pa = owned_pa_.find(o / P);
				if (pa != owned_pa_.end()) {
					owned_by_pa_.erase(pa->second);
					owned_pa_.erase(pa);
				}
				owned_data_.erase(o / P);
			}
		}
		it = h.ext.erase(it);
	}
	for (auto m = h.maybe_split.lower_bound(va); m != h.maybe_split.end() && *m < end;)
		m = h.maybe_split.erase(m);
}

u64 Fuzzer::leaf_pa(const Ext& e, u64 eva, u64 leaf_va)
{
	const u64 off = e.boff + (leaf_va - eva);
	if (e.kind == Kind::User)
		return bufs_[e.space].pfn[off / P] * P;
	auto it = owned_pa_.find(off / P);
	return it == owned_pa_.end() ? 0 : it->second;
}

Loc Fuzzer::resolve(u32 hid, u64 va, int depth)
{
	Loc l;
	MHat* h = hat(hid);
	if (!h || depth > 1)
		return l;
	auto it = find_ext(*h, va);
	if (it == h->ext.end())
		return l;
	const Ext& e = it->second;
	if (e.kind == Kind::Link) {
		l = resolve(e.space, va, depth + 1);
		l.link = true;
		return l;
	}
	l.mapped = true;
	l.level = e.level;
	l.prot = e.prot;
	l.locked = e.locked;
	l.kind = e.kind;
	l.space = e.space;
	l.boff = e.boff + (va - it->first);
	const u64 leaf_va = va & ~(e.leaf() - 1);
	l.pa = leaf_pa(e, it->first, leaf_va) + (va - leaf_va);
	return l;
}

// The shadow bytes of the backing page of `l`, from its first byte.
u8* Fuzzer::backing(const Loc& l, bool write)
{
	const u64 page = l.boff / P;
	if (l.kind == Kind::User)
		return bufs_[l.space].shadow.data() + page * P;
	auto it = owned_data_.find(page);
	if (it != owned_data_.end())
		return it->second.data();
	if (!write)
		return zero_page_.data();
	return owned_data_.emplace(page, std::vector<u8>(P)).first->second.data();
}

// What WALK must report for [lo, hi) of a hat, before normalize().
std::vector<WEnt> Fuzzer::model_walk(u32 hid, u64 lo, u64 hi)
{
	std::vector<WEnt> out;
	MHat* h = hat(hid);
	if (!h)
		return out;
	for (ExtIt it : within(*h, lo, hi)) {
		const Ext& e = it->second;
		const u64 s = std::max(lo, it->first), t = std::min(hi, it->first + e.len);
		if (e.kind == Kind::Link) {
			out.push_back({s, t - s, 0, R, HTABLE_WALK_SHARED, 0});
			continue;
		}
		for (u64 a = s; a < t;) {
			const u64 leaf_va = a & ~(e.leaf() - 1);
			const u64 next = std::min(t, leaf_va + e.leaf());
			out.push_back({a, next - a, leaf_pa(e, it->first, leaf_va) + (a - leaf_va), e.prot,
				       e.locked ? HTABLE_WALK_LOCKED : 0u, e.leaf()});
			a = next;
		}
	}
	return out;
}

// pinned_pages counts one pin per mapped 4 KiB page of user memory.
u64 Fuzzer::model_pins()
{
	u64 n = 0;
	for (auto& [id, h] : hats_)
		for (auto& [va, e] : h.ext)
			if (e.kind == Kind::User)
				n += e.len / P;
	return n;
}

size_t Fuzzer::nr_extents() const
{
	size_t n = 0;
	for (const auto& [id, h] : hats_)
		n += h.ext.size();
	return n;
}

// ---------------------------------------------------------------- argument checks

int Fuzzer::map_args(const htable_map& m)
{
	const u64 size = m.page_size;
	if (m.flags & ~HTABLE_MAP_OWNED)
		return EINVAL;
	if (size != HTABLE_PAGE_AUTO && size != HTABLE_PAGE_4K && size != HTABLE_PAGE_2M && size != HTABLE_PAGE_1G)
		return EOPNOTSUPP;
	if (size != HTABLE_PAGE_AUTO && !(ver_.page_sizes & size))
		return EOPNOTSUPP;
	if ((m.va | m.uaddr | m.length) & ((size ? size : P) - 1))
		return EINVAL;
	if (!range_ok(m.va, m.length))
		return EINVAL;
	if ((m.flags & HTABLE_MAP_OWNED) ? m.uaddr != 0 : m.uaddr + m.length < m.uaddr)
		return EINVAL;
	if (!(m.prot & R) || (m.prot & ~HTABLE_PROT_ALL))
		return EINVAL;
	if (m.length / P > 0x7fffffff)
		return EINVAL;
	return hat(m.hat_id) ? 0 : ENOENT;
}

// UNMAP, PROTECT and LOCK: a page-aligned valid range of a hat of ours.
int Fuzzer::range_args(u32 hat_id, u64 va, u64 len)
{
	if (((va | len) & (P - 1)) || !range_ok(va, len))
		return EINVAL;
	return hat(hat_id) ? 0 : ENOENT;
}

int Fuzzer::job_args(const htable_job& j)
{
	if (j.flags || j.op < HTABLE_JOB_FILL || j.op > HTABLE_JOB_COPY)
		return EINVAL;
	if (((j.va | j.length) & 7) || !range_ok(j.va, j.length))
		return EINVAL;
	if (j.op == HTABLE_JOB_COPY ? (j.dst_va & 7) || !range_ok(j.dst_va, j.length) : j.dst_va != 0)
		return EINVAL;
	if (j.cpu_mask) {
		if (j.cpu != HTABLE_JOB_ANY_CPU || (nr_cpu_ids_ < 64 && (j.cpu_mask >> nr_cpu_ids_)))
			return EINVAL;
	} else if (j.cpu != HTABLE_JOB_ANY_CPU && j.cpu >= nr_cpu_ids_) {
		return EINVAL;
	}
	if (!hat(j.hat_id))
		return ENOENT;
	if (j.op == HTABLE_JOB_COPY && j.va < j.dst_va + j.length && j.dst_va < j.va + j.length)
		return EINVAL;
	if (j.op == HTABLE_JOB_CHECKSUM && __builtin_popcountll(j.cpu_mask) > 1)
		return EINVAL;
	return 0;
}

int Fuzzer::share_args(const htable_share& s)
{
	const u32 levels = ver_.paging_levels;
	if (s.__pad || s.level >= levels - 1 || s.dst_hat_id == s.src_hat_id)
		return EINVAL;
	if (!hat(s.dst_hat_id) || !hat(s.src_hat_id))
		return ENOENT;
	const u64 span = level_size(s.level + 1);
	if ((s.va & (span - 1)) || !range_ok(s.va, span))
		return EINVAL;
	return 0;
}

// ---------------------------------------------------------------- checks

// WALK of [lo, hi) against the model.  batch 0: a random number of entries
// per call, so that continuing with `next` is exercised too.
bool Fuzzer::check_walk(u32 hid, u64 lo, u64 hi, const char* why, u32 batch)
{
	if (failed_)
		return false;
	struct Timer {
		double& acc;
		std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
		~Timer() { acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
	} timer{secs_["(walk checks)"]};
	lo = lo & ~(P - 1);
	hi = std::min(hi, end_);
	if (lo >= hi)
		return true;
	if (!batch)
		batch = rng_.chance(20) ? u32(rng_.small(8)) : 4096;
	std::vector<htable_walk_entry> raw;
	if (int err = dev_.walk_all(hid, lo, hi, raw, batch)) {
		fail("%s: WALK of hat %u [0x%llx, 0x%llx) batch %u failed: %s", why, hid, lo, hi, batch,
		     ename(err).c_str());
		return false;
	}
	std::vector<WEnt> got, want = model_walk(hid, lo, hi);
	u64 prev_end = lo;
	for (const auto& r : raw) {
		WEnt e{r.va, r.length, r.pa, r.prot, r.flags, r.page_size};
		// Each entry on its own: in order, inside the range, one kind of leaf.
		const bool shared = r.flags & HTABLE_WALK_SHARED;
		bool sane = r.va >= prev_end && r.length && r.va + r.length <= hi && !(r.length % P) &&
			    !(r.flags & ~(HTABLE_WALK_LOCKED | HTABLE_WALK_SHARED));
		if (shared)
			sane = sane && !r.pa && !r.page_size && !(r.flags & HTABLE_WALK_LOCKED);
		else
			sane = sane && (r.page_size == P || r.page_size == k2M || r.page_size == k1G) &&
			       (r.pa & (r.page_size - 1)) == (r.va & (r.page_size - 1));
		if (!sane) {
			fail("%s: WALK of hat %u [0x%llx, 0x%llx) returned an impossible entry %s", why, hid,
			     lo, hi, went_str(e).c_str());
			return false;
		}
		prev_end = r.va + r.length;
		got.push_back(e);
	}
	normalize(got);
	normalize(want);
	for (size_t i = 0; i < std::max(got.size(), want.size()); i++) {
		if (i < got.size() && i < want.size() && got[i] == want[i])
			continue;
		fail("%s: WALK of hat %u [0x%llx, 0x%llx) differs at entry %zu (after merging runs)\n"
		     "expected: %s\ngot: %s",
		     why, hid, lo, hi, i, i < want.size() ? went_str(want[i]).c_str() : "nothing more",
		     i < got.size() ? went_str(got[i]).c_str() : "nothing more");
		return false;
	}
	return true;
}

bool Fuzzer::check_around(u32 hid, u64 va, u64 end, const char* why)
{
	// A WALK costs as much as many a cheap op: one change in three is
	// walked at once; the full check every kFullCheckEvery ops sees the
	// rest.
	if (!rng_.chance(34))
		return !failed_;
	const u64 lo = va >= k2M ? (va & ~(k2M - 1)) - k2M : 0;
	const u64 hi = end + 2 * k2M < end ? end_ : (end & ~(k2M - 1)) + 2 * k2M;
	return check_walk(hid, lo, hi, why);
}

// After an injected ENOMEM: every hat involved exactly as before, nothing
// left pinned.
bool Fuzzer::check_after_enomem(std::initializer_list<u32> ids)
{
	for (u32 id : ids)
		if (hat(id) && !check_walk(id, 0, end_, "after ENOMEM", 4096))
			return false;
	return check_counters("after ENOMEM");
}

// Our buffers hold exactly what the model says: catches writes that went
// anywhere else.
bool Fuzzer::check_buffers(const char* why)
{
	for (size_t b = 0; b < bufs_.size(); b++) {
		const UserBuf& ub = bufs_[b];
		if (!std::memcmp(ub.base(), ub.shadow.data(), ub.size))
			continue;
		u64 i = 0;
		while (ub.base()[i] == ub.shadow[i])
			i++;
		fail("%s: buffer %s byte 0x%llx is 0x%02x, the model says 0x%02x", why, ub.name, i,
		     ub.base()[i], ub.shadow[i]);
		return false;
	}
	return true;
}

// Every owned page read back through a CHECKSUM job.
bool Fuzzer::check_owned_contents(const char* why)
{
	for (auto& [id, h] : hats_) {
		for (auto& [va, e] : h.ext) {
			if (e.kind != Kind::Owned)
				continue;
			for (u64 off = 0; off < e.len; off += 64 * P) {
				const u64 len = std::min<u64>(64 * P, e.len - off);
				htable_job j{};
				if (int err = dev_.job(id, HTABLE_JOB_CHECKSUM, va + off, len, 0, HTABLE_JOB_ANY_CPU, j)) {
					fail("%s: CHECKSUM of owned [0x%llx +0x%llx) in hat %u: %s", why, va + off, len,
					     id, ename(err).c_str());
					return false;
				}
				JobSim s = simulate(id, HTABLE_JOB_CHECKSUM, va + off, len, 0, 1, 0, false);
				if (j.result != s.result || j.bytes != len || j.faults) {
					fail("%s: owned memory [0x%llx +0x%llx) of hat %u: checksum 0x%llx bytes %llu "
					     "faults %llu, the model 0x%llx bytes %llu faults 0",
					     why, va + off, len, id, j.result, j.bytes, j.faults, s.result, len);
					return false;
				}
			}
		}
	}
	return true;
}

// hats_live and pinned_pages are exactly the model's (over the start).
bool Fuzzer::check_counters(const char* why)
{
	auto c = counters();
	if (!c) {
		fail("%s: cannot read %s", why, kStatsPath);
		return false;
	}
	const u64 hats = (*c)["hats_live"] - base_["hats_live"];
	const u64 pins = (*c)["pinned_pages"] - base_["pinned_pages"];
	// --concurrent counts our hats by their debugfs directories.
	u64 want_hats = hats_.size();
	if (cfg_.concurrent)
		for (const auto& [id, h] : hats_)
			want_hats -= h.no_debugfs;
	if (hats != want_hats || pins != model_pins()) {
		fail("%s: hats_live +%lld pinned_pages +%lld, the model has %llu hats and %llu pins", why,
		     (long long)hats, (long long)pins, want_hats, model_pins());
		return false;
	}
	return true;
}

bool Fuzzer::full_check(const char* why)
{
	for (auto& [id, h] : hats_)
		if (!check_walk(id, 0, end_, why))
			return false;
	return check_buffers(why) && check_counters(why);
}

// ---------------------------------------------------------------- choosing arguments

u32 Fuzzer::pick_hat_id()
{
	auto it = hats_.begin();
	std::advance(it, long(rng_.below(hats_.size())));
	return it->first;
}

// An id no hat of ours has: 0, a small free one, or a large one.
u32 Fuzzer::bad_hat_id()
{
	u32 id = 0;
	switch (rng_.below(3)) {
	case 0: return 0;
	case 1:
		id = 1;
		while (hats_.count(id))
			id++;
		return id;
	default:
		do
			id = u32(rng_.next() >> 33) | 0x40000000u;
		while (hats_.count(id));
		return id;
	}
}

// An address aligned to `align` in one of three windows: a few GiB around
// 16 TiB (most ops), the bottom of the address space, and the top of the
// user half.  Within a window, a few slots only, so that ops collide.
u64 Fuzzer::slot_va(u64 align)
{
	static const u64 m_slots[] = {0, 1, 2, 3, 7, 255, 256, 510, 511};
	static const u64 p_slots[] = {0, 1, 2, 3, 4, 5, 8, 100, 255, 256, 510, 511};
	const u64 m = m_slots[rng_.below(std::size(m_slots))] * k2M;
	const u64 p = p_slots[rng_.below(std::size(p_slots))] * P;
	const unsigned w = unsigned(rng_.below(100));
	u64 va;
	if (w < 84)		// [16 TiB - 2 GiB, 16 TiB + 2 GiB): crosses a PML4 entry
		va = kDemoVa - 2 * k1G + rng_.below(4) * k1G + m + p;
	else if (w < 92)	// from VA 0
		va = (m % (8 * k2M)) + p;
	else			// the last 16 MiB below user_va_end
		va = end_ - 16 * 1024 * 1024 + (m % (8 * k2M)) + p;
	va &= ~(align - 1);
	return va;
}

// Often right next to, or inside, something the hat maps.
u64 Fuzzer::near_va(MHat& h, u64 align)
{
	if (!h.ext.empty() && rng_.chance(65)) {
		auto it = h.ext.begin();
		std::advance(it, long(rng_.below(h.ext.size())));
		u64 va;
		switch (rng_.below(4)) {
		case 0: va = it->first; break;
		case 1: va = it->first + it->second.len; break;
		case 2: va = it->first + rng_.below(it->second.len / P) * P; break;
		default: va = it->first - std::min<u64>(it->first, rng_.small(16) * P); break;
		}
		va &= ~(align - 1);
		if (va < end_)
			return va;
	}
	return slot_va(align);
}

u32 Fuzzer::pick_prot()
{
	switch (rng_.below(10)) {
	case 0: case 1: return R;
	case 2: return R | X;
	case 3: return R | W | X;
	default: return R | W;
	}
}

// A range of h's address space for UNMAP, PROTECT and LOCK: whole
// extents, pieces of one, spans of several, holes.
bool Fuzzer::random_range(MHat& h, u64& va, u64& len)
{
	static const u64 lens[] = {P, 2 * P, 5 * P, k2M - P, k2M, k2M + P, 3 * k2M, 64 * P};
	const unsigned c = unsigned(rng_.below(100));
	if (h.ext.empty() || c >= 85) {
		va = slot_va(P);
		len = lens[rng_.below(std::size(lens))];
		if (rng_.chance(5))
			len = k1G;
	} else {
		auto it = h.ext.begin();
		std::advance(it, long(rng_.below(h.ext.size())));
		const u64 eva = it->first, elen = it->second.len;
		if (c < 40) {		// the extent
			va = eva;
			len = elen;
		} else if (c < 65) {	// a piece of it
			const u64 a = rng_.below(elen / P), b = a + 1 + rng_.below(elen / P - a);
			va = eva + a * P;
			len = (b - a) * P;
		} else {		// from before it to past a later one
			va = eva - std::min<u64>(eva, rng_.below(4) * P);
			auto last = it;
			for (u64 k = rng_.below(4); k && std::next(last) != h.ext.end(); k--)
				last = std::next(last);
			len = last->first + last->second.len - va + rng_.below(4) * P;
		}
	}
	if (va >= end_)
		va = end_ - P;
	if (len > end_ - va)
		len = end_ - va;
	return len > 0;
}

// ---------------------------------------------------------------- setup

std::string Fuzzer::setup()
{
	if (int err = dev_.version(ver_))
		return "HTABLE_IOC_VERSION: " + errno_desc(err);
	end_ = ver_.user_va_end;
	std::string v;
	u64 x;
	if (!read_param("max_hats_per_fd", v) && parse_u64(v, x))
		max_hats_ = u32(std::min<u64>(x, ~0u));
	if (!read_param("max_tables_per_fd", v) && parse_u64(v, x))
		max_tables_ = x;
	auto possible = possible_cpus();
	nr_cpu_ids_ = possible.empty() ? ver_.nr_cpus : possible.back() + 1;
	auto online = online_cpus();
	for (u32 c : online)
		if (cpus_.size() < cfg_.cpus && c < 64)
			cpus_.push_back(c);
	if (cpus_.empty())
		return "no online CPU below 64";
	if (cpus_.size() < cfg_.cpus)
		std::printf("# --cpus %u: only %zu CPUs online, using them\n", cfg_.cpus, cpus_.size());

	// Two buffers, each with a PROT_NONE guard after it: 4 MiB of 4 KiB pages
	// (never physically adjacent, see Huge::Never), and 8 MiB that the
	// kernel may back with transparent huge pages.
	const std::pair<u64, Huge> kinds[] = {{4ull << 20, Huge::Never}, {8ull << 20, Huge::Want}};
	for (const auto& [size, huge] : kinds) {
		UserBuf b;
		b.name = huge == Huge::Never ? "4k" : "thp";
		b.mem = std::make_unique<Buffer>(size + k2M, 0, k2M, huge);
		b.size = size;
		if (::mprotect(b.base() + size, k2M, PROT_NONE))
			return std::string("mprotect of a guard: ") + std::strerror(errno);
		// Pattern-ish contents, so that a byte read from the wrong page shows.
		for (u64 i = 0; i < size; i++)
			b.base()[i] = u8(i * 131 + (i >> 12) * 7 + (huge == Huge::Want ? 0x55 : 0));
		b.shadow.assign(b.base(), b.base() + size);
		b.pfn.assign(size / P, 0);
		for (u64 c = 0; c < size / k2M; c++)
			b.thp.push_back(physically_contiguous(b.base() + c * k2M, k2M, nullptr));
		bufs_.push_back(std::move(b));
	}
	u64 thp = 0;
	for (bool t : bufs_[1].thp)
		thp += t;
	std::printf("# %u-level paging, user_va_end 0x%llx, features %s; job CPUs %s (nr_cpu_ids %u); "
		    "max_hats_per_fd %u; thp chunks %llu of %zu\n",
		    ver_.paging_levels, end_, feature_string(ver_.features).c_str(),
		    format_cpu_list(cpus_).c_str(), nr_cpu_ids_, max_hats_, thp, bufs_[1].thp.size());
	return "";
}

// ---------------------------------------------------------------- operations

void Fuzzer::step()
{
	if (hats_.empty())
		return op_create();
	// Over budget: shrink instead of growing.
	const bool full = nr_extents() > kMaxExtents || owned_bytes() > kMaxOwnedBytes;
	struct W {
		unsigned weight;
		void (Fuzzer::*fn)();
		const char* name;
	};
	const W ops[] = {
		// Hats come and go less often than the rest: a HAT_DESTROY waits for
		// debugfs readers, one of the slowest ioctls under TCG.
		{hats_.size() < 2 ? 80u : hats_.size() < kMaxHats ? 5u : 1u, &Fuzzer::op_create, "create"},
		{hats_.size() > 3 ? 4u : 1u, &Fuzzer::op_destroy, "destroy"},
		{full ? 20u : 150u, &Fuzzer::op_map_user, "map_user"},
		{full ? 5u : 50u, &Fuzzer::op_map_owned, "map_owned"},
		{full ? 400u : 115u, &Fuzzer::op_unmap, "unmap"},
		{50, &Fuzzer::op_protect, "protect"},
		{45, &Fuzzer::op_lock, "lock"},
		{40, &Fuzzer::op_share, "share"},
		{100, &Fuzzer::op_job, "job"},
		{150, &Fuzzer::op_translate, "translate"},
		{50, &Fuzzer::op_walk, "walk"},
		{10, &Fuzzer::op_reap, "reap"},
		{20, &Fuzzer::op_abi, "abi"},
	};
	unsigned total = 0;
	for (const W& w : ops)
		total += w.weight;
	unsigned r = unsigned(rng_.below(total));
	for (const W& w : ops) {
		if (r < w.weight) {
			const auto t0 = std::chrono::steady_clock::now();
			(this->*w.fn)();
			secs_[w.name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
			return;
		}
		r -= w.weight;
	}
}

// ---- HAT_CREATE

void Fuzzer::op_create()
{
	htable_hat_create c{};
	c.flags = rng_.chance(50) ? HTABLE_HAT_COPIED_TOP : 0;
	Want w;
	const unsigned bad = rng_.chance(6) ? 1 + unsigned(rng_.below(2)) : 0;
	if (bad == 1)
		c.flags |= rng_.chance(50) ? 2u : 0x80000000u;
	if (bad == 2)
		c.__pad = 1 + u32(rng_.below(0xffff));
	if (bad)
		w.err = EINVAL;
	else if (hats_.size() >= max_hats_)
		w.err = ENOSPC;	// checked before anything is allocated
	else
		w.late = true;
	note("create flags 0x%x pad %u", c.flags, c.__pad);
	counts_["create"]++;
	const int got = mut(HTABLE_IOC_HAT_CREATE, &c);
	if (judge(got, w, true) != 1 || got)
		return;
	if (!c.hat_id || hats_.count(c.hat_id) || c.levels != ver_.paging_levels)
		return fail("HAT_CREATE gave id %u levels %u (live ids: %zu, levels %u)", c.hat_id, c.levels,
			    hats_.size(), ver_.paging_levels);
	MHat& h = hats_[c.hat_id];
	h.id = c.hat_id;
	h.copied = c.flags & HTABLE_HAT_COPIED_TOP;
	desc_ += strfmt(" = hat %u", h.id);
	// One debugfs directory per live hat, but only as far as memory allows
	// (module/debugfs.c: best effort).
	if (find_hat_gids(getpid(), h.id).empty()) {
		if (!inject_.active())
			return fail("no debugfs hats/<gid>/info names the new hat %u of pid %d", h.id, getpid());
		h.no_debugfs = true;
	}
	check_walk(h.id, 0, end_, "new hat", 4096);
}

// ---- HAT_DESTROY

void Fuzzer::op_destroy()
{
	htable_hat_destroy d{};
	d.hat_id = pick_hat_id();
	Want w;
	const unsigned bad = rng_.chance(8) ? 1 + unsigned(rng_.below(2)) : 0;
	if (bad == 1)
		d.__pad = 1, w.err = EINVAL;
	if (bad == 2)
		d.hat_id = bad_hat_id(), w.err = ENOENT;
	note("destroy hat %u pad %u", d.hat_id, d.__pad);
	focus(0, {d.hat_id});
	counts_["destroy"]++;
	const int got = mut(HTABLE_IOC_HAT_DESTROY, &d);
	if (!judge(got, w, true) || got)
		return;
	// Other hats' links to its tables are revoked (holes now); its own
	// links go too.
	std::vector<u32> touched;
	for (auto& [id, o] : hats_) {
		if (id == d.hat_id)
			continue;
		for (auto it = o.ext.begin(); it != o.ext.end();) {
			if (it->second.kind == Kind::Link && it->second.space == d.hat_id) {
				it = o.ext.erase(it);
				touched.push_back(id);
			} else {
				++it;
			}
		}
	}
	MHat& h = hats_.at(d.hat_id);
	drop_range(h, 0, end_);
	hats_.erase(d.hat_id);
	for (u32 id : touched)
		if (!check_walk(id, 0, end_, "revoked links", 4096))
			return;
}

// ---- MAP of user memory

// One run of equal leaves of a user MAP: one core call, one extent.
struct Run {
	u64 va, len, leaf, uoff;
};

void Fuzzer::op_map_user()
{
	MHat& h = hats_.at(pick_hat_id());
	const bool thp_buf = rng_.chance(45);
	UserBuf& b = bufs_[thp_buf ? 1 : 0];
	htable_map m{};
	m.hat_id = h.id;
	m.prot = pick_prot();
	const unsigned ps = unsigned(rng_.below(100));
	// 2 MiB is 512 pages to pin and unpin one by one: the dearest MAP.
	m.page_size = ps < 45 ? HTABLE_PAGE_AUTO : ps < 94 ? HTABLE_PAGE_4K : HTABLE_PAGE_2M;
	u64 uoff;
	// Large leaves: a 2 MiB aligned VA over 2 MiB aligned chunks of the
	// THP buffer (whether they are huge pages decides).
	const bool large = m.page_size == HTABLE_PAGE_2M || (m.page_size == HTABLE_PAGE_AUTO && thp_buf &&
							      rng_.chance(25));
	if (large) {
		const u64 chunks = b.size / k2M;
		const u64 c = rng_.below(chunks);
		uoff = c * k2M;
		m.length = std::min<u64>(chunks - c, rng_.chance(75) ? 1 : 2) * k2M;
		m.va = near_va(h, k2M);
		// AUTO: 4 KiB leaves before and after the large ones, so that a
		// MAP is several runs, and a failure in a later one undoes the
		// earlier ones.
		if (m.page_size == HTABLE_PAGE_AUTO && rng_.chance(50))
			m.length = std::min<u64>(b.size - uoff, m.length + rng_.small(16) * P);
		if (m.page_size == HTABLE_PAGE_AUTO && uoff && m.va >= k2M && rng_.chance(50)) {
			const u64 before = rng_.small(16) * P;
			uoff -= before;
			m.va -= before;
			m.length += before;
		}
	} else {
		// Now and then more than 512 pages: the module's page arrays are
		// then more than a page, which kvmalloc() may vmalloc().
		const u64 pages = rng_.chance(95)   ? rng_.small(16)
				  : rng_.chance(80) ? rng_.small(128)
						    : 513 + rng_.below(512);
		uoff = rng_.below(b.size / P - std::min<u64>(pages, b.size / P - 1)) * P;
		m.length = std::min<u64>(pages * P, b.size - uoff);
		m.va = near_va(h, P);
	}
	if (m.va + m.length > end_)
		m.va = (end_ - m.length) & ~(k2M - 1);
	m.uaddr = reinterpret_cast<uintptr_t>(b.base() + uoff);

	// Now and then one thing wrong.
	const unsigned bad = rng_.chance(12) ? 1 + unsigned(rng_.below(15)) : 0;
	switch (bad) {
	case 1: m.flags = rng_.chance(50) ? 2 : 1ull << 63; break;
	case 2: m.page_size = rng_.pick(std::vector<u64>{8192, 3, 1ull << 39, 1ull << 20, ~0ull}); break;
	case 3: m.page_size = HTABLE_PAGE_1G; break;	// EOPNOTSUPP, or EINVAL: nothing here is 1 GiB
	case 4: m.va += m.page_size == HTABLE_PAGE_2M ? P : 0x800; break;
	case 5: m.uaddr += m.page_size == HTABLE_PAGE_2M ? P : 8; break;
	case 6: m.length = 0; break;
	case 7: m.length += m.page_size == HTABLE_PAGE_2M ? P : 0x200; break;
	case 8:	// the last page is mappable, the one after it not
		m.page_size = HTABLE_PAGE_4K;
		m.va = end_ - P * rng_.small(4);
		m.length = rng_.small(8) * P;
		break;
	case 9: m.va = ~0ull - P + 1; m.length = 2 * P; m.page_size = HTABLE_PAGE_4K; break;
	case 10: m.va = rng_.chance(50) ? end_ + P : 1ull << 63; break;	// past the end, non-canonical
	case 11: m.uaddr = ~0ull - P + 1; m.length = 2 * P; m.page_size = HTABLE_PAGE_4K; break;
	case 12: m.prot = rng_.pick(std::vector<u32>{0, W, W | X, R | 8, R | 0x80000000u}); break;
	case 13: m.hat_id = bad_hat_id(); break;
	case 14: {	// reaching into the guard after the buffer
		const u64 back = rng_.chance(70) ? rng_.small(4) : 0;
		m.page_size = HTABLE_PAGE_4K;
		m.uaddr = reinterpret_cast<uintptr_t>(b.base() + b.size - back * P);
		m.length = (back + rng_.small(8)) * P;
		m.va = near_va(h, P);
		if (m.va + m.length > end_)
			m.va = end_ - m.length;
		break;
	}
	case 15:	// so long that even the array of its pages is refused
		m.page_size = HTABLE_PAGE_4K;
		m.length = (4ull << 40) + rng_.below(64) * P;
		m.va = kDemoVa - 2 * k1G - m.length;
		break;
	}
	focus(m.va, {m.hat_id});
	note("map hat %u va 0x%llx uaddr %s+0x%llx len 0x%llx page_size 0x%llx prot %s flags 0x%llx", m.hat_id, m.va,
	     b.name, (unsigned long long)(m.uaddr - reinterpret_cast<uintptr_t>(b.base())), m.length, m.page_size,
	     prot_string(m.prot).c_str(), m.flags);
	counts_[bad ? "map_user_bad" : "map_user"]++;

	Want w{map_args(m)};
	std::vector<Run> runs;
	const u8* ua = reinterpret_cast<const u8*>(uintptr_t(m.uaddr));
	if (!w.err && m.length >= (1ull << 40)) {
		w.err = ENOMEM;	// no array of 8 bytes a page for it: before pinning
	} else if (!w.err && (ua < b.base() || ua + m.length > b.base() + b.size)) {
		w = {EFAULT, true};	// not all ours: pinning stops at the guard
	} else if (!w.err) {
		w.late = true;
		// The physical pages now (pinning keeps them): where they are
		// contiguous and aligned, large leaves fit.
		uoff = ua - b.base();
		const u64 first = uoff / P, n = m.length / P;
		std::string why;
		std::vector<u64> pfns;
		if (!pagemap_pfns(b.base() + uoff, n, pfns, &why, pagemap_fd_))
			return fail("pagemap of buffer %s pages %llu+%llu: %s", b.name, first, n, why.c_str());
		std::copy(pfns.begin(), pfns.end(), b.pfn.begin() + long(first));
		auto contiguous = [&](u64 i, u64 pages) {
			const u64 p0 = b.pfn[first + i];
			if (p0 & (pages - 1))
				return false;
			for (u64 k = 1; k < pages; k++)
				if (b.pfn[first + i + k] != p0 + k)
					return false;
			return true;
		};
		// The runs dev.c:map_pinned() cuts the range into, and where it
		// stops: a run that cannot have the explicit leaf size (EINVAL),
		// or that the hat's record or a shared-out table is in the way of
		// (EEXIST).
		const bool gb = ver_.page_sizes & k1G;
		for (u64 i = 0; i < n && !w.err;) {
			u64 leaf = P;
			for (u64 sz : {k1G, k2M}) {
				const u64 np = sz / P;
				if (m.page_size != HTABLE_PAGE_AUTO && m.page_size != sz)
					continue;
				if (sz == k1G && !gb)
					continue;
				if (!((m.va + i * P) & (sz - 1)) && i + np <= n && contiguous(i, np)) {
					leaf = sz;
					break;
				}
			}
			if (m.page_size != HTABLE_PAGE_AUTO && leaf != m.page_size) {
				w.err = EINVAL;
				break;
			}
			const u64 np = leaf / P;
			u64 run = 0;
			for (;;) {
				const u64 j = i + run * np;
				if (j >= n)
					break;
				if (leaf != P && (j + np > n || !contiguous(j, np)))
					break;
				if (leaf == P && m.page_size == HTABLE_PAGE_AUTO && run && !((m.va + j * P) & (k2M - 1)))
					break;
				run++;
			}
			const Run r{m.va + i * P, run * leaf, leaf, uoff + i * P};
			const unsigned level = leaf == P ? 0 : leaf == k2M ? 1 : 2;
			if (overlaps(h, r.va, r.va + r.len) || (level && pinned_in(h, r.va, r.va + r.len, level)))
				w.err = EEXIST;
			runs.push_back(r);
			i += run * np;
		}
	}
	map_common(m, w, runs, Kind::User, thp_buf ? 1 : 0);
}

// The ioctl of a MAP, its judgement and the model's update.  `runs`: the
// extents a success creates (for owned memory, one, at `buf`'s offset in
// the owned space).
void Fuzzer::map_common(const htable_map& m, Want w, const std::vector<Run>& runs, Kind kind, u32 buf)
{
	MHat* h = hat(m.hat_id);
	// ENOSPC depends on how many tables the file's hats hold, which the
	// model does not follow: accepted when the limit is within reach.
	if (!w.err && w.alt < 0 && max_tables_ < (1ull << 16))
		w.alt = ENOSPC;
	htable_map arg = m;
	const int got = mut(HTABLE_IOC_MAP, &arg);
	if (got != w.err && kind == Kind::User && !runs.empty()) {
		std::string rs;
		for (const Run& r : runs)
			rs += strfmt(" [0x%llx +0x%llx leaf 0x%llx pfn 0x%llx]", r.va, r.len, r.leaf,
				  bufs_[buf].pfn[r.uoff / P]);
		desc_ += "; runs the model expects:" + rs;
	}
	const int j = judge(got, w, true);
	if (!j || !h)
		return;
	if (got == ENOMEM)
		return (void)check_after_enomem({m.hat_id});
	if (got) {
		check_around(m.hat_id, m.va, m.va + std::min(m.length, 64 * k2M), "failed MAP");
		return;
	}
	for (const Run& r : runs) {
		Ext e;
		e.len = r.len;
		e.kind = kind;
		e.level = u8(r.leaf == P ? 0 : r.leaf == k2M ? 1 : 2);
		e.prot = m.prot;
		e.space = buf;
		e.boff = r.uoff;
		h->ext[r.va] = e;
	}
	if (kind == Kind::Owned) {
		// Learn where the module put the pages: one WALK entry per leaf,
		// each a page no other owned leaf has.
		const Run& r = runs.at(0);
		std::vector<htable_walk_entry> ents;
		if (int err = dev_.walk_all(m.hat_id, r.va, r.va + r.len, ents, 4096))
			return fail("WALK of the new owned range: %s", ename(err).c_str());
		if (ents.size() != r.len / r.leaf)
			return fail("WALK of new owned memory [0x%llx +0x%llx) in %llu leaves of 0x%llx: %zu entries",
				    r.va, r.len, r.len / r.leaf, r.leaf, ents.size());
		for (size_t i = 0; i < ents.size(); i++) {
			const auto& e = ents[i];
			if (e.va != r.va + i * r.leaf || e.length != r.leaf || e.page_size != r.leaf ||
			    (e.pa & (r.leaf - 1)) || e.prot != m.prot || e.flags)
				return fail("WALK of new owned memory: entry %zu is %s", i,
					    went_str({e.va, e.length, e.pa, e.prot, e.flags, e.page_size}).c_str());
			for (u64 k = 0; k < r.leaf; k += P) {
				const u64 page = (r.uoff + i * r.leaf + k) / P;
				if (owned_by_pa_.count(e.pa + k))
					return fail("owned page at pa 0x%llx handed out twice (va 0x%llx)", e.pa + k,
						    e.va + k);
				owned_pa_[page] = e.pa + k;
				owned_by_pa_[e.pa + k] = page;
			}
		}
	}
	check_around(m.hat_id, m.va, m.va + m.length, "MAP");
}

// ---- MAP of module-owned memory

void Fuzzer::op_map_owned()
{
	MHat& h = hats_.at(pick_hat_id());
	htable_map m{};
	m.hat_id = h.id;
	m.prot = pick_prot();
	m.flags = HTABLE_MAP_OWNED;
	const unsigned ps = unsigned(rng_.below(100));
	m.page_size = ps < 50 ? HTABLE_PAGE_AUTO : ps < 95 ? HTABLE_PAGE_4K : HTABLE_PAGE_2M;
	// 2 MiB of owned memory costs the module 512 pages to zero.
	const bool big = owned_bytes() + 4 * k2M < kMaxOwnedBytes;
	if (m.page_size == HTABLE_PAGE_2M && !big)
		m.page_size = HTABLE_PAGE_4K;
	if (m.page_size == HTABLE_PAGE_2M || (m.page_size == HTABLE_PAGE_AUTO && big && rng_.chance(5))) {
		m.va = near_va(h, k2M);
		m.length = rng_.chance(85) ? k2M : 2 * k2M;
	} else {
		m.va = near_va(h, P);
		m.length = rng_.small(16) * P;
	}
	if (m.va + m.length > end_)
		m.va = (end_ - m.length) & ~(k2M - 1);
	const unsigned bad = rng_.chance(10) ? 1 + unsigned(rng_.below(9)) : 0;
	switch (bad) {
	case 1: m.uaddr = reinterpret_cast<uintptr_t>(bufs_[0].base()); break;
	case 2: m.flags |= 1ull << (1 + rng_.below(63)); break;
	case 3:	// 1 GiB: aligned, it passes every check of dev.c but the last
		m.page_size = HTABLE_PAGE_1G;
		m.va = (kDemoVa - 2 * k1G) + rng_.below(4) * k1G;
		m.length = k1G;
		break;
	case 4: m.prot = rng_.chance(50) ? W : R | 0x10; break;
	case 5: m.va += m.page_size == HTABLE_PAGE_2M ? P : 0x100; break;
	case 6: m.length = 0; break;
	case 7: m.hat_id = bad_hat_id(); break;
	case 8: m.va = end_ - P; m.length = 2 * P; m.page_size = HTABLE_PAGE_4K; break;
	case 9: m.page_size = 1ull << 16; break;
	}
	const u64 leaf = m.page_size != HTABLE_PAGE_AUTO ? m.page_size
			 : !((m.va | m.length) & (k2M - 1)) ? k2M : P;
	focus(m.va, {m.hat_id});
	note("map owned hat %u va 0x%llx len 0x%llx page_size 0x%llx (leaf 0x%llx) prot %s flags 0x%llx uaddr 0x%llx",
	     m.hat_id, m.va, m.length, m.page_size, leaf, prot_string(m.prot).c_str(), m.flags, m.uaddr);
	counts_[bad ? "map_owned_bad" : "map_owned"]++;
	std::vector<Run> runs;
	Want w{map_args(m)};
	if (!w.err && leaf == k1G) {
		w = {EOPNOTSUPP, true};	// no 1 GiB allocations for modules
	} else if (!w.err) {
		const unsigned level = leaf == P ? 0 : 1;
		w = {overlaps(h, m.va, m.va + m.length) || (level && pinned_in(h, m.va, m.va + m.length, level))
			     ? EEXIST : 0,
		     true};
		// An order-9 allocation may fail in a fragmented guest without
		// any injection.
		if (leaf == k2M && !w.err)
			w.alt = ENOMEM;
		owned_next_ = (owned_next_ + leaf - 1) & ~(leaf - 1);
		runs.push_back({m.va, m.length, leaf, owned_next_});
		owned_next_ += m.length;
	}
	map_common(m, w, runs, Kind::Owned, 0);
}

// ---- UNMAP

void Fuzzer::op_unmap()
{
	MHat& h = hats_.at(pick_hat_id());
	htable_unmap u{};
	u.hat_id = h.id;
	if (!random_range(h, u.va, u.length))
		return;
	if (rng_.chance(2)) {	// everything in the main window, or everything
		u.va = rng_.chance(70) ? kDemoVa - 2 * k1G : 0;
		u.length = u.va ? 4 * k1G : end_;
	}
	const unsigned bad = rng_.chance(7) ? 1 + unsigned(rng_.below(7)) : 0;
	switch (bad) {
	case 1: u.__pad = 1; break;
	case 2: u.va |= 0x800; break;
	case 3: u.length = 0; break;
	case 4: u.length |= 0x10; break;
	case 5: u.va = end_ - P; u.length = 2 * P; break;
	case 6: u.va = ~0ull - P + 1; u.length = 2 * P; break;
	case 7: u.hat_id = bad_hat_id(); break;
	}
	const u64 end = u.va + u.length;
	Want w{u.__pad ? EINVAL : range_args(u.hat_id, u.va, u.length)};
	if (!w.err)
		w = {check_ends(h, u.va, end, true), true};
	note("unmap hat %u va 0x%llx len 0x%llx pad %u", u.hat_id, u.va, u.length, u.__pad);
	focus(u.va, {u.hat_id});
	counts_[bad ? "unmap_bad" : "unmap"]++;
	const int got = mut(HTABLE_IOC_UNMAP, &u);
	if (!judge(got, w, true))
		return;
	if (got == ENOMEM)
		return (void)check_after_enomem({h.id});
	if (!got) {
		cut_ends(h, u.va, end);
		drop_range(h, u.va, end);
	}
	if (got != EINVAL && got != ENOENT)
		check_around(h.id, u.va, std::min(end, u.va + 64 * k2M), got ? "refused UNMAP" : "UNMAP");
}

// ---- PROTECT

void Fuzzer::op_protect()
{
	MHat& h = hats_.at(pick_hat_id());
	htable_protect p{};
	p.hat_id = h.id;
	p.prot = pick_prot();
	if (!random_range(h, p.va, p.length))
		return;
	Want w;
	const unsigned bad = rng_.chance(8) ? 1 + unsigned(rng_.below(5)) : 0;
	switch (bad) {
	case 1: p.prot = rng_.pick(std::vector<u32>{0, W, X, W | X, R | 0x100}); break;
	case 2: p.va |= 0x10; break;
	case 3: p.length = 0; break;
	case 4: p.va = end_ - P; p.length = 2 * P; break;
	case 5: p.hat_id = bad_hat_id(); break;
	}
	const u64 end = p.va + p.length;
	w.err = !(p.prot & R) || (p.prot & ~HTABLE_PROT_ALL) ? EINVAL : range_args(p.hat_id, p.va, p.length);
	if (!w.err) {
		// The range may hold no range shared into the hat, whole or not.
		for (ExtIt it : within(h, p.va, end))
			if (it->second.kind == Kind::Link)
				w.err = EINVAL;
		if (!w.err)
			w.err = check_ends(h, p.va, end, true);
		w.late = true;
	}
	note("protect hat %u va 0x%llx len 0x%llx prot %s", p.hat_id, p.va, p.length, prot_string(p.prot).c_str());
	focus(p.va, {p.hat_id});
	counts_[bad ? "protect_bad" : "protect"]++;
	const int got = mut(HTABLE_IOC_PROTECT, &p);
	if (!judge(got, w, true))
		return;
	if (got == ENOMEM)
		return (void)check_after_enomem({h.id});
	if (!got) {
		cut_ends(h, p.va, end);
		for (auto it = h.ext.lower_bound(p.va); it != h.ext.end() && it->first < end; ++it)
			it->second.prot = p.prot;
	}
	if (!bad && got != ENOENT)
		check_around(h.id, p.va, std::min(end, p.va + 64 * k2M), got ? "refused PROTECT" : "PROTECT");
}

// ---- LOCK

void Fuzzer::op_lock()
{
	MHat& h = hats_.at(pick_hat_id());
	htable_lock l{};
	l.hat_id = h.id;
	l.lock = rng_.chance(65) ? 1 : 0;
	if (!random_range(h, l.va, l.length))
		return;
	u64 end = l.va + l.length, leaves = 0;
	for (ExtIt it : within(h, l.va, end))
		if (it->second.kind != Kind::Link)
			leaves += (std::min(end, it->first + it->second.len) - std::max(l.va, it->first)) /
				  it->second.leaf() + 1;
	if (l.lock && leaves > kMaxShareLeaves)
		return op_translate();	// too much to make resident for a TCG guest
	Want w;
	const unsigned bad = rng_.chance(8) ? 1 + unsigned(rng_.below(5)) : 0;
	switch (bad) {
	case 1: l.lock = rng_.chance(50) ? 2 : 0xffffffffu; break;
	case 2: l.length |= 0x8; break;
	case 3: l.length = 0; break;
	case 4: l.va = ~0ull - P + 1; l.length = 2 * P; break;
	case 5: l.hat_id = bad_hat_id(); break;
	}
	end = l.va + l.length;
	w.err = l.lock > 1 ? EINVAL : range_args(l.hat_id, l.va, l.length);
	if (!w.err)
		w = {check_ends(h, l.va, end, false), true};
	focus(l.va, {l.hat_id});
	note("%s hat %u va 0x%llx len 0x%llx (lock=%u)", l.lock == 1 ? "lock" : "unlock", l.hat_id, l.va, l.length,
	     l.lock);
	counts_[bad ? "lock_bad" : l.lock ? "lock" : "unlock"]++;
	const int got = mut(HTABLE_IOC_LOCK, &l);
	if (!judge(got, w, true))
		return;
	if (got == ENOMEM) {
		// A lock splits its ends before it makes leaves resident; an
		// unlock fails before anything.
		if (l.lock)
			for (u64 p : {l.va, end})
				if (auto it = find_ext(h, p); it != h.ext.end() && it->first != p)
					h.maybe_split.insert(p);
		return (void)check_after_enomem({h.id});
	}
	if (!got) {
		split_at(h, l.va);
		split_at(h, end);
		for (auto it = h.ext.lower_bound(l.va); it != h.ext.end() && it->first < end; ++it)
			if (it->second.kind != Kind::Link)
				it->second.locked = l.lock;
	}
	if (!bad)
		check_around(h.id, l.va, std::min(end, l.va + 64 * k2M), got ? "refused LOCK" : "LOCK");
}

// ---- SHARE

void Fuzzer::op_share()
{
	if (hats_.size() < 2)
		return op_create();
	htable_share s{};
	s.dst_hat_id = pick_hat_id();
	do
		s.src_hat_id = pick_hat_id();
	while (s.src_hat_id == s.dst_hat_id);
	MHat& dst = hats_.at(s.dst_hat_id);
	MHat& src = hats_.at(s.src_hat_id);
	const u32 levels = ver_.paging_levels;
	const unsigned lr = unsigned(rng_.below(100));
	s.level = lr < 68 ? 0 : lr < 93 ? 1 : lr < 98 || levels == 4 ? 2 : 3;
	const u64 span = level_size(s.level + 1);
	s.va = (rng_.chance(75) ? near_va(src, P) : slot_va(P)) & ~(span - 1);
	const unsigned bad = rng_.chance(8) ? 1 + unsigned(rng_.below(8)) : 0;
	switch (bad) {
	case 1: s.src_hat_id = s.dst_hat_id; break;
	case 2: s.level = rng_.chance(50) ? levels - 1 : 0xffffffffu; break;
	case 3: s.va += P; break;
	case 4: s.__pad = 1; break;
	case 5: s.dst_hat_id = bad_hat_id(); break;
	case 6: s.src_hat_id = bad_hat_id(); break;
	case 7: s.va = (end_ - 1) & ~(span - 1); break;	// the span reaches past user_va_end
	case 8:	// two things wrong: the field is checked before the hats (docs/ABI.md)
		s.level = 0xffffffffu;
		s.dst_hat_id = bad_hat_id();
		break;
	}
	note("share dst %u src %u va 0x%llx level %u pad %u", s.dst_hat_id, s.src_hat_id, s.va, s.level, s.__pad);
	focus(s.va, {s.dst_hat_id, s.src_hat_id});
	counts_[bad ? "share_bad" : "share"]++;
	Want w{share_args(s)};
	std::vector<u64> soft;	// crossings a failed LOCK may have split away
	if (!w.err) {
		const u64 end = s.va + span;
		u64 leaves = 0;
		bool hard = false, t_exists = pinned_in(src, s.va, end, s.level + 1);
		for (ExtIt it : within(src, s.va, end)) {
			const Ext& e = it->second;
			if (e.kind == Kind::Link) {
				hard = true;
				continue;
			}
			for (u64 p : {s.va, end}) {
				if (it->first < p && it->first + e.len > p) {
					if (src.maybe_split.count(p))
						soft.push_back(p);
					else
						hard = true;
				}
			}
			if (e.level <= s.level)
				t_exists = true;
			leaves += (std::min(end, it->first + e.len) - std::max(s.va, it->first)) / e.leaf() + 1;
		}
		if (leaves > kMaxShareLeaves)
			return op_translate();
		w.late = true;
		if (hard)
			w.err = EINVAL;
		else if (!t_exists)
			w.err = ENOENT;
		else if (overlaps(dst, s.va, end) || pinned_in(dst, s.va, end, s.level + 1))
			w.err = EEXIST;
		else if (pinned_in(dst, s.va, s.va + 1, 99, s.level + 1))
			w.err = EINVAL;	// a link into a table dst shares out itself, or below one
		if (!hard && !soft.empty())
			w.alt = EINVAL;
		// A steal while src's leaves are made resident (a refill failed)
		// can take the very table to share.
		if (!w.err && inject_.active() && w.alt < 0)
			w.alt = ENOENT;
	}
	const int got = mut(HTABLE_IOC_SHARE, &s);
	if (!judge(got, w, true))
		return;
	if (got == ENOMEM)
		return (void)check_after_enomem({dst.id, src.id});
	if (!soft.empty() && (got == EINVAL || got == w.err)) {
		// The core's answer tells whether the LOCK split the record there.
		for (u64 p : soft) {
			if (got != EINVAL)
				split_at(src, p);
			src.maybe_split.erase(p);
		}
	}
	if (!got) {
		Ext e;
		e.len = span;
		e.kind = Kind::Link;
		e.level = u8(s.level);
		e.prot = R;
		e.space = src.id;
		dst.ext[s.va] = e;
		src.pinned[{s.va, s.level}]++;
	}
	if (!bad) {
		const u64 hi = s.va + std::min(span, 64 * k2M);
		if (check_around(dst.id, s.va, hi, "SHARE (dst)"))
			check_around(src.id, s.va, hi, "SHARE (src)");
	}
}

// ---- JOB

// The job as docs/ABI.md has it: per slice, in address order, pieces that
// are the slice's part of a 4 KiB page, each touched whole or a fault.
// With `apply`, the model's bytes change as the job's writes do.
JobSim Fuzzer::simulate(u32 hid, u32 op, u64 va, u64 len, u64 seed, u64 n, u64 dst, bool apply)
{
	struct Timer {
		double& acc;
		std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
		~Timer() { acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
	} timer{secs_["(job model)"]};
	JobSim s;
	u64 hash = kFnvBasis;
	std::map<u64, u64> written;	// VA page -> backing page key
	std::set<u64> read_keys;
	auto wrote = [&](const Loc& l, u64 a) {
		auto [it, fresh] = written.emplace(a / P, l.page_key());
		if (fresh)
			for (const auto& [page, key] : written)
				if (page != a / P && key == l.page_key())
					s.alias = true;
		if (l.kind == Kind::User)
			s.user_pages.insert({l.space, l.boff / P});
	};
	auto reload_ok = [&](const Loc& l, bool writes) {
		if (l.mapped && (l.link || !l.locked || (writes && !(l.prot & W))))
			s.reload_free = false;
	};
	const bool writes = op == HTABLE_JOB_FILL || op == HTABLE_JOB_RANDOM_RW;
	if (op == HTABLE_JOB_RANDOM_RW) {
		for_each_random_rw(len, seed, n, [&](u64 off) {
			const Loc l = resolve(hid, va + off);
			reload_ok(l, true);
			if (!l.writable()) {
				s.faults++;
				return;
			}
			wrote(l, va + off);
			if (apply) {
				u8* p = backing(l, true) + l.boff % P;
				for (u64 k = 0; k < 8; k++)
					p[k] = htable_pattern_byte(seed, off + k);
			}
			s.bytes += 16;
			s.result++;
		});
		return s;
	}
	for (u64 i = 0; i < n; i++) {
		const u64 a = job_slice(len, n, i), b = job_slice(len, n, i + 1);
		if (op == HTABLE_JOB_TOUCH) {
			for (u64 off = a; off < b;) {
				const u64 next = std::min(b, off + P - ((va + off) & (P - 1)));
				const Loc l = resolve(hid, va + off);
				reload_ok(l, false);
				if (l.mapped) {
					s.bytes += 8;
					s.result++;
				} else {
					s.faults++;
				}
				off = next;
			}
			continue;
		}
		for (u64 o = a, chunk; o < b; o += chunk) {
			chunk = std::min(b - o, P - ((va + o) & (P - 1)));
			const Loc l = resolve(hid, va + o);
			reload_ok(l, writes);
			if (op == HTABLE_JOB_COPY) {
				s.reload_free = false;
				// The destination piece may straddle two pages.
				const u64 d = dst + o, d_last = d + chunk - 1;
				const Loc d1 = resolve(hid, d);
				const Loc d2 = (d_last / P != d / P) ? resolve(hid, d_last) : d1;
				if (l.mapped && d1.writable() && !d2.writable())
					s.hazard = true;
				if (!l.mapped || !d1.writable() || !d2.writable()) {
					s.faults++;
					continue;
				}
				read_keys.insert(l.page_key());
				wrote(d1, d);
				if (d2.boff != d1.boff)
					wrote(d2, d_last);
				if (apply) {
					const u8* from = backing(l, false) + l.boff % P;
					const u64 first = std::min(chunk, P - d % P);
					std::memcpy(backing(d1, true) + d1.boff % P, from, first);
					if (first < chunk) {
						const Loc d2b = resolve(hid, d + first);
						std::memcpy(backing(d2b, true) + d2b.boff % P, from + first, chunk - first);
					}
				}
				s.bytes += chunk;
				continue;
			}
			if (op == HTABLE_JOB_FILL ? !l.writable() : !l.mapped) {
				s.faults++;
				continue;
			}
			s.bytes += chunk;
			if (op == HTABLE_JOB_FILL) {
				wrote(l, va + o);
				if (apply) {
					u8* p = backing(l, true) + l.boff % P;
					for (u64 k = 0; k < chunk; k++)
						p[k] = htable_pattern_byte(seed, o + k);
				}
				continue;
			}
			const u8* p = backing(l, false) + l.boff % P;
			if (op == HTABLE_JOB_CHECKSUM) {
				hash = fnv1a64({p, chunk}, hash);
			} else {	// VERIFY
				u64 bad_at = kNoBad;
				const u64 bad = count_mismatches({p, chunk}, seed, o, &bad_at);
				if (bad && s.result == 0)
					s.first_bad = bad_at;
				s.result += bad;
			}
		}
	}
	if (op == HTABLE_JOB_CHECKSUM)
		s.result = hash;
	if (op == HTABLE_JOB_COPY) {
		for (const auto& [page, key] : written)
			if (read_keys.count(key))
				s.alias = true;
	}
	return s;
}

void Fuzzer::op_job()
{
	MHat* h = &hats_.at(pick_hat_id());
	static const std::pair<u32, unsigned> kOps[] = {
		{HTABLE_JOB_FILL, 22},	{HTABLE_JOB_VERIFY, 18},    {HTABLE_JOB_CHECKSUM, 14},
		{HTABLE_JOB_TOUCH, 10}, {HTABLE_JOB_RANDOM_RW, 16}, {HTABLE_JOB_COPY, 20},
	};
	unsigned r = unsigned(rng_.below(100));
	htable_job j{};
	for (const auto& [op, weight] : kOps) {
		if (r < weight) {
			j.op = op;
			break;
		}
		r -= weight;
	}
	j.seed = rng_.next();
	const unsigned lc = unsigned(rng_.below(100));
	u64 len = 8 * (1 + rng_.below(lc < 80 ? 256 : lc < 97 ? 1024 : 4096));
	j.va = near_va(*h, P) + (rng_.chance(40) ? 8 * rng_.below(P / 8) : 0);
	if (j.op == HTABLE_JOB_VERIFY && !fills_.empty() && rng_.chance(60)) {
		// Where a FILL went: VERIFY should find its pattern, unless
		// something changed the mappings or bytes since.
		const Fill& f = fills_[rng_.below(fills_.size())];
		if (hat(f.hat)) {
			h = hat(f.hat);
			j.va = f.va;
			len = f.len;
			j.seed = f.seed;
		}
	}
	j.hat_id = h->id;
	if (j.va >= end_ - 8)
		j.va = end_ - 8 * (1 + rng_.below(64));
	len = std::min(len, (end_ - j.va) & ~7ull);
	j.length = len;
	u64 n = 1;
	j.cpu = HTABLE_JOB_ANY_CPU;
	if (cpus_.size() > 1 && rng_.chance(50)) {
		while (!j.cpu_mask)
			for (u32 c : cpus_)
				if (rng_.chance(j.op == HTABLE_JOB_CHECKSUM ? 100 / u32(cpus_.size()) : 60))
					j.cpu_mask |= 1ull << c;
		if (j.op == HTABLE_JOB_CHECKSUM)
			j.cpu_mask &= -j.cpu_mask;	// one CPU: FNV-1a is sequential
		n = __builtin_popcountll(j.cpu_mask);
	} else if (rng_.chance(70)) {
		j.cpu = rng_.pick(cpus_);
	}
	if (j.op == HTABLE_JOB_COPY) {
		// Often the same offset in the page as the source, often not.
		j.dst_va = near_va(*h, P) + (rng_.chance(50) ? j.va % P : 8 * rng_.below(P / 8));
		if (j.dst_va >= end_ || len > end_ - j.dst_va)
			j.dst_va = (end_ - len - 8 * rng_.below(64)) & ~7ull;
		if (j.dst_va < j.va + len && j.va < j.dst_va + len)
			j.dst_va = j.va >= len + 8 ? (j.va - len) & ~7ull : j.va + len;
		if (j.dst_va >= end_ || len > end_ - j.dst_va || (j.dst_va < j.va + len && j.va < j.dst_va + len))
			j.op = HTABLE_JOB_CHECKSUM, j.dst_va = 0, j.cpu_mask &= -j.cpu_mask, n = j.cpu_mask ? 1 : n;
	}

	const unsigned bad = rng_.chance(7) ? 1 + unsigned(rng_.below(16)) : 0;
	Want w;
	switch (bad) {
	case 1: j.flags = 1u << rng_.below(32); break;
	case 2: j.op = rng_.pick(std::vector<u32>{0, 7, 0xffffffffu}); break;
	case 3: j.va |= 4; break;
	case 4: j.length |= 4; break;
	case 5: j.length = 0; break;
	case 6: j.va = end_ - 8; j.length = 16; break;
	case 7: j.va = ~0ull - 7; j.length = 16; break;
	case 8: j.cpu = 1000 + u32(rng_.below(1000)); j.cpu_mask = 0; break;
	case 9: j.cpu_mask = 1ull << rng_.pick(cpus_); j.cpu = rng_.pick(cpus_); break;
	case 10:
		if (nr_cpu_ids_ >= 64)
			return op_translate();
		j.cpu = HTABLE_JOB_ANY_CPU;
		j.cpu_mask = 1ull << (nr_cpu_ids_ + rng_.below(64 - nr_cpu_ids_));
		break;
	case 11: j.op = rng_.chance(50) ? HTABLE_JOB_FILL : HTABLE_JOB_VERIFY; j.dst_va = 8 + 8 * rng_.below(1 << 20); break;
	case 12: j.op = HTABLE_JOB_COPY; j.dst_va = j.va + 8 * rng_.below(j.length / 8); break;
	case 13: j.op = HTABLE_JOB_COPY; j.dst_va = (j.va + j.length + P) | 4; break;
	case 14:
		j.op = HTABLE_JOB_CHECKSUM;
		j.cpu = HTABLE_JOB_ANY_CPU;
		j.cpu_mask = 3;	// CPUs 0 and 1: two, or one past nr_cpu_ids
		break;
	case 15: j.hat_id = bad_hat_id(); break;
	case 16: j.op = HTABLE_JOB_COPY; j.length = 16; j.dst_va = end_ - 8; j.va &= ~7ull; break;
	}
	w.err = job_args(j);
	JobSim plan;
	if (!w.err) {
		plan = simulate(h->id, j.op, j.va, j.length, j.seed, n, j.dst_va, false);
		if (plan.hazard || plan.alias) {
			// The bytes would depend on the order of the writes: read only.
			counts_[plan.hazard ? "job_hazard" : "job_alias"]++;
			j.op = HTABLE_JOB_VERIFY;
			j.dst_va = 0;
		}
		w.late = true;
	}
	const bool abi10 = !w.err && !j.cpu_mask && j.op != HTABLE_JOB_COPY && rng_.chance(8);
	focus(j.va, {j.hat_id});
	note("job hat %u %s va 0x%llx len 0x%llx seed 0x%llx cpu %d mask 0x%llx dst 0x%llx flags 0x%x%s", j.hat_id,
	     job_op_name(j.op), j.va, j.length, j.seed, int(j.cpu), j.cpu_mask, j.dst_va, j.flags,
	     abi10 ? " (88-byte ABI 1.0 struct)" : "");
	counts_[bad ? "job_bad" : std::string("job_") + job_op_name(j.op)]++;
	run_job(j, n, abi10, w);
}

// Issues the job and compares everything it reports, and the bytes it
// wrote, with the model.
bool Fuzzer::run_job(htable_job& j, u64 n, bool abi10, const Want& w)
{
	constexpr size_t kAbi10 = offsetof(htable_job, reloads);
	static_assert(kAbi10 == 88);
	// ABI 1.0 callers pass 88 bytes: what follows them is never read nor written.
	alignas(8) u8 raw[sizeof(htable_job)];
	std::memset(raw, 0xa5, sizeof(raw));
	std::memcpy(raw, &j, abi10 ? kAbi10 : sizeof(j));
	const unsigned long cmd = abi10 ? _IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC, 0x06, kAbi10) : HTABLE_IOC_JOB;
	const int got = mut(cmd, raw);
	if (judge(got, w, true) != 1 || got)
		return got == 0 || got == ENOMEM;
	htable_job out;
	std::memcpy(&out, raw, sizeof(out));
	if (abi10) {
		for (size_t i = kAbi10; i < sizeof(raw); i++)
			if (raw[i] != 0xa5) {
				fail("ABI 1.0 JOB: byte %zu past the 88-byte struct was written (0x%02x)", i, raw[i]);
				return false;
			}
	}
	const JobSim s = simulate(j.hat_id, j.op, j.va, j.length, j.seed, n, j.dst_va, true);
	if (out.bytes != s.bytes || out.faults != s.faults || out.result != s.result || out.first_bad != s.first_bad) {
		fail("expected: bytes %llu faults %llu result 0x%llx first_bad 0x%llx\n"
		     "got: bytes %llu faults %llu result 0x%llx first_bad 0x%llx (reloads %llu, windows %u)",
		     s.bytes, s.faults, s.result, s.first_bad, out.bytes, out.faults, out.result, out.first_bad,
		     abi10 ? 0 : out.reloads, out.windows);
		return false;
	}
	if (!abi10) {
		u64 want_ran = j.cpu_mask;
		if (!want_ran && j.cpu != HTABLE_JOB_ANY_CPU)
			want_ran = 1ull << j.cpu;
		const u64 lowest = want_ran ? u64(__builtin_ctzll(want_ran)) : out.ran_on_cpu;
		if ((want_ran && out.cpus_ran != want_ran) || out.ran_on_cpu != lowest ||
		    (!want_ran && out.cpus_ran != 1ull << (out.ran_on_cpu & 63))) {
			fail("cpus_ran 0x%llx ran_on_cpu %u, expected cpus_ran 0x%llx ran_on_cpu %llu", out.cpus_ran,
			     out.ran_on_cpu, want_ran, lowest);
			return false;
		}
		// Locked translations stay resident: nothing to reload.
		if (s.reload_free && j.op != HTABLE_JOB_COPY && out.reloads) {
			fail("%llu reloads in a job over locked mappings only", out.reloads);
			return false;
		}
	}
	for (const auto& [b, page] : s.user_pages) {
		const UserBuf& ub = bufs_[b];
		if (std::memcmp(ub.base() + page * P, ub.shadow.data() + page * P, P)) {
			u64 i = 0;
			while (ub.base()[page * P + i] == ub.shadow[page * P + i])
				i++;
			fail("after the job, buffer %s byte 0x%llx is 0x%02x, the model says 0x%02x", ub.name,
			     page * P + i, ub.base()[page * P + i], ub.shadow[page * P + i]);
			return false;
		}
	}
	if (j.op == HTABLE_JOB_FILL) {
		fills_.push_back({j.hat_id, j.va, j.length, j.seed});
		if (fills_.size() > 16)
			fills_.erase(fills_.begin());
	}
	return true;
}

// ---- TRANSLATE

void Fuzzer::op_translate()
{
	MHat& h = hats_.at(pick_hat_id());
	htable_translate t{};
	t.hat_id = h.id;
	if (!h.ext.empty() && rng_.chance(70)) {
		auto it = h.ext.begin();
		std::advance(it, long(rng_.below(h.ext.size())));
		t.va = it->first + rng_.below(it->second.len);
	} else {
		t.va = slot_va(1) + rng_.below(P);
	}
	Want w;
	const unsigned bad = rng_.chance(5) ? 1 + unsigned(rng_.below(3)) : 0;
	if (bad == 1)
		t.va = rng_.chance(50) ? end_ + rng_.below(1 << 20) : 1ull << 63;
	if (bad == 2)
		t.__pad = 1;
	if (bad == 3)
		t.hat_id = bad_hat_id();
	w.err = t.__pad || t.va >= end_ ? EINVAL : hat(t.hat_id) ? 0 : ENOENT;
	note("translate hat %u va 0x%llx pad %u", t.hat_id, t.va, t.__pad);
	focus(t.va, {t.hat_id});
	counts_[bad ? "translate_bad" : "translate"]++;
	const int got = dev_.translate(t);
	if (judge(got, w, false) != 1 || got)
		return;
	const Loc l = resolve(h.id, t.va);
	const u64 ps = l.mapped ? level_size(l.level) : 0;
	if (t.mapped != l.mapped || t.pa != (l.mapped ? l.pa : 0) || t.prot != (l.mapped ? l.prot : 0) ||
	    t.page_size != ps || t.level != (l.mapped ? l.level : 0))
		return fail("expected: mapped %d pa 0x%llx prot %s page_size 0x%llx level %u\n"
			    "got: mapped %u pa 0x%llx prot %s page_size 0x%llx level %llu",
			    l.mapped, l.mapped ? l.pa : 0, prot_string(l.mapped ? l.prot : 0).c_str(), ps,
			    l.mapped ? l.level : 0, t.mapped, t.pa, prot_string(t.prot).c_str(), t.page_size, t.level);
	// And the byte really is that page of our memory now (one time in
	// three: a read of pagemap costs as much as the TRANSLATE).
	if (l.mapped && l.kind == Kind::User && rng_.chance(34)) {
		std::string why;
		const UserBuf& b = bufs_[l.space];
		std::vector<u64> pfn;
		if (!pagemap_pfns(b.base() + (l.boff & ~(P - 1)), 1, pfn, &why, pagemap_fd_) ||
		    pfn[0] * P + t.va % P != t.pa)
			return fail("TRANSLATE pa 0x%llx, but /proc/self/pagemap has buffer %s+0x%llx at pfn %s", t.pa,
				    b.name, l.boff, pfn.empty() ? why.c_str() : strfmt("0x%llx", pfn[0]).c_str());
	}
}

// ---- WALK

void Fuzzer::op_walk()
{
	MHat& h = hats_.at(pick_hat_id());
	u64 va, len;
	if (rng_.chance(5)) {
		va = 0;
		len = end_;
	} else if (!random_range(h, va, len)) {
		return;
	}
	const unsigned bad = rng_.chance(15) ? 1 + unsigned(rng_.below(8)) : 0;
	note("walk hat %u [0x%llx, 0x%llx)%s", h.id, va, va + len, bad ? strfmt(" variant %u", bad).c_str() : "");
	focus(va, {h.id});
	counts_[bad ? "walk_bad" : "walk"]++;
	if (!bad) {
		if (verbose())
			std::printf("# %llu: %s\n", op_, desc_.c_str());
		check_walk(h.id, va, va + len, "WALK", rng_.chance(30) ? u32(rng_.small(8)) : 4096);
		return;
	}
	std::vector<htable_walk_entry> ents(16);
	htable_walk wk{};
	wk.hat_id = h.id;
	wk.max_entries = 16;
	wk.va = va;
	wk.end = va + len;
	wk.entries = reinterpret_cast<uintptr_t>(ents.data());
	switch (bad) {
	case 1: wk.max_entries = 0; break;
	case 2: wk.max_entries = 4097 + u32(rng_.below(100000)); break;
	case 3: wk.end = wk.va; break;
	case 4: wk.end = end_ + P; break;
	case 5: wk.__pad = 1; break;
	case 6: wk.hat_id = bad_hat_id(); break;
	default:	// unwritable entries: EFAULT only when there is something to write
		wk.entries = bad == 7 ? 0 : reinterpret_cast<uintptr_t>(bufs_[0].base() + bufs_[0].size);
		break;
	}
	Want w;
	if (wk.__pad || !wk.max_entries || wk.max_entries > 4096 || wk.va >= wk.end || wk.end > end_)
		w.err = EINVAL;
	else if (!hat(wk.hat_id))
		w.err = ENOENT;
	else if (bad >= 7 && !model_walk(h.id, wk.va, wk.end).empty())
		w.err = EFAULT;
	const int got = dev_.walk(wk);
	if (judge(got, w, false) && !got && wk.count)
		fail("WALK with unwritable entries over nothing returned %u entries", wk.count);
}

// ---- REAP

void Fuzzer::op_reap()
{
	htable_reap r{};
	r.nr = rng_.chance(20) ? ~0ull : rng_.small(64);
	note("reap %llu", r.nr);
	counts_["reap"]++;
	// Tables are a cache: what REAP takes, jobs reload; nothing in the model changes.
	const int got = dev_.reap(r);
	if (judge(got, Want{}, false) && r.freed > r.nr)
		fail("REAP of %llu freed %llu", r.nr, r.freed);
}

// ---- the ioctl layer itself: numbers, directions and sizes

void Fuzzer::op_abi()
{
	alignas(8) u8 raw[8192] = {};
	const unsigned v = unsigned(rng_.below(7));
	unsigned long cmd = 0;
	Want w;
	MHat& h = hats_.at(pick_hat_id());
	htable_unmap u{};
	htable_translate t{};
	switch (v) {
	case 0:
		cmd = _IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC, 0x0d + rng_.below(0xf3), 16);
		w.err = ENOTTY;
		break;
	case 1:
		cmd = _IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC + 1, 0x05, sizeof(htable_translate));
		w.err = ENOTTY;
		break;
	case 2:
		cmd = rng_.chance(50) ? _IOC(_IOC_READ, HTABLE_IOC_MAGIC, 0x04, sizeof(htable_unmap))
				      : _IOC(_IOC_WRITE, HTABLE_IOC_MAGIC, 0x01, sizeof(htable_hat_create));
		w.err = ENOTTY;
		break;
	case 3:
		cmd = rng_.pick(std::vector<unsigned long>{
			_IOC(_IOC_WRITE, HTABLE_IOC_MAGIC, 0x04, 16),
			_IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC, 0x06, 80),
			_IOC(_IOC_WRITE, HTABLE_IOC_MAGIC, 0x03, 40)});
		w.err = EINVAL;
		break;
	case 4:
		cmd = _IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC, 0x05, 4096 + 8 * (1 + rng_.below(64)));
		w.err = E2BIG;
		break;
	case 5:	// a real UNMAP of a whole extent, refused for its non-zero tail
		u.hat_id = h.id;
		if (!random_range(h, u.va, u.length))
			return;
		std::memcpy(raw, &u, sizeof(u));
		raw[sizeof(u) + rng_.below(8)] = 1;
		cmd = _IOC(_IOC_WRITE, HTABLE_IOC_MAGIC, 0x04, sizeof(u) + 8);
		w.err = E2BIG;
		break;
	default:	// a TRANSLATE with a zero tail works, and zeroes the tail
		t.hat_id = h.id;
		t.va = h.ext.empty() ? slot_va(P) : h.ext.begin()->first;
		std::memcpy(raw, &t, sizeof(t));
		std::memset(raw + sizeof(t), 0, 16);
		cmd = _IOC(_IOC_READ | _IOC_WRITE, HTABLE_IOC_MAGIC, 0x05, sizeof(t) + 16);
		break;
	}
	note("ioctl 0x%lx (nr 0x%lx, size %lu, dir %lu) variant %u", cmd, _IOC_NR(cmd), _IOC_SIZE(cmd), _IOC_DIR(cmd), v);
	counts_["abi"]++;
	const int got = v == 5 ? mut(cmd, raw) : dev_.ioctl_raw(cmd, raw);
	if (!judge(got, w, v == 5))
		return;
	if (v == 5)
		check_around(h.id, u.va, std::min(u.va + u.length, u.va + 64 * k2M), "UNMAP refused for its tail");
	if (v == 6) {
		std::memcpy(&t, raw, sizeof(t));
		const Loc l = resolve(h.id, t.va);
		if (t.mapped != l.mapped || (l.mapped && t.pa != l.pa))
			fail("TRANSLATE with a zero tail: mapped %u pa 0x%llx, the model mapped %d pa 0x%llx", t.mapped,
			     t.pa, l.mapped, l.pa);
	}
}

// ---------------------------------------------------------------- the run

int Fuzzer::run()
{
	const auto t0 = std::chrono::steady_clock::now();
	std::printf("TAP version 13\n1..3\n");
	if (std::string err = setup(); !err.empty()) {
		std::printf("Bail out! %s\n", err.c_str());
		return 1;
	}
	auto base = counters();
	if (!base) {
		std::printf("Bail out! cannot read the counters in %s\n", kStatsPath);
		return 1;
	}
	base_ = *base;
	if (cfg_.inject) {
		if (std::string err = inject_.setup(cfg_.inject); !err.empty()) {
			inject_.restore();
			std::printf("Bail out! fault injection: %s\n", err.c_str());
			return 1;
		}
		std::printf("# injecting %u%% failures: fail_page_alloc, and failslab on %u htable-* caches\n",
			    cfg_.inject, inject_.caches());
	}

	u64 done = 0;
	for (op_ = 0; op_ < cfg_.ops && !failed_; op_++) {
		step();
		done = op_ + 1;
		max_extents_ = std::max(max_extents_, nr_extents());
		max_hats_seen_ = std::max(max_hats_seen_, hats_.size());
		if (!failed_ && done % kFullCheckEvery == 0)
			full_check("periodic check");
	}
	inject_.restore();
	const double op_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	const bool ops_ok = !failed_;
	std::printf("%s 1 - fuzz seed %llu: %llu ops%s, %llu expected errors, %llu ENOMEM (inject %u%%)\n",
		    ops_ok ? "ok" : "not ok", cfg_.seed, done, ops_ok ? " as the model says" : ", stopped at a mismatch",
		    errors_expected_, enomem_, cfg_.inject);
	std::string counts;
	for (const auto& [name, n] : counts_)
		counts += strfmt(" %s %llu", name.c_str(), n);
	std::string by_op;
	for (const auto& [name, t] : secs_)
		by_op += strfmt(" %s %.1f", name.c_str(), t);
	struct rusage ru{};
	getrusage(RUSAGE_SELF, &ru);
	std::printf("#%s\n# seconds by op:%s\n# %.0f ops/s (%.1f s user, %.1f s system); at most %zu extents in "
		    "%zu hats\n",
		    counts.c_str(), by_op.c_str(), done / std::max(op_secs, 1e-3),
		    ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
		    max_extents_, max_hats_seen_);

	// 2: the final state, whole.
	bool final_ok = false;
	op_ = done;
	desc_ = "final check";
	if (ops_ok) {
		final_ok = full_check("final check") && check_owned_contents("final check");
		std::printf("%s 2 - final WALK of every hat (%zu hats, %zu extents), buffers and owned memory match "
			    "the model\n", final_ok ? "ok" : "not ok", hats_.size(), nr_extents());
	} else {
		std::printf("ok 2 - final check # SKIP stopped at the mismatch\n");
	}

	// 3: nothing left behind, whatever happened above.
	desc_ = "teardown";
	bool destroyed = true;
	while (!hats_.empty()) {
		const u32 id = hats_.begin()->first;
		if (int err = dev_.hat_destroy(id)) {
			std::printf("# HAT_DESTROY of hat %u at the end: %s\n", id, ename(err).c_str());
			destroyed = false;
		}
		hats_.erase(id);
	}
	dev_.close();
	u64 leaks = 0;
	std::string diff;
	auto after = counters();
	if (after) {
		for (const auto& [name, v] : *after) {
			const u64 b = base_[name];
			leaks += v > b ? v - b : b - v;
			diff += strfmt(" %s %llu -> %llu", name.c_str(), b, v);
		}
	}
	const bool clean = after && destroyed && !leaks;
	std::printf("%s 3 - counters back after destroying every hat and closing the fd:%s%s\n",
		    clean ? "ok" : "not ok", after ? diff.c_str() : " (unreadable)",
		    cfg_.concurrent ? " (this process's: hats in debugfs, VmLck)" : "");
	const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	std::printf("# reliability {\"test\":\"fuzz\",\"seed\":%llu,\"ops\":%llu,\"mismatches\":%d,"
		    "\"errors_expected\":%llu,\"enomem\":%llu,\"inject_pct\":%u,\"seconds\":%.1f,\"leaks\":%llu}\n",
		    cfg_.seed, done, ops_ok && (final_ok || !ops_ok) ? 0 : 1, errors_expected_, enomem_, cfg_.inject,
		    secs, leaks);
	return ops_ok && final_ok && clean ? 0 : 1;
}

}  // namespace

int cmd_fuzz(std::span<char*> args)
{
	Config cfg;
	for (size_t i = 1; i < args.size(); i++) {
		const std::string a = args[i];
		if (a == "--help" || a == "-h") {
			std::fputs(kFuzzHelp, stdout);
			return 0;
		}
		if (a == "--concurrent") {
			cfg.concurrent = true;
			continue;
		}
		u64 v = 0;
		const bool has = i + 1 < args.size() && parse_u64(args[i + 1], v);
		if (a == "--seed" && has)
			cfg.seed = v;
		else if (a == "--ops" && has)
			cfg.ops = v;
		else if (a == "--cpus" && has && v >= 1 && v <= 64)
			cfg.cpus = u32(v);
		else if (a == "--inject" && has && v <= 100)
			cfg.inject = u32(v);
		else if (a == "--verbose-from" && has)
			cfg.verbose_from = v;
		else {
			std::fprintf(stderr, "htablectl fuzz: bad argument '%s'\nTry 'htablectl fuzz --help'.\n",
				     a.c_str());
			return 2;
		}
		i++;
	}
	auto dev = Device::open();
	if (!dev) {
		std::printf("TAP version 13\n1..3\nBail out! cannot open %s: %s\n", kDevicePath,
			    errno_desc(dev.error()).c_str());
		return 1;
	}
	Fuzzer f(cfg, *dev);
	return f.run();
}

}  // namespace htable
