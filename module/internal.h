/* SPDX-License-Identifier: GPL-2.0 */
/* Declarations shared by the files of module/ (kernel C only). */
#ifndef HTABLE_MODULE_INTERNAL_H
#define HTABLE_MODULE_INTERNAL_H

#include <linux/atomic.h>
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
struct htable_file;
struct dentry;

struct fd_hat {
	struct kref kref;
	u32 id;				/* per file descriptor */
	u32 gid;			/* module-wide, names hats/<gid> in debugfs */
	struct htable_hat *hat;
	struct htable_file *hf;		/* the owner */
	pid_t owner_pid;
	struct mutex lock;		/* serialises map/unmap of the regions */
	struct list_head regions;	/* struct region (dev.c) */
	struct dentry *dbg;
};

void fd_hat_put(struct fd_hat *fh);

/* runner.c: window durations in log2 buckets of microseconds */
#define HTABLE_WINDOW_BUCKETS 16
extern atomic64_t htable_window_hist[HTABLE_WINDOW_BUCKETS];

/* runner.c; also exported to the KUnit suites */
int htable_run_job(struct htable_hat *hat, struct htable_job *job);

/* dev.c */
int htable_dev_init(void);
void htable_dev_exit(void);

/* shim_mm.c: the module's memory, counted (debugfs pages_live, objects_live) */
int htable_mem_init(void);
void htable_mem_exit(void);
void htable_pages_account(long nr);

/* shrinker.c */
int htable_shrinker_init(void);
void htable_shrinker_exit(void);

/* debugfs.c */
void htable_note_shrink(unsigned long asked, unsigned long freed);
void htable_debugfs_hat_add(struct fd_hat *fh);
void htable_debugfs_hat_remove(struct fd_hat *fh);

/* runner.c */
int htable_runners_init(void);
void htable_runners_exit(void);
void htable_debugfs_init(void);
void htable_debugfs_exit(void);

#endif
