// SPDX-License-Identifier: GPL-2.0
//
// selftest: the ioctls of ABI 1.0 (VERSION, HAT_CREATE/DESTROY, MAP, UNMAP,
// TRANSLATE, JOB FILL/VERIFY/CHECKSUM) doing what they should.  What they
// refuse (command numbers, argument sizes, must-be-zero fields, bad
// ranges...) is selftest_badinput's table; permissions are in
// selftest_security.
#include "selftest.hpp"

#include <algorithm>
#include <cstddef>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>
#include <unistd.h>

namespace htable::st {
namespace {

// ============================================================ tests

void t_version(Ctx& c, T& t)
{
	const auto& v = c.ver;
	t.diag("abi %u, levels %u, features 0x%x, nr_cpus %u, user_va_end 0x%llx, page_sizes 0x%llx",
	       v.abi_version, v.paging_levels, v.features, v.nr_cpus, v.user_va_end, v.page_sizes);
	t.check(v.abi_version == HTABLE_ABI_VERSION, "abi_version %u, expected %u", v.abi_version,
		HTABLE_ABI_VERSION);
	t.check(v.paging_levels == 4 || v.paging_levels == 5, "paging_levels %u is not 4 or 5",
		v.paging_levels);
	// The lower canonical half less its last page, like Linux's
	// TASK_SIZE_MAX: access_ok() refuses that guard page to the runners.
	u64 want_end = (v.paging_levels == 5 ? 1ull << 56 : 1ull << 47) - P;
	t.check(v.user_va_end == want_end, "user_va_end 0x%llx, expected 0x%llx for %u levels",
		v.user_va_end, want_end, v.paging_levels);
	t.check(v.page_sizes & HTABLE_PAGE_4K, "page_sizes 0x%llx lacks 4 KiB (bit 12)", v.page_sizes);
	t.check(!!(v.features & HTABLE_FEAT_LA57) == (v.paging_levels == 5),
		"feature LA57 is %s but paging_levels is %u",
		(v.features & HTABLE_FEAT_LA57) ? "set" : "clear", v.paging_levels);
	t.check(v.nr_cpus == c.cpus.size(), "nr_cpus %u but %zu CPUs online (%s)", v.nr_cpus,
		c.cpus.size(), format_cpu_list(c.cpus).c_str());
	htable_version again{};
	if (t.want_ok(c.dev.version(again), "second VERSION"))
		t.check(!std::memcmp(&again, &v, sizeof(v)), "two VERSION calls disagree");
}

void t_create_destroy(Ctx& c, T& t)
{
	htable_hat_create hc{};
	if (!t.want_ok(c.dev.hat_create(hc), "HAT_CREATE"))
		return;
	t.diag("hat_id %u, levels %u", hc.hat_id, hc.levels);
	t.check(hc.hat_id > 0, "hat_id is 0");
	t.check(hc.levels == c.ver.paging_levels, "levels %u, VERSION says %u", hc.levels,
		c.ver.paging_levels);
	want_mapped(c, t, hc.hat_id, kDemoVa, false);
	t.want_ok(c.dev.hat_destroy(hc.hat_id), "HAT_DESTROY %u", hc.hat_id);
	htable_translate tr{};
	t.want_err(c.dev.translate(hc.hat_id, kDemoVa, tr), ENOENT, "TRANSLATE on destroyed hat");
}

void t_destroy_twice(Ctx& c, T& t)
{
	auto hat = Hat::create(c.dev);
	if (!t.want_ok(hat ? 0 : hat.error(), "HAT_CREATE"))
		return;
	u32 id = hat->release();
	t.want_ok(c.dev.hat_destroy(id), "first HAT_DESTROY");
	t.want_err(c.dev.hat_destroy(id), ENOENT, "second HAT_DESTROY");
}

// A HAT_DESTROY of id 0 (ENOENT) used to free the xarray's reserved index
// 0, and the next HAT_CREATE then got id 0 (found by htablectl fuzz).
void t_destroy_id0(Ctx& c, T& t)
{
	auto keep = Hat::create(c.dev);	// with a hat alive, as it happened
	if (!t.want_ok(keep ? 0 : keep.error(), "HAT_CREATE"))
		return;
	t.want_err(c.dev.hat_destroy(0), ENOENT, "HAT_DESTROY id 0 with a hat alive");
	auto next = Hat::create(c.dev);
	if (!t.want_ok(next ? 0 : next.error(), "HAT_CREATE after HAT_DESTROY of id 0"))
		return;
	t.check(next->id() != 0, "HAT_CREATE after HAT_DESTROY of id 0 gave id 0");
	htable_translate tr{};
	t.want_err(c.dev.translate(0, kDemoVa, tr), ENOENT, "TRANSLATE id 0 with hats alive");
}

// JOB grew: its ABI 1.0 size (88 bytes: up to max_window_ns; reloads,
// cpu_mask, dst_va and cpus_ran came later) is still accepted, with the new
// inputs taken as 0, and gets the 1.0 prefix back.  (Sizes below a
// command's first version: selftest_badinput.)
void t_job_abi10(Ctx& c, T& t)
{
	auto f = fixture(c, t, 1);
	if (!f)
		return;
	htable_job j{};
	j.hat_id = f->id();
	j.op = HTABLE_JOB_FILL;
	j.cpu = HTABLE_JOB_ANY_CPU;
	j.va = f->va;
	j.length = P;
	j.seed = 0x88;
	constexpr size_t v10 = offsetof(htable_job, reloads);
	static_assert(v10 == 88);
	alignas(8) std::array<u8, sizeof(htable_job) + 16> raw{};
	raw.fill(0xee);  // the part past the old struct must stay untouched
	std::memcpy(raw.data(), &j, v10);
	if (t.want_ok(c.dev.ioctl_raw(resized(HTABLE_IOC_JOB, v10), raw.data()), "JOB with size 88")) {
		htable_job back{};
		std::memcpy(&back, raw.data(), v10);
		t.check(back.bytes == P && back.faults == 0, "88-byte JOB: bytes %llu faults %llu",
			back.bytes, back.faults);
		t.check(all_equal(std::span<const u8>(raw.data() + v10, raw.size() - v10), 0xee),
			"88-byte JOB: the module wrote past the caller's struct");
		t.check(count_mismatches(f->buf.span(0, P), 0x88) == 0, "88-byte FILL not in the buffer");
	}
}

void t_size_big_zero(Ctx& c, T& t)
{
	const std::array<u8, 16> zero{};
	htable_version v{};
	if (t.want_ok(ioctl_with_tail(c.dev, HTABLE_IOC_VERSION, v, zero), "VERSION, 16 zero bytes more"))
		t.check(!std::memcmp(&v, &c.ver, sizeof(v)), "VERSION with bigger size returned other data");

	htable_hat_create hc{};
	if (t.want_ok(ioctl_with_tail(c.dev, HTABLE_IOC_HAT_CREATE, hc, zero),
		      "HAT_CREATE, 16 zero bytes more")) {
		t.check(hc.hat_id > 0, "hat_id 0");
		t.want_ok(c.dev.hat_destroy(hc.hat_id), "HAT_DESTROY of it");
	}

	auto f = fixture(c, t, 1);
	if (!f)
		return;
	htable_job j{};
	j.hat_id = f->id();
	j.op = HTABLE_JOB_FILL;
	j.cpu = HTABLE_JOB_ANY_CPU;
	j.va = f->va;
	j.length = P;
	j.seed = 7;
	if (t.want_ok(ioctl_with_tail(c.dev, HTABLE_IOC_JOB, j, zero), "JOB FILL, 16 zero bytes more")) {
		t.check(j.bytes == P, "JOB bytes=%llu, expected %llu", j.bytes, P);
		t.check(count_mismatches(f->buf.span(0, P), 7) == 0, "FILL pattern not found in buffer");
	}
}

void t_map_first_last_page(Ctx& c, T& t)
{
	auto f = fixture(c, t, 1, false);
	if (!f)
		return;
	fill_random(f->buf.span(0, P), 99);
	const u64 last = c.end() - P;
	for (u64 va : {u64(0), last}) {
		if (!t.want_ok(c.dev.map(f->id(), va, f->buf.data(), P), "MAP page at 0x%llx", va))
			continue;
		htable_translate tr{};
		if (want_mapped(c, t, f->id(), va + P - 1, true, &tr))
			t.check((tr.pa & 0xfff) == 0xfff, "pa 0x%llx of the page's last byte", tr.pa);
		htable_job j{};
		if (want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, va + P - 8, 8, 0, 8, 0))
			t.check(j.result == fnv1a64(f->buf.span(P - 8, 8)),
				"CHECKSUM of the last 8 bytes: 0x%llx", j.result);
		t.want_ok(c.dev.unmap(f->id(), va, P), "UNMAP page at 0x%llx", va);
	}
}

// 4 KiB and AUTO of 2 MiB of 4 KiB pages (2 MiB aligned in the process and
// in the hat) give 4 KiB leaves.  Bogus and unusable page sizes:
// selftest_badinput.
void t_page_size(Ctx& c, T& t)
{
	auto hat = new_hat(c, t);
	if (!hat)
		return;
	Buffer buf(k2M, 0, k2M, Huge::Never);
	const u64 va = kDemoVa;
	// controls: 4 KiB and AUTO work, and give 4 KiB leaves on 4 KiB pages
	const bool contiguous = physically_contiguous(buf.data(), k2M, nullptr);
	for (u64 ps : {HTABLE_PAGE_4K, u64(HTABLE_PAGE_AUTO)}) {
		if (!t.want_ok(c.dev.map(hat->id(), va, buf.data(), k2M, kProtRW, ps),
			       "MAP page_size %llu", ps))
			continue;
		htable_translate tr{};
		const u64 leaf = ps == HTABLE_PAGE_AUTO && contiguous ? k2M : P;
		if (want_mapped(c, t, hat->id(), va + k2M - 1, true, &tr))
			t.check(tr.page_size == leaf,
				"page_size %llu: leaf page_size %llu level %llu, expected %llu", ps,
				tr.page_size, tr.level, leaf);
		t.want_ok(c.dev.unmap(hat->id(), va, k2M), "UNMAP");
	}
}

void t_pinned_stats(Ctx& c, T& t)
{
	auto before = counters(t);
	if (!t.check(before.has_value(), "debugfs stats needed"))
		return;
	{
		auto f = fixture(c, t, 8);
		if (!f)
			return;
		auto during = counters(t);
		if (!t.check(during.has_value(), "stats unreadable"))
			return;
		t.check(during->hats_live == before->hats_live + 1, "hats_live %llu -> %llu with one more hat",
			before->hats_live, during->hats_live);
		t.check(during->pinned_pages == before->pinned_pages + 8,
			"pinned_pages %llu -> %llu after mapping 8 pages", before->pinned_pages,
			during->pinned_pages);
		t.want_ok(c.dev.unmap(f->id(), f->va + 2 * P, 3 * P), "UNMAP 3 pages");
		during = counters(t);
		if (during)
			t.check(during->pinned_pages == before->pinned_pages + 5,
				"pinned_pages %llu -> %llu, expected +5 after unmapping 3 of 8",
				before->pinned_pages, during->pinned_pages);
	}  // hat destroyed here
	auto after = counters(t);
	if (!t.check(after.has_value(), "stats unreadable"))
		return;
	t.check(after->hats_live == before->hats_live, "hats_live %llu -> %llu after destroy",
		before->hats_live, after->hats_live);
	t.check(after->pinned_pages == before->pinned_pages, "pinned_pages %llu -> %llu after destroy",
		before->pinned_pages, after->pinned_pages);
	t.diag("tables_live %llu -> %llu", before->tables_live, after->tables_live);
}

void t_fill(Ctx& c, T& t)
{
	const u8 sentinel = 0xa5;
	auto f = fixture(c, t, 16, true, sentinel);
	if (!f)
		return;
	const u64 len = f->buf.size();
	htable_job j{};
	u64 first = 0;
	if (want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, len, 0x1234, len, 0)) {
		u64 bad = count_mismatches(f->buf.span(0, len), 0x1234, 0, &first);
		t.check(bad == 0, "process reads %llu wrong bytes after FILL, first at %llu", bad, first);
	}
	// A sub-range that starts inside a page at an 8-byte (not page) boundary
	// and crosses pages: the pattern offset is relative to the job's va, and
	// nothing outside the range is written.
	std::memset(f->buf.data(), sentinel, len);
	const u64 off = P + 24, sub = 3 * P + 16;
	if (want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va + off, sub, 0x5678, sub, 0)) {
		u64 bad = count_mismatches(f->buf.span(off, sub), 0x5678, 0, &first);
		t.check(bad == 0, "sub-range FILL: %llu wrong bytes, first at job offset %llu", bad, first);
		t.check(all_equal(f->buf.span(0, off), sentinel), "FILL wrote before its va");
		t.check(all_equal(f->buf.span(off + sub, len - off - sub), sentinel),
			"FILL wrote past its end");
	}
}

