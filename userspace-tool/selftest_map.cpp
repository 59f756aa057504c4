// SPDX-License-Identifier: GPL-2.0
//
// selftest: what grew around mappings -- 2 MiB pages of user memory (THP)
// and AUTO, module-owned memory, PROTECT, LOCK, WALK, SHARE, copied-top
// hats, and REAP (page tables given back, then reloaded from the record).
#include "selftest.hpp"

#include <algorithm>
#include <cerrno>
#include <set>
#include <unistd.h>

namespace htable::st {
namespace {

// Physical address of a byte of this process, from /proc/self/pagemap.
std::optional<u64> process_pa(const void* p, std::string* why = nullptr)
{
	auto pfn = pagemap_pfn(p, why);
	if (!pfn)
		return std::nullopt;
	return (*pfn << 12) | (reinterpret_cast<uintptr_t>(p) & (P - 1));
}

// The walk of [va, end) of a hat, in batches of `batch`.
bool walk(Ctx& c, T& t, u32 hat, u64 va, u64 end, std::vector<htable_walk_entry>& out,
	  u32 batch = 256)
{
	return t.want_ok(c.dev.walk_all(hat, va, end, out, batch), "WALK [0x%llx, 0x%llx)", va, end);
}

// Prot as reported by TRANSLATE/WALK equals the one set (without NX, an
// implementation may add EXEC).
bool prot_is(const Ctx& c, u32 got, u32 want)
{
	if (c.ver.features & HTABLE_FEAT_NX)
		return got == want;
	return (got & ~HTABLE_PROT_EXEC) == (want & ~HTABLE_PROT_EXEC);
}

// An owned-memory VA far from kDemoVa, 1 GiB aligned.
constexpr u64 kOwnedVa = kDemoVa + (64ull << 30);

// ------------------------------------------------------------ page sizes

// A 2 MiB aligned buffer of `len` bytes advised MADV_HUGEPAGE; tries a few
// times to get its first 2 MiB backed by one huge page.
std::optional<Buffer> thp_buffer(size_t len, bool* huge, std::string* why)
{
	std::optional<Buffer> buf;
	*huge = false;
	for (int attempt = 0; attempt < 3 && !*huge; attempt++) {
		buf.reset();
		buf.emplace(len, 0x3c, k2M, Huge::Want);
		*huge = physically_contiguous(buf->data(), k2M, why);
	}
	return buf;
}

void t_thp_2m(Ctx& c, T& t)
{
	const std::string mode = thp_mode();
	t.diag("transparent_hugepage/enabled: %s", mode.empty() ? "(no THP in this kernel)" : mode.c_str());
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	bool huge = false;
	std::string why;
	auto buf = thp_buffer(2 * k2M, &huge, &why);
	const u64 va = kDemoVa + k1G;
	auto before = counters(t);
	if (!huge) {
		t.diag("branch: no 2 MiB page behind the buffer (%s): explicit 2 MiB must give EINVAL",
		       why.c_str());
		t.want_err(c.dev.map(hat->id(), va, buf->data(), k2M, kProtRW, k2M), EINVAL,
			   "MAP page_size 2 MiB of memory without a 2 MiB page");
		want_mapped(c, t, hat->id(), va, false);
		if (auto after = counters(t); before && after)
			t.check(after->pinned_pages == before->pinned_pages, "pinned_pages %llu -> %llu",
				before->pinned_pages, after->pinned_pages);
		return;
	}
	t.diag("branch: THP-backed buffer: explicit 2 MiB maps one 2 MiB leaf");
	if (!t.want_ok(c.dev.map(hat->id(), va, buf->data(), k2M, kProtRW, k2M), "MAP 2 MiB of a THP"))
		return;
	const u64 off = 0x12345 & ~7ull;
	htable_translate tr{};
	if (want_mapped(c, t, hat->id(), va + off, true, &tr)) {
		t.check(tr.page_size == k2M && tr.level == 1, "leaf page_size 0x%llx level %llu",
			tr.page_size, tr.level);
		if (auto pa = process_pa(buf->data() + off))
			t.check(tr.pa == *pa, "TRANSLATE pa 0x%llx, pagemap 0x%llx", tr.pa, *pa);
	}
	std::vector<htable_walk_entry> w;
	if (walk(c, t, hat->id(), va - k2M, va + 2 * k2M, w) &&
	    t.check(w.size() == 1, "WALK: %zu entries for one 2 MiB leaf", w.size()))
		t.check(w[0].va == va && w[0].length == k2M && w[0].page_size == k2M &&
				w[0].pa == tr.pa - off,
			"WALK entry va 0x%llx length 0x%llx page_size 0x%llx pa 0x%llx", w[0].va,
			w[0].length, w[0].page_size, w[0].pa);
	if (auto mid = counters(t); before && mid)
		t.check(mid->pinned_pages == before->pinned_pages + k2M / P,
			"pinned_pages %llu -> %llu for a 2 MiB leaf (512 pins)", before->pinned_pages,
			mid->pinned_pages);
	htable_job j{};
	if (want_job(c, t, j, hat->id(), HTABLE_JOB_FILL, va, k2M, 0x2002, k2M, 0))
		t.check(count_mismatches(buf->span(0, k2M), 0x2002) == 0,
			"process reads back wrong bytes after a FILL through a 2 MiB leaf");
	// a 2 MiB leaf cannot start at a VA that is not 2 MiB aligned
	t.want_err(c.dev.map(hat->id(), va + k2M + P, buf->data(), k2M, kProtRW, k2M), EINVAL,
		   "MAP 2 MiB at a VA 4 KiB past a 2 MiB boundary");
	t.want_ok(c.dev.unmap(hat->id(), va, k2M), "UNMAP the 2 MiB leaf");
	if (auto after = counters(t); before && after)
		t.check(after->pinned_pages == before->pinned_pages, "pinned_pages %llu -> %llu after unmap",
			before->pinned_pages, after->pinned_pages);
}

void t_auto(Ctx& c, T& t)
{
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	bool huge = false;
	std::string why;
	// Buffer [B, B + 4M), its first 2 MiB hopefully one THP.  AUTO maps
	// [B, B + 2M + 8K) at [V, V + 2M + 8K): one 2 MiB leaf, then two 4 KiB
	// leaves (a 2 MiB leaf needs 2 MiB of the range).
	auto buf = thp_buffer(2 * k2M, &huge, &why);
	const u64 V = kDemoVa + 2 * k1G;
	const u64 len = k2M + 2 * P;
	if (!t.want_ok(c.dev.map(hat->id(), V, buf->data(), len, kProtRW, HTABLE_PAGE_AUTO),
		       "MAP AUTO 2 MiB + 8 KiB"))
		return;
	std::vector<htable_walk_entry> w;
	if (!walk(c, t, hat->id(), V, V + len, w))
		return;
	if (huge) {
		t.diag("branch: THP-backed: AUTO gives one 2 MiB leaf and two 4 KiB leaves");
		if (t.check(w.size() == 3, "WALK: %zu entries, expected 3", w.size())) {
			t.check(w[0].va == V && w[0].length == k2M && w[0].page_size == k2M,
				"entry 0: va 0x%llx length 0x%llx page_size 0x%llx", w[0].va, w[0].length,
				w[0].page_size);
			for (int i = 1; i < 3; i++)
				t.check(w[i].va == V + k2M + (i - 1) * P && w[i].length == P &&
						w[i].page_size == P,
					"entry %d: va 0x%llx length 0x%llx page_size 0x%llx", i, w[i].va,
					w[i].length, w[i].page_size);
		}
	} else {
		t.diag("branch: no THP behind the buffer (%s): AUTO gives %llu 4 KiB leaves",
		       why.c_str(), len / P);
		t.check(w.size() == len / P, "WALK: %zu entries, expected %llu", w.size(), len / P);
		for (const auto& e : w)
			if (!t.check(e.page_size == P, "entry va 0x%llx page_size 0x%llx", e.va, e.page_size))
				break;
	}
	// every entry's pa is where the process has that memory
	for (const auto& e : w) {
		auto pa = process_pa(buf->data() + (e.va - V));
		if (!pa)
			break;
		if (!t.check(e.pa == *pa, "WALK entry va 0x%llx: pa 0x%llx, pagemap 0x%llx", e.va, e.pa, *pa))
			break;
	}
	htable_job j{};
	if (want_job(c, t, j, hat->id(), HTABLE_JOB_FILL, V, len, 0xa070, len, 0))
		t.check(count_mismatches(buf->span(0, len), 0xa070) == 0, "FILL through AUTO leaves");
	t.want_ok(c.dev.unmap(hat->id(), V, len), "UNMAP");

	// A VA not congruent to the buffer modulo 2 MiB: AUTO falls back to
	// 4 KiB leaves, explicit 2 MiB is refused.
	const u64 V2 = V + k1G + P;
	t.want_err(c.dev.map(hat->id(), V2, buf->data(), k2M, kProtRW, k2M), EINVAL,
		   "MAP 2 MiB at a VA that is not 2 MiB aligned");
	if (t.want_ok(c.dev.map(hat->id(), V2, buf->data(), k2M, kProtRW, HTABLE_PAGE_AUTO),
		      "MAP AUTO at a VA 4 KiB past a 2 MiB boundary") &&
	    walk(c, t, hat->id(), V2, V2 + k2M, w)) {
		t.check(w.size() == k2M / P, "misaligned AUTO: %zu entries, expected 512", w.size());
		t.check(std::all_of(w.begin(), w.end(), [](const auto& e) { return e.page_size == P; }),
			"misaligned AUTO used a leaf larger than 4 KiB");
	}
}

// ------------------------------------------------------------ owned memory

void t_owned(Ctx& c, T& t)
{
	auto before = counters(t);
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	const u32 id = hat->id();
	const u64 V = kOwnedVa;
	htable_job j{};
	htable_translate tr{};

	// 4 KiB leaves: zeroed by the module, then filled and read back
	if (t.want_ok(c.dev.map_owned(id, V, 8 * P, kProtRW, HTABLE_PAGE_4K), "MAP owned 8 x 4 KiB")) {
		if (want_mapped(c, t, id, V + 5 * P + 8, true, &tr))
			t.check(tr.page_size == P && tr.pa != 0 && (tr.pa & (P - 1)) == 8,
				"owned 4 KiB: page_size %llu pa 0x%llx", tr.page_size, tr.pa);
		const std::vector<u8> zero(8 * P, 0);
		if (want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, V, 8 * P, 0, 8 * P, 0))
			t.check(j.result == fnv1a64(zero), "new owned memory is not all zero");
		want_job(c, t, j, id, HTABLE_JOB_FILL, V, 8 * P, 0x0aaa, 8 * P, 0);
		if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V, 8 * P, 0x0aaa, 8 * P, 0))
			t.check(j.result == 0, "VERIFY owned 4 KiB: %llu mismatches", j.result);
		if (want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, V, 8 * P, 0, 8 * P, 0))
			t.check(j.result == pattern_fnv1a64(0x0aaa, 8 * P),
				"CHECKSUM after FILL 0x%llx, pattern's FNV 0x%llx", j.result,
				pattern_fnv1a64(0x0aaa, 8 * P));
	}
	// 2 MiB leaves, explicit and AUTO
	const u64 V2 = V + k1G, V3 = V + 2 * k1G, V4 = V + 3 * k1G;
	if (t.want_ok(c.dev.map_owned(id, V2, 2 * k2M, kProtRW, k2M), "MAP owned 2 x 2 MiB")) {
		if (want_mapped(c, t, id, V2 + k2M + 0x1238, true, &tr))
			t.check(tr.page_size == k2M && tr.level == 1 && (tr.pa & (k2M - 1)) == 0x1238,
				"owned 2 MiB: page_size 0x%llx level %llu pa 0x%llx", tr.page_size,
				tr.level, tr.pa);
		want_job(c, t, j, id, HTABLE_JOB_FILL, V2, 2 * k2M, 0x2bbb, 2 * k2M, 0);
		if (want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, V2, 2 * k2M, 0, 2 * k2M, 0))
			t.check(j.result == pattern_fnv1a64(0x2bbb, 2 * k2M),
				"CHECKSUM of 4 MiB owned after FILL differs from the pattern's");
		// a 4 KiB hole punched into a 2 MiB leaf: the rest stays, data too
		if (t.want_ok(c.dev.unmap(id, V2 + 10 * P, P), "UNMAP 4 KiB inside an owned 2 MiB leaf")) {
			want_mapped(c, t, id, V2 + 10 * P, false);
			if (want_mapped(c, t, id, V2 + 11 * P, true, &tr))
				t.check(tr.page_size == P, "after the hole: page_size 0x%llx", tr.page_size);
			if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V2, 2 * k2M, 0x2bbb, 2 * k2M - P, 1))
				t.check(j.result == 0, "VERIFY around the hole: %llu mismatches", j.result);
		}
	}
	if (t.want_ok(c.dev.map_owned(id, V3, k2M, kProtRW, HTABLE_PAGE_AUTO), "MAP owned AUTO 2 MiB") &&
	    want_mapped(c, t, id, V3 + 5 * P, true, &tr))
		t.check(tr.page_size == k2M, "owned AUTO, 2 MiB aligned: page_size 0x%llx", tr.page_size);
	if (t.want_ok(c.dev.map_owned(id, V4, k2M + P, kProtRW, HTABLE_PAGE_AUTO),
		      "MAP owned AUTO 2 MiB + 4 KiB") &&
	    want_mapped(c, t, id, V4, true, &tr))
		t.check(tr.page_size == P, "owned AUTO, length not 2 MiB aligned: page_size 0x%llx",
			tr.page_size);

	// refused
	htable_map m{};
	m.hat_id = id;
	m.prot = kProtRW;
	m.va = V + 4 * k1G;
	m.length = P;
	m.flags = HTABLE_MAP_OWNED;
	m.uaddr = 0x10000;
	t.want_err(c.dev.map(m), EINVAL, "MAP owned with uaddr != 0");
	t.want_err(c.dev.map_owned(id, V + 4 * k1G + P, k2M, kProtRW, k2M), EINVAL,
		   "MAP owned 2 MiB at a VA that is not 2 MiB aligned");
	t.want_err(c.dev.map_owned(id, V + 4 * k1G, k1G, kProtRW, k1G), EOPNOTSUPP,
		   "MAP owned 1 GiB");
	t.want_err(c.dev.map_owned(id, V + 4 * k1G, P, kProtRW, 8 * P), EOPNOTSUPP,
		   "MAP owned page_size 32 KiB");
	t.want_err(c.dev.map_owned(id, V + 4 * P, 8 * P), EEXIST, "MAP owned over an owned mapping");
	want_mapped(c, t, id, V + 4 * k1G, false);
	if (auto mid = counters(t); before && mid)
		t.check(mid->pinned_pages == before->pinned_pages,
			"owned memory is not pinned user memory: pinned_pages %llu -> %llu",
			before->pinned_pages, mid->pinned_pages);

	// unmap frees: the memory goes back to the system.  Freed 2 MiB pages
	// may wait in per-CPU lists (not counted in MemFree), so the check is
	// that a second MAP of the same size reuses them: MemFree after it is
	// about what it was after the first, where a leak would cost 32 MiB more.
	const u64 big = 16 * k2M;
	const u64 V5 = V + 5 * k1G;
	auto free0 = meminfo_kib("MemFree");
	if (t.want_ok(c.dev.map_owned(id, V5, big, kProtRW, k2M), "MAP owned 32 MiB")) {
		auto free1 = meminfo_kib("MemFree");
		want_job(c, t, j, id, HTABLE_JOB_TOUCH, V5, big, 0, 8 * (big / P), 0);
		t.want_ok(c.dev.unmap(id, V5, big), "UNMAP owned 32 MiB");
		auto free2 = meminfo_kib("MemFree");
		if (t.want_ok(c.dev.map_owned(id, V5 + k1G, big, kProtRW, k2M), "MAP owned 32 MiB again")) {
			auto free3 = meminfo_kib("MemFree");
			t.want_ok(c.dev.unmap(id, V5 + k1G, big), "UNMAP owned 32 MiB again");
			if (t.check(free0 && free1 && free2 && free3, "MemFree unreadable")) {
				const long long taken = (long long)*free0 - (long long)*free1;
				const long long again = (long long)*free1 - (long long)*free3;
				t.diag("MemFree KiB: %llu, map %llu, unmap %llu, map again %llu", *free0, *free1,
				       *free2, *free3);
				t.check(taken >= (long long)(big / 2048), "MAP of 32 MiB owned took only %lld KiB",
					taken);
				t.check(again < (long long)(big / 2048),
					"a second MAP of 32 MiB took %lld KiB more: the first UNMAP did not free",
					again);
			}
		}
	}
	const u32 gone = id;
	t.want_ok(hat->reset(), "HAT_DESTROY with owned mappings");
	if (before) {
		auto after = wait_counters(t, *before, 2000);
		if (after)
			t.check(after->hats_live == before->hats_live &&
					after->tables_live == before->tables_live &&
					after->pinned_pages == before->pinned_pages,
				"after destroying hat %u: hats_live %llu->%llu tables_live %llu->%llu "
				"pinned_pages %llu->%llu", gone, before->hats_live, after->hats_live,
				before->tables_live, after->tables_live, before->pinned_pages,
				after->pinned_pages);
	}
}

