/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * htable ioctl ABI: /dev/htable.
 *
 * Shared unchanged by the module (module/dev.c) and by htablectl.  See
 * docs/ABI.md for the semantics and the errno of every failure.
 *
 * Versioning: each command's number encodes the size of its argument
 * (_IOC_SIZE).  The module dispatches on _IOC_NR (type and direction must
 * match, else ENOTTY) and copies the argument
 * with copy_struct_from_user() semantics: a caller built against an older,
 * shorter struct gets zeroes for the new tail; a caller built against a newer,
 * longer struct is accepted when the tail the module does not know is all
 * zero, and refused with E2BIG otherwise.  Structs therefore only ever grow at
 * the end, all fields are fixed width, and padding is explicit and must be 0.
 */
#ifndef _UAPI_LINUX_HTABLE_H
#define _UAPI_LINUX_HTABLE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define HTABLE_ABI_VERSION	1
#define HTABLE_IOC_MAGIC	0xBA

/* htable_version.features */
#define HTABLE_FEAT_LA57	(1u << 0)	/* running with 5-level paging */
#define HTABLE_FEAT_1G		(1u << 1)	/* CPU has 1 GiB pages (pdpe1gb) */
#define HTABLE_FEAT_NX		(1u << 2)	/* no-execute bit usable */
#define HTABLE_FEAT_PTI		(1u << 3)	/* page-table isolation on */
#define HTABLE_FEAT_PCID	(1u << 4)	/* CPU uses PCID */

struct htable_version {
	__u32 abi_version;	/* out: HTABLE_ABI_VERSION */
	__u32 paging_levels;	/* out: 4 or 5, the running CPU mode */
	__u32 features;		/* out: HTABLE_FEAT_* */
	__u32 nr_cpus;		/* out: online CPUs */
	__u64 user_va_end;	/* out: first VA past the mappable (user) half */
	__u64 page_sizes;	/* out: bitmap of supported leaf sizes (1 << shift) */
};

/* htable_hat_create.flags */
#define HTABLE_HAT_COPIED_TOP	(1u << 0)	/* top level copied per CPU (seed: VLP) */

struct htable_hat_create {
	__u32 flags;		/* in: HTABLE_HAT_* */
	__u32 hat_id;		/* out: id, valid for this file descriptor */
	__u32 levels;		/* out: paging levels of the hat */
	__u32 __pad;		/* must be 0 */
};

struct htable_hat_destroy {
	__u32 hat_id;		/* in */
	__u32 __pad;		/* must be 0 */
};

/* htable_map.prot, htable_translate.prot */
#define HTABLE_PROT_READ	(1u << 0)
#define HTABLE_PROT_WRITE	(1u << 1)
#define HTABLE_PROT_EXEC	(1u << 2)
#define HTABLE_PROT_ALL		(HTABLE_PROT_READ | HTABLE_PROT_WRITE | HTABLE_PROT_EXEC)

/* htable_map.page_size */
#define HTABLE_PAGE_AUTO	0		/* largest leaves the memory allows */
#define HTABLE_PAGE_4K		(1ull << 12)
#define HTABLE_PAGE_2M		(1ull << 21)
#define HTABLE_PAGE_1G		(1ull << 30)

/* htable_map.flags */
#define HTABLE_MAP_OWNED	(1ull << 0)	/* module-allocated memory; uaddr 0 */

/*
 * Map [uaddr, uaddr + length) of the caller's own memory at the hat's private
 * VA [va, va + length).  The pages are pinned (FOLL_LONGTERM) until unmapped or
 * the hat dies, and count against RLIMIT_MEMLOCK.  uaddr, va and length must
 * be aligned to the page size, length > 0.  A 2 MiB / 1 GiB leaf needs
 * memory that is physically contiguous and aligned for it (a THP or hugetlb
 * page); HTABLE_PAGE_AUTO uses such leaves wherever they fit, 4 KiB
 * elsewhere.  With HTABLE_MAP_OWNED the module allocates zeroed memory
 * instead (4 KiB or 2 MiB leaves), freed on unmap.
 */
struct htable_map {
	__u32 hat_id;
	__u32 prot;		/* HTABLE_PROT_*; READ is required */
	__u64 va;		/* private VA in the hat, user half */
	__u64 uaddr;		/* caller's buffer (0 with HTABLE_MAP_OWNED) */
	__u64 length;
	__u64 page_size;	/* HTABLE_PAGE_* */
	__u64 flags;		/* HTABLE_MAP_* */
};

