// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/htable: the ioctl interface (include/uapi/linux/htable.h, docs/ABI.md).
 *
 * Every hat belongs to the file descriptor that created it and dies with it.
 * Each ioctl validates all of its fields before it changes anything, and
 * either completes or leaves the hat as it was.
 *
 * Lock order: htable_file.lock -> fd_hat.lock -> the core's locks.
 */
#include <linux/bitmap.h>
#include <linux/capability.h>
#include <linux/cpumask.h>
#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <asm/io.h>

#include "internal.h"
#include "../arch/x86/arch.h"

static unsigned int max_hats_per_fd = 64;
module_param(max_hats_per_fd, uint, 0644);
MODULE_PARM_DESC(max_hats_per_fd, "hats one open file may hold (default 64)");

static unsigned long max_tables_per_fd = 1ul << 20;
module_param(max_tables_per_fd, ulong, 0644);
MODULE_PARM_DESC(max_tables_per_fd,
		 "page tables the hats of one open file may hold before MAP fails with ENOSPC (default 1M)");

/*
 * What an ioctl allocates on its caller's behalf (owned memory, the
 * bookkeeping of a MAP): charged to the caller's memory cgroup, and when
 * that cgroup (or the machine) is out of memory the call fails with ENOMEM
 * -- no OOM kill for a request that can simply be refused, and no warning
 * for a size the caller chose (BPF maps do the same).
 */
#define HTABLE_GFP_CALLER (GFP_KERNEL_ACCOUNT | __GFP_NOWARN | __GFP_RETRY_MAYFAIL)

/* A file descriptor's hats, by id (1..). */
struct htable_file {
	struct mutex lock;		/* hats: insert/erase */
	struct xarray hats;		/* id -> struct fd_hat */
	unsigned int nr_hats;		/* under lock */
	struct mm_struct *mm;		/* the opener's: RLIMIT_MEMLOCK accounting */
};

/* ---- regions: what a MAP put behind a range, released on unmap -------------- */

/*
 * Pinned memory: one struct page per 4 KiB (the pin covers every subpage of
 * a THP or hugetlb page).  Owned memory: one allocation per leaf, of
 * @order, freed once none of its 4 KiB pieces is mapped any more (a
 * partial unmap of a 2 MiB leaf leaves the rest mapped).
 *
 * A region is found by VA, and a VA whose piece was unmapped may be mapped
 * again by a later MAP (another region): so a piece is released only while
 * it is still this region's -- pages[i] for pinned memory, a bit of
 * @mapped for owned memory.
 */
struct region {
	struct list_head link;
	u64 va;
	u64 length;
	bool owned;
	unsigned int order;		/* owned: order of each entry */
	unsigned long nr;		/* entries in pages[] */
	unsigned long live;		/* entries still (partly) mapped */
	struct page **pages;
	unsigned long *mapped;		/* owned: a bit per 4 KiB piece still mapped */
};

static void region_free(struct region *r)
{
	kvfree(r->pages);
	kvfree(r->mapped);
	kfree(r);
}

/* Release the pieces of @r inside [va, end): unpin, or free whole entries. */
static unsigned long region_release(struct htable_file *hf, struct region *r, u64 va, u64 end)
{
	u64 a = max(va, r->va), b = min(end, r->va + r->length);
	unsigned long unpinned = 0;

	for (; a < b; a += PAGE_SIZE) {
		unsigned long piece = (a - r->va) >> PAGE_SHIFT;
		unsigned long i = piece >> r->order;
		unsigned long first = i << r->order, next = (i + 1) << r->order;

		if (!r->pages[i])
			continue;
		if (!r->owned) {
			unpin_user_page(r->pages[i]);
			r->pages[i] = NULL;
			r->live--;
			unpinned++;
		} else if (__test_and_clear_bit(piece, r->mapped) &&
			   find_next_bit(r->mapped, next, first) >= next) {
			htable_pages_account(-(1L << r->order));
			__free_pages(r->pages[i], r->order);
			r->pages[i] = NULL;
			r->live--;
		}
	}
	if (unpinned) {
		htable_stat_add(HTABLE_STAT_PINNED_PAGES, -(s64)unpinned);
		account_locked_vm(hf->mm, unpinned, false);
	}
	return unpinned;
}

static void regions_release(struct htable_file *hf, struct fd_hat *fh, u64 va, u64 end)
{
	struct region *r, *tmp;

	list_for_each_entry_safe(r, tmp, &fh->regions, link) {
		if (r->va >= end || r->va + r->length <= va)
			continue;
		region_release(hf, r, va, end);
		if (!r->live) {
			list_del(&r->link);
			region_free(r);
		}
	}
}