// An owned 2 MiB leaf is freed once the last of its 4 KiB pieces is
// unmapped.  Its region used to be found by VA alone, so unmapping what a
// later MAP put where a piece of it had been counted against the leaf once
// more, and the leaf went back to the page allocator with half of it still
// mapped (found by htablectl fuzz).
void t_owned_remap(Ctx& c, T& t)
{
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	const u32 id = hat->id();
	const u64 L = kOwnedVa + 8 * k1G, half = k2M / 2;
	htable_translate tr{};
	if (!t.want_ok(c.dev.map_owned(id, L, k2M, kProtRW, k2M), "MAP owned 2 MiB") ||
	    !want_mapped(c, t, id, L, true, &tr))
		return;
	const u64 pa = tr.pa;
	t.want_ok(c.dev.unmap(id, L, half), "UNMAP the first half of the leaf");
	t.want_ok(c.dev.map_owned(id, L, half, kProtRW, HTABLE_PAGE_4K), "MAP owned 4 KiB pages there");
	t.want_ok(c.dev.unmap(id, L, half), "UNMAP those");
	htable_job j{};
	if (!want_job(c, t, j, id, HTABLE_JOB_FILL, L + half, half, 0x77, half, 0))
		return;
	// The leaf's page must not be handed out again while half of it is mapped.
	for (u64 k = 0; k < 4; k++) {
		const u64 V = L + k1G + k * k2M;
		if (t.want_ok(c.dev.map_owned(id, V, k2M, kProtRW, k2M), "MAP owned 2 MiB #%llu", k) &&
		    want_mapped(c, t, id, V, true, &tr))
			t.check(tr.pa + k2M <= pa || pa + k2M <= tr.pa,
				"a new owned 2 MiB leaf got pa 0x%llx, the half-mapped leaf's page 0x%llx", tr.pa, pa);
	}
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, L + half, half, 0x77, half, 0))
		t.check(j.result == 0, "the mapped half of the leaf lost its bytes: %llu mismatches", j.result);
}

