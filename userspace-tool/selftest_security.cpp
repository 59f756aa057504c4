// SPDX-License-Identifier: GPL-2.0
//
// selftest: the guards of docs/SECURITY.md -- who may open the device and
// use an fd, whose memory a MAP may pin, what the page-table entries allow
// (NX), who sees physical addresses in debugfs, and where the memory a
// caller makes the module allocate is charged (memory cgroup).  The
// neighbours: t_caps, t_memlock, t_other_mm, t_debugfs (selftest_system),
// t_fd_isolation (selftest_basic), and selftest_badinput.
#include "selftest.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <functional>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace htable::st {
namespace {

// ------------------------------------------------------------ device node

void t_node(Ctx&, T& t)
{
	struct stat st;
	if (!t.check(::stat(kDevicePath, &st) == 0, "stat %s: %s", kDevicePath, std::strerror(errno)))
		return;
	t.check(S_ISCHR(st.st_mode), "%s is not a character device (mode 0%o)", kDevicePath,
		st.st_mode);
	t.check((st.st_mode & 07777) == 0600, "%s has mode 0%o, expected 0600", kDevicePath,
		st.st_mode & 07777);
	t.check(st.st_uid == 0 && st.st_gid == 0, "%s is owned by %u:%u, expected root:root",
		kDevicePath, st.st_uid, st.st_gid);
	// debugfs: root-only files (tunables also writable by root)
	auto dev = Device::open();
	if (!t.want_ok(dev ? 0 : dev.error(), "open"))
		return;
	auto h = Hat::create(*dev);
	if (!t.want_ok(h ? 0 : h.error(), "HAT_CREATE"))
		return;
	auto gids = find_hat_gids(getpid(), h->id());
	if (!t.check(gids.size() == 1, "no debugfs directory for hat %u", h->id()))
		return;
	const std::string dir = hat_debugfs_dir(gids[0]);
	const std::string files[][2] = {
		{kStatsPath, "0400"}, {std::string(kDebugfsDir) + "/info", "0400"},
		{std::string(kDebugfsDir) + "/reserve", "0400"},
		{std::string(kDebugfsDir) + "/tunables", "0600"},
		{dir + "/info", "0400"}, {dir + "/dump", "0400"}, {dir + "/ptes", "0400"},
	};
	for (const auto& [path, mode] : files) {
		if (!t.check(::stat(path.c_str(), &st) == 0, "stat %s: %s", path.c_str(), std::strerror(errno)))
			continue;
		char m[8];
		std::snprintf(m, sizeof(m), "0%o", st.st_mode & 07777);
		t.check(mode == m && st.st_uid == 0, "%s: mode %s uid %u, expected %s root", path.c_str(), m,
			st.st_uid, mode.c_str());
	}
	// The device has no mmap, read or write: an fd gives nothing but ioctls.
	void* p = ::mmap(nullptr, P, PROT_READ, MAP_SHARED, dev->fd(), 0);
	t.check(p == MAP_FAILED && errno == ENODEV, "mmap of %s: %s", kDevicePath,
		p == MAP_FAILED ? errno_desc(errno).c_str() : "it worked");
	if (p != MAP_FAILED)
		::munmap(p, P);
	char b[8];
	t.check(::read(dev->fd(), b, sizeof(b)) < 0 && errno == EINVAL, "read of %s: %s", kDevicePath,
		errno_desc(errno).c_str());
	t.check(::write(dev->fd(), b, sizeof(b)) < 0 && errno == EINVAL, "write of %s: %s", kDevicePath,
		errno_desc(errno).c_str());
}

// ------------------------------------------------------------ EPERM for all

// Every ioctl, with valid arguments against the parent's hat `id` (so any
// that went through would change it); each must give `want`.
struct Target {
	u32 id, id2;
	u64 va;
	const u8* buf;
};

void every_ioctl(const Device& d, T& t, const Target& x, int want, const char* who)
{
	htable_version v{};
	htable_hat_create hc{};
	htable_translate tr{};
	htable_job j{};
	htable_stats st{};
	htable_walk_entry we[4];
	htable_walk w{};
	w.hat_id = x.id;
	w.max_entries = 4;
	w.end = kDemoVa + k1G;
	w.entries = reinterpret_cast<uintptr_t>(we);
	const std::pair<const char*, std::function<int()>> calls[] = {
		{"VERSION", [&] { return d.version(v); }},
		{"HAT_CREATE", [&] { return d.hat_create(hc); }},
		{"MAP user", [&] { return d.map(x.id, x.va + P, x.buf + P, P); }},
		{"MAP owned", [&] { return d.map_owned(x.id, x.va + 2 * P, P); }},
		{"UNMAP", [&] { return d.unmap(x.id, x.va, P); }},
		{"TRANSLATE", [&] { return d.translate(x.id, x.va, tr); }},
		{"JOB", [&] { return d.job(x.id, HTABLE_JOB_FILL, x.va, P, 9, HTABLE_JOB_ANY_CPU, j); }},
		{"PROTECT", [&] { return d.protect(x.id, x.va, P, HTABLE_PROT_READ); }},
		{"LOCK", [&] { return d.lock(x.id, x.va, P, true); }},
		{"WALK", [&] { return d.walk(w); }},
		{"SHARE", [&] { return d.share(x.id2, x.id, x.va & ~(k2M - 1), 0); }},
		{"REAP", [&] { return d.reap(1u << 20); }},
		{"STATS", [&] { return d.stats(st); }},
		{"HAT_DESTROY", [&] { return d.hat_destroy(x.id); }},
	};
	for (const auto& [name, call] : calls)
		t.want_err(call(), want, "%s by %s", name, who);
}

// The state every_ioctl() must not have changed.
struct Snap {
	std::vector<htable_walk_entry> a, b;
	u64 sum = 0;
	Counters ctr;
};

std::optional<Snap> snap(Ctx& c, T& t, const Target& x, std::span<const u8> buf)
{
	Snap s;
	if (!t.want_ok(c.dev.walk_all(x.id, 0, c.end(), s.a), "WALK") ||
	    !t.want_ok(c.dev.walk_all(x.id2, 0, c.end(), s.b), "WALK"))
		return std::nullopt;
	s.sum = fnv1a64(buf);
	auto ctr = counters(t);
	if (!ctr)
		return std::nullopt;
	s.ctr = *ctr;
	return s;
}

bool same(const Snap& x, const Snap& y)
{
	auto eq = [](const std::vector<htable_walk_entry>& p, const std::vector<htable_walk_entry>& q) {
		return p.size() == q.size() &&
		       (p.empty() || !std::memcmp(p.data(), q.data(), p.size() * sizeof(p[0])));
	};
	return eq(x.a, y.a) && eq(x.b, y.b) && x.sum == y.sum && x.ctr.hats_live == y.ctr.hats_live &&
	       x.ctr.tables_live == y.ctr.tables_live && x.ctr.pinned_pages == y.ctr.pinned_pages;
}

// The effective bit of one capability: 0 or errno.
int set_effective(int cap, bool on)
{
	__user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	if (syscall(SYS_capget, &hdr, data) != 0)
		return errno;
	if (on)
		data[CAP_TO_INDEX(cap)].effective |= CAP_TO_MASK(cap);
	else
		data[CAP_TO_INDEX(cap)].effective &= ~CAP_TO_MASK(cap);
	return syscall(SYS_capset, &hdr, data) != 0 ? errno : 0;
}

struct UnprivArg {
	Target x;
	enum { Nobody, NoCap, UserNs, Effective } who;
};

void unpriv_child(Ctx& c, T& t, void* p)
{
	auto* a = static_cast<UnprivArg*>(p);
	switch (a->who) {
	case UnprivArg::Nobody: {
		// Everything a setuid to nobody leaves: the root-opened fd.
		if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
		    setresuid(65534, 65534, 65534) != 0)
			_exit(3);
		every_ioctl(c.dev, t, a->x, EPERM, "nobody, with root's fd");
		int fd = ::open(kDevicePath, O_RDWR);
		t.check(fd < 0 && errno == EACCES, "open %s as nobody: %s", kDevicePath,
			fd < 0 ? errno_desc(errno).c_str() : "it worked");
		fd = ::open(kStatsPath, O_RDONLY);
		t.check(fd < 0 && errno == EACCES, "open %s as nobody: %s", kStatsPath,
			fd < 0 ? errno_desc(errno).c_str() : "it worked");
		break;
	}
	case UnprivArg::NoCap: {
		// Root without CAP_SYS_ADMIN at all: the file mode lets it open,
		// but neither the new fd nor the inherited one does anything.
		if (drop_caps({CAP_SYS_ADMIN}, true) != 0)
			_exit(3);
		every_ioctl(c.dev, t, a->x, EPERM, "root without CAP_SYS_ADMIN, with the parent's fd");
		auto d = Device::open();
		if (t.want_ok(d ? 0 : d.error(), "open as root without CAP_SYS_ADMIN"))
			every_ioctl(*d, t, a->x, EPERM, "root without CAP_SYS_ADMIN, with its own fd");
		t.want_err(set_effective(CAP_SYS_ADMIN, true), EPERM,
			   "raising a CAP_SYS_ADMIN that is no longer permitted");
		break;
	}
	case UnprivArg::UserNs:
		// CAP_SYS_ADMIN in a user namespace of its own is not the
		// initial namespace's.
		if (unshare(CLONE_NEWUSER) != 0) {
			t.diag("branch: no user namespaces here (unshare: %s); not run",
			       errno_desc(errno).c_str());
			break;
		}
		every_ioctl(c.dev, t, a->x, EPERM, "root of a new user namespace");
		break;
	case UnprivArg::Effective: {
		// The check is made at each call, not at open: the same fd works
		// or not as the caller's effective set says at that moment.
		if (set_effective(CAP_SYS_ADMIN, false) != 0)
			_exit(3);
		auto d = Device::open();  // opened without the capability
		if (!t.want_ok(d ? 0 : d.error(), "open without CAP_SYS_ADMIN in the effective set"))
			break;
		htable_version v{};
		t.want_err(d->version(v), EPERM, "VERSION on it");
		t.want_err(c.dev.version(v), EPERM, "VERSION on the parent's fd");
		if (!t.want_ok(set_effective(CAP_SYS_ADMIN, true), "raise CAP_SYS_ADMIN again"))
			break;
		t.want_ok(d->version(v), "VERSION on the fd opened without it, capability raised");
		auto h = Hat::create(*d);
		t.want_ok(h ? 0 : h.error(), "HAT_CREATE on it");
		if (!t.want_ok(set_effective(CAP_SYS_ADMIN, false), "drop it again"))
			break;
		htable_translate tr{};
		if (h)
			t.want_err(d->translate(h->id(), kDemoVa, tr), EPERM, "TRANSLATE after dropping it");
		t.want_ok(set_effective(CAP_SYS_ADMIN, true), "raise it for the cleanup");
		break;
	}
	}
}