static void fd_hat_release(struct kref *kref)
{
	struct fd_hat *fh = container_of(kref, struct fd_hat, kref);

	/*
	 * The hat goes first: its tables are freed (or, if another hat still
	 * shares one, unlinked from it later) and no CPU can be on them (jobs
	 * hold a reference).  Only then is the memory they pointed at released.
	 */
	htable_debugfs_hat_remove(fh);
	htable_hat_destroy(fh->hat);
	regions_release(fh->hf, fh, 0, ~0ull);
	mutex_destroy(&fh->lock);
	kfree(fh);
}

void fd_hat_put(struct fd_hat *fh)
{
	kref_put(&fh->kref, fd_hat_release);
}

static struct fd_hat *fd_hat_get(struct htable_file *hf, u32 id)
{
	struct fd_hat *fh;

	mutex_lock(&hf->lock);
	fh = xa_load(&hf->hats, id);
	if (fh)
		kref_get(&fh->kref);
	mutex_unlock(&hf->lock);
	return fh;
}

static int htable_open(struct inode *inode, struct file *file)
{
	struct htable_file *hf = kzalloc(sizeof(*hf), GFP_KERNEL_ACCOUNT);

	if (!hf)
		return -ENOMEM;
	mutex_init(&hf->lock);
	xa_init_flags(&hf->hats, XA_FLAGS_ALLOC1);
	hf->mm = current->mm;
	if (hf->mm)
		mmgrab(hf->mm);
	file->private_data = hf;
	return 0;
}

static int htable_release(struct inode *inode, struct file *file)
{
	struct htable_file *hf = file->private_data;
	struct fd_hat *fh;
	unsigned long id;

	xa_for_each(&hf->hats, id, fh) {
		xa_erase(&hf->hats, id);
		fd_hat_put(fh);
	}
	xa_destroy(&hf->hats);
	mutex_destroy(&hf->lock);
	if (hf->mm)
		mmdrop(hf->mm);
	kfree(hf);
	return 0;
}

/* ---- argument checks shared by several ioctls ----------------------------- */

static bool range_ok(u64 va, u64 len)
{
	u64 end = htable_user_va_end(hx_paging_levels());

	return len && va < end && len <= end - va;
}

static bool aligned3(u64 a, u64 b, u64 c, u64 align)
{
	return !((a | b | c) & (align - 1));
}

static bool prot_ok(u32 prot)
{
	return (prot & HTABLE_PROT_READ) && !(prot & ~HTABLE_PROT_ALL);
}

static u64 fd_tables(struct htable_file *hf)
{
	struct fd_hat *fh;
	unsigned long id;
	u64 n = 0;

	mutex_lock(&hf->lock);
	xa_for_each(&hf->hats, id, fh)
		n += htable_hat_nr_tables(fh->hat);
	mutex_unlock(&hf->lock);
	return n;
}

/* ---- ioctls ---------------------------------------------------------------- */

static int ioc_version(struct htable_version *v)
{
	memset(v, 0, sizeof(*v));
	v->abi_version = HTABLE_ABI_VERSION;
	v->paging_levels = hx_paging_levels();
	if (v->paging_levels == 5)
		v->features |= HTABLE_FEAT_LA57;
	if (hx_cpu_has_gbpages())
		v->features |= HTABLE_FEAT_1G;
	if (hx_cpu_has_nx())
		v->features |= HTABLE_FEAT_NX;
	if (boot_cpu_has(X86_FEATURE_PTI))
		v->features |= HTABLE_FEAT_PTI;
	if (boot_cpu_has(X86_FEATURE_PCID))
		v->features |= HTABLE_FEAT_PCID;
	v->nr_cpus = num_online_cpus();
	v->user_va_end = htable_user_va_end(v->paging_levels);
	v->page_sizes = htable_page_sizes();
	return 0;
}

/*
 * On success *out holds a reference of the caller's own on the new hat, which
 * is already visible to other threads of this file under its id: the
 * dispatcher drops that reference once the id has reached the caller, or
 * takes the hat back if it could not (htable_hat_create_undo()).
 */
static int ioc_hat_create(struct htable_file *hf, struct htable_hat_create *c,
			  struct fd_hat **out)
{
	struct fd_hat *fh;
	u32 id;
	int err;