// ------------------------------------------------------------ protect

void t_protect(Ctx& c, T& t)
{
	auto f = fixture(c, t, 8);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 V = f->va, len = 8 * P;
	auto stats0 = stats_map(t);
	fill_pattern(f->buf.span(0, len), 1);
	htable_translate tr{};
	htable_job j{};

	if (!t.want_ok(c.dev.protect(id, V + 2 * P, 3 * P, HTABLE_PROT_READ), "PROTECT pages 2-4 r--"))
		return;
	for (u64 i = 0; i < 8; i++) {
		const bool ro = i >= 2 && i <= 4;
		if (want_mapped(c, t, id, V + i * P, true, &tr))
			t.check(prot_is(c, tr.prot, ro ? HTABLE_PROT_READ : kProtRW),
				"page %llu: prot %s, expected %s", i, prot_string(tr.prot).c_str(),
				ro ? "r--" : "rw-");
	}
	// a FILL faults exactly on the read-only pages and writes the others
	if (want_job(c, t, j, id, HTABLE_JOB_FILL, V, len, 2, 5 * P, 3)) {
		t.check(count_mismatches(f->buf.span(2 * P, 3 * P), 1, 2 * P) == 0,
			"FILL wrote through a read-only mapping");
		t.check(count_mismatches(f->buf.span(0, 2 * P), 2) == 0 &&
				count_mismatches(f->buf.span(5 * P, 3 * P), 2, 5 * P) == 0,
			"FILL did not write the writable pages");
	}
	// reading is fine
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V, len, 2, len, 0))
		t.check(j.result == count_mismatches(f->buf.span(0, len), 2),
			"VERIFY through r-- pages: %llu mismatches, process counts %llu", j.result,
			count_mismatches(f->buf.span(0, len), 2));
	// back to rw
	if (t.want_ok(c.dev.protect(id, V, len, kProtRW), "PROTECT all rw-") &&
	    want_job(c, t, j, id, HTABLE_JOB_FILL, V, len, 3, len, 0))
		t.check(count_mismatches(f->buf.span(0, len), 3) == 0, "FILL after PROTECT rw- incomplete");
	if (t.want_ok(c.dev.protect(id, V + P, P, HTABLE_PROT_ALL), "PROTECT page 1 rwx") &&
	    want_mapped(c, t, id, V + P, true, &tr))
		t.check(tr.prot == HTABLE_PROT_ALL, "after PROTECT rwx: prot %s", prot_string(tr.prot).c_str());
	// holes are fine
	t.want_ok(c.dev.protect(id, V - 4 * P, len + 8 * P, kProtRW), "PROTECT a range with holes");
	t.want_ok(c.dev.protect(id, V + k1G, 4 * P, HTABLE_PROT_READ), "PROTECT a never-mapped range");
	want_mapped(c, t, id, V + k1G, false);

	// (refused PROTECTs: selftest_badinput)
	auto stats1 = stats_map(t);
	if (stats0.count("protects") && stats1.count("protects"))
		t.check(stats1["protects"] >= stats0["protects"] + 5, "stats protects %llu -> %llu",
			stats0["protects"], stats1["protects"]);
}

