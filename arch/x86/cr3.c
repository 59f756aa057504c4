// SPDX-License-Identifier: GPL-2.0
/*
 * CR3 switching for runner windows.
 *
 * PCID: CR3 is written with PCID 0 and without the no-flush bit, so each
 * load starts PCID 0 empty (Linux never uses PCID 0 for a process: kernel
 * PCIDs are asid + 1).  The restore writes the saved CR3 back exactly; if
 * PCID is on that also flushes the saved PCID's entries, a cost but never a
 * correctness problem.
 *
 * PTI: the saved CR3 is the kernel half of the PTI pair (we are in the
 * kernel); NMI and #MC entry code only switch CR3 when bit 12 is set, which
 * the 8 KiB-aligned top table never has, so they run on our copy of the
 * kernel half and restore our CR3 on exit.
 */
#include <linux/bug.h>
#include <linux/cpumask.h>
#include <linux/gfp.h>
#include <linux/irqflags.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>
#include <asm/processor-flags.h>

#include "arch.h"

unsigned long htable_arch_cr3_switch(phys_addr_t top_pa)
{
	unsigned long saved = __read_cr3();

	lockdep_assert_irqs_disabled();
	native_write_cr3(top_pa);
	return saved;
}

void htable_arch_cr3_restore(unsigned long saved)
{
	native_write_cr3(saved);
}

const void *htable_arch_kernel_top(void)
{
	return __va(__read_cr3() & CR3_ADDR_MASK);
}

static void **htable_cpu_tops;

int htable_arch_init(void)
{
	const void *kernel_top = htable_arch_kernel_top();
	unsigned int cpu;

	htable_cpu_tops = kcalloc(nr_cpu_ids, sizeof(*htable_cpu_tops), GFP_KERNEL);
	if (!htable_cpu_tops)
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		/* Order 1 for the same PTI reason as the core's top tables. */
		void *top = (void *)__get_free_pages(GFP_KERNEL | __GFP_ZERO, 1);

		if (!top) {
			htable_arch_exit();
			return -ENOMEM;
		}
		htable_pages_account(2);
		/* The kernel half is stable after boot; see dev.c. */
		memcpy(top + PAGE_SIZE / 2, kernel_top + PAGE_SIZE / 2, PAGE_SIZE / 2);
		htable_cpu_tops[cpu] = top;
	}
	return 0;
}

void htable_arch_exit(void)
{
	unsigned int cpu;

	if (!htable_cpu_tops)
		return;
	for_each_possible_cpu(cpu)
		if (htable_cpu_tops[cpu]) {
			free_pages((unsigned long)htable_cpu_tops[cpu], 1);
			htable_pages_account(-2);
		}
	kfree(htable_cpu_tops);
	htable_cpu_tops = NULL;
}

void *htable_arch_cpu_top(unsigned int cpu, phys_addr_t *pa)
{
	void *top = htable_cpu_tops[cpu];

	*pa = __pa(top);
	return top;
}
