// SPDX-License-Identifier: GPL-2.0
//
// x86-64 paging facts: entry formats, level geometry, canonical halves.
// Header-only and constexpr so the generic walker in htable/ never pays a
// call (let alone a virtual one) per entry.
//
// Levels are numbered as in the seed: level 0 holds 4 KiB leaf entries (PT),
// level 1 is the PD (2 MiB leaves), level 2 the PDPT (1 GiB leaves), level 3
// the PML4 and level 4 the PML5 when LA57 is on.  The top level of a hat is
// levels - 1.
#ifndef HTABLE_ARCH_X86_PAGING_H
#define HTABLE_ARCH_X86_PAGING_H

#include "../../htable/shim.h"

namespace htable::x86 {

using pte_t = hx_u64;

inline constexpr pte_t PT_VALID = 1ull << 0;
inline constexpr pte_t PT_WRITABLE = 1ull << 1;
inline constexpr pte_t PT_USER = 1ull << 2;
inline constexpr pte_t PT_WRITETHRU = 1ull << 3;
inline constexpr pte_t PT_NOCACHE = 1ull << 4;
inline constexpr pte_t PT_REF = 1ull << 5;  // accessed
inline constexpr pte_t PT_MOD = 1ull << 6;  // dirty (leaves only)
inline constexpr pte_t PT_PAGESIZE = 1ull << 7;  // leaf above level 0
inline constexpr pte_t PT_PAT_4K = 1ull << 7;    // PAT bit of a level-0 entry
inline constexpr pte_t PT_GLOBAL = 1ull << 8;
inline constexpr pte_t PT_PAT_LARGE = 1ull << 12;  // PAT bit of a large leaf
inline constexpr pte_t PT_NX = 1ull << 63;
// Physical address bits of an entry: bits 51..12 (MAXPHYADDR is at most 52).
inline constexpr pte_t PT_PADDR = 0x000ffffffffff000ull;

inline constexpr unsigned kPtesPerTable = 512;
inline constexpr unsigned kMaxLevels = 5;
inline constexpr unsigned kMaxLeafLevel = 2;  // 1 GiB

constexpr unsigned level_shift(unsigned level) { return 12 + 9 * level; }
constexpr hx_u64 level_size(unsigned level) { return 1ull << level_shift(level); }
constexpr hx_u64 level_mask(unsigned level) { return ~(level_size(level) - 1); }

// Bytes of VA covered by one table at @level (all its 512 entries).
constexpr hx_u64 table_span(unsigned level) { return level_size(level) * kPtesPerTable; }

constexpr unsigned va2entry(hx_u64 va, unsigned level) {
  return static_cast<unsigned>((va >> level_shift(level)) & (kPtesPerTable - 1));
}

// The mappable range of a hat: [0, user_va_end), the lower canonical half
// less its last page.  The core maps only there; the upper half of a hat's
// top table is the kernel's, copied in.  The last page is left out for the
// same reason Linux leaves it out of every process (TASK_SIZE_MAX): it is
// the guard against the SYSRET non-canonical-RIP erratum, so access_ok() --
// and with it copy_{to,from}_user() in a runner -- refuses it.
constexpr hx_u64 user_va_end(unsigned levels) {
  return (1ull << (level_shift(levels - 1) + 9 - 1)) - (1ull << 12);
}

// Index of the first top-level entry that belongs to the kernel half.
inline constexpr unsigned kKernelHalfFirstEntry = kPtesPerTable / 2;

constexpr bool pte_valid(pte_t e) { return (e & PT_VALID) != 0; }
constexpr bool pte_is_leaf(pte_t e, unsigned level) {
  return level == 0 || (e & PT_PAGESIZE) != 0;
}
// The address an entry points at: a leaf's page or a lower table.  A large
// leaf's address field starts above its PAT bit (bit 12).
constexpr hx_paddr_t pte_pa(pte_t e, unsigned level) {
  return (level == 0 || !(e & PT_PAGESIZE)) ? (e & PT_PADDR) : (e & PT_PADDR & level_mask(level));
}

// Attributes the core understands, independent of the entry format
// (the same values as HTABLE_P_* / HTABLE_A_* in htable_api.h).
enum : hx_u32 {
  kProtRead = 1u << 0,
  kProtWrite = 1u << 1,
  kProtExec = 1u << 2,
  kAttrGlobal = 1u << 3,   // G bit: survives CR3 writes; tests only
  kAttrCacheShift = 4,     // 3 bits: PAT index (PWT | PCD << 1 | PAT << 2)
  kAttrCacheMask = 7u << kAttrCacheShift,
  kAttrAll = kProtRead | kProtWrite | kProtExec | kAttrGlobal | kAttrCacheMask,
};

// An entry that points at a lower-level table.  Permissions are granted
// wide here and narrowed at the leaf, as Linux does, so that changing one
// leaf's protection never needs to touch its parents.  The accessed bit is
// left clear: htable_steal() reads it to age tables.
constexpr pte_t make_ptp(hx_paddr_t table_pa) {
  return table_pa | PT_VALID | PT_WRITABLE | PT_USER;
}

// A leaf.  Accessed/dirty are preset: the hardware would set them on first
// use anyway, and presetting avoids a locked read-modify-write by the page
// walker on a live entry we may be compare-and-swapping.
constexpr pte_t make_leaf(hx_paddr_t pa, unsigned level, hx_u32 attrs, bool nx_ok) {
  pte_t e = pa | PT_VALID | PT_USER | PT_REF;
  if (attrs & kProtWrite) e |= PT_WRITABLE | PT_MOD;
  if (!(attrs & kProtExec) && nx_ok) e |= PT_NX;
  if (attrs & kAttrGlobal) e |= PT_GLOBAL;
  hx_u32 cache = (attrs & kAttrCacheMask) >> kAttrCacheShift;
  if (cache & 1) e |= PT_WRITETHRU;
  if (cache & 2) e |= PT_NOCACHE;
  if (cache & 4) e |= level ? PT_PAT_LARGE : PT_PAT_4K;
  if (level > 0) e |= PT_PAGESIZE;
  return e;
}

constexpr hx_u32 leaf_attrs(pte_t e, unsigned level, bool nx_ok) {
  hx_u32 a = kProtRead;
  if (e & PT_WRITABLE) a |= kProtWrite;
  if (!(e & PT_NX) || !nx_ok) a |= kProtExec;
  if (e & PT_GLOBAL) a |= kAttrGlobal;
  hx_u32 cache = ((e & PT_WRITETHRU) ? 1 : 0) | ((e & PT_NOCACHE) ? 2 : 0) |
                 ((e & (level ? PT_PAT_LARGE : PT_PAT_4K)) ? 4 : 0);
  return a | (cache << kAttrCacheShift);
}

}  // namespace htable::x86

#endif  // HTABLE_ARCH_X86_PAGING_H
