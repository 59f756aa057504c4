// SPDX-License-Identifier: GPL-2.0
/*
 * htable: a port of the Solaris x86 HAT page-table manager to Linux.
 *
 * Module entry points.  The core lives in htable/ (C++), the device and
 * ioctls in dev.c, CR3-switching jobs in runner.c, counters in debugfs.c.
 */
#include <linux/kernel.h>
#include <linux/module.h>

#include "internal.h"

static int __init htable_init(void)
{
	int err;

	err = htable_core_init();
	if (err)
		return err;
	err = htable_dev_init();
	if (err) {
		htable_core_exit();
		return err;
	}
	htable_debugfs_init();
	pr_info("htable: loaded, %u-level paging, ABI %u\n", hx_paging_levels(),
		HTABLE_ABI_VERSION);
	return 0;
}

static void __exit htable_exit(void)
{
	htable_debugfs_exit();
	htable_dev_exit();
	htable_core_exit();
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
EXPORT_SYMBOL_GPL(htable_hat_destroy);
EXPORT_SYMBOL_GPL(htable_hat_map);
EXPORT_SYMBOL_GPL(htable_hat_unmap);
EXPORT_SYMBOL_GPL(htable_hat_translate);
EXPORT_SYMBOL_GPL(htable_hat_levels);
EXPORT_SYMBOL_GPL(htable_hat_top_pa);
EXPORT_SYMBOL_GPL(htable_hat_nr_tables);
EXPORT_SYMBOL_GPL(htable_user_va_end);
EXPORT_SYMBOL_GPL(htable_page_sizes);
EXPORT_SYMBOL_GPL(htable_stats_snapshot);
#endif

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("htable: private x86-64 page-table hierarchies (Solaris HAT port)");
MODULE_AUTHOR("htable developers");