void t_unpriv(Ctx& c, T& t)
{
	auto f = fixture(c, t, 4);
	auto g = new_hat(c, t);
	if (!f || !g)
		return;
	const Target x{f->id(), g->id(), f->va, f->buf.data()};
	auto before = snap(c, t, x, f->buf.span(0, 4 * P));
	if (!before)
		return;
	const struct {
		decltype(UnprivArg::who) who;
		const char* what;
	} kinds[] = {
		{UnprivArg::Nobody, "setuid nobody, with root's fd"},
		{UnprivArg::NoCap, "root, CAP_SYS_ADMIN dropped for good"},
		{UnprivArg::UserNs, "root of a new user namespace"},
		{UnprivArg::Effective, "capability checked per call, not at open"},
	};
	for (const auto& k : kinds) {
		UnprivArg arg{x, k.who};
		in_child(t, k.what, unpriv_child, c, &arg);
		auto now = snap(c, t, x, f->buf.span(0, 4 * P));
		t.check(now && same(*before, *now), "%s: the hats, their memory or the counters changed",
			k.what);
	}
}

// ------------------------------------------------------------ own memory only

// A page at an address that another process has mapped and we have not is
// a hole to us: MAP pins the caller's memory, by the caller's page tables.
void t_own_mm(Ctx& c, T& t)
{
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	// an address free in both processes after the fork
	void* probe = ::mmap(nullptr, 2 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!t.check(probe != MAP_FAILED, "mmap: %s", std::strerror(errno)))
		return;
	::munmap(probe, 2 * P);
	u8* const x = static_cast<u8*>(probe);
	int to_child[2], to_parent[2];
	if (!t.check(pipe(to_child) == 0 && pipe(to_parent) == 0, "pipe: %s", std::strerror(errno)))
		return;
	std::fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		// the child maps x, fills it, and keeps it until told
		void* p = ::mmap(x, 2 * P, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		char ch = p == x ? 'r' : 'x';
		if (p == x)
			std::memset(x, 0xc1, 2 * P);
		if (write(to_parent[1], &ch, 1) != 1 || read(to_child[0], &ch, 1) < 0)
			_exit(1);
		_exit(0);
	}
	char ch = 0;
	const bool ready = pid > 0 && read(to_parent[0], &ch, 1) == 1 && ch == 'r';
	if (t.check(ready, "the child could not map its page at %p", x)) {
		auto before = counters(t);
		t.want_err(c.dev.map(hat->id(), kDemoVa, x, 2 * P), EFAULT,
			   "MAP of an address only the child has mapped");
		want_mapped(c, t, hat->id(), kDemoVa, false);
		if (auto after = counters(t); before && after)
			t.check(after->pinned_pages == before->pinned_pages, "pinned_pages %llu -> %llu",
				before->pinned_pages, after->pinned_pages);
		// the same address, now ours: our page, not the child's
		void* p = ::mmap(x, 2 * P, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (t.check(p == x, "mmap at %p: %s", x, std::strerror(errno))) {
			std::memset(x, 0x9a, 2 * P);
			htable_translate tr{};
			htable_job j{};
			std::string why;
			if (t.want_ok(c.dev.map(hat->id(), kDemoVa, x, 2 * P), "MAP of our own page at %p", x) &&
			    want_mapped(c, t, hat->id(), kDemoVa, true, &tr)) {
				if (auto pfn = pagemap_pfn(x, &why))
					t.check(*pfn == tr.pa >> 12, "TRANSLATE pa 0x%llx, our pagemap PFN 0x%llx",
						tr.pa, *pfn);
				if (want_job(c, t, j, hat->id(), HTABLE_JOB_CHECKSUM, kDemoVa, 2 * P, 0, 2 * P, 0))
					t.check(j.result == fnv1a64({x, 2 * P}),
						"the hat reads other bytes than ours (the child's 0xc1?)");
			}
			t.want_ok(c.dev.unmap(hat->id(), kDemoVa, 2 * P), "UNMAP");
			::munmap(x, 2 * P);
		}
	}
	if (pid > 0) {
		(void)!write(to_child[1], "q", 1);
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
	}
	for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
		close(fd);
}

// ------------------------------------------------------------ NX, raw entries

struct Pte {
	unsigned level;
	u64 va, pte;
};

constexpr u64 kPteAddr = 0x000ffffffffff000ull;  // bits 12-51
constexpr u64 kPteNx = 1ull << 63;

std::vector<Pte> read_ptes(T& t, u32 gid)
{
	std::vector<Pte> out;
	std::string text;
	const std::string path = hat_debugfs_dir(gid) + "/ptes";
	if (int err = read_file(path, text)) {
		t.check(false, "read %s: %s", path.c_str(), errno_desc(err).c_str());
		return out;
	}
	size_t pos = 0;
	while (pos < text.size()) {
		size_t eol = text.find('\n', pos);
		std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
		pos = eol == std::string::npos ? text.size() : eol + 1;
		Pte p{};
		unsigned long long va, pte;
		if (std::sscanf(line.c_str(), "L%u va=0x%llx pte=0x%llx", &p.level, &va, &pte) != 3) {
			t.check(false, "%s: unparsable line '%s'", path.c_str(), line.c_str());
			continue;
		}
		p.va = va;
		p.pte = pte;
		out.push_back(p);
	}
	return out;
}

const Pte* pte_at(const std::vector<Pte>& v, u64 va)
{
	for (const auto& p : v)
		if (p.va == va)
			return &p;
	return nullptr;
}

void t_nx(Ctx& c, T& t)
{
	const bool nx = c.ver.features & HTABLE_FEAT_NX;
	auto f = fixture(c, t, 4, false);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 v = f->va;
	const struct {
		u64 off;
		u32 prot;
		bool owned;
	} maps[] = {
		{0, kProtRW, false},
		{P, HTABLE_PROT_ALL, false},
		{2 * P, HTABLE_PROT_READ, false},
		{3 * P, HTABLE_PROT_READ | HTABLE_PROT_EXEC, false},
		{k2M, kProtRW, true},
	};
	for (const auto& m : maps) {
		int err = m.owned ? c.dev.map_owned(id, v + m.off, P, m.prot)
				  : c.dev.map(id, v + m.off, f->at(m.off), P, m.prot);
		if (!t.want_ok(err, "MAP %s at +0x%llx", prot_string(m.prot).c_str(), m.off))
			return;
	}
	auto gids = find_hat_gids(getpid(), id);
	if (!t.check(gids.size() == 1, "no debugfs directory for hat %u", id))
		return;
	t.diag("branch: %s", nx ? "HTABLE_FEAT_NX: data mappings must be NX" :
				  "no NX on this CPU: every mapping executable");
	auto check = [&](const char* when) {
		auto ptes = read_ptes(t, gids[0]);
		t.check(ptes.size() == std::size(maps), "%s: %zu resident leaves, %zu mapped", when,
			ptes.size(), std::size(maps));
		for (const auto& m : maps) {
			htable_translate tr{};
			if (!want_mapped(c, t, id, v + m.off, true, &tr))
				continue;
			const bool exec = m.prot & HTABLE_PROT_EXEC;
			t.check(!!(tr.prot & HTABLE_PROT_EXEC) == (exec || !nx),
				"%s: TRANSLATE of a %s mapping says %s", when, prot_string(m.prot).c_str(),
				prot_string(tr.prot).c_str());
			const Pte* p = pte_at(ptes, v + m.off);
			if (!t.check(p != nullptr, "%s: no leaf at 0x%llx in ptes", when, v + m.off))
				continue;
			t.check(!!(p->pte & kPteNx) == (nx && !exec),
				"%s: %s mapping: pte 0x%016llx, NX bit %s", when, prot_string(m.prot).c_str(),
				p->pte, (p->pte & kPteNx) ? "set" : "clear");
			// present, user, writable only with WRITE
			t.check((p->pte & 1) && (p->pte & 4) && !!(p->pte & 2) == !!(m.prot & HTABLE_PROT_WRITE),
				"%s: %s mapping: pte 0x%016llx (P, U/S, R/W)", when, prot_string(m.prot).c_str(),
				p->pte);
			t.check((p->pte & kPteAddr) == (tr.pa & kPteAddr), "%s: pte 0x%016llx, TRANSLATE pa 0x%llx",
				when, p->pte, tr.pa);
		}
	};
	check("as mapped");
	// PROTECT moves the bit both ways
	if (t.want_ok(c.dev.protect(id, v, P, HTABLE_PROT_ALL), "PROTECT +0 rwx") &&
	    t.want_ok(c.dev.protect(id, v + P, P, kProtRW), "PROTECT +4K rw-")) {
		auto ptes = read_ptes(t, gids[0]);
		const Pte *a = pte_at(ptes, v), *b = pte_at(ptes, v + P);
		t.check(a && !(a->pte & kPteNx), "PROTECT rwx: pte 0x%016llx keeps NX", a ? a->pte : 0);
		t.check(b && !!(b->pte & kPteNx) == nx, "PROTECT rw-: pte 0x%016llx", b ? b->pte : 0);
	}
}

// ------------------------------------------------------------ physical addresses

struct DebugfsArg {
	u32 gid;
	std::vector<Pte> admin;  // what a CAP_SYS_ADMIN reader saw
};

void no_pa_child(Ctx&, T& t, void* p)
{
	auto* a = static_cast<DebugfsArg*>(p);
	if (drop_caps({CAP_SYS_ADMIN}, true) != 0)
		_exit(3);
	std::string dump;
	if (t.want_ok(read_file(hat_debugfs_dir(a->gid) + "/dump", dump), "read dump without CAP_SYS_ADMIN"))
		t.check(!dump.empty() && dump.find("pa=") == std::string::npos,
			"dump without CAP_SYS_ADMIN shows a physical address:\n%s", dump.c_str());
	auto ptes = read_ptes(t, a->gid);
	t.check(ptes.size() == a->admin.size(), "ptes without CAP_SYS_ADMIN: %zu lines, %zu with it",
		ptes.size(), a->admin.size());
	for (size_t i = 0; i < ptes.size() && i < a->admin.size(); i++) {
		t.check(!(ptes[i].pte & kPteAddr), "ptes without CAP_SYS_ADMIN: 0x%016llx has address bits",
			ptes[i].pte);
		t.check(ptes[i].va == a->admin[i].va && ptes[i].pte == (a->admin[i].pte & ~kPteAddr),
			"ptes without CAP_SYS_ADMIN: 0x%016llx, the flags of 0x%016llx expected", ptes[i].pte,
			a->admin[i].pte);
	}
}

void nobody_debugfs_child(Ctx&, T& t, void* p)
{
	auto* a = static_cast<DebugfsArg*>(p);
	if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
	    setresuid(65534, 65534, 65534) != 0)
		_exit(3);
	for (const char* f : {"dump", "ptes", "info"}) {
		std::string s;
		t.want_err(read_file(hat_debugfs_dir(a->gid) + "/" + f, s), EACCES, "read %s as nobody", f);
	}
}