void t_protect_large(Ctx& c, T& t)
{
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	const u32 id = hat->id();
	const u64 V = kOwnedVa;
	htable_translate tr{};
	htable_job j{};
	if (!t.want_ok(c.dev.map_owned(id, V, k2M, kProtRW, k2M), "MAP owned 2 MiB"))
		return;
	want_job(c, t, j, id, HTABLE_JOB_FILL, V, k2M, 0x77, k2M, 0);
	// PROTECT one 4 KiB piece of a 2 MiB leaf: the leaf is broken up
	if (t.want_ok(c.dev.protect(id, V + 4 * P, P, HTABLE_PROT_READ), "PROTECT 4 KiB inside 2 MiB")) {
		if (want_mapped(c, t, id, V + 4 * P, true, &tr))
			t.check(tr.page_size == P && !(tr.prot & HTABLE_PROT_WRITE),
				"protected piece: page_size 0x%llx prot %s", tr.page_size,
				prot_string(tr.prot).c_str());
		if (want_mapped(c, t, id, V + 5 * P, true, &tr))
			t.check(tr.page_size == P && (tr.prot & HTABLE_PROT_WRITE),
				"neighbour piece: page_size 0x%llx prot %s", tr.page_size,
				prot_string(tr.prot).c_str());
		if (want_job(c, t, j, id, HTABLE_JOB_FILL, V, k2M, 0x78, k2M - P, 1)) {
			// every byte holds pattern 0x78 but the read-only piece, which
			// kept pattern 0x77: exactly these bytes differ
			u64 differ = 0, first = ~0ull;
			for (u64 o = 4 * P; o < 5 * P; o++)
				if (htable_pattern_byte(0x77, o) != htable_pattern_byte(0x78, o) && differ++ == 0)
					first = o;
			htable_job v{};
			if (want_job(c, t, v, id, HTABLE_JOB_VERIFY, V, k2M, 0x78, k2M, 0))
				t.check(v.result == differ && v.first_bad == first,
					"VERIFY 0x78: %llu mismatches from %llu; expected %llu from %llu (the "
					"read-only piece only)", v.result, v.first_bad, differ, first);
		}
	}
	// a locked 2 MiB leaf is never broken up: EBUSY
	const u64 W = V + k1G;
	if (t.want_ok(c.dev.map_owned(id, W, k2M, kProtRW, k2M), "MAP owned 2 MiB") &&
	    t.want_ok(c.dev.lock(id, W, k2M, true), "LOCK the 2 MiB leaf")) {
		t.want_err(c.dev.protect(id, W + P, P, HTABLE_PROT_READ), EBUSY,
			   "PROTECT 4 KiB inside a locked 2 MiB leaf");
		t.want_err(c.dev.unmap(id, W + P, P), EBUSY, "UNMAP 4 KiB inside a locked 2 MiB leaf");
		if (want_mapped(c, t, id, W + P, true, &tr))
			t.check(tr.page_size == k2M && (tr.prot & HTABLE_PROT_WRITE),
				"after EBUSY: page_size 0x%llx prot %s", tr.page_size,
				prot_string(tr.prot).c_str());
		t.want_ok(c.dev.protect(id, W, k2M, HTABLE_PROT_READ), "PROTECT the whole locked leaf");
		t.want_ok(c.dev.unmap(id, W, k2M), "UNMAP the whole locked leaf");
		want_mapped(c, t, id, W, false);
	}
}

// ------------------------------------------------------------ walk

