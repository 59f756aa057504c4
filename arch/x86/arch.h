/* SPDX-License-Identifier: GPL-2.0 */
/* Privileged x86-64 primitives used by module/ (kernel C only). */
#ifndef HTABLE_ARCH_X86_ARCH_H
#define HTABLE_ARCH_X86_ARCH_H

#include <linux/types.h>

/**
 * htable_arch_cr3_switch() - load @top_pa into CR3, return the old CR3.
 *
 * Caller has interrupts off (see module/runner.c for why) and restores with
 * htable_arch_cr3_restore() before enabling them.  @top_pa must be 8 KiB
 * aligned (PTI: the entry code treats CR3 bit 12 as "user half").
 */
unsigned long htable_arch_cr3_switch(phys_addr_t top_pa);
void htable_arch_cr3_restore(unsigned long saved);

/** htable_arch_kernel_top() - the live top-level table (kernel half source). */
const void *htable_arch_kernel_top(void);

u64 htable_arch_shootdowns_received(void);

#endif