void t_verify(Ctx& c, T& t)
{
	auto f = fixture(c, t, 8);
	if (!f)
		return;
	const u64 len = f->buf.size(), seed = 0xfeedface;
	fill_pattern(f->buf.span(0, len), seed);
	htable_job j{};
	if (want_job(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, seed, len, 0)) {
		t.check(j.result == 0, "VERIFY of the process-written pattern: %llu mismatches", j.result);
		t.check(j.first_bad == ~0ull, "first_bad 0x%llx with no mismatch", j.first_bad);
	}
	const u64 bad1 = 3 * P + 5, bad2 = 6 * P + 4095;
	f->buf[bad1] ^= 0xff;
	if (want_job(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, seed, len, 0)) {
		t.check(j.result == 1, "VERIFY after corrupting 1 byte: %llu mismatches", j.result);
		t.check(j.first_bad == bad1, "first_bad %llu, expected %llu", j.first_bad, bad1);
	}
	f->buf[bad2] ^= 0x01;
	if (want_job(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, seed, len, 0)) {
		t.check(j.result == 2, "VERIFY after corrupting 2 bytes: %llu mismatches", j.result);
		t.check(j.first_bad == bad1, "first_bad %llu, expected %llu", j.first_bad, bad1);
	}
	// a wrong seed mismatches (almost) everywhere
	if (want_job(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, seed + 1, len, 0))
		t.check(j.result > len / 2, "VERIFY with another seed: only %llu mismatches", j.result);
	// VERIFY does not write
	t.check(count_mismatches(f->buf.span(0, len), seed) == 2, "VERIFY modified the buffer");
}