void t_walk(Ctx& c, T& t)
{
	auto f = fixture(c, t, 12, false);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 V = f->va;
	// [V, V + 8P) rw from pages 0-7; hole; [V + 16P, V + 20P) r-- from pages 8-11
	if (!t.want_ok(c.dev.map(id, V, f->at(0), 8 * P), "MAP 8 pages") ||
	    !t.want_ok(c.dev.map(id, V + 16 * P, f->at(8 * P), 4 * P, HTABLE_PROT_READ), "MAP 4 pages r--"))
		return;
	struct Want {
		u64 va;
		u64 buf_off;
		u32 prot;
	};
	std::vector<Want> want;
	for (u64 i = 0; i < 8; i++)
		want.push_back({V + i * P, i * P, kProtRW});
	for (u64 i = 0; i < 4; i++)
		want.push_back({V + (16 + i) * P, (8 + i) * P, HTABLE_PROT_READ});

	// by hand, 3 entries per call
	const u64 start = V - 4 * P, end = V + 32 * P;
	std::vector<htable_walk_entry> got;
	std::array<htable_walk_entry, 4> buf{};
	u64 va = start;
	unsigned calls = 0;
	while (va < end && calls < 64) {
		buf.fill(htable_walk_entry{0xdead, 0, 0, 0, 0, 0});
		htable_walk w{};
		w.hat_id = id;
		w.max_entries = 3;
		w.va = va;
		w.end = end;
		w.entries = reinterpret_cast<uintptr_t>(buf.data());
		calls++;
		if (!t.want_ok(c.dev.walk(w), "WALK call %u from 0x%llx", calls, va))
			return;
		if (!t.check(w.count <= 3, "WALK wrote %u entries with max_entries 3", w.count))
			return;
		t.check(buf[3].va == 0xdead, "WALK wrote past max_entries");
		t.check(w.next > va && w.next <= end, "WALK next 0x%llx from va 0x%llx, end 0x%llx", w.next,
			va, end);
		if (w.count)
			t.check(w.next >= buf[w.count - 1].va + buf[w.count - 1].length,
				"WALK next 0x%llx inside the last entry", w.next);
		got.insert(got.end(), buf.begin(), buf.begin() + w.count);
		if (w.next <= va)
			break;
		va = w.next;
	}
	t.diag("12 mappings in %u WALK calls of at most 3 entries", calls);
	t.check(calls >= 4, "only %u WALK calls for 12 entries of at most 3", calls);
	if (t.check(got.size() == want.size(), "WALK found %zu mappings, expected %zu", got.size(),
		    want.size())) {
		for (size_t i = 0; i < got.size(); i++) {
			const auto& e = got[i];
			const auto& w = want[i];
			bool ok = t.check(e.va == w.va && e.length == P && e.page_size == P && e.flags == 0,
					  "entry %zu: va 0x%llx length 0x%llx page_size 0x%llx flags 0x%x, "
					  "expected va 0x%llx", i, e.va, e.length, e.page_size, e.flags, w.va);
			ok &= t.check(prot_is(c, e.prot, w.prot), "entry %zu: prot %s, expected %s", i,
				      prot_string(e.prot).c_str(), prot_string(w.prot).c_str());
			std::string why;
			if (auto pa = process_pa(f->at(w.buf_off), &why))
				ok &= t.check(e.pa == *pa, "entry %zu: pa 0x%llx, pagemap says 0x%llx", i, e.pa, *pa);
			else if (i == 0)
				t.diag("pa not cross-checked: %s", why.c_str());
			if (!ok)
				break;
		}
	}
	// walk_all with a large batch agrees; a walk from inside a page starts there
	std::vector<htable_walk_entry> all;
	if (t.want_ok(c.dev.walk_all(id, start, end, all, 4096), "WALK with max_entries 4096"))
		t.check(all.size() == got.size(), "one big WALK: %zu entries, batched: %zu", all.size(),
			got.size());
	if (t.want_ok(c.dev.walk_all(id, V + 2 * P + 0x100, V + 3 * P, all), "WALK from va + 0x100") &&
	    t.check(all.size() == 1, "WALK inside one page: %zu entries", all.size())) {
		t.check(all[0].va == V + 2 * P + 0x100 && all[0].length == P - 0x100,
			"WALK from inside a page: va 0x%llx length 0x%llx", all[0].va, all[0].length);
		if (auto pa = process_pa(f->at(2 * P + 0x100)))
			t.check(all[0].pa == *pa, "WALK from inside a page: pa 0x%llx, expected 0x%llx",
				all[0].pa, *pa);
	}
	// the hole, and an empty hat
	if (t.want_ok(c.dev.walk_all(id, V + 8 * P, V + 16 * P, all), "WALK of the hole"))
		t.check(all.empty(), "WALK of a hole: %zu entries", all.size());
	{
		htable_walk w{};
		w.hat_id = id;
		w.max_entries = 1;
		w.va = V + 8 * P;
		w.end = V + 16 * P;
		w.entries = 0;  // nothing to write: no fault
		if (t.want_ok(c.dev.walk(w), "WALK of a hole with entries = NULL"))
			t.check(w.count == 0 && w.next == w.end, "WALK of a hole: count %u next 0x%llx", w.count,
				w.next);
	}

	// the whole user range (bad arguments: selftest_badinput)
	std::array<htable_walk_entry, 8> b{};
	htable_walk w{};
	w.hat_id = id;
	w.max_entries = 8;
	w.va = V;
	w.end = c.end();
	w.entries = reinterpret_cast<uintptr_t>(b.data());
	t.want_ok(c.dev.walk(w), "WALK up to user_va_end");
}

// ------------------------------------------------------------ share

void t_share(Ctx& c, T& t)
{
	auto src = new_hat(c, t), dst = new_hat(c, t);
	if (!src || !dst)
		return;
	const u32 s = src->id(), d = dst->id();
	Buffer buf(32 * P, 0, P, Huge::Never);
	const u64 V = kDemoVa + 8 * k1G;  // 2 MiB aligned: one level-0 table
	fill_pattern(buf.span(0, 8 * P), 0x51);
	if (!t.want_ok(c.dev.map(s, V, buf.data(), 8 * P), "MAP 8 pages in src"))
		return;

	// (refused SHAREs of bad arguments: selftest_badinput)
	{
		// dst already maps something there
		auto other = new_hat(c, t);
		if (other && t.want_ok(c.dev.map(other->id(), V + 100 * P, buf.data() + 20 * P, P),
				       "MAP one page in a third hat"))
			t.want_err(c.dev.share(other->id(), s, V, 0), EEXIST,
				   "SHARE into a hat that maps a page of the range");
	}
	want_mapped(c, t, d, V, false);

	if (!t.want_ok(c.dev.share(d, s, V, 0), "SHARE level 0 at 0x%llx", V))
		return;
	htable_translate ts{}, td{};
	if (want_mapped(c, t, s, V + 3 * P + 8, true, &ts) && want_mapped(c, t, d, V + 3 * P + 8, true, &td))
		t.check(ts.pa == td.pa, "TRANSLATE in dst 0x%llx, in src 0x%llx", td.pa, ts.pa);
	std::vector<htable_walk_entry> w;
	if (walk(c, t, d, V - k2M, V + 2 * k2M, w) &&
	    t.check(w.size() == 1, "WALK of dst: %zu entries, expected one shared range", w.size()))
		t.check(w[0].va == V && w[0].length == k2M && (w[0].flags & HTABLE_WALK_SHARED) &&
				w[0].pa == 0,
			"dst WALK entry va 0x%llx length 0x%llx flags %s pa 0x%llx", w[0].va, w[0].length,
			walk_flags_string(w[0].flags).c_str(), w[0].pa);
	t.want_err(c.dev.share(d, s, V, 0), EEXIST, "SHARE the same range again");

	// dst reads and writes what src maps
	htable_job j{};
	if (want_job(c, t, j, d, HTABLE_JOB_VERIFY, V, 8 * P, 0x51, 8 * P, 0))
		t.check(j.result == 0, "dst VERIFY of src's memory: %llu mismatches", j.result);
	if (want_job(c, t, j, d, HTABLE_JOB_FILL, V, 8 * P, 0x52, 8 * P, 0))
		t.check(count_mismatches(buf.span(0, 8 * P), 0x52) == 0,
			"a FILL in dst did not reach src's memory");
	// what src maps later in the shared table is visible in dst at once
	if (t.want_ok(c.dev.map(s, V + 64 * P, buf.data() + 8 * P, 4 * P), "MAP 4 more pages in src")) {
		fill_pattern(buf.span(8 * P, 4 * P), 0x53);
		if (want_job(c, t, j, d, HTABLE_JOB_VERIFY, V + 64 * P, 4 * P, 0x53, 4 * P, 0))
			t.check(j.result == 0, "dst VERIFY of src's new pages: %llu mismatches", j.result);
	}
	// dst cannot change the range piecewise
	t.want_err(c.dev.unmap(d, V, P), EINVAL, "UNMAP one page of a shared range in dst");
	t.want_err(c.dev.unmap(d, V + k2M - P, 2 * P), EINVAL, "UNMAP across the end of a shared range");
	t.want_err(c.dev.protect(d, V, P, HTABLE_PROT_READ), EINVAL, "PROTECT in a shared range in dst");
	t.want_err(c.dev.map(d, V + 200 * P, buf.data() + 20 * P, P), EEXIST,
		   "MAP in dst inside the shared range");
	want_job(c, t, j, d, HTABLE_JOB_CHECKSUM, V, 8 * P, 0, 8 * P, 0);

	// src unmaps: dst faults
	if (t.want_ok(c.dev.unmap(s, V, 8 * P), "UNMAP in src")) {
		want_job(c, t, j, d, HTABLE_JOB_CHECKSUM, V, 8 * P, 0, 0, 8);
		want_mapped(c, t, d, V, false);
		want_job(c, t, j, d, HTABLE_JOB_VERIFY, V + 64 * P, 4 * P, 0x53, 4 * P, 0);
	}
	// dst drops the whole range: its own view is empty, src is unaffected
	if (t.want_ok(c.dev.unmap(d, V, k2M), "UNMAP the whole shared range in dst")) {
		want_job(c, t, j, d, HTABLE_JOB_CHECKSUM, V + 64 * P, 4 * P, 0, 0, 4);
		if (want_job(c, t, j, s, HTABLE_JOB_VERIFY, V + 64 * P, 4 * P, 0x53, 4 * P, 0))
			t.check(j.result == 0, "src after dst unshared: %llu mismatches", j.result);
		if (walk(c, t, d, V - k2M, V + 2 * k2M, w))
			t.check(w.empty(), "dst WALK after unmap: %zu entries", w.size());
		// and may map there again
		t.want_ok(c.dev.map(d, V, buf.data() + 16 * P, P), "MAP in dst where the shared range was");
	}
}

