// SPDX-License-Identifier: GPL-2.0
/* /sys/kernel/debug/htable/: counters of the core and of the module. */
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/cpumask.h>
#include <asm/cpufeature.h>

#include "internal.h"
#include "../arch/x86/arch.h"

static struct dentry *htable_debugfs_dir;

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
	seq_printf(m, "shootdowns_received %llu\n", htable_arch_shootdowns_received());
	kfree(st);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(stats);

/* The mode the module runs in, as the test harness checks it. */
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

void htable_debugfs_init(void)
{
	/* debugfs failures are not fatal and need no checking (debugfs.h). */
	htable_debugfs_dir = debugfs_create_dir("htable", NULL);
	debugfs_create_file("stats", 0400, htable_debugfs_dir, NULL, &stats_fops);
	debugfs_create_file("info", 0400, htable_debugfs_dir, NULL, &info_fops);
}

void htable_debugfs_exit(void)
{
	debugfs_remove_recursive(htable_debugfs_dir);
}
