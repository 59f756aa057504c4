// SPDX-License-Identifier: GPL-2.0
//
// selftest: jobs split over a CPU mask, and the ops TOUCH, RANDOM_RW and
// COPY; CHECKSUM's one-CPU rule.
#include "selftest.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <vector>

namespace htable::st {
namespace {

u32 lowest_cpu(u64 mask)
{
	return u32(std::countr_zero(mask));
}

void t_mask_fill(Ctx& c, T& t)
{
	const u64 mask = c.all_cpus_mask();
	const size_t ncpu = std::popcount(mask);
	t.diag("cpu_mask 0x%llx (%zu CPUs)", mask, ncpu);
	const u64 pages = 64;
	const u8 sentinel = 0x5a;
	auto f = fixture(c, t, pages, true, sentinel);
	if (!f)
		return;
	const u64 len = pages * P;
	htable_job j{};
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, len, 0x3a5, mask, len, 0)) {
		t.check(j.ran_on_cpu == lowest_cpu(mask), "ran_on_cpu %u, lowest CPU of the mask %u",
			j.ran_on_cpu, lowest_cpu(mask));
		u64 first = 0, bad = count_mismatches(f->buf.span(0, len), 0x3a5, 0, &first);
		t.check(bad == 0, "multi-CPU FILL: the process reads %llu wrong bytes, first at %llu", bad,
			first);
	}
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, 0x3a5, mask, len, 0))
		t.check(j.result == 0 && j.first_bad == ~0ull, "multi-CPU VERIFY: %llu mismatches, first %llu",
			j.result, j.first_bad);
	// one corrupted byte in the last slice: VERIFY's first_bad is job-relative
	const u64 bad_off = len - 3 * P + 77;
	f->buf[bad_off] ^= 0x10;
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_VERIFY, f->va, len, 0x3a5, mask, len, 0))
		t.check(j.result == 1 && j.first_bad == bad_off, "VERIFY: %llu mismatches, first_bad %llu, "
			"expected 1 at %llu", j.result, j.first_bad, bad_off);
	// a range that is not a page multiple and starts inside a page: slice
	// boundaries fall inside pages, offsets stay relative to the job's va
	std::memset(f->buf.data(), sentinel, len);
	const u64 off = 8, sub = 3 * P + 40;
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va + off, sub, 0x3a6, mask, sub, 0)) {
		t.check(count_mismatches(f->buf.span(off, sub), 0x3a6) == 0, "odd multi-CPU FILL incomplete");
		t.check(all_equal(f->buf.span(0, off), sentinel) &&
				all_equal(f->buf.span(off + sub, len - off - sub), sentinel),
			"odd multi-CPU FILL wrote outside its range");
	}
	// a length shorter than 8 bytes per CPU: some slices are empty
	if (ncpu > 1)
		want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, 8, 0x3a7, mask, 8, 0);
	// every single CPU as a one-bit mask
	for (u32 cpu : c.cpus) {
		if (cpu >= 64)
			break;
		if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, P, 0x300 + cpu, 1ull << cpu, P, 0))
			t.check(j.ran_on_cpu == cpu, "mask with CPU %u only: ran on %u", cpu, j.ran_on_cpu);
	}
}

void t_touch(Ctx& c, T& t)
{
	const u64 pages = 16;
	auto f = fixture(c, t, pages);
	if (!f)
		return;
	fill_random(f->buf.span(0, pages * P), 0x70c4);
	const u64 sum = fnv1a64(f->buf.span(0, pages * P));
	htable_job j{};
	if (want_job(c, t, j, f->id(), HTABLE_JOB_TOUCH, f->va, pages * P, 0, 8 * pages, 0))
		t.check(j.result == pages, "TOUCH of %llu pages: result %llu", pages, j.result);
	// a range starting inside a page touches every page it overlaps
	const u64 va = f->va + 24, len = 3 * P;
	if (want_job(c, t, j, f->id(), HTABLE_JOB_TOUCH, va, len, 0, 8 * 4, 0))
		t.check(j.result == 4, "TOUCH of 3 pages from va + 24: result %llu, expected 4", j.result);
	// split over CPUs: each slice touches the pages it overlaps
	const u64 mask = c.all_cpus_mask(), n = std::popcount(mask);
	const u64 want = touch_count(va, 5 * P + 16, n);
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_TOUCH, va, 5 * P + 16, 0, mask, 8 * want, 0))
		t.check(j.result == want, "TOUCH over %llu CPUs: result %llu, expected %llu", n, j.result,
			want);
	// holes fault
	if (t.want_ok(c.dev.unmap(f->id(), f->va + 5 * P, 2 * P), "UNMAP 2 pages") &&
	    want_job(c, t, j, f->id(), HTABLE_JOB_TOUCH, f->va, pages * P, 0, 8 * (pages - 2), 2))
		t.check(j.result == pages - 2, "TOUCH with 2 holes: result %llu", j.result);
	t.check(fnv1a64(f->buf.span(0, pages * P)) == sum, "TOUCH changed the buffer");
}