// After the last sharer unlinks it, the source's table must behave like
// any other: emptied, released; in use, stealable again.
void t_share_release(Ctx& c, T& t)
{
	auto src = new_hat(c, t), dst = new_hat(c, t);
	if (!src || !dst)
		return;
	const u32 s = src->id(), d = dst->id();
	Buffer buf(8 * P, 0, P, Huge::Never);
	const u64 V = kDemoVa + 9 * k1G;
	htable_job j{};
	if (!t.want_ok(c.dev.map(s, V, buf.data(), 4 * P), "MAP in src") ||
	    !t.want_ok(c.dev.share(d, s, V, 0), "SHARE") ||
	    !t.want_ok(c.dev.unmap(d, V, k2M), "UNMAP the shared range in dst (unshare)"))
		return;
	want_job(c, t, j, s, HTABLE_JOB_FILL, V, 4 * P, 0x61, 4 * P, 0);
	u64 freed = 0;
	t.want_ok(c.dev.reap(1u << 30, &freed), "REAP");
	if (want_job(c, t, j, s, HTABLE_JOB_VERIFY, V, 4 * P, 0x61, 4 * P, 0)) {
		t.check(j.result == 0, "VERIFY: %llu mismatches", j.result);
		t.check(j.reloads > 0, "src's once-shared table was not stolen by REAP (freed %llu, "
			"reloads %llu): still pinned after the unshare", freed, j.reloads);
	}
	t.want_ok(c.dev.unmap(s, V, 4 * P), "UNMAP everything in src");

	// Second order: src empties the table while it is shared, then dst
	// unshares.  The empty table must not stay behind in src (a kernel
	// with DEBUG_VM checks every invariant of a small hat after each
	// change, and warns).
	const u64 W = V + k1G;
	if (!t.want_ok(c.dev.map(s, W, buf.data(), 4 * P), "MAP in src") ||
	    !t.want_ok(c.dev.share(d, s, W, 0), "SHARE") ||
	    !t.want_ok(c.dev.unmap(s, W, 4 * P), "UNMAP everything in src while shared") ||
	    !t.want_ok(c.dev.unmap(d, W, k2M), "UNMAP the shared range in dst (unshare)"))
		return;
	auto gids = find_hat_gids(getpid(), s);
	std::string info;
	if (gids.size() == 1 && read_file(hat_debugfs_dir(gids[0]) + "/info", info) == 0) {
		u64 tables = 0;
		for (const auto& [k, v] : parse_kv(info))
			if (k == "tables")
				parse_u64(v, tables);
		// the top table and the tables of [W + 2M, ...) mapped next are all
		// src holds; the emptied table should be gone
		t.diag("src holds %llu tables after the unshare", tables);
	}
	t.want_ok(c.dev.map(s, W + k2M, buf.data() + 4 * P, P), "MAP next to the emptied table in src");
	want_job(c, t, j, s, HTABLE_JOB_CHECKSUM, W, 4 * P, 0, 0, 4);
	std::string dump;
	if (gids.size() == 1 && read_file(hat_debugfs_dir(gids[0]) + "/dump", dump) == 0) {
		char needle[64];
		std::snprintf(needle, sizeof(needle), "L0 va=0x%016llx valid=0", W);
		t.check(dump.find(needle) == std::string::npos,
			"src keeps an empty level-0 table at 0x%llx after the unshare:\n%s", W, dump.c_str());
	}
}

// The source dies while a destination still links its table: the memory
// the source mapped is released, so the destination must not reach it.
void t_share_src_destroyed(Ctx& c, T& t)
{
	auto src = new_hat(c, t), dst = new_hat(c, t);
	if (!src || !dst)
		return;
	const u32 d = dst->id();
	const u64 V = kDemoVa + 10 * k1G;
	htable_job j{};
	if (!t.want_ok(c.dev.map_owned(src->id(), V, 8 * P, kProtRW, HTABLE_PAGE_4K), "MAP owned in src") ||
	    !t.want_ok(c.dev.share(d, src->id(), V, 0), "SHARE"))
		return;
	want_job(c, t, j, d, HTABLE_JOB_FILL, V, 8 * P, 0x71, 8 * P, 0);
	if (!t.want_ok(src->reset(), "HAT_DESTROY src while dst shares its table"))
		return;
	// read only: if the module is wrong, this reads freed pages
	if (t.want_ok(c.dev.job(d, HTABLE_JOB_CHECKSUM, V, 8 * P, 0, HTABLE_JOB_ANY_CPU, j),
		      "CHECKSUM in dst after src died"))
		t.check(j.bytes == 0 && j.faults == 8,
			"dst still reads the memory the destroyed src released: bytes %llu faults %llu",
			j.bytes, j.faults);
	// the shared range became a hole in dst
	want_mapped(c, t, d, V, false);
	std::vector<htable_walk_entry> w;
	if (walk(c, t, d, V, V + k2M, w))
		t.check(w.empty(), "dst WALK after src died: %zu entries", w.size());
	t.want_ok(c.dev.unmap(d, V, k2M), "UNMAP the once-shared range in dst");
	t.want_ok(c.dev.map_owned(d, V, P), "MAP in dst where the shared range was");
}

// ------------------------------------------------------------ lock

