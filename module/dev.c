// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/htable: the ioctl interface (include/uapi/linux/htable.h, docs/ABI.md).
 *
 * Every hat belongs to the file descriptor that created it and dies with it.
 * Each ioctl validates all of its fields before it changes anything, and
 * either completes or leaves the hat as it was.
 */
#include <linux/capability.h>
#include <linux/cpumask.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <asm/io.h>

#include "internal.h"
#include "../arch/x86/arch.h"

/* A file descriptor's hats, by id (1..). */
struct htable_file {
	struct mutex lock;		/* hats: insert/erase */
	struct xarray hats;		/* id -> struct fd_hat */
};

static void fd_hat_release(struct kref *kref)
{
	struct fd_hat *fh = container_of(kref, struct fd_hat, kref);
	struct pinned_region *r, *tmp;

	/*
	 * The hat goes first: htable_purge_hat() frees the tables, and no CPU
	 * can be on them (jobs hold a reference).  Only then are the pages
	 * they pointed at unpinned.
	 */
	htable_hat_destroy(fh->hat);
	list_for_each_entry_safe(r, tmp, &fh->regions, link) {
		unsigned long i;

		for (i = 0; i < r->npages; i++)
			if (r->pages[i])
				unpin_user_page(r->pages[i]);
		htable_stat_add(HTABLE_STAT_PINNED_PAGES, -(s64)r->live);
		list_del(&r->link);
		kvfree(r->pages);
		kfree(r);
	}
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
	struct htable_file *hf = kzalloc(sizeof(*hf), GFP_KERNEL);

	if (!hf)
		return -ENOMEM;
	mutex_init(&hf->lock);
	xa_init_flags(&hf->hats, XA_FLAGS_ALLOC1);
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
	kfree(hf);
	return 0;
}

/* ---- argument checks shared by several ioctls ----------------------------- */

static bool range_ok(u64 va, u64 len, unsigned int levels)
{
	u64 end = htable_user_va_end(levels);

	return len && va < end && len <= end - va;
}

static bool page_aligned3(u64 a, u64 b, u64 c)
{
	return !((a | b | c) & ~PAGE_MASK);
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
	/* ABI 1 maps the caller's memory in 4 KiB pages only. */
	v->page_sizes = HTABLE_PAGE_4K;
	return 0;
}

static int ioc_hat_create(struct htable_file *hf, struct htable_hat_create *c)
{
	struct fd_hat *fh;
	u32 id;
	int err;

	if (c->flags || c->__pad)
		return -EINVAL;
	fh = kzalloc(sizeof(*fh), GFP_KERNEL_ACCOUNT);
	if (!fh)
		return -ENOMEM;
	kref_init(&fh->kref);
	mutex_init(&fh->lock);
	INIT_LIST_HEAD(&fh->regions);
	err = htable_hat_create(hx_paging_levels(), &fh->hat);
	if (err) {
		mutex_destroy(&fh->lock);
		kfree(fh);
		return err;
	}
	/*
	 * The kernel half is copied once: on x86-64 the kernel's top-level
	 * entries are populated at boot (preallocate_vmalloc_pages) and never
	 * change afterwards, which is what lets every mm share them too.
	 */
	htable_hat_copy_kernel_half(fh->hat, htable_arch_kernel_top());

	mutex_lock(&hf->lock);
	err = xa_alloc(&hf->hats, &id, fh, xa_limit_31b, GFP_KERNEL);
	if (!err)
		fh->id = id;
	mutex_unlock(&hf->lock);
	if (err) {
		fd_hat_put(fh);
		return err == -EBUSY ? -ENOSPC : err;
	}
	c->hat_id = id;
	c->levels = htable_hat_levels(fh->hat);
	return 0;
}

static int ioc_hat_destroy(struct htable_file *hf, struct htable_hat_destroy *d)
{
	struct fd_hat *fh;

	if (d->__pad)
		return -EINVAL;
	mutex_lock(&hf->lock);
	fh = xa_erase(&hf->hats, d->hat_id);
	mutex_unlock(&hf->lock);
	if (!fh)
		return -ENOENT;
	fd_hat_put(fh);
	return 0;
}

/*
 * Undo @n pages of a MAP: the core unmaps them (and flushes) before the
 * pages are unpinned, so no TLB can still reach a page we let go of.
 */
static void map_unwind(struct fd_hat *fh, u64 va, struct page **pages, unsigned long mapped,
		       unsigned long pinned)
{
	if (mapped)
		WARN_ON_ONCE(htable_hat_unmap(fh->hat, va, (u64)mapped << PAGE_SHIFT));
	unpin_user_pages(pages, pinned);
}