	if ((c->flags & ~HTABLE_HAT_COPIED_TOP) || c->__pad)
		return -EINVAL;
	/* The cap first, so that a refused create allocates nothing. */
	mutex_lock(&hf->lock);
	err = hf->nr_hats >= max_hats_per_fd ? -ENOSPC : 0;
	if (!err)
		hf->nr_hats++;	/* a slot, held until the hat is in or given up */
	mutex_unlock(&hf->lock);
	if (err)
		return err;
	err = -ENOMEM;
	fh = kzalloc(sizeof(*fh), HTABLE_GFP_CALLER);
	if (!fh)
		goto unslot;
	kref_init(&fh->kref);
	mutex_init(&fh->lock);
	INIT_LIST_HEAD(&fh->regions);
	fh->hf = hf;
	fh->owner_pid = task_tgid_nr(current);
	err = htable_hat_create_flags(hx_paging_levels(),
				      (c->flags & HTABLE_HAT_COPIED_TOP) ? HTABLE_HAT_COPIED_TOP : 0,
				      &fh->hat);
	if (err) {
		mutex_destroy(&fh->lock);
		kfree(fh);
		goto unslot;
	}
	/*
	 * The kernel half is copied once: on x86-64 the kernel's top-level
	 * entries are populated at boot (preallocate_vmalloc_pages) and never
	 * change afterwards, which is what lets every mm share them too.  A
	 * copied-top hat gets it from its CPU's top table instead (cr3.c).
	 */
	if (!htable_hat_copied_top(fh->hat))
		htable_hat_copy_kernel_half(fh->hat, htable_arch_kernel_top());

	/*
	 * Once in the xarray another thread may destroy the hat by guessing
	 * its id: our own reference keeps it alive for the rest of the call.
	 */
	mutex_lock(&hf->lock);
	err = xa_alloc(&hf->hats, &id, fh, XA_LIMIT(1, INT_MAX), HTABLE_GFP_CALLER);
	if (!err) {
		fh->id = id;
		kref_get(&fh->kref);
	} else {
		hf->nr_hats--;
	}
	mutex_unlock(&hf->lock);
	if (err) {
		fd_hat_put(fh);
		return err == -EBUSY ? -ENOSPC : err;
	}
	htable_debugfs_hat_add(fh);
	c->hat_id = id;
	c->levels = htable_hat_levels(fh->hat);
	*out = fh;
	return 0;

unslot:
	mutex_lock(&hf->lock);
	hf->nr_hats--;
	mutex_unlock(&hf->lock);
	return err;
}

/*
 * The id of a new hat could not be written back: the caller cannot know it,
 * so the hat must not stay (it would hold a slot of max_hats_per_fd and its
 * memory until close).  Only if the id still names it: another thread may
 * have destroyed it already and got the id again for a hat of its own.
 */
static void htable_hat_create_undo(struct htable_file *hf, struct fd_hat *fh)
{
	bool erased;

	mutex_lock(&hf->lock);	/* every change to hf->hats is made under it */
	erased = xa_load(&hf->hats, fh->id) == fh;
	if (erased) {
		xa_erase(&hf->hats, fh->id);
		hf->nr_hats--;
	}
	mutex_unlock(&hf->lock);
	if (erased)
		fd_hat_put(fh);
}

static int ioc_hat_destroy(struct htable_file *hf, struct htable_hat_destroy *d)
{
	struct fd_hat *fh;

	if (d->__pad)
		return -EINVAL;
	/*
	 * Index 0 holds the XA_FLAGS_ALLOC1 placeholder: erasing it would
	 * mark it free, and the next HAT_CREATE would hand out id 0.
	 */
	if (!d->hat_id)
		return -ENOENT;
	mutex_lock(&hf->lock);
	fh = xa_erase(&hf->hats, d->hat_id);
	if (fh)
		hf->nr_hats--;
	mutex_unlock(&hf->lock);
	if (!fh)
		return -ENOENT;
	fd_hat_put(fh);
	return 0;
}

/*
 * The physical address of each leaf of a pinned range, with leaves of
 * @size where the memory allows it (HTABLE_PAGE_AUTO: per 2 MiB / 1 GiB
 * chunk), 4 KiB elsewhere.  Calls the core once per run of equal leaves;
 * on failure undoes what it mapped.
 */
static bool contiguous(struct page **pages, unsigned long n)
{
	unsigned long first = page_to_pfn(pages[0]), i;

	if (first & (n - 1))
		return false;
	for (i = 1; i < n; i++)
		if (page_to_pfn(pages[i]) != first + i)
			return false;
	return true;
}