void t_checksum(Ctx& c, T& t)
{
	auto f = fixture(c, t, 8);
	if (!f)
		return;
	const u64 len = f->buf.size();
	fill_random(f->buf.span(0, len), 0xabcdef);
	const struct {
		u64 off, len;
	} cases[] = {{0, len}, {40, 3 * P - 48}, {len - 8, 8}, {P, P}};
	for (const auto& x : cases) {
		htable_job j{};
		if (!want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, f->va + x.off, x.len, 0, x.len, 0))
			continue;
		u64 mine = fnv1a64(f->buf.span(x.off, x.len));
		t.check(j.result == mine, "CHECKSUM [+%llu, %llu bytes]: module 0x%016llx, process 0x%016llx",
			x.off, x.len, j.result, mine);
	}
}

void t_translate_mapped(Ctx& c, T& t)
{
	auto f = fixture(c, t, 4);
	if (!f)
		return;
	const bool nx = c.ver.features & HTABLE_FEAT_NX;
	std::set<u64> pfns;
	bool pagemap_used = false;
	for (u64 page : {0, 2, 3}) {
		const u64 off = page * P + 0x5a8 + page * 8;
		htable_translate tr{};
		if (!want_mapped(c, t, f->id(), f->va + off, true, &tr))
			continue;
		t.check((tr.pa & 0xfff) == (off & 0xfff), "pa 0x%llx, va offset in page 0x%llx", tr.pa,
			off & 0xfff);
		t.check(tr.page_size == P, "page_size %llu", tr.page_size);
		t.check(tr.level == 0, "level %llu", tr.level);
		t.check((tr.prot & kProtRW) == kProtRW, "prot %s for an rw- mapping",
			prot_string(tr.prot).c_str());
		if (nx)
			t.check(tr.prot == kProtRW, "prot %s for an rw- mapping with NX",
				prot_string(tr.prot).c_str());
		pfns.insert(tr.pa >> 12);
		std::string why;
		if (auto pfn = pagemap_pfn(f->at(off), &why)) {
			pagemap_used = true;
			t.check(*pfn == tr.pa >> 12, "page %llu: TRANSLATE pa 0x%llx but pagemap PFN 0x%llx",
				page, tr.pa, *pfn);
		} else if (page == 0) {
			t.diag("pagemap cross-check skipped: %s", why.c_str());
		}
	}
	t.check(pfns.size() == 3, "3 different pages translate to %zu distinct PFNs", pfns.size());
	if (pagemap_used)
		t.diag("TRANSLATE agrees with /proc/self/pagemap");

	// read-only and executable mappings report their prot
	Buffer more(2 * P);
	const u64 ro = f->va + 16 * P, rx = f->va + 17 * P;
	htable_translate tr{};
	if (t.want_ok(c.dev.map(f->id(), ro, more.data(), P, HTABLE_PROT_READ), "MAP r--") &&
	    want_mapped(c, t, f->id(), ro, true, &tr)) {
		t.check(!(tr.prot & HTABLE_PROT_WRITE) && (tr.prot & HTABLE_PROT_READ),
			"read-only mapping translates with prot %s", prot_string(tr.prot).c_str());
	}
	if (t.want_ok(c.dev.map(f->id(), rx, more.data() + P, P, HTABLE_PROT_ALL), "MAP rwx") &&
	    want_mapped(c, t, f->id(), rx, true, &tr)) {
		t.check(tr.prot == HTABLE_PROT_ALL, "rwx mapping translates with prot %s",
			prot_string(tr.prot).c_str());
	}
}

