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

/* TLB shootdown IPIs taken by @cpu, or by all CPUs for -1. */
u64 htable_arch_shootdowns_received(int cpu);

/*
 * Per-CPU top tables for copied-top (VLP) hats: one 8 KiB-aligned page per
 * possible CPU with the kernel half copied in at load; a window copies the
 * hat's user half into its CPU's page and loads that.
 */
int htable_arch_init(void);
void htable_arch_exit(void);
void *htable_arch_cpu_top(unsigned int cpu, phys_addr_t *pa);

/* module/shim_mm.c: count pages the module holds (debugfs pages_live). */
void htable_pages_account(long nr);

#endif