static int map_pinned(struct fd_hat *fh, u64 va, u64 length, u64 size, u32 prot,
		      struct page **pages)
{
	unsigned long npages = length >> PAGE_SHIFT, i = 0;
	hx_paddr_t *pas;
	int err = 0;

	pas = kvmalloc_array(npages, sizeof(*pas), HTABLE_GFP_CALLER);
	if (!pas)
		return -ENOMEM;
	while (i < npages && !err) {
		u64 leaf = PAGE_SIZE, run = 0;
		u64 sizes[2] = { HTABLE_PAGE_1G, HTABLE_PAGE_2M };
		int k;

		/* The largest leaf allowed here, and the run of such leaves. */
		for (k = 0; k < 2; k++) {
			u64 sz = sizes[k], n = sz >> PAGE_SHIFT;

			if (size != HTABLE_PAGE_AUTO && size != sz)
				continue;
			if (sz == HTABLE_PAGE_1G && !(htable_page_sizes() & sz))
				continue;
			if (!((va + (i << PAGE_SHIFT)) & (sz - 1)) && i + n <= npages &&
			    contiguous(pages + i, n)) {
				leaf = sz;
				break;
			}
		}
		if (size != HTABLE_PAGE_AUTO && leaf != size) {
			err = -EINVAL;	/* the memory is not backed by such pages */
			break;
		}
		while (i + run * (leaf >> PAGE_SHIFT) < npages) {
			unsigned long j = i + run * (leaf >> PAGE_SHIFT);

			if (leaf != PAGE_SIZE &&
			    (j + (leaf >> PAGE_SHIFT) > npages || !contiguous(pages + j, leaf >> PAGE_SHIFT)))
				break;
			if (leaf == PAGE_SIZE && size == HTABLE_PAGE_AUTO && run &&
			    !((va + (j << PAGE_SHIFT)) & (HTABLE_PAGE_2M - 1)))
				break;	/* a 2 MiB boundary: look for a larger leaf again */
			pas[run] = page_to_phys(pages[j]);
			run++;
		}
		err = htable_hat_map_range(fh->hat, va + (i << PAGE_SHIFT), run * leaf, leaf, prot, 0,
					   pas);
		if (!err)
			i += run * (leaf >> PAGE_SHIFT);
	}
	kvfree(pas);
	if (err && i)
		WARN_ON_ONCE(htable_hat_unmap(fh->hat, va, (u64)i << PAGE_SHIFT));
	return err;
}

static int map_user(struct htable_file *hf, struct fd_hat *fh, struct htable_map *m,
		    struct region *r)
{
	unsigned long npages = m->length >> PAGE_SHIFT;
	long pinned;
	int err;

	if (!hf->mm || hf->mm != current->mm)
		return -EFAULT;	/* only the opener's own memory */
	/*
	 * Long-term pins count against RLIMIT_MEMLOCK, as for VFIO or io_uring;
	 * checked first, so that the limit also bounds the array below.
	 */
	err = account_locked_vm(hf->mm, npages, true);
	if (err)
		return err;
	r->pages = kvmalloc_array(npages, sizeof(*r->pages), HTABLE_GFP_CALLER);
	if (!r->pages) {
		account_locked_vm(hf->mm, npages, false);
		return -ENOMEM;
	}
	/*
	 * Long-term pin, writable: a job may write through our tables at any
	 * time, and FOLL_LONGTERM keeps the pages out of ZONE_MOVABLE/CMA.
	 * pin_user_pages_fast() returns fewer pages at the first hole or
	 * unwritable page: the caller does not own the whole range.
	 */
	pinned = pin_user_pages_fast(m->uaddr, npages, FOLL_WRITE | FOLL_LONGTERM, r->pages);
	if (pinned != npages) {
		if (pinned > 0)
			unpin_user_pages(r->pages, pinned);
		account_locked_vm(hf->mm, npages, false);
		return pinned == -ENOMEM ? -ENOMEM : -EFAULT;
	}
	err = map_pinned(fh, m->va, m->length, m->page_size, m->prot, r->pages);
	if (err) {
		unpin_user_pages(r->pages, npages);
		account_locked_vm(hf->mm, npages, false);
		return err;
	}
	r->nr = r->live = npages;
	htable_stat_add(HTABLE_STAT_PINNED_PAGES, npages);
	return 0;
}