void t_translate_unmapped(Ctx& c, T& t)
{
	auto f = fixture(c, t, 2);
	if (!f)
		return;
	want_mapped(c, t, f->id(), f->va + 2 * P, false);      // just past the mapping
	want_mapped(c, t, f->id(), f->va - 1, false);          // just before it
	want_mapped(c, t, f->id(), f->va + 2 * P - 1, true);   // its last byte (control)
	want_mapped(c, t, f->id(), 0, false);
	want_mapped(c, t, f->id(), c.end() - 1, false);
	want_mapped(c, t, f->id(), f->va + (1ull << 39), false);  // another top-level slot

	auto empty = Hat::create(c.dev);
	if (t.want_ok(empty ? 0 : empty.error(), "HAT_CREATE"))
		want_mapped(c, t, empty->id(), f->va, false);
}

void t_two_hats_one_page(Ctx& c, T& t)
{
	Buffer buf(P);
	auto a = Hat::create(c.dev), b = Hat::create(c.dev);
	if (!t.want_ok(a ? 0 : a.error(), "HAT_CREATE a") || !t.want_ok(b ? 0 : b.error(), "HAT_CREATE b"))
		return;
	const u64 va_a = kDemoVa, va_b = kDemoVa + (1ull << 30) + 5 * P;
	if (!t.want_ok(c.dev.map(a->id(), va_a, buf.data(), P), "MAP in hat a") ||
	    !t.want_ok(c.dev.map(b->id(), va_b, buf.data(), P), "MAP in hat b"))
		return;
	htable_translate ta{}, tb{};
	if (want_mapped(c, t, a->id(), va_a + 0x10, true, &ta) &&
	    want_mapped(c, t, b->id(), va_b + 0x10, true, &tb))
		t.check(ta.pa == tb.pa, "same page: pa 0x%llx in hat a, 0x%llx in hat b", ta.pa, tb.pa);
	want_mapped(c, t, a->id(), va_b, false);
	want_mapped(c, t, b->id(), va_a, false);
	// written through one hat, verified through the other
	htable_job j{};
	want_job(c, t, j, a->id(), HTABLE_JOB_FILL, va_a, P, 77, P, 0);
	if (want_job(c, t, j, b->id(), HTABLE_JOB_VERIFY, va_b, P, 77, P, 0))
		t.check(j.result == 0, "hat b sees %llu wrong bytes of what hat a wrote", j.result);
}