struct htable_unmap {
	__u32 hat_id;
	__u32 __pad;
	__u64 va;
	__u64 length;
};

struct htable_translate {
	__u32 hat_id;
	__u32 prot;		/* out: HTABLE_PROT_* of the leaf entry */
	__u64 va;		/* in */
	__u64 pa;		/* out: physical address of va (0 when unmapped) */
	__u32 mapped;		/* out: 1 when mapped, 0 when not */
	__u32 __pad;		/* must be 0 */
	__u64 page_size;	/* out: leaf size in bytes */
	__u64 level;		/* out: level of the leaf (0 = 4 KiB table) */
};

/* htable_job.op */
#define HTABLE_JOB_FILL		1	/* write pattern(seed, offset) */
#define HTABLE_JOB_VERIFY	2	/* compare with pattern(seed, offset) */
#define HTABLE_JOB_CHECKSUM	3	/* FNV-1a 64 over the range (one CPU only) */
#define HTABLE_JOB_TOUCH	4	/* read the first 8 bytes of every page */
#define HTABLE_JOB_RANDOM_RW	5	/* see htable_xorshift64() below */
#define HTABLE_JOB_COPY		6	/* [va, va + length) -> [dst_va, ...) */

/*
 * Run a job over [va, va + length) of a hat: kthreads bound to the chosen
 * CPUs switch CR3 onto the hat's tables and touch the range through the
 * MMU.  With cpu_mask 0 the job runs on @cpu (or any CPU); otherwise the
 * range is split in slices (htable_job_slice()), one per CPU of the mask in
 * increasing CPU order, run in parallel.  The pattern byte at offset o (from
 * the job's va) is htable_pattern_byte(seed, o).
 */
struct htable_job {
	__u32 hat_id;
	__u32 op;		/* HTABLE_JOB_* */
	__u32 cpu;		/* in: CPU to run on, HTABLE_JOB_ANY_CPU for any */
	__u32 flags;		/* must be 0 */
	__u64 va;
	__u64 length;		/* multiple of 8, > 0 */
	__u64 seed;
	/* out */
	__u64 bytes;		/* bytes touched */
	__u64 faults;		/* pages that faulted with nothing mapped */
	__u64 result;		/* checksum; mismatching bytes; pages touched; writes */
	__u64 first_bad;	/* VERIFY: offset of the first mismatch, or ~0 */
	__u32 ran_on_cpu;	/* the (lowest) CPU it ran on */
	__u32 windows;		/* CR3 windows used */
	__u64 max_window_ns;	/* longest interrupts-off window */
	__u64 reloads;		/* translations put back from the record */
	/* in, since the first growth of the struct */
	__u64 cpu_mask;		/* CPUs 0..63 to split the job over; 0: use cpu */
	__u64 dst_va;		/* COPY: destination, same length, not overlapping */
	/* out */
	__u64 cpus_ran;		/* CPUs the slices ran on */
	__u64 shootdowns;	/* TLB shootdowns its CPUs took while it ran */
};
#define HTABLE_JOB_ANY_CPU	0xffffffffu

static inline __u8 htable_pattern_byte(__u64 seed, __u64 off)
{
	__u64 x = (seed ^ (off >> 3)) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return (__u8)(x >> (8 * (off & 7)));
}

/* New protection for [va, va + length); page aligned, holes are fine. */
struct htable_protect {
	__u32 hat_id;
	__u32 prot;		/* HTABLE_PROT_*; READ is required */
	__u64 va;
	__u64 length;
};

/* Lock (1) or unlock (0) [va, va + length): resident and never stolen. */
struct htable_lock {
	__u32 hat_id;
	__u32 lock;
	__u64 va;
	__u64 length;
};

/* One mapping reported by HTABLE_IOC_WALK (from the hat's record). */
struct htable_walk_entry {
	__u64 va;
	__u64 length;		/* physically contiguous run */
	__u64 pa;		/* 0 for a shared range */
	__u32 prot;		/* HTABLE_PROT_* */
	__u32 flags;		/* HTABLE_WALK_* */
	__u64 page_size;	/* leaf size */
};
#define HTABLE_WALK_LOCKED	(1u << 0)
#define HTABLE_WALK_SHARED	(1u << 1)	/* a table linked from another hat */