static int map_owned(struct fd_hat *fh, struct htable_map *m, struct region *r)
{
	u64 leaf = m->page_size == HTABLE_PAGE_AUTO ? PAGE_SIZE : m->page_size;
	unsigned long i;
	hx_paddr_t *pas;
	int err;

	if (m->page_size == HTABLE_PAGE_AUTO &&
	    !((m->va | m->length) & (HTABLE_PAGE_2M - 1)))
		leaf = HTABLE_PAGE_2M;
	if (leaf == HTABLE_PAGE_1G)
		return -EOPNOTSUPP;	/* no 1 GiB contiguous allocation for modules */
	r->owned = true;
	r->order = ilog2(leaf) - PAGE_SHIFT;
	r->nr = m->length / leaf;
	r->pages = kvcalloc(r->nr, sizeof(*r->pages), HTABLE_GFP_CALLER);
	r->mapped = kvcalloc(BITS_TO_LONGS(m->length >> PAGE_SHIFT), sizeof(long),
			     HTABLE_GFP_CALLER);
	pas = kvmalloc_array(r->nr, sizeof(*pas), HTABLE_GFP_CALLER);
	err = -ENOMEM;
	if (!r->pages || !r->mapped || !pas)
		goto out;
	for (i = 0; i < r->nr; i++) {
		r->pages[i] = alloc_pages(HTABLE_GFP_CALLER | __GFP_ZERO, r->order);
		if (!r->pages[i])
			goto out;
		htable_pages_account(1L << r->order);
		pas[i] = page_to_phys(r->pages[i]);
	}
	err = htable_hat_map_range(fh->hat, m->va, m->length, leaf, m->prot, 0, pas);
	if (!err) {
		r->live = r->nr;
		bitmap_set(r->mapped, 0, m->length >> PAGE_SHIFT);
	}
out:
	if (err && r->pages)
		for (i = 0; i < r->nr; i++)
			if (r->pages[i]) {
				htable_pages_account(-(1L << r->order));
				__free_pages(r->pages[i], r->order);
				r->pages[i] = NULL;
			}
	kvfree(pas);
	return err;
}

static int ioc_map(struct htable_file *hf, struct htable_map *m)
{
	u64 size = m->page_size;
	struct region *r;
	struct fd_hat *fh;
	int err;

	if (m->flags & ~HTABLE_MAP_OWNED)
		return -EINVAL;
	if (size != HTABLE_PAGE_AUTO && size != HTABLE_PAGE_4K && size != HTABLE_PAGE_2M &&
	    size != HTABLE_PAGE_1G)
		return -EOPNOTSUPP;
	if (size != HTABLE_PAGE_AUTO && !(htable_page_sizes() & size))
		return -EOPNOTSUPP;
	if (!aligned3(m->va, m->uaddr, m->length, size ? size : PAGE_SIZE))
		return -EINVAL;
	if (!range_ok(m->va, m->length))
		return -EINVAL;
	if ((m->flags & HTABLE_MAP_OWNED) ? m->uaddr : m->uaddr + m->length < m->uaddr)
		return -EINVAL;
	if (!prot_ok(m->prot))
		return -EINVAL;
	if ((m->length >> PAGE_SHIFT) > INT_MAX)
		return -EINVAL;

	fh = fd_hat_get(hf, m->hat_id);
	if (!fh)
		return -ENOENT;
	if (fd_tables(hf) >= max_tables_per_fd) {
		fd_hat_put(fh);
		return -ENOSPC;
	}
	r = kzalloc(sizeof(*r), HTABLE_GFP_CALLER);
	if (!r) {
		fd_hat_put(fh);
		return -ENOMEM;
	}
	r->va = m->va;
	r->length = m->length;
	mutex_lock(&fh->lock);
	if (m->flags & HTABLE_MAP_OWNED)
		err = map_owned(fh, m, r);
	else
		err = map_user(hf, fh, m, r);
	if (!err)
		list_add_tail(&r->link, &fh->regions);
	mutex_unlock(&fh->lock);
	if (err)
		region_free(r);
	fd_hat_put(fh);
	return err;
}

static int ioc_unmap(struct htable_file *hf, struct htable_unmap *u)
{
	struct fd_hat *fh;
	int err;

	if (u->__pad)
		return -EINVAL;
	if (!aligned3(u->va, u->length, 0, PAGE_SIZE) || !range_ok(u->va, u->length))
		return -EINVAL;
	fh = fd_hat_get(hf, u->hat_id);
	if (!fh)
		return -ENOENT;
	mutex_lock(&fh->lock);
	/* The core has flushed every TLB before it returns: then release. */
	err = htable_hat_unmap(fh->hat, u->va, u->length);
	if (!err)
		regions_release(hf, fh, u->va, u->va + u->length);
	mutex_unlock(&fh->lock);
	fd_hat_put(fh);
	return err;
}

