// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/debug/htable/:
 *   stats     every counter, "name value" lines
 *   info      the mode the module runs in (the test harness checks it)
 *   reserve   the reserve: pages held and target
 *   tunables  "reserve_amount N" (writable: "reserve_amount 300")
 *   window_hist  how long CR3 windows lasted: "lt_<N>us count" lines, log2
 *   hats/<gid>/info, dump, ptes   one directory per live hat
 * Everything is removed on unload; a hat's directory with the hat.
 */
#include <linux/atomic.h>
#include <linux/bits.h>
#include <linux/capability.h>
#include <linux/cpumask.h>
#include <linux/debugfs.h>
#include <linux/idr.h>
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>

#include "internal.h"
#include "../arch/x86/arch.h"

static struct dentry *htable_debugfs_dir, *htable_hats_dir;
static DEFINE_IDA(htable_gids);

/* Shrinker activity, for the memory-pressure tests. */
static atomic64_t shrink_calls, shrink_asked, shrink_freed;

void htable_note_shrink(unsigned long asked, unsigned long freed)
{
	atomic64_inc(&shrink_calls);
	atomic64_add(asked, &shrink_asked);
	atomic64_add(freed, &shrink_freed);
}

#define HTABLE_MAX_STATS 64

static int stats_show(struct seq_file *m, void *v)
{
	struct htable_stat *st;
	unsigned int n, i;

	st = kcalloc(HTABLE_MAX_STATS, sizeof(*st), GFP_KERNEL);
	if (!st)
		return -ENOMEM;
	n = htable_stats_snapshot(st, HTABLE_MAX_STATS);
	WARN_ON_ONCE(n > HTABLE_MAX_STATS);
	for (i = 0; i < min(n, HTABLE_MAX_STATS); i++)
		seq_printf(m, "%s %llu\n", st[i].name, (unsigned long long)st[i].value);
	seq_printf(m, "shootdowns_received %llu\n", htable_arch_shootdowns_received(-1));
	seq_printf(m, "shrinker_calls %lld\n", (long long)atomic64_read(&shrink_calls));
	seq_printf(m, "shrinker_asked %lld\n", (long long)atomic64_read(&shrink_asked));
	seq_printf(m, "shrinker_freed %lld\n", (long long)atomic64_read(&shrink_freed));
	kfree(st);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(stats);

static int window_hist_show(struct seq_file *m, void *v)
{
	int b;

	for (b = 0; b < HTABLE_WINDOW_BUCKETS - 1; b++)
		seq_printf(m, "lt_%luus %lld\n", 1ul << b,
			   (long long)atomic64_read(&htable_window_hist[b]));
	seq_printf(m, "ge_%luus %lld\n", 1ul << (HTABLE_WINDOW_BUCKETS - 2),
		   (long long)atomic64_read(&htable_window_hist[b]));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(window_hist);

static int info_show(struct seq_file *m, void *v)
{
	seq_printf(m, "abi_version %u\n", HTABLE_ABI_VERSION);
	seq_printf(m, "paging_levels %u\n", hx_paging_levels());
	seq_printf(m, "pti %d\n", boot_cpu_has(X86_FEATURE_PTI) ? 1 : 0);
	seq_printf(m, "pcid %d\n", boot_cpu_has(X86_FEATURE_PCID) ? 1 : 0);
	seq_printf(m, "gbpages %d\n", hx_cpu_has_gbpages());
	seq_printf(m, "nx %d\n", hx_cpu_has_nx());
	seq_printf(m, "online_cpus %u\n", num_online_cpus());
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(info);

static int reserve_show(struct seq_file *m, void *v)
{
	seq_printf(m, "reserve %llu\n", (unsigned long long)htable_reserve_count());
	seq_printf(m, "target %u\n", htable_reserve_target());
	seq_printf(m, "reclaimable %llu\n", (unsigned long long)htable_reclaimable());
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(reserve);

static int tunables_show(struct seq_file *m, void *v)
{
	seq_printf(m, "reserve_amount %u\n", htable_reserve_target());
	return 0;
}

static int tunables_open(struct inode *inode, struct file *file)
{
	return single_open(file, tunables_show, inode->i_private);
}

/* "reserve_amount N": the only tunable that is safe to change live. */
static ssize_t tunables_write(struct file *file, const char __user *ubuf, size_t len,
			      loff_t *ppos)
{
	char buf[64], name[32];
	unsigned int val;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	if (sscanf(buf, "%31s %u", name, &val) != 2 || strcmp(name, "reserve_amount"))
		return -EINVAL;
	if (val > 1u << 20)
		return -ERANGE;
	htable_reserve_set(val);
	return len;
}

static const struct file_operations tunables_fops = {
	.owner = THIS_MODULE,
	.open = tunables_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.write = tunables_write,
	.release = single_release,
};

/* ---- per hat ---------------------------------------------------------------- */

static int hat_info_show(struct seq_file *m, void *v)
{
	struct fd_hat *fh = m->private;

	seq_printf(m, "gid %u\nfd_id %u\nowner_pid %d\n", fh->gid, fh->id, fh->owner_pid);
	seq_printf(m, "levels %u\ncopied_top %d\n", htable_hat_levels(fh->hat),
		   htable_hat_copied_top(fh->hat));
	seq_printf(m, "tables %llu\ncached %llu\nextents %llu\n",
		   (unsigned long long)htable_hat_nr_tables(fh->hat),
		   (unsigned long long)htable_hat_nr_cached(fh->hat),
		   (unsigned long long)htable_hat_nr_extents(fh->hat));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hat_info);

static void dump_line(void *arg, const char *line)
{
	seq_printf(arg, "%s\n", line);
}

/* Physical addresses (of the root only) for CAP_SYS_ADMIN readers alone. */
static int hat_dump_show(struct seq_file *m, void *v)
{
	struct fd_hat *fh = m->private;

	htable_hat_dump(fh->hat, dump_line, m, capable(CAP_SYS_ADMIN));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hat_dump);

/*
 * Each resident leaf entry, raw, in VA order: "L<level> va=0x... pte=0x...".
 * The physical address bits (12-51) are shown to CAP_SYS_ADMIN readers only;
 * others read them as 0 and keep every flag (NX is bit 63).
 */
#define HTABLE_PTES_MAX 65536
#define HTABLE_PTE_ADDR_BITS GENMASK_ULL(51, 12)

static int hat_ptes_show(struct seq_file *m, void *v)
{
	struct fd_hat *fh = m->private;
	hx_u64 va = 0, end = htable_user_va_end(htable_hat_levels(fh->hat));
	bool show_pa = capable(CAP_SYS_ADMIN);
	unsigned int level, n;

	for (n = 0; va < end; n++) {
		hx_u64 pte = htable_hat_walk(fh->hat, &va, end, &level);

		if (!pte)
			break;
		if (n == HTABLE_PTES_MAX) {
			seq_puts(m, "...\n");
			break;
		}
		seq_printf(m, "L%u va=0x%016llx pte=0x%016llx\n", level, (unsigned long long)va,
			   (unsigned long long)(show_pa ? pte : pte & ~HTABLE_PTE_ADDR_BITS));
		va += 1ull << (PAGE_SHIFT + 9 * level);
		cond_resched();
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hat_ptes);

void htable_debugfs_hat_add(struct fd_hat *fh)
{
	char name[16];
	int gid = ida_alloc(&htable_gids, GFP_KERNEL);

	if (gid < 0)
		return;	/* debugfs is best effort */
	fh->gid = gid;
	snprintf(name, sizeof(name), "%d", gid);
	fh->dbg = debugfs_create_dir(name, htable_hats_dir);
	debugfs_create_file("info", 0400, fh->dbg, fh, &hat_info_fops);
	debugfs_create_file("dump", 0400, fh->dbg, fh, &hat_dump_fops);
	debugfs_create_file("ptes", 0400, fh->dbg, fh, &hat_ptes_fops);
}

/* debugfs_remove_recursive() waits for readers still inside a show(). */
void htable_debugfs_hat_remove(struct fd_hat *fh)
{
	if (!fh->dbg)
		return;
	debugfs_remove_recursive(fh->dbg);
	fh->dbg = NULL;
	ida_free(&htable_gids, fh->gid);
}

void htable_debugfs_init(void)
{
	/* debugfs failures are not fatal and need no checking (debugfs.h). */
	htable_debugfs_dir = debugfs_create_dir("htable", NULL);
	debugfs_create_file("stats", 0400, htable_debugfs_dir, NULL, &stats_fops);
	debugfs_create_file("info", 0400, htable_debugfs_dir, NULL, &info_fops);
	debugfs_create_file("reserve", 0400, htable_debugfs_dir, NULL, &reserve_fops);
	debugfs_create_file("tunables", 0600, htable_debugfs_dir, NULL, &tunables_fops);
	debugfs_create_file("window_hist", 0400, htable_debugfs_dir, NULL, &window_hist_fops);
	htable_hats_dir = debugfs_create_dir("hats", htable_debugfs_dir);
}

void htable_debugfs_exit(void)
{
	debugfs_remove_recursive(htable_debugfs_dir);
	ida_destroy(&htable_gids);
}