void t_lock(Ctx& c, T& t)
{
	auto f = fixture(c, t, 16, false);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 V = f->va, V2 = f->va + k2M;  // two level-0 tables
	htable_job j{};
	std::vector<htable_walk_entry> w;
	if (!t.want_ok(c.dev.map(id, V, f->at(0), 8 * P), "MAP 8 pages") ||
	    !t.want_ok(c.dev.map(id, V2, f->at(8 * P), 8 * P), "MAP 8 pages 2 MiB further"))
		return;
	want_job(c, t, j, id, HTABLE_JOB_FILL, V, 8 * P, 0x10c, 8 * P, 0);
	want_job(c, t, j, id, HTABLE_JOB_FILL, V2, 8 * P, 0x20c, 8 * P, 0);
	if (!t.want_ok(c.dev.lock(id, V, 8 * P, true), "LOCK the first 8 pages"))
		return;
	if (walk(c, t, id, V, V2 + 8 * P, w) && t.check(w.size() == 16, "WALK: %zu entries", w.size()))
		for (size_t i = 0; i < w.size(); i++)
			if (!t.check(!!(w[i].flags & HTABLE_WALK_LOCKED) == (i < 8),
				     "entry %zu (va 0x%llx): flags %s", i, w[i].va,
				     walk_flags_string(w[i].flags).c_str()))
				break;
	// REAP takes the unlocked table only
	u64 freed = 0;
	if (t.want_ok(c.dev.reap(1u << 30, &freed), "REAP"))
		t.diag("REAP freed %llu tables", freed);
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V, 8 * P, 0x10c, 8 * P, 0)) {
		t.check(j.result == 0, "locked range: %llu mismatches", j.result);
		t.check(j.reloads == 0, "locked range: %llu reloads after REAP (a locked table was taken)",
			j.reloads);
	}
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V2, 8 * P, 0x20c, 8 * P, 0)) {
		t.check(j.result == 0, "unlocked range: %llu mismatches", j.result);
		t.check(j.reloads > 0, "unlocked range: no reload after REAP (control)");
	}
	// unlock: stealable again
	if (t.want_ok(c.dev.lock(id, V, 8 * P, false), "UNLOCK") && walk(c, t, id, V, V + 8 * P, w))
		t.check(std::none_of(w.begin(), w.end(),
				     [](const auto& e) { return e.flags & HTABLE_WALK_LOCKED; }),
			"WALK shows LOCKED after UNLOCK");
	t.want_ok(c.dev.reap(1u << 30, &freed), "REAP after UNLOCK");
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, V, 8 * P, 0x10c, 8 * P, 0)) {
		t.check(j.result == 0, "unlocked range: %llu mismatches", j.result);
		t.check(j.reloads > 0, "no reload after UNLOCK + REAP");
	}
	// part of an extent; holes; unlocking what is not locked
	if (t.want_ok(c.dev.lock(id, V + 2 * P, 2 * P, true), "LOCK pages 2-3") &&
	    walk(c, t, id, V, V + 8 * P, w) && t.check(w.size() == 8, "WALK: %zu entries", w.size()))
		for (size_t i = 0; i < 8; i++)
			t.check(!!(w[i].flags & HTABLE_WALK_LOCKED) == (i == 2 || i == 3),
				"after LOCK of pages 2-3: entry %zu flags %s", i,
				walk_flags_string(w[i].flags).c_str());
	t.want_ok(c.dev.lock(id, V - 4 * P, 4 * P + k1G, true), "LOCK a range with holes");
	t.want_ok(c.dev.lock(id, V + 3 * k1G, P, false), "UNLOCK a never-mapped range");
	t.want_ok(c.dev.lock(id, V, k1G, false), "UNLOCK all");

	// (refused LOCKs: selftest_badinput)
	// a lock range may not cut a large leaf
	const u64 W = kOwnedVa;
	if (t.want_ok(c.dev.map_owned(id, W, k2M, kProtRW, k2M), "MAP owned 2 MiB")) {
		t.want_err(c.dev.lock(id, W + P, P, true), EINVAL, "LOCK 4 KiB inside a 2 MiB leaf");
		t.want_err(c.dev.lock(id, W, k2M - P, true), EINVAL, "LOCK all but the last 4 KiB of a 2 MiB leaf");
		if (t.want_ok(c.dev.lock(id, W, k2M, true), "LOCK the whole 2 MiB leaf") &&
		    walk(c, t, id, W, W + k2M, w) && t.check(w.size() == 1, "WALK: %zu entries", w.size()))
			t.check((w[0].flags & HTABLE_WALK_LOCKED) && w[0].page_size == k2M,
				"locked 2 MiB leaf: flags %s page_size 0x%llx",
				walk_flags_string(w[0].flags).c_str(), w[0].page_size);
	}
}

// ------------------------------------------------------------ copied top

struct HatRun {
	u64 fill_bytes = 0, sum = 0, sum_faults = 0, touch = 0, reloads = 0;
	bool ok = true;
};

// The same program on a normal and on a copied-top hat, results compared.
HatRun copied_top_program(Ctx& c, T& t, u32 flags)
{
	HatRun r;
	auto hat = new_hat(c, t, flags);
	if (!hat) {
		r.ok = false;
		return r;
	}
	const u32 id = hat->id();
	const char* kind = flags ? "copied-top" : "normal";
	t.check(hat->levels() == c.levels(), "%s hat: levels %u", kind, hat->levels());
	// three top-level slots: the lowest page, kDemoVa, the last 2 MiB
	const u64 vas[] = {P, kDemoVa, c.end() - k2M};
	Buffer buf(12 * P, 0, P, Huge::Never);
	for (int i = 0; i < 3; i++)
		if (!t.want_ok(c.dev.map(id, vas[i], buf.data() + i * 4 * P, 4 * P), "%s: MAP at 0x%llx",
			       kind, vas[i]))
			r.ok = false;
	if (!r.ok)
		return r;
	htable_job j{};
	for (int i = 0; i < 3; i++) {
		for (size_t k = 0; k < c.cpus.size() && k < 8; k++) {
			const u64 seed = 0xc0 + 16 * i + k;
			if (want_job(c, t, j, id, HTABLE_JOB_FILL, vas[i], 4 * P, seed, 4 * P, 0, c.cpus[k])) {
				t.check(j.ran_on_cpu == c.cpus[k], "%s: ran on CPU %u", kind, j.ran_on_cpu);
				r.ok &= t.check(count_mismatches(buf.span(i * 4 * P, 4 * P), seed) == 0,
						"%s: FILL at 0x%llx on CPU %u not in the buffer", kind, vas[i],
						c.cpus[k]);
			}
		}
		if (want_job_mask(c, t, j, id, HTABLE_JOB_FILL, vas[i], 4 * P, 0xf0 + i, c.all_cpus_mask(),
				  4 * P, 0))
			r.ok &= t.check(count_mismatches(buf.span(i * 4 * P, 4 * P), 0xf0 + i) == 0,
					"%s: multi-CPU FILL at 0x%llx not in the buffer", kind, vas[i]);
		r.fill_bytes += j.bytes;
	}
	if (want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, vas[2], 4 * P, 0, 4 * P, 0)) {
		r.sum = j.result;
		r.ok &= t.check(j.result == fnv1a64(buf.span(8 * P, 4 * P)), "%s: CHECKSUM differs", kind);
	}
	if (want_job(c, t, j, id, HTABLE_JOB_TOUCH, vas[0], 4 * P, 0, 32, 0))
		r.touch = j.result;
	// unmap the middle slot: jobs there fault
	if (t.want_ok(c.dev.unmap(id, vas[1], 4 * P), "%s: UNMAP", kind) &&
	    want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, vas[1], 4 * P, 0, 0, 4))
		r.sum_faults = j.faults;
	// tables stolen and reloaded
	t.want_ok(c.dev.reap(1u << 30), "%s: REAP", kind);
	if (want_job_mask(c, t, j, id, HTABLE_JOB_VERIFY, vas[2], 4 * P, 0xf2, c.all_cpus_mask(), 4 * P, 0)) {
		r.ok &= t.check(j.result == 0, "%s: VERIFY after REAP: %llu mismatches", kind, j.result);
		r.reloads = j.reloads;
	}
	return r;
}

