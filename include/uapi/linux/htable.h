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

struct htable_hat_create {
	__u32 flags;		/* in: must be 0 */
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

/* htable_map.page_size: 0 means 4 KiB at this ABI version */
#define HTABLE_PAGE_4K		(1ull << 12)

/*
 * Map [uaddr, uaddr + length) of the caller's own memory at the hat's private
 * VA [va, va + length).  The pages are pinned (FOLL_LONGTERM) until unmapped or
 * the hat dies.  uaddr, va and length must be page aligned, length > 0.
 */
struct htable_map {
	__u32 hat_id;
	__u32 prot;		/* HTABLE_PROT_*; READ is required */
	__u64 va;		/* private VA in the hat, user half */
	__u64 uaddr;		/* caller's buffer */
	__u64 length;
	__u64 page_size;	/* 0 or HTABLE_PAGE_4K */
	__u64 flags;		/* must be 0 */
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
#define HTABLE_JOB_CHECKSUM	3	/* FNV-1a 64 over the range */

/*
 * Run a job over [va, va + length) of a hat on one CPU: a kthread bound to
 * that CPU switches CR3 onto the hat's tables and touches the range through
 * the MMU.  The pattern byte at offset o is htable_pattern_byte(seed, o).
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
	__u64 faults;		/* accesses that faulted (unmapped VA) */
	__u64 result;		/* checksum, or number of mismatching bytes */
	__u64 first_bad;	/* VERIFY: offset of the first mismatch, or ~0 */
	__u32 ran_on_cpu;
	__u32 windows;		/* CR3 windows used */
	__u64 max_window_ns;	/* longest interrupts-off window */
};
#define HTABLE_JOB_ANY_CPU	0xffffffffu

static inline __u8 htable_pattern_byte(__u64 seed, __u64 off)
{
	__u64 x = (seed ^ (off >> 3)) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return (__u8)(x >> (8 * (off & 7)));
}

#define HTABLE_IOC_VERSION	_IOR(HTABLE_IOC_MAGIC, 0x00, struct htable_version)
#define HTABLE_IOC_HAT_CREATE	_IOWR(HTABLE_IOC_MAGIC, 0x01, struct htable_hat_create)
#define HTABLE_IOC_HAT_DESTROY	_IOW(HTABLE_IOC_MAGIC, 0x02, struct htable_hat_destroy)
#define HTABLE_IOC_MAP		_IOW(HTABLE_IOC_MAGIC, 0x03, struct htable_map)
#define HTABLE_IOC_UNMAP	_IOW(HTABLE_IOC_MAGIC, 0x04, struct htable_unmap)
#define HTABLE_IOC_TRANSLATE	_IOWR(HTABLE_IOC_MAGIC, 0x05, struct htable_translate)
#define HTABLE_IOC_JOB		_IOWR(HTABLE_IOC_MAGIC, 0x06, struct htable_job)

#endif /* _UAPI_LINUX_HTABLE_H */