void t_every_cpu(Ctx& c, T& t)
{
	const size_t n = std::min<size_t>(c.cpus.size(), 256);
	auto f = fixture(c, t, n);
	if (!f)
		return;
	u64 max_ns = 0;
	for (size_t i = 0; i < n; i++) {
		const u32 cpu = c.cpus[i];
		htable_job j{};
		if (!want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va + i * P, P, 0x100 + cpu, P, 0, cpu))
			continue;
		t.check(j.ran_on_cpu == cpu, "asked for CPU %u, ran on CPU %u", cpu, j.ran_on_cpu);
		u64 bad = count_mismatches(f->buf.span(i * P, P), 0x100 + cpu);
		t.check(bad == 0, "CPU %u: process reads %llu wrong bytes", cpu, bad);
		max_ns = std::max<u64>(max_ns, j.max_window_ns);
	}
	t.diag("%zu CPUs (%s), longest irqs-off window %llu ns", n, format_cpu_list(c.cpus).c_str(),
	       max_ns);
}

void t_any_cpu(Ctx& c, T& t)
{
	auto f = fixture(c, t, 1);
	if (!f)
		return;
	std::set<u32> seen;
	for (int i = 0; i < 8; i++) {
		htable_job j{};
		if (!want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, f->va, P, 0, P, 0))
			continue;
		t.check(std::find(c.cpus.begin(), c.cpus.end(), j.ran_on_cpu) != c.cpus.end(),
			"ANY_CPU job ran on CPU %u, not an online CPU", j.ran_on_cpu);
		seen.insert(j.ran_on_cpu);
	}
	t.diag("ANY_CPU jobs ran on %zu distinct CPU(s)", seen.size());
}

// The smallest job, and the last 8 bytes of the user range (valid, but
// unmapped here: one faulting page).  Bad ranges: selftest_badinput.
void t_job_bounds(Ctx& c, T& t)
{
	auto f = fixture(c, t, 2);
	if (!f)
		return;
	htable_job j{};
	if (want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va + 8, 8, 9, 8, 0))
		t.check(count_mismatches(f->buf.span(8, 8), 9) == 0, "8-byte FILL not visible");
	t.check(all_equal(f->buf.span(0, 8), 0) && all_equal(f->buf.span(16, 2 * P - 16), 0),
		"an 8-byte FILL wrote outside its 8 bytes");
	want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, c.end() - 8, 8, 0, 0, 1);
}

// Holes are fine.  Bad arguments: selftest_badinput.
void t_unmap_holes(Ctx& c, T& t)
{
	auto f = fixture(c, t, 4);
	if (!f)
		return;
	t.want_ok(c.dev.unmap(f->id(), f->va + (1ull << 30), 4 * P), "UNMAP of a never-mapped range");
	for (u64 i = 0; i < 4; i++)
		want_mapped(c, t, f->id(), f->va + i * P, true);
	t.want_ok(c.dev.unmap(f->id(), f->va - P, 6 * P), "UNMAP of a range larger than the mapping");
	for (u64 i = 0; i < 4; i++)
		want_mapped(c, t, f->id(), f->va + i * P, false);
	t.want_ok(c.dev.unmap(f->id(), f->va, 4 * P), "UNMAP of the same range again");
}