void t_debugfs_pa(Ctx& c, T& t)
{
	auto f = fixture(c, t, 2);
	if (!f)
		return;
	auto gids = find_hat_gids(getpid(), f->id());
	if (!t.check(gids.size() == 1, "no debugfs directory for hat %u", f->id()))
		return;
	DebugfsArg arg{gids[0], read_ptes(t, gids[0])};
	if (!t.check(arg.admin.size() == 2, "%zu leaves for 2 mapped pages", arg.admin.size()))
		return;
	for (const auto& p : arg.admin) {
		htable_translate tr{};
		if (want_mapped(c, t, f->id(), p.va, true, &tr))
			t.check((p.pte & kPteAddr) == tr.pa, "ptes as root: 0x%016llx, pa 0x%llx", p.pte, tr.pa);
	}
	std::string dump;
	if (t.want_ok(read_file(hat_debugfs_dir(gids[0]) + "/dump", dump), "read dump"))
		t.check(dump.find("pa=") != std::string::npos, "dump as root lacks the root's pa=");
	in_child(t, "debugfs without CAP_SYS_ADMIN", no_pa_child, c, &arg);
	in_child(t, "debugfs as nobody", nobody_debugfs_child, c, &arg);
}

// ------------------------------------------------------------ jobs stay killable