void t_random_rw(Ctx& c, T& t)
{
	const u64 pages = 16, len = pages * P;
	auto f = fixture(c, t, pages);
	if (!f)
		return;
	std::vector<u8> expect(len);
	const u64 mask = c.all_cpus_mask();
	const struct {
		u64 off, len, seed, mask;
	} runs[] = {
		{0, len, 0x1234567, 0},
		{0, len, 0x89abcde, mask},
		{40, 5 * P + 24, 0x5eed, mask},
		{P, 8, 77, 0},          // one word: the same offset every time
		{0, 64, 0xfeed, 0},     // exactly one iteration
	};
	for (const auto& r : runs) {
		fill_random(f->buf.span(0, len), r.seed ^ 0xabc);
		std::copy(f->buf.data(), f->buf.data() + len, expect.begin());
		const u64 n = r.mask ? std::popcount(r.mask) : 1;
		const u64 iters = replay_random_rw(std::span<u8>(expect.data() + r.off, r.len), r.seed, n);
		htable_job j{};
		bool ran = r.mask ? want_job_mask(c, t, j, f->id(), HTABLE_JOB_RANDOM_RW, f->va + r.off, r.len,
						  r.seed, r.mask, 16 * iters, 0)
				  : want_job(c, t, j, f->id(), HTABLE_JOB_RANDOM_RW, f->va + r.off, r.len,
					     r.seed, 16 * iters, 0);
		if (!ran)
			continue;
		t.check(j.result == iters, "RANDOM_RW seed 0x%llx over %llu slices: result %llu, replay %llu",
			r.seed, n, j.result, iters);
		size_t diff = 0, first = 0;
		for (size_t i = 0; i < len; i++)
			if (f->buf[i] != expect[i] && diff++ == 0)
				first = i;
		t.check(diff == 0, "RANDOM_RW seed 0x%llx off %llu len %llu, %llu slices: %zu bytes differ "
			"from the replay, first at %zu", r.seed, r.off, r.len, n, diff, first);
	}
}

void t_copy(Ctx& c, T& t)
{
	const u64 pages = 8, len = pages * P;
	auto f = fixture(c, t, 3 * pages, false);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 S = f->va, D = f->va + k2M, R = f->va + 2 * k2M;
	// source, destination, and a read-only destination
	if (!t.want_ok(c.dev.map(id, S, f->at(0), len), "MAP src") ||
	    !t.want_ok(c.dev.map(id, D, f->at(len), len), "MAP dst") ||
	    !t.want_ok(c.dev.map(id, R, f->at(2 * len), len, HTABLE_PROT_READ), "MAP r-- dst"))
		return;
	auto src = f->buf.span(0, len), dst = f->buf.span(len, len), ro = f->buf.span(2 * len, len);
	fill_random(src, 0xc0c0);
	htable_job j{};
	if (want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len, 0, 0, len, 0, D))
		t.check(std::equal(src.begin(), src.end(), dst.begin()), "COPY: dst differs from src");
	// unaligned pieces, split over every CPU
	std::fill(dst.begin(), dst.end(), 0);
	const u64 so = 24, doff = 8, n = 3 * P + 16;
	const u64 mask = c.all_cpus_mask();
	if (want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S + so, n, 0, mask, n, 0, D + doff)) {
		t.check(std::equal(src.begin() + so, src.begin() + so + n, dst.begin() + doff),
			"multi-CPU COPY of an unaligned piece: dst differs");
		t.check(all_equal(dst.subspan(0, doff), 0) && all_equal(dst.subspan(doff + n), 0),
			"multi-CPU COPY wrote outside its destination");
	}
	// adjacent ranges are fine, overlapping ones are not
	want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len / 2, 0, 0, len / 2, 0, S + len / 2);
	for (u64 dva : {S, S + 8, S + len / 2 - 8, S - len / 2 + 8}) {
		t.want_err(c.dev.job_mask(id, HTABLE_JOB_COPY, S, len / 2, 0, 0, j, dva), EINVAL,
			   "COPY [0x%llx, +0x%llx) to overlapping 0x%llx", S, len / 2, dva);
	}
	// destinations that fault: unmapped, read-only
	const std::vector<u8> ro_before(ro.begin(), ro.end());
	want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len, 0, 0, 0, pages, R + k2M);
	want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len, 0, 0, 0, pages, R);
	t.check(std::equal(ro.begin(), ro.end(), ro_before.begin()), "COPY wrote a read-only destination");
	// a source that faults
	want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S + k1G, len, 0, 0, 0, pages, D);
}

