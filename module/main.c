// SPDX-License-Identifier: GPL-2.0
/*
 * htable: a port of the Solaris x86 HAT page-table manager to Linux.
 *
 * Module entry points.  The core lives in htable/ (C++), the device and
 * ioctls in dev.c, CR3-switching jobs in runner.c, counters in debugfs.c.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "internal.h"
#include "../arch/x86/arch.h"

/* seed: htable_reserve_amount, "to facilitate testing of htable_steal()". */
static unsigned int reserve_amount = 200;
module_param(reserve_amount, uint, 0444);
MODULE_PARM_DESC(reserve_amount, "page-table pages kept in reserve for reloads (default 200)");

static int __init htable_init(void)
{
	int err;

	err = htable_mem_init();
	if (err)
		return err;
	err = htable_core_init(reserve_amount);
	if (err)
		goto out_mem;
	err = htable_arch_init();
	if (err)
		goto out_core;
	err = htable_runners_init();
	if (err)
		goto out_arch;
	err = htable_shrinker_init();
	if (err)
		goto out_runners;
	err = htable_dev_init();
	if (err)
		goto out_shrinker;
	htable_debugfs_init();
	pr_info("htable: loaded, %u-level paging, ABI %u\n", hx_paging_levels(),
		HTABLE_ABI_VERSION);
	return 0;

out_shrinker:
	htable_shrinker_exit();
out_runners:
	htable_runners_exit();
out_arch:
	htable_arch_exit();
out_core:
	htable_core_exit();
out_mem:
	htable_mem_exit();
	return err;
}

static void __exit htable_exit(void)
{
	htable_debugfs_exit();
	htable_dev_exit();
	htable_shrinker_exit();
	htable_runners_exit();
	htable_arch_exit();
	htable_core_exit();
	htable_mem_exit();
	pr_info("htable: unloaded\n");
}

module_init(htable_init);
module_exit(htable_exit);

/*
 * The core's C API, for the KUnit suites in kunit/ (a separate module).
 * Exported only when the kernel has KUnit.
 */
#if IS_ENABLED(CONFIG_KUNIT)
EXPORT_SYMBOL_GPL(htable_hat_create);
EXPORT_SYMBOL_GPL(htable_hat_create_flags);
EXPORT_SYMBOL_GPL(htable_hat_destroy);
EXPORT_SYMBOL_GPL(htable_hat_map);
EXPORT_SYMBOL_GPL(htable_hat_map_range);
EXPORT_SYMBOL_GPL(htable_hat_unmap);
EXPORT_SYMBOL_GPL(htable_hat_protect);
EXPORT_SYMBOL_GPL(htable_hat_lock);
EXPORT_SYMBOL_GPL(htable_hat_share);
EXPORT_SYMBOL_GPL(htable_hat_fault);
EXPORT_SYMBOL_GPL(htable_hat_translate);
EXPORT_SYMBOL_GPL(htable_hat_next_mapping);
EXPORT_SYMBOL_GPL(htable_hat_getpte);
EXPORT_SYMBOL_GPL(htable_hat_walk);
EXPORT_SYMBOL_GPL(htable_hat_drop_tables);
EXPORT_SYMBOL_GPL(htable_hat_check);
EXPORT_SYMBOL_GPL(htable_hat_dump);
EXPORT_SYMBOL_GPL(htable_hat_levels);
EXPORT_SYMBOL_GPL(htable_hat_top_pa);
EXPORT_SYMBOL_GPL(htable_hat_copied_top);
EXPORT_SYMBOL_GPL(htable_hat_load_top);
EXPORT_SYMBOL_GPL(htable_hat_nr_tables);
EXPORT_SYMBOL_GPL(htable_hat_nr_cached);
EXPORT_SYMBOL_GPL(htable_hat_nr_extents);
EXPORT_SYMBOL_GPL(htable_hat_copy_kernel_half);
EXPORT_SYMBOL_GPL(htable_hat_cpu_enter);
EXPORT_SYMBOL_GPL(htable_hat_cpu_leave);
EXPORT_SYMBOL_GPL(htable_user_va_end);
EXPORT_SYMBOL_GPL(htable_page_sizes);
EXPORT_SYMBOL_GPL(htable_reap);
EXPORT_SYMBOL_GPL(htable_reclaimable);
EXPORT_SYMBOL_GPL(htable_reserve_count);
EXPORT_SYMBOL_GPL(htable_reserve_target);
EXPORT_SYMBOL_GPL(htable_reserve_set);
EXPORT_SYMBOL_GPL(htable_test_fail_allocs);
EXPORT_SYMBOL_GPL(htable_pte_make_leaf);
EXPORT_SYMBOL_GPL(htable_pte_cas);
EXPORT_SYMBOL_GPL(htable_pte_update);
EXPORT_SYMBOL_GPL(htable_pte_invalidate_pfn);
EXPORT_SYMBOL_GPL(htable_pte_copy);
EXPORT_SYMBOL_GPL(htable_pte_zero);
EXPORT_SYMBOL_GPL(htable_stats_snapshot);
EXPORT_SYMBOL_GPL(htable_run_job);
EXPORT_SYMBOL_GPL(htable_arch_kernel_top);
#endif

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("htable: private x86-64 page-table hierarchies (Solaris HAT port)");
MODULE_AUTHOR("htable developers");