void t_unmap_faults(Ctx& c, T& t)
{
	const u64 pages = 8;
	auto f = fixture(c, t, pages);
	if (!f)
		return;
	const u64 len = pages * P;
	fill_pattern(f->buf.span(0, len), 11);
	if (!t.want_ok(c.dev.unmap(f->id(), f->va, len), "UNMAP all 8 pages"))
		return;
	for (u64 i = 0; i < pages; i++)
		want_mapped(c, t, f->id(), f->va + i * P, false);
	htable_job j{};
	if (want_job(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, f->va, len, 0, 0, pages))
		t.check(j.result == fnv1a64({}), "CHECKSUM of nothing: 0x%llx, expected the FNV basis",
			j.result);
	want_job(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, len, 12, 0, pages);
	t.check(count_mismatches(f->buf.span(0, len), 11) == 0,
		"a FILL job over unmapped VAs changed the process's buffer");
}

void t_unmap_middle(Ctx& c, T& t)
{
	const u8 sentinel = 0x5c;
	auto f = fixture(c, t, 3, true, sentinel);
	if (!f)
		return;
	const u32 id = f->id();
	if (!t.want_ok(c.dev.unmap(id, f->va + P, P), "UNMAP the middle page"))
		return;
	want_mapped(c, t, id, f->va, true);
	want_mapped(c, t, id, f->va + P, false);
	want_mapped(c, t, id, f->va + 2 * P, true);

	htable_job j{};
	if (want_job(c, t, j, id, HTABLE_JOB_FILL, f->va, 3 * P, 21, 2 * P, 1)) {
		t.check(count_mismatches(f->buf.span(0, P), 21, 0) == 0, "page 0 lacks the pattern");
		t.check(all_equal(f->buf.span(P, P), sentinel), "the unmapped middle page was written");
		// offsets stay relative to the job's va across the hole
		t.check(count_mismatches(f->buf.span(2 * P, P), 21, 2 * P) == 0, "page 2 lacks the pattern");
	}
	if (want_job(c, t, j, id, HTABLE_JOB_VERIFY, f->va, 3 * P, 21, 2 * P, 1))
		t.check(j.result == 0, "VERIFY across the hole: %llu mismatches", j.result);
	if (want_job(c, t, j, id, HTABLE_JOB_CHECKSUM, f->va, 3 * P, 0, 2 * P, 1)) {
		std::vector<u8> both(f->buf.data(), f->buf.data() + P);
		both.insert(both.end(), f->buf.data() + 2 * P, f->buf.data() + 3 * P);
		t.check(j.result == fnv1a64(both), "CHECKSUM across the hole is not FNV of pages 0 and 2");
	}
	// the hole can be mapped again
	if (t.want_ok(c.dev.map(id, f->va + P, f->at(P), P), "MAP the middle page again"))
		want_mapped(c, t, id, f->va + P, true);
}

void t_fd_isolation(Ctx&, T& t)
{
	auto a = Device::open(), b = Device::open();
	if (!t.want_ok(a ? 0 : a.error(), "open fd a") || !t.want_ok(b ? 0 : b.error(), "open fd b"))
		return;
	Buffer buf(P);
	auto ha = Hat::create(*a);
	if (!t.want_ok(ha ? 0 : ha.error(), "HAT_CREATE on a") ||
	    !t.want_ok(a->map(ha->id(), kDemoVa, buf.data(), P), "MAP on a"))
		return;
	// b has no hats at all, so a's id cannot name anything there
	const u32 id = ha->id();
	htable_translate tr{};
	htable_job j{};
	t.want_err(b->translate(id, kDemoVa, tr), ENOENT, "TRANSLATE of a's hat via b");
	t.want_err(b->map(id, kDemoVa + P, buf.data(), P), ENOENT, "MAP into a's hat via b");
	t.want_err(b->unmap(id, kDemoVa, P), ENOENT, "UNMAP in a's hat via b");
	t.want_err(b->job(id, HTABLE_JOB_FILL, kDemoVa, P, 1, HTABLE_JOB_ANY_CPU, j), ENOENT,
		   "JOB on a's hat via b");
	t.want_err(b->hat_destroy(id), ENOENT, "HAT_DESTROY of a's hat via b");
	t.check(all_equal(buf.span(0, P), 0), "a job via b wrote to a's mapping");
	if (t.want_ok(a->translate(id, kDemoVa, tr), "TRANSLATE via a"))
		t.check(tr.mapped == 1, "a's mapping disappeared");
	// b's own hat: ids may coincide with a's, but must name b's hat
	auto hb = Hat::create(*b);
	if (!t.want_ok(hb ? 0 : hb.error(), "HAT_CREATE on b"))
		return;
	t.diag("hat ids: %u on fd a, %u on fd b", id, hb->id());
	if (t.want_ok(b->translate(hb->id(), kDemoVa, tr), "TRANSLATE via b"))
		t.check(tr.mapped == 0, "b's new hat shows a's mapping");
	if (hb->id() != id)
		t.want_err(a->translate(hb->id(), kDemoVa, tr), ENOENT, "TRANSLATE of b's hat via a");
}