// Two ways COPY lost bytes (found by `htablectl fuzz`): a destination piece
// straddling two pages whose second leaf had been reaped (the runner put
// back only the first, so the mapped piece counted as a fault), and a
// destination at VA 0 (the runner took dst 0 for "not a COPY" and wrote
// nothing in the first window, counting its bytes all the same).
void t_copy_reload(Ctx& c, T& t)
{
	const u64 pages = 4, len = pages * P;
	auto f = fixture(c, t, 2 * pages, false);
	if (!f)
		return;
	const u32 id = f->id();
	const u64 S = f->va, D = f->va + k2M;
	if (!t.want_ok(c.dev.map(id, S, f->at(0), len), "MAP src") ||
	    !t.want_ok(c.dev.map(id, D, f->at(len), len), "MAP dst"))
		return;
	auto src = f->buf.span(0, len), dst = f->buf.span(len, len);
	fill_random(src, 0xc0de);
	htable_job j{};
	u64 freed = 0;
	if (t.want_ok(c.dev.reap(~0ull, &freed), "REAP") &&
	    want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, 2 * P, 0, 0, 2 * P, 0, D + 8))
		t.check(std::equal(src.begin(), src.begin() + 2 * P, dst.begin() + 8),
			"COPY to a reaped, misaligned destination: dst differs (%llu tables reaped)", freed);
	std::fill(dst.begin(), dst.end(), 0);
	if (!t.want_ok(c.dev.map(id, 0, f->at(len), len), "MAP dst again at VA 0"))
		return;
	if (want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len, 0, 0, len, 0, 0))
		t.check(std::equal(src.begin(), src.end(), dst.begin()), "COPY to VA 0: dst differs");
}

// faults counts 4 KiB pages.  A job is run in windows of 16 KiB (COPY:
// 8 KiB); when its va was not page aligned, every window boundary fell
// inside a page, and a page of a hole there counted twice (found by
// htablectl fuzz).
void t_faults_per_page(Ctx& c, T& t)
{
	auto f = fixture(c, t, 2, false);
	if (!f)
		return;
	const u64 hole = f->va + k1G;	// nothing mapped: 8 KiB in, 9 pages
	const u64 len = 8 * P;
	htable_job j{};
	for (u32 op : {HTABLE_JOB_FILL, HTABLE_JOB_VERIFY, HTABLE_JOB_CHECKSUM}) {
		if (t.want_ok(c.dev.job(f->id(), op, hole + 8, len, 1, HTABLE_JOB_ANY_CPU, j), "JOB %s",
			      job_op_name(op)))
			t.check(j.faults == 9 && j.bytes == 0, "JOB %s of 8 pages from 8 bytes into a hole: "
				"faults %llu bytes %llu, expected 9 pages and 0", job_op_name(op), j.faults, j.bytes);
	}
	if (!t.want_ok(c.dev.map(f->id(), f->va, f->at(0), 2 * P), "MAP"))
		return;
	if (t.want_ok(c.dev.job_mask(f->id(), HTABLE_JOB_COPY, hole + 8, len, 0, 0, j, f->va + 2 * k2M),
		      "JOB copy"))
		t.check(j.faults == 9, "COPY of 8 pages from 8 bytes into a hole: faults %llu, expected 9",
			j.faults);
}