/*
 * Walk the mappings of [va, end), at most max_entries into the user array
 * at entries.  On return count entries were written and next is where to
 * continue (== end when done).
 */
struct htable_walk {
	__u32 hat_id;
	__u32 max_entries;
	__u64 va;
	__u64 end;
	__u64 entries;		/* user pointer to struct htable_walk_entry[] */
	__u64 next;		/* out */
	__u32 count;		/* out */
	__u32 __pad;
};

/*
 * Share: link the table of src_hat_id that covers va at level (0: a table of
 * 4 KiB leaves, 1: of 2 MiB leaves...) into dst_hat_id, which then sees the
 * same mappings in [va, va + span(level)).  Both hats belong to this fd.
 */
struct htable_share {
	__u32 dst_hat_id;
	__u32 src_hat_id;
	__u64 va;
	__u32 level;
	__u32 __pad;
};

/* Reap: give up to nr page tables back now, as the shrinker would. */
struct htable_reap {
	__u64 nr;		/* in */
	__u64 freed;		/* out */
};

/* One counter of HTABLE_IOC_STATS: the same as debugfs stats. */
struct htable_stat_entry {
	char name[32];		/* NUL-terminated */
	__u64 value;
};

/*
 * Stats: copy up to max_entries counters to the user array at entries;
 * count is how many exist (call again with a bigger array if count >
 * max_entries).  max_entries 0 just reports count.
 */
struct htable_stats {
	__u64 entries;		/* user pointer to struct htable_stat_entry[] */
	__u32 max_entries;
	__u32 count;		/* out */
};

/* Offset of slice @i of @n in a job of @length bytes: 8-byte granular. */
static inline __u64 htable_job_slice(__u64 length, __u64 n, __u64 i)
{
	return (length / 8) * i / n * 8;	/* length < 2^57, i < 64: no overflow */
}

/*
 * RANDOM_RW: a slice [a, b) of the job (offsets from va) runs
 * max(1, (b - a) / 64) iterations with state = htable_random_rw_seed(seed, a);
 * each picks off = a + 8 * (htable_xorshift64(&state) % ((b - a) / 8)),
 * reads the 8 bytes there and writes htable_pattern_byte(seed, off + 0..7).
 * result = iterations that completed.  A process can replay it exactly.
 */
static inline __u64 htable_xorshift64(__u64 *state)
{
	__u64 x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static inline __u64 htable_random_rw_seed(__u64 seed, __u64 slice_off)
{
	return (seed ^ (slice_off * 0x9e3779b97f4a7c15ull)) | 1;
}

#define HTABLE_IOC_VERSION	_IOR(HTABLE_IOC_MAGIC, 0x00, struct htable_version)
#define HTABLE_IOC_HAT_CREATE	_IOWR(HTABLE_IOC_MAGIC, 0x01, struct htable_hat_create)
#define HTABLE_IOC_HAT_DESTROY	_IOW(HTABLE_IOC_MAGIC, 0x02, struct htable_hat_destroy)
#define HTABLE_IOC_MAP		_IOW(HTABLE_IOC_MAGIC, 0x03, struct htable_map)
#define HTABLE_IOC_UNMAP	_IOW(HTABLE_IOC_MAGIC, 0x04, struct htable_unmap)
#define HTABLE_IOC_TRANSLATE	_IOWR(HTABLE_IOC_MAGIC, 0x05, struct htable_translate)
#define HTABLE_IOC_JOB		_IOWR(HTABLE_IOC_MAGIC, 0x06, struct htable_job)
#define HTABLE_IOC_PROTECT	_IOW(HTABLE_IOC_MAGIC, 0x07, struct htable_protect)
#define HTABLE_IOC_LOCK		_IOW(HTABLE_IOC_MAGIC, 0x08, struct htable_lock)
#define HTABLE_IOC_WALK		_IOWR(HTABLE_IOC_MAGIC, 0x09, struct htable_walk)
#define HTABLE_IOC_SHARE	_IOW(HTABLE_IOC_MAGIC, 0x0a, struct htable_share)
#define HTABLE_IOC_REAP		_IOWR(HTABLE_IOC_MAGIC, 0x0b, struct htable_reap)
#define HTABLE_IOC_STATS	_IOWR(HTABLE_IOC_MAGIC, 0x0c, struct htable_stats)

#endif /* _UAPI_LINUX_HTABLE_H */
