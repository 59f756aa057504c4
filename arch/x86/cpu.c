// SPDX-License-Identifier: GPL-2.0
/* x86-64 paging mode and CPU features the core asks about at run time. */
#include <asm/cpufeature.h>
#include <asm/pgtable.h>

#include "../../htable/shim.h"

unsigned int hx_paging_levels(void)
{
	return pgtable_l5_enabled() ? 5 : 4;
}

int hx_cpu_has_gbpages(void)
{
	return boot_cpu_has(X86_FEATURE_GBPAGES);
}

int hx_cpu_has_nx(void)
{
	return (__supported_pte_mask & _PAGE_NX) != 0;
}
