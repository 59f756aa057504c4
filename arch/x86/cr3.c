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
#include <linux/irqflags.h>
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