static int ioc_protect(struct htable_file *hf, struct htable_protect *p)
{
	struct fd_hat *fh;
	int err;

	if (!aligned3(p->va, p->length, 0, PAGE_SIZE) || !range_ok(p->va, p->length) ||
	    !prot_ok(p->prot))
		return -EINVAL;
	fh = fd_hat_get(hf, p->hat_id);
	if (!fh)
		return -ENOENT;
	err = htable_hat_protect(fh->hat, p->va, p->length, p->prot);
	fd_hat_put(fh);
	return err;
}

static int ioc_lock(struct htable_file *hf, struct htable_lock *l)
{
	struct fd_hat *fh;
	int err;

	if (l->lock > 1 || !aligned3(l->va, l->length, 0, PAGE_SIZE) || !range_ok(l->va, l->length))
		return -EINVAL;
	fh = fd_hat_get(hf, l->hat_id);
	if (!fh)
		return -ENOENT;
	err = htable_hat_lock(fh->hat, l->va, l->length, l->lock);
	fd_hat_put(fh);
	return err;
}

static int ioc_translate(struct htable_file *hf, struct htable_translate *t)
{
	struct htable_xlate x;
	struct fd_hat *fh;
	int err;

	if (t->__pad)
		return -EINVAL;
	if (t->va >= htable_user_va_end(hx_paging_levels()))
		return -EINVAL;
	fh = fd_hat_get(hf, t->hat_id);
	if (!fh)
		return -ENOENT;
	err = htable_hat_translate(fh->hat, t->va, &x);
	fd_hat_put(fh);
	t->prot = 0;
	t->pa = 0;
	t->mapped = 0;
	t->page_size = 0;
	t->level = 0;
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	t->mapped = 1;
	t->pa = x.pa;
	t->prot = x.prot & HTABLE_PROT_ALL;
	t->page_size = x.page_size;
	t->level = x.level;
	return 0;
}

#define HTABLE_WALK_MAX_ENTRIES 4096

static int ioc_walk(struct htable_file *hf, struct htable_walk *w)
{
	struct htable_walk_entry __user *out = u64_to_user_ptr(w->entries);
	struct fd_hat *fh;
	u64 va = w->va;
	u32 n = 0;
	int err = 0;

	if (w->__pad || !w->max_entries || w->max_entries > HTABLE_WALK_MAX_ENTRIES)
		return -EINVAL;
	if (w->va >= w->end || w->end > htable_user_va_end(hx_paging_levels()))
		return -EINVAL;
	fh = fd_hat_get(hf, w->hat_id);
	if (!fh)
		return -ENOENT;
	while (n < w->max_entries && va < w->end) {
		struct htable_mapping m;
		struct htable_walk_entry e = {};

		err = htable_hat_next_mapping(fh->hat, va, w->end, &m);
		if (err == -ENOENT) {
			va = w->end;
			err = 0;
			break;
		}
		if (err)
			break;
		e.va = m.va;
		e.length = m.len;
		e.pa = m.pa;
		e.prot = m.attrs & HTABLE_PROT_ALL;
		e.page_size = m.shared ? 0 : 1ull << (PAGE_SHIFT + 9 * m.level);
		e.flags = (m.locked ? HTABLE_WALK_LOCKED : 0) | (m.shared ? HTABLE_WALK_SHARED : 0);
		if (copy_to_user(out + n, &e, sizeof(e))) {
			err = -EFAULT;
			break;
		}
		n++;
		va = m.va + m.len;
	}
	fd_hat_put(fh);
	w->count = n;
	w->next = va;
	return err;
}

static int ioc_share(struct htable_file *hf, struct htable_share *sh)
{
	struct fd_hat *dst, *src;
	int err;

	if (sh->__pad)
		return -EINVAL;
	/* Not "level + 1 >= levels": for level ~0u that wraps to 0. */
	if (sh->level >= hx_paging_levels() - 1 || sh->dst_hat_id == sh->src_hat_id)
		return -EINVAL;
	dst = fd_hat_get(hf, sh->dst_hat_id);
	src = fd_hat_get(hf, sh->src_hat_id);
	err = -ENOENT;
	if (dst && src)
		err = htable_hat_share(dst->hat, src->hat, sh->va, sh->level);
	if (dst)
		fd_hat_put(dst);
	if (src)
		fd_hat_put(src);
	return err;
}

