// SPDX-License-Identifier: GPL-2.0
//
// `htablectl shell`: one ioctl per line, interactively or from a script on
// stdin.  The shell owns one fd on /dev/htable (so its hats live as long as
// the shell) and the process memory behind every user mapping it makes.
#include "htablectl.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <list>
#include <map>
#include <sstream>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace htable {
namespace {

const char kShellHelp[] =
	"Usage: htablectl shell [-e]\n"
	"\n"
	"Read commands from stdin, one per line, and run each against /dev/htable.\n"
	"With a terminal on stdin the shell prompts; otherwise it is scripted: each\n"
	"command is echoed as '> command' before its output, and the exit status is\n"
	"1 if any command failed (-e: stop at the first failure).  Type 'help' for\n"
	"the commands.  Needs root.\n";

const char kCommands[] =
	"Numbers are decimal or 0x hex, with an optional k/m/g suffix (KiB, MiB, GiB).\n"
	"  create [copied-top]                  new hat; prints its ID\n"
	"  destroy ID                           destroy a hat (and free its memory)\n"
	"  map ID VA LEN [4k|2m|1g|auto] [rw|r|rx|rwx] [owned]\n"
	"                                       map LEN bytes at VA: memory the shell\n"
	"                                       allocates (2m/auto: 2 MiB aligned and\n"
	"                                       MADV_HUGEPAGE), or module-owned memory\n"
	"  unmap ID VA LEN                      unmap (frees the shell's memory there)\n"
	"  protect ID VA LEN r|rw|rx|rwx        change protection\n"
	"  lock ID VA LEN | unlock ID VA LEN    keep tables resident / stealable again\n"
	"  translate ID VA                      what VA maps to\n"
	"  walk ID [VA [END]]                   list the mappings (default: everything)\n"
	"  share DST SRC VA LEVEL               link SRC's table at VA/LEVEL into DST\n"
	"  job ID OP VA LEN [cpus=all|N,M] [seed=S] [dst=VA]\n"
	"                                       OP: fill verify checksum touch random copy\n"
	"  reap N                               give up to N page tables back\n"
	"  dump ID                              the hat's tables (debugfs hats/<gid>/dump)\n"
	"  info ID                              the hat's debugfs info\n"
	"  stats [NAME...]                      module counters\n"
	"  mem ID VA [LEN]                      hex dump of the shell's memory behind VA\n"
	"  help                                 this text\n"
	"  quit                                 leave (also end of input)\n";

// Process memory behind one user mapping (or what is left of it).
struct Region {
	u32 hat;
	u64 va;
	u64 len;
	u8* mem;
};

class Shell {
public:
	explicit Shell(Device dev) : dev_(std::move(dev)) {}
	~Shell()
	{
		for (auto& r : regions_)
			munmap(r.mem, r.len);
	}

	// Runs one line; returns false for a failed command.
	bool run(const std::string& line);
	bool quit() const { return quit_; }

private:
	using Args = std::vector<std::string>;

	bool fail(const std::string& what, int err = 0)
	{
		if (err)
			std::printf("error: %s: %s\n", what.c_str(), errno_desc(err).c_str());
		else
			std::printf("error: %s\n", what.c_str());
		return false;
	}
	bool num(const std::string& s, u64& out, const char* what)
	{
		if (!parse_u64(s, out))
			return fail(std::string("bad ") + what + " '" + s + "'");
		return true;
	}
	bool hat_id(const std::string& s, u32& out)
	{
		u64 v;
		if (!num(s, v, "hat ID"))
			return false;
		out = u32(v);
		return true;
	}
	static bool prot_of(const std::string& s, u32& out)
	{
		static const std::map<std::string, u32> m = {
			{"r", HTABLE_PROT_READ},
			{"rw", kProtRW},
			{"rx", HTABLE_PROT_READ | HTABLE_PROT_EXEC},
			{"rwx", HTABLE_PROT_ALL},
		};
		auto it = m.find(s);
		if (it == m.end())
			return false;
		out = it->second;
		return true;
	}
	bool usage(const char* u) { return fail(std::string("usage: ") + u); }

	void release(u32 hat, u64 va, u64 end);

	bool c_create(const Args& a);
	bool c_destroy(const Args& a);
	bool c_map(const Args& a);
	bool c_unmap(const Args& a);
	bool c_protect(const Args& a);
	bool c_lock(const Args& a, bool lock);
	bool c_translate(const Args& a);
	bool c_walk(const Args& a);
	bool c_share(const Args& a);
	bool c_job(const Args& a);
	bool c_reap(const Args& a);
	bool c_debugfs(const Args& a, const char* file);
	bool c_stats(const Args& a);
	bool c_mem(const Args& a);