// A TOUCH of the whole user range of an empty hat: 2^35 or more pages of
// holes, hours of work.  Its caller must die at SIGKILL, in a window.
void t_kill_job(Ctx& c, T& t)
{
	auto before = counters(t);
	if (!t.check(before.has_value(), "debugfs stats needed"))
		return;
	const pid_t pid = fork_ready_child(t, "a child with a hat", [&](int fd) {
		auto dev = Device::open();
		auto hat = dev ? Hat::create(*dev) : Result<Hat>(Err{dev.error()});
		if (!hat || write(fd, "r", 1) != 1)
			_exit(3);
		htable_job j{};
		dev->job(hat->id(), HTABLE_JOB_TOUCH, 0, c.end() & ~u64(7), 0, HTABLE_JOB_ANY_CPU, j);
		_exit(0);
	});
	if (pid < 0)
		return;
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	std::string stat;
	(void)read_file("/proc/" + std::to_string(pid) + "/stat", stat);
	const size_t rp = stat.rfind(')');
	const char state = rp != std::string::npos && rp + 2 < stat.size() ? stat[rp + 2] : '?';
	t.check(state == 'D' || state == 'R', "the child is in state %c, not inside its job", state);
	kill(pid, SIGKILL);
	const auto t0 = std::chrono::steady_clock::now();
	int status = 0;
	pid_t got = 0;
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 &&
	       std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
				std::chrono::steady_clock::now() - t0).count();
	if (!t.check(got == pid, "the child inside a long job is still alive %lld ms after SIGKILL",
		     (long long)ms))
		return;  // stuck in D state: nothing more to do
	t.diag("the child died %lld ms after SIGKILL (it was in state %c)", (long long)ms, state);
	t.check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child wait status 0x%x", status);
	auto after = wait_counters(t, *before, 10000);
	t.check(after && after->hats_live == before->hats_live, "hats_live %llu -> %llu",
		before->hats_live, after ? after->hats_live : 0);
	// the runners are free again
	auto f = fixture(c, t, 1);
	htable_job j{};
	if (f)
		want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, P, 1, c.all_cpus_mask(), P, 0);
}

