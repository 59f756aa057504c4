// SPDX-License-Identifier: GPL-2.0
/* Shim: CPU numbering.  Cross-CPU TLB work lives in arch/x86/tlb.c. */
#include <linux/cpumask.h>
#include <linux/sched.h>
#include <linux/smp.h>

#include "../htable/shim.h"

unsigned int hx_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

unsigned int hx_smp_processor_id(void)
{
	return raw_smp_processor_id();
}

hx_size_t hx_cpumask_bytes(void)
{
	return cpumask_size();
}

void hx_cond_resched(void)
{
	cond_resched();
}