	Device dev_;
	std::list<Region> regions_;
	bool quit_ = false;
};

bool Shell::run(const std::string& line)
{
	std::istringstream in(line);
	Args a;
	for (std::string w; in >> w;) {
		if (w[0] == '#')
			break;
		a.push_back(w);
	}
	if (a.empty())
		return true;
	const std::string& c = a[0];
	if (c == "create") return c_create(a);
	if (c == "destroy") return c_destroy(a);
	if (c == "map") return c_map(a);
	if (c == "unmap") return c_unmap(a);
	if (c == "protect") return c_protect(a);
	if (c == "lock") return c_lock(a, true);
	if (c == "unlock") return c_lock(a, false);
	if (c == "translate") return c_translate(a);
	if (c == "walk") return c_walk(a);
	if (c == "share") return c_share(a);
	if (c == "job") return c_job(a);
	if (c == "reap") return c_reap(a);
	if (c == "dump") return c_debugfs(a, "dump");
	if (c == "info") return c_debugfs(a, "info");
	if (c == "stats") return c_stats(a);
	if (c == "mem") return c_mem(a);
	if (c == "help" || c == "?") {
		std::fputs(kCommands, stdout);
		return true;
	}
	if (c == "quit" || c == "exit") {
		quit_ = true;
		return true;
	}
	return fail("unknown command '" + c + "' (try 'help')");
}

// Frees the shell's memory behind [va, end) of a hat (after an unmap).
void Shell::release(u32 hat, u64 va, u64 end)
{
	for (auto it = regions_.begin(); it != regions_.end();) {
		Region& r = *it;
		const u64 a = std::max(va, r.va), b = std::min(end, r.va + r.len);
		if (r.hat != hat || a >= b) {
			++it;
			continue;
		}
		munmap(r.mem + (a - r.va), b - a);
		if (b < r.va + r.len)  // the tail stays, as a region of its own
			regions_.insert(std::next(it), Region{hat, b, r.va + r.len - b, r.mem + (b - r.va)});
		if (a > r.va) {  // the head stays
			r.len = a - r.va;
			++it;
		} else {
			it = regions_.erase(it);
		}
	}
}

bool Shell::c_create(const Args& a)
{
	u32 flags = 0;
	if (a.size() == 2 && a[1] == "copied-top")
		flags = HTABLE_HAT_COPIED_TOP;
	else if (a.size() != 1)
		return usage("create [copied-top]");
	htable_hat_create c{};
	c.flags = flags;
	if (int err = dev_.hat_create(c))
		return fail("create", err);
	std::printf("hat %u (%u levels%s)\n", c.hat_id, c.levels, flags ? ", copied top" : "");
	return true;
}

bool Shell::c_destroy(const Args& a)
{
	u32 id;
	if (a.size() != 2)
		return usage("destroy ID");
	if (!hat_id(a[1], id))
		return false;
	if (int err = dev_.hat_destroy(id))
		return fail("destroy " + a[1], err);
	release(id, 0, ~0ull);
	std::printf("hat %u destroyed\n", id);
	return true;
}

bool Shell::c_map(const Args& a)
{
	const char* u = "map ID VA LEN [4k|2m|1g|auto] [rw|r|rx|rwx] [owned]";
	u32 id, prot = kProtRW;
	u64 va, len, ps = HTABLE_PAGE_AUTO;
	bool owned = false;
	if (a.size() < 4)
		return usage(u);
	if (!hat_id(a[1], id) || !num(a[2], va, "VA") || !num(a[3], len, "LEN"))
		return false;
	for (size_t i = 4; i < a.size(); i++) {
		std::string s = a[i];
		std::transform(s.begin(), s.end(), s.begin(), ::tolower);
		if (s == "4k") ps = HTABLE_PAGE_4K;
		else if (s == "2m") ps = HTABLE_PAGE_2M;
		else if (s == "1g") ps = HTABLE_PAGE_1G;
		else if (s == "auto") ps = HTABLE_PAGE_AUTO;
		else if (s == "owned") owned = true;
		else if (!prot_of(s, prot)) return usage(u);
	}
	if (owned) {
		if (int err = dev_.map_owned(id, va, len, prot, ps))
			return fail("map owned", err);
		std::printf("hat %u: [0x%llx, 0x%llx) -> %s of module-owned memory, %s\n", id, va, va + len,
			    human_size(len).c_str(), prot_string(prot).c_str());
		return true;
	}
	// The shell's own memory: aligned like the VA modulo the largest leaf
	// wanted, so that AUTO can use large leaves where it is THP-backed.
	const u64 align = ps == HTABLE_PAGE_1G ? k1G : (ps == HTABLE_PAGE_4K ? kPageSize : k2M);
	if (len == 0 || len % kPageSize)
		return fail("LEN must be a non-zero multiple of 4096 for user memory");
	const u64 total = len + 2 * align;
	void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (p == MAP_FAILED)
		return fail("mmap", errno);
	const uintptr_t base = reinterpret_cast<uintptr_t>(p);
	uintptr_t start = ((base + align - 1) & ~uintptr_t(align - 1)) + (va & (align - 1));
	if (start + len > base + total)
		start -= align;
	if (start > base)
		munmap(p, start - base);
	if (base + total > start + len)
		munmap(reinterpret_cast<void*>(start + len), base + total - start - len);
	u8* mem = reinterpret_cast<u8*>(start);
	const int thp_off = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	if (ps != HTABLE_PAGE_4K) {
		madvise(mem, len, MADV_HUGEPAGE);  // may fail: no THP, no madvise()
		if (thp_off > 0)
			prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	}
	std::memset(mem, 0, len);  // a page of its own behind every address
	if (ps != HTABLE_PAGE_4K && thp_off > 0)
		prctl(PR_SET_THP_DISABLE, thp_off, 0, 0, 0);
	if (int err = dev_.map(id, va, mem, len, prot, ps)) {
		munmap(mem, len);
		return fail("map", err);
	}
	regions_.push_back(Region{id, va, len, mem});
	std::printf("hat %u: [0x%llx, 0x%llx) -> %s of shell memory at %p, %s\n", id, va, va + len,
		    human_size(len).c_str(), static_cast<void*>(mem), prot_string(prot).c_str());
	return true;
}

bool Shell::c_unmap(const Args& a)
{
	u32 id;
	u64 va, len;
	if (a.size() != 4)
		return usage("unmap ID VA LEN");
	if (!hat_id(a[1], id) || !num(a[2], va, "VA") || !num(a[3], len, "LEN"))
		return false;
	if (int err = dev_.unmap(id, va, len))
		return fail("unmap", err);
	release(id, va, va + len);
	std::printf("hat %u: [0x%llx, 0x%llx) unmapped\n", id, va, va + len);
	return true;
}

bool Shell::c_protect(const Args& a)
{
	u32 id, prot;
	u64 va, len;
	if (a.size() != 5)
		return usage("protect ID VA LEN r|rw|rx|rwx");
	if (!hat_id(a[1], id) || !num(a[2], va, "VA") || !num(a[3], len, "LEN"))
		return false;
	if (!prot_of(a[4], prot))
		return usage("protect ID VA LEN r|rw|rx|rwx");
	if (int err = dev_.protect(id, va, len, prot))
		return fail("protect", err);
	std::printf("hat %u: [0x%llx, 0x%llx) now %s\n", id, va, va + len, prot_string(prot).c_str());
	return true;
}

bool Shell::c_lock(const Args& a, bool lock)
{
	u32 id;
	u64 va, len;
	if (a.size() != 4)
		return usage(lock ? "lock ID VA LEN" : "unlock ID VA LEN");
	if (!hat_id(a[1], id) || !num(a[2], va, "VA") || !num(a[3], len, "LEN"))
		return false;
	if (int err = dev_.lock(id, va, len, lock))
		return fail(a[0], err);
	std::printf("hat %u: [0x%llx, 0x%llx) %s\n", id, va, va + len, lock ? "locked" : "unlocked");
	return true;
}

bool Shell::c_translate(const Args& a)
{
	u32 id;
	u64 va;
	if (a.size() != 3)
		return usage("translate ID VA");
	if (!hat_id(a[1], id) || !num(a[2], va, "VA"))
		return false;
	htable_translate t{};
	if (int err = dev_.translate(id, va, t))
		return fail("translate", err);
	if (!t.mapped)
		std::printf("hat %u: 0x%llx is not mapped\n", id, va);
	else
		std::printf("hat %u: 0x%llx -> pa 0x%llx, %s leaf (level %llu), %s\n", id, va, t.pa,
			    human_size(t.page_size).c_str(), t.level, prot_string(t.prot).c_str());
	return true;
}

bool Shell::c_walk(const Args& a)
{
	u32 id;
	u64 va = 0, end = 0;
	if (a.size() < 2 || a.size() > 4)
		return usage("walk ID [VA [END]]");
	if (!hat_id(a[1], id) || (a.size() > 2 && !num(a[2], va, "VA")) ||
	    (a.size() > 3 && !num(a[3], end, "END")))
		return false;
	if (a.size() < 4) {
		htable_version v{};
		if (int err = dev_.version(v))
			return fail("version", err);
		end = v.user_va_end;
	}
	std::vector<htable_walk_entry> w;
	if (int err = dev_.walk_all(id, va, end, w))
		return fail("walk", err);
	std::printf("hat %u: %zu mapping%s in [0x%llx, 0x%llx)\n", id, w.size(), w.size() == 1 ? "" : "s",
		    va, end);
	if (!w.empty())
		std::printf("  %-18s %-10s %-18s %-5s %-7s %s\n", "va", "length", "pa", "prot", "leaf",
			    "flags");
	for (const auto& e : w)
		std::printf("  0x%016llx %-10s 0x%016llx %-5s %-7s %s\n", e.va, human_size(e.length).c_str(),
			    e.pa, prot_string(e.prot).c_str(),
			    e.page_size ? human_size(e.page_size).c_str() : "-",
			    walk_flags_string(e.flags).c_str());
	return true;
}

bool Shell::c_share(const Args& a)
{
	u32 dst, src;
	u64 va, level;
	if (a.size() != 5)
		return usage("share DST SRC VA LEVEL");
	if (!hat_id(a[1], dst) || !hat_id(a[2], src) || !num(a[3], va, "VA") || !num(a[4], level, "LEVEL"))
		return false;
	if (int err = dev_.share(dst, src, va, u32(level)))
		return fail("share", err);
	std::printf("hat %u now shares hat %u's level-%llu table at 0x%llx\n", dst, src, level, va);
	return true;
}

bool Shell::c_job(const Args& a)
{
	const char* u = "job ID OP VA LEN [cpus=all|N,M] [seed=S] [dst=VA]";
	static const std::map<std::string, u32> ops = {
		{"fill", HTABLE_JOB_FILL},         {"verify", HTABLE_JOB_VERIFY},
		{"checksum", HTABLE_JOB_CHECKSUM}, {"touch", HTABLE_JOB_TOUCH},
		{"random", HTABLE_JOB_RANDOM_RW},  {"random_rw", HTABLE_JOB_RANDOM_RW},
		{"copy", HTABLE_JOB_COPY},
	};
	u32 id;
	u64 va, len, seed = 0, dst = 0, mask = 0;
	if (a.size() < 5)
		return usage(u);
	auto op = ops.find(a[2]);
	if (op == ops.end())
		return fail("unknown job op '" + a[2] + "' (fill verify checksum touch random copy)");
	if (!hat_id(a[1], id) || !num(a[3], va, "VA") || !num(a[4], len, "LEN"))
		return false;
	for (size_t i = 5; i < a.size(); i++) {
		const std::string& s = a[i];
		if (s.rfind("seed=", 0) == 0) {
			if (!num(s.substr(5), seed, "seed"))
				return false;
		} else if (s.rfind("dst=", 0) == 0) {
			if (!num(s.substr(4), dst, "dst"))
				return false;
		} else if (s == "cpus=all") {
			mask = cpu_mask_of(online_cpus());
		} else if (s.rfind("cpus=", 0) == 0) {
			auto cpus = parse_cpu_list(s.substr(5));
			if (cpus.empty())
				return fail("bad cpu list '" + s.substr(5) + "'");
			for (u32 cpu : cpus)
				if (cpu >= 64)
					return fail("cpus= takes CPUs 0..63");
			mask = cpu_mask_of(cpus);
		} else {
			return usage(u);
		}
	}
	htable_job j{};
	if (int err = dev_.job_mask(id, op->second, va, len, seed, mask, j, dst))
		return fail(std::string("job ") + a[2], err);
	std::string cpus;
	for (u32 c = 0; c < 64; c++)
		if (j.cpus_ran & (1ull << c))
			cpus += (cpus.empty() ? "" : ",") + std::to_string(c);
	std::printf("%s: %llu bytes, %llu faults, %llu reloads on CPU %s (%u windows, longest %llu ns, "
		    "%llu shootdowns)\n", a[2].c_str(), j.bytes, j.faults, j.reloads, cpus.c_str(), j.windows,
		    j.max_window_ns, j.shootdowns);
	switch (op->second) {
	case HTABLE_JOB_VERIFY:
		if (j.result)
			std::printf("  %llu bytes differ from pattern(seed 0x%llx), first at +%llu\n", j.result,
				    seed, j.first_bad);
		else
			std::printf("  every byte touched matches pattern(seed 0x%llx)\n", seed);
		break;
	case HTABLE_JOB_CHECKSUM:
		std::printf("  FNV-1a 64: 0x%016llx\n", j.result);
		break;
	case HTABLE_JOB_TOUCH:
		std::printf("  %llu pages touched\n", j.result);
		break;
	case HTABLE_JOB_RANDOM_RW:
		std::printf("  %llu random read/writes\n", j.result);
		break;
	}
	return true;
}

bool Shell::c_reap(const Args& a)
{
	u64 n;
	if (a.size() != 2)
		return usage("reap N");
	if (!num(a[1], n, "N"))
		return false;
	u64 freed = 0;
	if (int err = dev_.reap(n, &freed))
		return fail("reap", err);
	std::printf("reaped %llu page table%s\n", freed, freed == 1 ? "" : "s");
	return true;
}

bool Shell::c_debugfs(const Args& a, const char* file)
{
	u32 id;
	if (a.size() != 2)
		return usage(!std::strcmp(file, "dump") ? "dump ID" : "info ID");
	if (!hat_id(a[1], id))
		return false;
	auto gids = find_hat_gids(getpid(), id);
	if (gids.size() != 1)
		return fail("no debugfs directory for hat " + a[1] + " (is debugfs mounted?)");
	std::string text;
	const std::string path = hat_debugfs_dir(gids[0]) + "/" + file;
	if (int err = read_file(path, text))
		return fail(path, err);
	std::fputs(text.c_str(), stdout);
	return true;
}

bool Shell::c_stats(const Args& a)
{
	std::vector<Stat> st;
	if (int err = read_stats(st))
		return fail(kStatsPath, err);
	for (const auto& s : st) {
		bool want = a.size() == 1;
		for (size_t i = 1; i < a.size(); i++)
			want |= s.name == a[i];
		if (want)
			std::printf("%-22s %s\n", s.name.c_str(), s.value.c_str());
	}
	return true;
}

bool Shell::c_mem(const Args& a)
{
	u32 id;
	u64 va, len = 64;
	if (a.size() < 3 || a.size() > 4)
		return usage("mem ID VA [LEN]");
	if (!hat_id(a[1], id) || !num(a[2], va, "VA") || (a.size() == 4 && !num(a[3], len, "LEN")))
		return false;
	for (const auto& r : regions_) {
		if (r.hat != id || va < r.va || va >= r.va + r.len)
			continue;
		len = std::min(len, r.va + r.len - va);
		for (u64 o = 0; o < len; o += 16) {
			std::printf("0x%016llx ", va + o);
			for (u64 k = o; k < o + 16 && k < len; k++)
				std::printf(" %02x", r.mem[va - r.va + k]);
			std::putchar('\n');
		}
		return true;
	}
	return fail("no shell memory behind hat " + a[1] + " VA " + a[2] + " (owned or unmapped)");
}

}  // namespace