static int ioc_reap(struct htable_reap *r)
{
	r->freed = htable_reap(r->nr);
	/* Not in reclaim here: free what our steals held last (a closed hat). */
	htable_purge_dead();
	return 0;
}

#define HTABLE_MAX_STATS_ENTRIES 128

static int ioc_stats(struct htable_stats *st)
{
	struct htable_stat_entry __user *out = u64_to_user_ptr(st->entries);
	struct htable_stat *all;
	unsigned int n, i;
	int err = 0;

	if (st->max_entries > HTABLE_MAX_STATS_ENTRIES)
		return -EINVAL;
	all = kcalloc(HTABLE_MAX_STATS_ENTRIES, sizeof(*all), GFP_KERNEL);
	if (!all)
		return -ENOMEM;
	n = htable_stats_snapshot(all, HTABLE_MAX_STATS_ENTRIES);
	WARN_ON_ONCE(n > HTABLE_MAX_STATS_ENTRIES);
	n = min(n, (unsigned int)HTABLE_MAX_STATS_ENTRIES);
	for (i = 0; i < n && i < st->max_entries; i++) {
		struct htable_stat_entry e = {};

		strscpy(e.name, all[i].name, sizeof(e.name));
		e.value = all[i].value;
		if (copy_to_user(out + i, &e, sizeof(e))) {
			err = -EFAULT;
			break;
		}
	}
	kfree(all);
	st->count = n;
	return err;
}

static int ioc_job(struct htable_file *hf, struct htable_job *j)
{
	struct fd_hat *fh;
	int err;

	if (j->flags)
		return -EINVAL;
	if (j->op < HTABLE_JOB_FILL || j->op > HTABLE_JOB_COPY)
		return -EINVAL;
	if (!aligned3(j->va, j->length, 0, 8) || !range_ok(j->va, j->length))
		return -EINVAL;
	if (j->op == HTABLE_JOB_COPY ? !aligned3(j->dst_va, 0, 0, 8) || !range_ok(j->dst_va, j->length)
				     : j->dst_va != 0)
		return -EINVAL;
	if (j->cpu_mask) {
		/* A mask names the CPUs; cpu must then say "any". */
		if (j->cpu != HTABLE_JOB_ANY_CPU)
			return -EINVAL;
		if (nr_cpu_ids < 64 && (j->cpu_mask >> nr_cpu_ids))
			return -EINVAL;
	} else if (j->cpu != HTABLE_JOB_ANY_CPU && j->cpu >= nr_cpu_ids) {
		return -EINVAL;
	}
	fh = fd_hat_get(hf, j->hat_id);
	if (!fh)
		return -ENOENT;
	err = htable_run_job(fh->hat, j);
	fd_hat_put(fh);
	return err;
}

/* ---- dispatch ---------------------------------------------------------------- */

/* The largest argument any ioctl of this ABI takes, so one buffer fits all. */
union htable_ioc_arg {
	struct htable_version version;
	struct htable_hat_create create;
	struct htable_hat_destroy destroy;
	struct htable_map map;
	struct htable_unmap unmap;
	struct htable_translate translate;
	struct htable_job job;
	struct htable_protect protect;
	struct htable_lock lock;
	struct htable_walk walk;
	struct htable_share share;
	struct htable_reap reap;
	struct htable_stats stats;
};

struct htable_ioc_desc {
	unsigned int cmd;
	size_t ksize;	/* the struct this module knows */
	size_t minsize;	/* the struct of the ABI version that introduced cmd */
};

/* Introduced in ABI 1 and unchanged since: the two sizes are equal. */
#define IOC_V1(cmd, type) { cmd, sizeof(type), sizeof(type) }