void t_close_releases(Ctx&, T& t)
{
	auto before = counters(t);
	if (!t.check(before.has_value(), "debugfs stats are needed for this test"))
		return;
	Buffer buf(12 * P);
	auto dev = Device::open();
	if (!t.want_ok(dev ? 0 : dev.error(), "open second fd"))
		return;
	for (u32 i = 0; i < 3; i++) {
		htable_hat_create hc{};
		if (!t.want_ok(dev->hat_create(hc), "HAT_CREATE %u", i) ||
		    !t.want_ok(dev->map(hc.hat_id, kDemoVa, buf.data() + i * 4 * P, 4 * P), "MAP in hat %u", i))
			return;
	}
	auto during = counters(t);
	if (!t.check(during.has_value(), "stats unreadable"))
		return;
	t.check(during->hats_live == before->hats_live + 3, "hats_live %llu -> %llu with 3 more hats",
		before->hats_live, during->hats_live);
	t.check(during->pinned_pages == before->pinned_pages + 12,
		"pinned_pages %llu -> %llu with 12 more pages mapped", before->pinned_pages,
		during->pinned_pages);

	dev->close();  // no HAT_DESTROY: the release of the file must clean up
	// close() returns after ->release() has run for a single-threaded
	// process; allow a short grace period in case the module defers frees.
	std::optional<Counters> after;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
	do {
		after = counters(t);
		if (after && after->hats_live == before->hats_live &&
		    after->pinned_pages == before->pinned_pages)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	} while (std::chrono::steady_clock::now() < deadline);
	if (!t.check(after.has_value(), "stats unreadable"))
		return;
	t.check(after->hats_live == before->hats_live, "hats_live %llu before, %llu after close",
		before->hats_live, after->hats_live);
	t.check(after->pinned_pages == before->pinned_pages,
		"pinned_pages %llu before, %llu after close", before->pinned_pages, after->pinned_pages);
	t.diag("tables_live %llu -> %llu -> %llu", before->tables_live, during->tables_live,
	       after->tables_live);
}

void t_many_hats(Ctx& c, T& t)
{
	constexpr u32 n = 16;
	auto before = counters(t);
	Buffer buf(n * P);
	std::vector<u32> ids;
	std::set<u32> distinct;
	for (u32 i = 0; i < n; i++) {
		htable_hat_create hc{};
		if (!t.want_ok(c.dev.hat_create(hc), "HAT_CREATE #%u", i))
			break;
		ids.push_back(hc.hat_id);
		distinct.insert(hc.hat_id);
		t.check(hc.hat_id > 0, "hat #%u got id 0", i);
	}
	t.check(distinct.size() == ids.size(), "%zu hats share %zu ids", ids.size(), distinct.size());
	// each hat maps a different page at the same VA and fills it
	std::set<u64> pas;
	for (u32 i = 0; i < ids.size(); i++) {
		if (!t.want_ok(c.dev.map(ids[i], kDemoVa, buf.data() + i * P, P), "MAP in hat %u", ids[i]))
			continue;
		htable_job j{};
		want_job(c, t, j, ids[i], HTABLE_JOB_FILL, kDemoVa, P, 1000 + i, P, 0);
		htable_translate tr{};
		if (want_mapped(c, t, ids[i], kDemoVa, true, &tr))
			pas.insert(tr.pa);
	}
	t.check(pas.size() == ids.size(), "%zu hats map the same VA to %zu distinct PAs", ids.size(),
		pas.size());
	for (u32 i = 0; i < ids.size(); i++)
		t.check(count_mismatches(buf.span(i * P, P), 1000 + i) == 0,
			"page of hat %u lacks its pattern", ids[i]);
	// destroy odd ones first, then even ones; each destroy leaves the rest
	for (u32 pass = 0; pass < 2; pass++)
		for (u32 i = 1 - pass; i < ids.size(); i += 2)
			t.want_ok(c.dev.hat_destroy(ids[i]), "HAT_DESTROY %u", ids[i]);
	for (u32 id : ids) {
		htable_translate tr{};
		t.want_err(c.dev.translate(id, kDemoVa, tr), ENOENT, "TRANSLATE on destroyed hat %u", id);
	}
	if (auto after = counters(t); before && after) {
		t.check(after->hats_live == before->hats_live, "hats_live %llu -> %llu", before->hats_live,
			after->hats_live);
		t.check(after->pinned_pages == before->pinned_pages, "pinned_pages %llu -> %llu",
			before->pinned_pages, after->pinned_pages);
	}
}