int cmd_shell(std::span<char*> args)
{
	bool stop_on_error = false;
	for (size_t i = 1; i < args.size(); i++) {
		if (!std::strcmp(args[i], "--help") || !std::strcmp(args[i], "-h")) {
			std::fputs(kShellHelp, stdout);
			return 0;
		}
		if (!std::strcmp(args[i], "-e")) {
			stop_on_error = true;
			continue;
		}
		std::fprintf(stderr, "htablectl shell: unexpected argument '%s'\n"
				     "Try 'htablectl shell --help'.\n", args[i]);
		return 2;
	}
	auto dev = Device::open();
	if (!dev) {
		print_error(std::string("cannot open ") + kDevicePath, dev.error());
		return 1;
	}
	const bool tty = isatty(STDIN_FILENO);
	Shell sh(std::move(*dev));
	if (tty)
		std::printf("htablectl shell: one command per line; 'help' lists them, 'quit' leaves.\n");
	bool any_failed = false;
	std::string line;
	for (;;) {
		if (tty) {
			std::fputs("htable> ", stdout);
			std::fflush(stdout);
		}
		if (!std::getline(std::cin, line))
			break;
		if (!tty) {
			auto first = line.find_first_not_of(" \t");
			if (first != std::string::npos && line[first] != '#')
				std::printf("> %s\n", line.c_str() + first);
		}
		bool ok = sh.run(line);
		std::fflush(stdout);
		if (!ok) {
			any_failed = true;
			if (!tty && stop_on_error)
				break;
		}
		if (sh.quit())
			break;
	}
	if (tty)
		std::putchar('\n');
	return !tty && any_failed ? 1 : 0;
}

}  // namespace htable
