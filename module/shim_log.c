// SPDX-License-Identifier: GPL-2.0
/* Shim: logging and invariant reports. */
#include <linux/bug.h>
#include <linux/kconfig.h>
#include <linux/printk.h>

#include "../htable/shim.h"

void hx_log(int level, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	switch (level) {
	case HX_LOG_ERR:
		pr_err("htable: %pV\n", &vaf);
		break;
	case HX_LOG_WARN:
		pr_warn("htable: %pV\n", &vaf);
		break;
	case HX_LOG_INFO:
		pr_info("htable: %pV\n", &vaf);
		break;
	default:
		pr_debug("htable: %pV\n", &vaf);
		break;
	}
	va_end(args);
}

void hx_warn(const char *file, int line, const char *what)
{
	/*
	 * Without CONFIG_BUG (tinyconfig, and so our debug kernel) WARN()
	 * prints nothing: a broken invariant must still show, in the form a
	 * WARN has, which the test harness looks for.
	 */
	if (!IS_ENABLED(CONFIG_BUG)) {
		pr_err("WARNING: htable: broken invariant at %s:%d: %s\n", file, line, what);
		dump_stack();
		return;
	}
	WARN(1, "htable: broken invariant at %s:%d: %s\n", file, line, what);
}