// ------------------------------------------------------------ memory cgroup

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

std::optional<u64> cg_u64(const std::string& cg, const char* file, const char* key = nullptr)
{
	std::string text;
	if (read_file(cg + "/" + file, text) != 0)
		return std::nullopt;
	u64 v;
	if (!key)
		return parse_u64(text.substr(0, text.find('\n')), v) ? std::optional<u64>(v) : std::nullopt;
	for (const auto& [k, val] : parse_kv(text))
		if (k == key && parse_u64(val, v))
			return v;
	return std::nullopt;
}

struct CgArg {
	std::string cg;
};

std::optional<u64> hat_tables(u32 id)
{
	auto gids = find_hat_gids(getpid(), id);
	std::string text;
	u64 v;
	if (gids.size() != 1 || read_file(hat_debugfs_dir(gids[0]) + "/info", text) != 0)
		return std::nullopt;
	for (const auto& [k, val] : parse_kv(text))
		if (k == "tables" && parse_u64(val, v))
			return v;
	return std::nullopt;
}

void memcg_child(Ctx& c, T& t, void* p)
{
	const std::string& cg = static_cast<CgArg*>(p)->cg;
	if (write_file(cg + "/cgroup.procs", "0") != 0)
		_exit(3);
	// 1. N level-0 tables: one page of ours mapped at N 2 MiB strides
	constexpr u64 n = 1024;
	constexpr u64 slack = 768 << 10;  // per-CPU charge batches, slab rounding
	Buffer page(P, 0x71, P, Huge::Never);
	auto dev = Device::open();
	if (!t.want_ok(dev ? 0 : dev.error(), "open"))
		return;
	// a hat create tops the module's reserve up: let that happen first
	if (auto warm = Hat::create(*dev); !t.want_ok(warm ? 0 : warm.error(), "HAT_CREATE"))
		return;
	auto cur0 = cg_u64(cg, "memory.current"), k0 = cg_u64(cg, "memory.stat", "kernel");
	auto hat = Hat::create(*dev);
	if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE") || !cur0 || !k0)
		return;
	for (u64 i = 0; i < n; i++)
		if (!t.want_ok(dev->map(hat->id(), kDemoVa + i * k2M, page.data(), P), "MAP %llu", i))
			return;
	auto tables = hat_tables(hat->id());
	auto cur1 = cg_u64(cg, "memory.current"), k1 = cg_u64(cg, "memory.stat", "kernel");
	if (!t.check(tables && cur1 && k1, "cannot read the hat's tables or the cgroup's memory"))
		return;
	const u64 want = *tables * P, dcur = *cur1 - *cur0, dk = *k1 - *k0;
	t.diag("%llu maps, %llu tables (%llu KiB): memory.current +%llu KiB, memory.stat kernel +%llu KiB",
	       n, *tables, want >> 10, dcur >> 10, dk >> 10);
	t.check(*tables > n, "%llu tables for %llu maps 2 MiB apart", *tables, n);
	// the tables, plus the bookkeeping of a map (500-750 bytes measured)
	t.check(*cur1 >= *cur0 && dcur + slack >= want && dcur <= want + n * 1024 + slack,
		"memory.current +%llu KiB for %llu KiB of page tables", dcur >> 10, want >> 10);
	t.check(*k1 >= *k0 && dk + slack >= want && dk <= want + n * 1024 + slack,
		"memory.stat kernel +%llu KiB for %llu KiB of page tables", dk >> 10, want >> 10);
	t.want_ok(hat->reset(), "HAT_DESTROY");
	auto cur2 = cg_u64(cg, "memory.current");
	if (t.check(cur2.has_value(), "memory.current"))
		t.check(*cur2 + slack >= *cur0 && *cur2 <= *cur0 + slack,
			"memory.current %llu KiB before the maps, %llu KiB after the destroy", *cur0 >> 10,
			*cur2 >> 10);

	// 2. memory.max 1 MiB above what we use: MAP fails with ENOMEM, and
	// nothing is OOM-killed.  The limit is lifted before anything else
	// runs: a page fault of ours at the limit would OOM-kill us.
	auto oom0 = cg_u64(cg, "memory.events", "oom_kill"), max0 = cg_u64(cg, "memory.events", "max");
	if (!t.check(oom0 && max0, "memory.events"))
		return;
	for (bool owned : {true, false}) {
		auto h = Hat::create(*dev);
		auto base = cg_u64(cg, "memory.current");
		if (!t.want_ok(h ? 0 : h.error(), "HAT_CREATE") || !t.check(base.has_value(), "memory.current"))
			break;
		// Nothing but the MAPs may allocate while the limit is on: even the
		// open() of a cgroup file would.  So memory.max is opened before.
		const int maxfd = ::open((cg + "/memory.max").c_str(), O_WRONLY | O_CLOEXEC);
		if (!t.check(maxfd >= 0, "open memory.max: %s", std::strerror(errno)))
			break;
		auto set_max = [maxfd](const std::string& v) {
			return ::pwrite(maxfd, v.data(), v.size(), 0) == ssize_t(v.size()) ? 0 : errno;
		};
		std::vector<htable_walk_entry> w;
		w.reserve(4096);
		const u64 tries = owned ? 4096 : 2048;
		u64 done = 0;
		int err = 0;
		int set_err = set_max(std::to_string(*base + (1 << 20)));
		if (!set_err) {
			for (; done < tries; done++) {
				err = owned ? dev->map_owned(h->id(), kDemoVa + done * k2M, P)
					    : dev->map(h->id(), kDemoVa + done * k2M, page.data(), P);
				if (err)
					break;
			}
		}
		const int unset_err = set_max("max");
		::close(maxfd);
		if (!t.want_ok(set_err, "memory.max = memory.current + 1 MiB") ||
		    !t.want_ok(unset_err, "memory.max = max"))
			break;
		auto tabs = hat_tables(h->id());
		t.diag("%s: %llu of %llu maps of 4 KiB at 2 MiB strides with 1 MiB of headroom, then %s; "
		       "the hat holds %llu tables", owned ? "owned memory" : "user memory", done, tries,
		       errno_desc(err).c_str(), tabs.value_or(0));
		if (owned)
			t.want_err(err, ENOMEM, "MAP owned at memory.max");
		else if (err)
			t.want_err(err, ENOMEM, "MAP of user memory at memory.max");
		// all or nothing: the refused map left nothing
		if (t.want_ok(dev->walk_all(h->id(), 0, c.end(), w), "WALK"))
			t.check(w.size() == done, "%zu mappings after %llu successful maps", w.size(), done);
		// tables recycled at the limit are reloaded from the record
		htable_job j{};
		if (done && t.want_ok(dev->job(h->id(), HTABLE_JOB_CHECKSUM, kDemoVa, 8, 0,
					       HTABLE_JOB_ANY_CPU, j), "CHECKSUM of the first page"))
			t.check(j.bytes == 8 && j.faults == 0, "CHECKSUM: %llu bytes, %llu faults", j.bytes,
				j.faults);
		t.want_ok(h->reset(), "HAT_DESTROY");
	}
	auto oom1 = cg_u64(cg, "memory.events", "oom_kill"), max1 = cg_u64(cg, "memory.events", "max");
	if (t.check(oom1 && max1, "memory.events")) {
		t.check(*oom1 == *oom0, "oom_kill %llu -> %llu: MAP at the limit OOM-killed", *oom0, *oom1);
		t.check(*max1 > *max0, "memory.events max %llu -> %llu: the limit was never reached", *max0,
			*max1);
	}
}