// A COPY whose destination pieces cross page boundaries the source does not
// have, into pages a REAP took: every page comes back by a reload, nothing
// faults.  (Regression test: pieces were cut at source pages only and the
// reload was for the destination page a piece began in; the page it crossed
// into was never reloaded, so after three tries the piece counted as a
// fault, half of it written.)
void t_copy_reload_skewed(Ctx& c, T& t)
{
	const u64 len = 4 * P, skew = 0x800;
	auto f = fixture(c, t, 9, false);
	if (!f)
		return;
	const u32 id = f->id();
	// The destination straddles a 2 MiB boundary: its pages sit in two tables.
	const u64 S = f->va, D = f->va + 2 * k2M - 2 * P;
	if (!t.want_ok(c.dev.map(id, S, f->at(0), len), "MAP src") ||
	    !t.want_ok(c.dev.map(id, D, f->at(len), len + P), "MAP dst"))
		return;
	auto src = f->buf.span(0, len), dst = f->buf.span(len, len + P);
	fill_random(src, 0xc1c1);
	for (u64 mask : {u64(0), c.all_cpus_mask()}) {
		std::fill(dst.begin(), dst.end(), 0);
		u64 freed = 0;
		t.want_ok(c.dev.reap(~0ull, &freed), "REAP");
		htable_job j{};
		if (!want_job_mask(c, t, j, id, HTABLE_JOB_COPY, S, len, 0, mask, len, 0, D + skew))
			continue;
		t.check(j.reloads > 0, "COPY after REAP (%llu tables freed) reloaded nothing", freed);
		t.check(std::equal(src.begin(), src.end(), dst.begin() + skew) &&
				all_equal(dst.subspan(0, skew), 0) && all_equal(dst.subspan(skew + len), 0),
			"COPY to a skewed destination after REAP: dst differs");
	}
}

// A job's faults count pieces: a page once for each slice that reaches it.
// Windows end on page boundaries, so a slice never cuts a page in two.
// (Regression test: 16 KiB windows from a slice that starts inside a page
// cut a page every 16 KiB, and a read-only page there counted twice.)
void t_fault_pieces(Ctx& c, T& t)
{
	const u64 all = c.all_cpus_mask();
	if (std::popcount(all) < 2) {
		t.diag("one CPU online: no slice starts inside a page");
		return;
	}
	const u64 mask = all & ~(all - 1), two = mask | ((all & ~mask) & ~((all & ~mask) - 1));
	const u64 pages = 9, len = pages * P;  // two slices of 4.5 pages
	auto f = fixture(c, t, pages, true, 0x11, HTABLE_PROT_READ);
	if (!f)
		return;
	htable_job j{};
	const u64 pieces = touch_count(f->va, len, 2);
	if (want_job_mask(c, t, j, f->id(), HTABLE_JOB_FILL, f->va, len, 0x77, two, 0, pieces))
		t.check(all_equal(f->buf.span(0, len), 0x11), "FILL wrote through a read-only mapping");
}

void t_checksum_mask(Ctx& c, T& t)
{
	auto f = fixture(c, t, 4);
	if (!f)
		return;
	fill_random(f->buf.span(0, 4 * P), 0xc5);
	const u64 mask = c.all_cpus_mask();
	htable_job j{};
	if (std::popcount(mask) > 1) {
		t.want_err(c.dev.job_mask(f->id(), HTABLE_JOB_CHECKSUM, f->va, 4 * P, 0, mask, j), EINVAL,
			   "CHECKSUM over cpu_mask 0x%llx", mask);
	} else {
		t.diag("only one CPU online: the multi-CPU refusal cannot be shown");
	}
	const u64 one = 1ull << c.cpus.back();
	if (c.cpus.back() < 64 &&
	    want_job_mask(c, t, j, f->id(), HTABLE_JOB_CHECKSUM, f->va, 4 * P, 0, one, 4 * P, 0))
		t.check(j.result == fnv1a64(f->buf.span(0, 4 * P)), "one-CPU mask CHECKSUM differs");
}

}  // namespace

std::vector<Case> job_cases()
{
	return {
		{"job: cpu_mask over all CPUs slices FILL/VERIFY, cpus_ran == mask", t_mask_fill},
		{"job TOUCH: result == pages touched, slices, holes, no writes", t_touch},
		{"job RANDOM_RW: buffer equals the process's replay of the generator", t_random_rw},
		{"job COPY: dst gets src's bytes, multi-CPU, overlap gives EINVAL", t_copy},
		{"job COPY: to a reaped destination across pages, and to VA 0", t_copy_reload},
		{"job: faults counts 4 KiB pages, wherever the job's windows end", t_faults_per_page},
		{"job CHECKSUM: multi-CPU mask gives EINVAL, one-CPU mask works", t_checksum_mask},
		{"job COPY: a skewed destination in stolen tables is reloaded, never skipped", t_copy_reload_skewed},
		{"job: faults count a page once per slice (windows end on page boundaries)", t_fault_pieces},
	};
}

}  // namespace htable::st