static const struct htable_ioc_desc htable_iocs[] = {
	IOC_V1(HTABLE_IOC_VERSION, struct htable_version),
	IOC_V1(HTABLE_IOC_HAT_CREATE, struct htable_hat_create),
	IOC_V1(HTABLE_IOC_HAT_DESTROY, struct htable_hat_destroy),
	IOC_V1(HTABLE_IOC_MAP, struct htable_map),
	IOC_V1(HTABLE_IOC_UNMAP, struct htable_unmap),
	IOC_V1(HTABLE_IOC_TRANSLATE, struct htable_translate),
	/*
	 * JOB grew (reloads, cpu_mask, dst_va, cpus_ran, shootdowns): its first
	 * 88 bytes, up to max_window_ns, are the ABI 1.0 struct.
	 */
	{ HTABLE_IOC_JOB, sizeof(struct htable_job), offsetof(struct htable_job, reloads) },
	IOC_V1(HTABLE_IOC_PROTECT, struct htable_protect),
	IOC_V1(HTABLE_IOC_LOCK, struct htable_lock),
	IOC_V1(HTABLE_IOC_WALK, struct htable_walk),
	IOC_V1(HTABLE_IOC_SHARE, struct htable_share),
	IOC_V1(HTABLE_IOC_REAP, struct htable_reap),
	IOC_V1(HTABLE_IOC_STATS, struct htable_stats),
};

static long htable_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct htable_file *hf = file->private_data;
	void __user *uarg = (void __user *)arg;
	const struct htable_ioc_desc *d;
	struct fd_hat *created = NULL;
	union htable_ioc_arg a;
	size_t usize = _IOC_SIZE(cmd);
	unsigned int nr = _IOC_NR(cmd);
	int err;

	if (_IOC_TYPE(cmd) != HTABLE_IOC_MAGIC || nr >= ARRAY_SIZE(htable_iocs))
		return -ENOTTY;
	d = &htable_iocs[nr];
	/* Same number and direction; only the size may differ (ABI growth). */
	if (_IOC_DIR(cmd) != _IOC_DIR(d->cmd))
		return -ENOTTY;
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (usize < d->minsize)
		return -EINVAL;
	if (usize > PAGE_SIZE)
		return -E2BIG;

	memset(&a, 0, sizeof(a));
	if (_IOC_DIR(cmd) & _IOC_WRITE) {
		err = copy_struct_from_user(&a, d->ksize, uarg, usize);
		if (err)
			return err;
	}

	switch (_IOC_NR(d->cmd)) {
	case _IOC_NR(HTABLE_IOC_VERSION):
		err = ioc_version(&a.version);
		break;
	case _IOC_NR(HTABLE_IOC_HAT_CREATE):
		err = ioc_hat_create(hf, &a.create, &created);
		break;
	case _IOC_NR(HTABLE_IOC_HAT_DESTROY):
		err = ioc_hat_destroy(hf, &a.destroy);
		break;
	case _IOC_NR(HTABLE_IOC_MAP):
		err = ioc_map(hf, &a.map);
		break;
	case _IOC_NR(HTABLE_IOC_UNMAP):
		err = ioc_unmap(hf, &a.unmap);
		break;
	case _IOC_NR(HTABLE_IOC_TRANSLATE):
		err = ioc_translate(hf, &a.translate);
		break;
	case _IOC_NR(HTABLE_IOC_JOB):
		err = ioc_job(hf, &a.job);
		break;
	case _IOC_NR(HTABLE_IOC_PROTECT):
		err = ioc_protect(hf, &a.protect);
		break;
	case _IOC_NR(HTABLE_IOC_LOCK):
		err = ioc_lock(hf, &a.lock);
		break;
	case _IOC_NR(HTABLE_IOC_WALK):
		err = ioc_walk(hf, &a.walk);
		break;
	case _IOC_NR(HTABLE_IOC_SHARE):
		err = ioc_share(hf, &a.share);
		break;
	case _IOC_NR(HTABLE_IOC_REAP):
		err = ioc_reap(&a.reap);
		break;
	case _IOC_NR(HTABLE_IOC_STATS):
		err = ioc_stats(&a.stats);
		break;
	default:
		return -ENOTTY;
	}
	if (err)
		return err;
	if (_IOC_DIR(cmd) & _IOC_READ) {
		/* An older caller gets the prefix it knows; a newer one zeroes. */
		if ((usize > d->ksize && clear_user(uarg + d->ksize, usize - d->ksize)) ||
		    copy_to_user(uarg, &a, min(usize, d->ksize)))
			err = -EFAULT;
	}
	if (created) {
		if (err)
			htable_hat_create_undo(hf, created);
		fd_hat_put(created);
	}
	return err;
}

static const struct file_operations htable_fops = {
	.owner = THIS_MODULE,
	.open = htable_open,
	.release = htable_release,
	.unlocked_ioctl = htable_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice htable_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "htable",
	.fops = &htable_fops,
	.mode = 0600,
};

int htable_dev_init(void)
{
	return misc_register(&htable_misc);
}

void htable_dev_exit(void)
{
	misc_deregister(&htable_misc);
}