void t_memcg(Ctx& c, T& t)
{
	const std::string root = kCgroupRoot;
	std::string ctl;
	bool mounted = false, enabled = false;
	if (read_file(root + "/cgroup.controllers", ctl) != 0) {
		if (!t.check(::mount("none", kCgroupRoot, "cgroup2", 0, nullptr) == 0, "mount cgroup2 on %s: %s",
			     kCgroupRoot, std::strerror(errno)))
			return;
		mounted = true;
		(void)read_file(root + "/cgroup.controllers", ctl);
	}
	if (ctl.find("memory") == std::string::npos) {
		t.diag("branch: no memory controller in cgroup v2 (%s); not run", ctl.c_str());
	} else {
		std::string sub;
		(void)read_file(root + "/cgroup.subtree_control", sub);
		if (sub.find("memory") == std::string::npos) {
			enabled = t.want_ok(write_file(root + "/cgroup.subtree_control", "+memory"),
					    "enable +memory in %s/cgroup.subtree_control", kCgroupRoot);
		}
		CgArg arg{root + "/htable-selftest-" + std::to_string(getpid())};
		if (t.check(::mkdir(arg.cg.c_str(), 0755) == 0, "mkdir %s: %s", arg.cg.c_str(),
			    std::strerror(errno))) {
			t.diag("branch: memory cgroup %s", arg.cg.c_str());
			in_child(t, "a child in its own memory cgroup", memcg_child, c, &arg);
			t.check(::rmdir(arg.cg.c_str()) == 0, "rmdir %s: %s", arg.cg.c_str(),
				std::strerror(errno));
		}
		if (enabled)
			(void)write_file(root + "/cgroup.subtree_control", "-memory");
	}
	if (mounted)
		(void)::umount(kCgroupRoot);
}

}  // namespace

std::vector<Case> security_cases()
{
	return {
		{"security: /dev/htable is 0600 root:root, no mmap/read/write; debugfs root-only", t_node},
		{"security: nobody, root without CAP_SYS_ADMIN, a user namespace: EPERM on every "
		 "ioctl, per call", t_unpriv},
		{"security: MAP pins the caller's own memory; another process's address is a hole",
		 t_own_mm},
		{"security: data mappings are NX unless PROT_EXEC (TRANSLATE and the raw ptes)", t_nx},
		{"security: physical addresses in debugfs only for CAP_SYS_ADMIN readers", t_debugfs_pa},
		{"security: SIGKILL ends a job over hours of holes at its next window", t_kill_job},
		{"security: page tables are charged to the caller's memory cgroup; ENOMEM at memory.max",
		 t_memcg},
	};
}

}  // namespace htable::st