void t_stats_ioctl(Ctx& c, T& t)
{
	htable_stats st{};
	if (!t.want_ok(c.dev.stats(st), "STATS with max_entries 0"))
		return;
	const u32 n = st.count;
	t.diag("%u counters", n);
	if (!t.check(n > 0 && n <= 128, "STATS count %u", n))
		return;
	// a short array: count is still the total, nothing written past it
	std::vector<htable_stat_entry> buf(n + 2);
	std::memset(buf.data(), 0xee, buf.size() * sizeof(buf[0]));
	st = {};
	st.entries = reinterpret_cast<uintptr_t>(buf.data());
	st.max_entries = 2;
	if (t.want_ok(c.dev.stats(st), "STATS with max_entries 2")) {
		t.check(st.count == n, "count %u with max_entries 2, %u with 0", st.count, n);
		t.check(buf[2].name[0] == char(0xee), "STATS wrote past max_entries");
	}
	st.max_entries = n + 2;
	if (!t.want_ok(c.dev.stats(st), "STATS with max_entries %u", n + 2))
		return;
	t.check(st.count == n && buf[n].name[0] == char(0xee), "count %u; entry %u written", st.count, n);
	// the same counters as debugfs, by name; stable ones by value too
	std::vector<Stat> dbg;
	if (!t.want_ok(read_stats(dbg), "read %s", kStatsPath))
		return;
	std::set<std::string> seen;
	for (u32 i = 0; i < n; i++) {
		const auto& e = buf[i];
		if (!t.check(memchr(e.name, 0, sizeof(e.name)) != nullptr, "entry %u: name not terminated", i))
			return;
		std::string name(e.name);
		t.check(seen.insert(name).second, "counter %s twice", name.c_str());
		auto v = stat_u64(dbg, name);
		if (!t.check(v.has_value(), "STATS has %s, debugfs does not", name.c_str()))
			continue;
		if (name == "hats_live" || name == "reserve_target" || name == "pinned_pages")
			t.check(*v == e.value, "%s: STATS %llu, debugfs %llu", name.c_str(), e.value, *v);
	}
	for (const char* want : {"hats_live", "tables_live", "steals", "reloads", "stealable", "jobs"})
		t.check(seen.count(want), "STATS lacks %s", want);
	// nothing to write: entries is not looked at
	st = {};
	if (t.want_ok(c.dev.stats(st), "STATS with max_entries 0 and entries = NULL"))
		t.check(st.count == n, "count %u with max_entries 0", st.count);
}

}  // namespace

std::vector<Case> basic_cases()
{
	return {
	{"version: abi 1, levels 4/5, user_va_end, 4K page size, LA57 bit, nr_cpus", t_version},
	{"hat: create gives id > 0 and levels == paging_levels, destroy works", t_create_destroy},
	{"hat: destroy twice gives ENOENT", t_destroy_twice},
	{"hat: destroy of id 0 gives ENOENT and no later hat gets id 0", t_destroy_id0},
	{"job: the 88-byte ABI 1.0 struct works and gets its prefix back", t_job_abi10},
	{"ioctl: bigger argument with zero tail is accepted", t_size_big_zero},
	{"map: first and last page of the user range work", t_map_first_last_page},
	{"map: 4K and AUTO of 4 KiB pages give 4 KiB leaves", t_page_size},
	{"stats: pinned_pages and hats_live follow map, unmap, destroy", t_pinned_stats},
	{"job FILL: the process reads the pattern back from its own mapping", t_fill},
	{"job VERIFY: 0 mismatches, then exactly the corrupted byte", t_verify},
	{"job CHECKSUM: equals FNV-1a 64 computed by the process", t_checksum},
	{"translate: pa of the exact byte, matches pagemap, prot, 4K leaf", t_translate_mapped},
	{"translate: unmapped va gives mapped=0 and pa=0", t_translate_unmapped},
	{"two hats mapping one page see the same PA and data", t_two_hats_one_page},
	{"job: runs on each online CPU asked for (ran_on_cpu)", t_every_cpu},
	{"job: ANY_CPU runs on an online CPU", t_any_cpu},
	{"job: 8 bytes, and the last 8 bytes of the user range", t_job_bounds},
	{"unmap: holes and never-mapped ranges are fine", t_unmap_holes},
	{"unmap: jobs then fault once per page, translate says unmapped", t_unmap_faults},
	{"unmap: middle page only, neighbours stay mapped", t_unmap_middle},
	{"fd: hat ids of one fd are ENOENT on another", t_fd_isolation},
	{"fd: close with live hats restores hats_live and pinned_pages", t_close_releases},
	{"hats: 16 hats with distinct ids, mapped, filled, destroyed", t_many_hats},
	{"stats ioctl: count, short arrays, same counters as debugfs", t_stats_ioctl},
	};
}

}  // namespace htable::st