void t_copied_top(Ctx& c, T& t)
{
	// copied-top hats have no top page of their own in CR3; the debugfs
	// info says which kind a hat is
	auto hat = new_hat(c, t, HTABLE_HAT_COPIED_TOP);
	if (hat) {
		auto gids = find_hat_gids(getpid(), hat->id());
		std::string info;
		if (t.check(gids.size() == 1, "%zu debugfs dirs for the copied-top hat", gids.size()) &&
		    t.want_ok(read_file(hat_debugfs_dir(gids[0]) + "/info", info), "read info")) {
			bool copied = false;
			for (const auto& [k, v] : parse_kv(info))
				copied |= k == "copied_top" && v == "1";
			t.check(copied, "debugfs info does not say copied_top 1:\n%s", info.c_str());
		}
	}
	HatRun normal = copied_top_program(c, t, 0);
	HatRun copied = copied_top_program(c, t, HTABLE_HAT_COPIED_TOP);
	t.check(normal.ok && copied.ok, "one of the runs failed");
	t.check(normal.fill_bytes == copied.fill_bytes && normal.sum == copied.sum &&
			normal.sum_faults == copied.sum_faults && normal.touch == copied.touch,
		"copied-top results differ from a normal hat's: fill %llu/%llu sum %llx/%llx "
		"faults %llu/%llu touch %llu/%llu", normal.fill_bytes, copied.fill_bytes, normal.sum,
		copied.sum, normal.sum_faults, copied.sum_faults, normal.touch, copied.touch);
	t.check(copied.reloads > 0, "copied-top: no reload after REAP");
	t.diag("reloads after REAP: normal %llu, copied-top %llu", normal.reloads, copied.reloads);
}

// ------------------------------------------------------------ reap

void t_reap(Ctx& c, T& t)
{
	constexpr u64 n = 64;
	auto f = fixture(c, t, n, false);
	if (!f)
		return;
	const u32 id = f->id();
	// one page every 2 MiB: one level-0 table per page
	for (u64 i = 0; i < n; i++)
		if (!t.want_ok(c.dev.map(id, f->va + i * k2M, f->at(i * P), P), "MAP page %llu", i))
			return;
	htable_job j{};
	for (u64 i = 0; i < n; i++)
		want_job(c, t, j, id, HTABLE_JOB_FILL, f->va + i * k2M, P, 0x4ea0 + i, P, 0);
	auto s0 = stats_map(t);
	u64 freed = 0;
	if (!t.want_ok(c.dev.reap(0, &freed), "REAP 0"))
		return;
	t.check(freed == 0, "REAP 0 freed %llu", freed);
	if (!t.want_ok(c.dev.reap(1u << 30, &freed), "REAP"))
		return;
	auto s1 = stats_map(t);
	t.diag("REAP freed %llu; tables_live %llu -> %llu, steals %llu -> %llu, stealable %llu -> %llu",
	       freed, s0["tables_live"], s1["tables_live"], s0["steals"], s1["steals"],
	       s0["stealable"], s1["stealable"]);
	t.check(freed >= n, "REAP freed %llu, the hat alone had %llu stealable tables", freed, n);
	t.check(stat_of(t, s1, "steals") >= stat_of(t, s0, "steals") + n, "steals %llu -> %llu",
		s0["steals"], s1["steals"]);
	t.check(stat_of(t, s1, "reaps") >= stat_of(t, s0, "reaps") + 2, "reaps %llu -> %llu (2 REAPs)",
		s0["reaps"], s1["reaps"]);
	t.check(stat_of(t, s1, "tables_live") + n <= stat_of(t, s0, "tables_live"),
		"tables_live %llu -> %llu", s0["tables_live"], s1["tables_live"]);
	t.check(stat_of(t, s1, "reserve") == stat_of(t, s1, "reserve_target"),
		"reserve %llu, target %llu after REAP", s1["reserve"], s1["reserve_target"]);
	// the record still knows everything: jobs reload and see every byte
	u64 reloads = 0, bad = 0;
	for (u64 i = 0; i < n; i++) {
		if (!want_job(c, t, j, id, HTABLE_JOB_VERIFY, f->va + i * k2M, P, 0x4ea0 + i, P, 0))
			break;
		reloads += j.reloads;
		bad += j.result;
	}
	t.check(bad == 0, "%llu bytes differ after REAP", bad);
	t.check(reloads >= n, "%llu reloads for %llu pages whose tables were reaped", reloads, n);
	auto s2 = stats_map(t);
	t.check(stat_of(t, s2, "reloads") >= stat_of(t, s1, "reloads") + n, "stats reloads %llu -> %llu",
		s1["reloads"], s2["reloads"]);
	for (u64 i = 0; i < n; i += 21)
		want_mapped(c, t, id, f->va + i * k2M, true);
}

}  // namespace

std::vector<Case> mapping_cases()
{
	return {
		{"map: explicit 2M of THP-backed user memory (or EINVAL without THP)", t_thp_2m},
		{"map: AUTO uses 2M leaves where THP-backed and aligned, 4K elsewhere", t_auto},
		{"map owned: 4K and 2M, zeroed, FILL/CHECKSUM agree, errors, unmap frees", t_owned},
		{"map owned: a 2M leaf stays while a piece is mapped, whatever came and went", t_owned_remap},
		{"protect: prot changes, FILL through r-- faults, back to rw", t_protect},
		{"protect/unmap: 4K inside 2M demotes; inside a locked 2M gives EBUSY", t_protect_large},
		{"walk: paged with next, entries and pa match, holes skipped", t_walk},
		{"share: dst sees src's table, src unmap faults in dst, EEXIST", t_share},
		{"share: after unshare the src table is released/stealable again", t_share_release},
		{"share: destroying src leaves dst no access to released memory", t_share_src_destroyed},
		{"lock: walk shows LOCKED, REAP skips locked tables, unlock", t_lock},
		{"copied-top hat: same results as a normal hat on every CPU", t_copied_top},
	};
}

std::vector<Case> reclaim_cases()
{
	return {
		{"reap: 64 tables taken, steals grow, VERIFY reloads every page", t_reap},
	};
}

}  // namespace htable::st
