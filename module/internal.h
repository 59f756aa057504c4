/* SPDX-License-Identifier: GPL-2.0 */
/* Declarations shared by the files of module/ (kernel C only). */
#ifndef HTABLE_MODULE_INTERNAL_H
#define HTABLE_MODULE_INTERNAL_H

#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/types.h>

#include "../htable/htable_api.h"
#include "../include/uapi/linux/htable.h"

/*
 * A hat as seen by one file descriptor.  Lock order: htable_file.lock ->
 * fd_hat.lock -> the core's hat lock.  A job holds a reference (kref), not
 * fd_hat.lock, while it runs, so destroying the hat from another thread
 * waits for nothing but the final put.
 */
struct fd_hat {
	struct kref kref;
	u32 id;
	struct htable_hat *hat;
	struct mutex lock;		/* serialises map/unmap of the regions */
	struct list_head regions;	/* struct pinned_region, by va */
};

/* Pages of the caller pinned for one MAP, released on unmap. */
struct pinned_region {
	struct list_head link;
	u64 va;
	unsigned long npages;
	unsigned long live;		/* pages[] entries still pinned */
	struct page **pages;		/* NULL once unmapped */
};

void fd_hat_put(struct fd_hat *fh);

/* runner.c */
int htable_run_job(struct fd_hat *fh, struct htable_job *job);

/* dev.c */
int htable_dev_init(void);
void htable_dev_exit(void);

/* debugfs.c */
void htable_debugfs_init(void);
void htable_debugfs_exit(void);

#endif