static int ioc_map(struct htable_file *hf, struct htable_map *m)
{
	unsigned int levels = hx_paging_levels();
	struct pinned_region *r;
	struct fd_hat *fh;
	struct page **pages;
	unsigned long npages, i;
	long pinned;
	int err;

	if (m->flags)
		return -EINVAL;
	if (!page_aligned3(m->va, m->uaddr, m->length))
		return -EINVAL;
	if (!range_ok(m->va, m->length, levels))
		return -EINVAL;
	if (m->uaddr + m->length < m->uaddr)
		return -EINVAL;
	if (!(m->prot & HTABLE_PROT_READ) || (m->prot & ~HTABLE_PROT_ALL))
		return -EINVAL;
	if (m->page_size && m->page_size != HTABLE_PAGE_4K)
		return -EOPNOTSUPP;
	npages = m->length >> PAGE_SHIFT;
	if (npages > INT_MAX)
		return -EINVAL;

	fh = fd_hat_get(hf, m->hat_id);
	if (!fh)
		return -ENOENT;

	err = -ENOMEM;
	r = kzalloc(sizeof(*r), GFP_KERNEL_ACCOUNT);
	pages = kvmalloc_array(npages, sizeof(*pages), GFP_KERNEL_ACCOUNT);
	if (!r || !pages)
		goto out_free;

	/*
	 * Long-term pin, writable: a job may write through our tables at any
	 * time, and FOLL_LONGTERM keeps the pages out of ZONE_MOVABLE/CMA.
	 * pin_user_pages_fast() returns fewer pages at the first hole or
	 * unwritable page: the caller does not own the whole range.
	 */
	pinned = pin_user_pages_fast(m->uaddr, npages, FOLL_WRITE | FOLL_LONGTERM, pages);
	if (pinned < 0) {
		err = pinned == -ENOMEM ? -ENOMEM : -EFAULT;
		goto out_free;
	}
	if (pinned != npages) {
		unpin_user_pages(pages, pinned);
		err = -EFAULT;
		goto out_free;
	}

	mutex_lock(&fh->lock);
	for (i = 0; i < npages; i++) {
		err = htable_hat_map(fh->hat, m->va + ((u64)i << PAGE_SHIFT),
				     page_to_phys(pages[i]), PAGE_SIZE, m->prot);
		if (err)
			break;
	}
	if (err) {
		map_unwind(fh, m->va, pages, i, npages);
		mutex_unlock(&fh->lock);
		goto out_free;
	}
	r->va = m->va;
	r->npages = npages;
	r->live = npages;
	r->pages = pages;
	list_add_tail(&r->link, &fh->regions);
	mutex_unlock(&fh->lock);
	htable_stat_add(HTABLE_STAT_PINNED_PAGES, npages);
	fd_hat_put(fh);
	return 0;

out_free:
	kvfree(pages);
	kfree(r);
	fd_hat_put(fh);
	return err;
}

/* Unpin the pages of [va, va + len) after the core unmapped and flushed them. */
static void regions_release(struct fd_hat *fh, u64 va, u64 len)
{
	struct pinned_region *r, *tmp;
	u64 end = va + len;

	list_for_each_entry_safe(r, tmp, &fh->regions, link) {
		u64 rend = r->va + ((u64)r->npages << PAGE_SHIFT);
		u64 a = max(va, r->va), b = min(end, rend);

		for (; a < b; a += PAGE_SIZE) {
			unsigned long i = (a - r->va) >> PAGE_SHIFT;

			if (r->pages[i]) {
				unpin_user_page(r->pages[i]);
				r->pages[i] = NULL;
				r->live--;
				htable_stat_add(HTABLE_STAT_PINNED_PAGES, -1);
			}
		}
		if (!r->live) {
			list_del(&r->link);
			kvfree(r->pages);
			kfree(r);
		}
	}
}

static int ioc_unmap(struct htable_file *hf, struct htable_unmap *u)
{
	struct fd_hat *fh;
	int err;

	if (u->__pad)
		return -EINVAL;
	if (!page_aligned3(u->va, u->length, 0))
		return -EINVAL;
	if (!range_ok(u->va, u->length, hx_paging_levels()))
		return -EINVAL;
	fh = fd_hat_get(hf, u->hat_id);
	if (!fh)
		return -ENOENT;
	mutex_lock(&fh->lock);
	err = htable_hat_unmap(fh->hat, u->va, u->length);
	if (!err)
		regions_release(fh, u->va, u->length);
	mutex_unlock(&fh->lock);
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
	t->prot = x.prot;
	t->page_size = x.page_size;
	t->level = x.level;
	return 0;
}

static int ioc_job(struct htable_file *hf, struct htable_job *j)
{
	struct fd_hat *fh;
	int err;

	if (j->flags)
		return -EINVAL;
	if (j->op != HTABLE_JOB_FILL && j->op != HTABLE_JOB_VERIFY &&
	    j->op != HTABLE_JOB_CHECKSUM)
		return -EINVAL;
	if ((j->va | j->length) & 7)
		return -EINVAL;
	if (!range_ok(j->va, j->length, hx_paging_levels()))
		return -EINVAL;
	if (j->cpu != HTABLE_JOB_ANY_CPU && j->cpu >= nr_cpu_ids)
		return -EINVAL;
	fh = fd_hat_get(hf, j->hat_id);
	if (!fh)
		return -ENOENT;
	err = htable_run_job(fh, j);
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
	IOC_V1(HTABLE_IOC_JOB, struct htable_job),
};

static long htable_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct htable_file *hf = file->private_data;
	void __user *uarg = (void __user *)arg;
	const struct htable_ioc_desc *d;
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
		err = ioc_hat_create(hf, &a.create);
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
	default:
		return -ENOTTY;
	}
	if (err)
		return err;
	if (_IOC_DIR(cmd) & _IOC_READ) {
		/* An older caller gets the prefix it knows; a newer one zeroes. */
		if (usize > d->ksize && clear_user(uarg + d->ksize, usize - d->ksize))
			return -EFAULT;
		if (copy_to_user(uarg, &a, min(usize, d->ksize)))
			return -EFAULT;
	}
	return 0;
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
