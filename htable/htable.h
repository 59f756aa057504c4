// SPDX-License-Identifier: GPL-2.0
//
// The htable core: a hat (private address space) is a hierarchy of htables,
// one per page-table page, found by (vaddr, level) in a per-hat hash as in
// the Solaris seed (../shared/seed/htable.c).
#ifndef HTABLE_HTABLE_H
#define HTABLE_HTABLE_H

#include "../arch/x86/paging.h"
#include "base.h"

namespace htable {

using x86::pte_t;

class Hat;

// One page-table page.  Field names follow the seed's htable_t.
struct htable {
  htable *ht_next;      // hash chain of the hat
  htable *ht_parent;    // table whose entry points at this one (null: top)
  Hat *ht_hat;
  hx_u64 ht_vaddr;      // first VA this table covers
  hx_paddr_t ht_pa;     // physical address of the table page
  pte_t *ht_entries;    // the page through the direct map
  hx_u16 ht_valid_cnt;  // valid entries; 0 means the table can go
  hx_u8 ht_level;
  hx_u8 ht_order;       // page order of the allocation (1 for a top table)
};

// Global counters, the seed's HATSTAT.
struct Stats {
  Counter hats_live;
  Counter tables_live;
  Counter ptable_allocs;
  Counter ptable_frees;
  Counter ptable_alloc_fails;
  Counter lookups;
  Counter maps;
  Counter unmaps;
  Counter shootdowns;
  Counter shootdown_pages;
};
extern Stats g_stats;

// Entries of a live table are only read and written with atomics: another
// CPU's page walker (and, later, lock-free lookups) see them concurrently.
inline pte_t x86pte_get(const htable *ht, unsigned entry) {
  return __atomic_load_n(&ht->ht_entries[entry], __ATOMIC_RELAXED);
}
// Returns the previous entry.
inline pte_t x86pte_set(htable *ht, unsigned entry, pte_t v) {
  return __atomic_exchange_n(&ht->ht_entries[entry], v, __ATOMIC_SEQ_CST);
}
// Returns the entry found: @expected on success.
inline pte_t x86pte_cas(htable *ht, unsigned entry, pte_t expected, pte_t v) {
  __atomic_compare_exchange_n(&ht->ht_entries[entry], &expected, v, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  return expected;
}

// Collects what an operation changed so that the TLBs are flushed once per
// operation and page-table pages are freed only after that flush: a CPU's
// paging-structure cache may still point into a table until then.
class TlbBatch {
 public:
  explicit TlbBatch(Hat *hat) : hat_(hat) {}
  ~TlbBatch();  // flushes and frees if the caller did not
  TlbBatch(const TlbBatch &) = delete;
  TlbBatch &operator=(const TlbBatch &) = delete;

  void AddRange(hx_u64 va, hx_u64 len);
  void DeferFree(htable *ht);  // freed after Flush()
  void Flush();

 private:
  Hat *hat_;
  hx_u64 start_ = ~0ull;
  hx_u64 end_ = 0;
  htable *free_list_ = nullptr;
};

class Hat final {
 public:
  static Status Create(unsigned levels, Hat **out);
  // htable_purge_hat() then free the hat.
  void Destroy();

  Status Map(hx_u64 va, hx_paddr_t pa, hx_u64 page_size, hx_u32 prot);
  Status Unmap(hx_u64 va, hx_u64 len);
  struct Xlate {
    hx_paddr_t pa;
    hx_u64 page_size;
    unsigned level;
    hx_u32 prot;
  };
  Status Translate(hx_u64 va, Xlate *out);

  void CopyKernelHalf(const pte_t *src_top);
  void CpuEnter(unsigned cpu);
  void CpuLeave(unsigned cpu);

  unsigned levels() const { return levels_; }
  hx_paddr_t top_pa() const { return top_->ht_pa; }
  hx_u64 nr_tables() const { return __atomic_load_n(&nr_tables_, __ATOMIC_RELAXED); }
  const unsigned long *cpus() const { return cpus_; }

 private:
  friend class TlbBatch;
  Hat() = default;
  ~Hat() = default;

  unsigned top_level() const { return levels_ - 1; }
  htable *htable_lookup(hx_u64 vaddr, unsigned level) TA_REQ(lock_);
  Status htable_create(hx_u64 vaddr, unsigned level, htable *parent, htable **out) TA_REQ(lock_);
  htable *htable_alloc(hx_u64 vaddr, unsigned level, unsigned order);
  void htable_free(htable *ht);
  void hash_insert(htable *ht) TA_REQ(lock_);
  void hash_remove(htable *ht) TA_REQ(lock_);
  Status hash_grow() TA_REQ(lock_);
  void unlink_ptp(htable *higher, htable *old, TlbBatch *batch) TA_REQ(lock_);
  void htable_release(htable *ht, TlbBatch *batch) TA_REQ(lock_);
  void unmap_range(htable *ht, hx_u64 va, hx_u64 end, TlbBatch *batch) TA_REQ(lock_);
  Status translate_locked(hx_u64 va, Xlate *out) TA_REQ(lock_);
  void htable_purge_hat();

  static unsigned hash_of(hx_u64 vaddr, unsigned level, unsigned nbuckets);

  hx_mutex *lock_ = nullptr;
  unsigned levels_ = 0;
  htable *top_ = nullptr;
  htable **buckets_ TA_GUARDED(lock_) = nullptr;
  unsigned nbuckets_ TA_GUARDED(lock_) = 0;
  hx_u64 nr_tables_ = 0;  // written under lock_, read racily for reports
  unsigned long *cpus_ = nullptr;  // bitmap of CPUs that may cache our entries
};

}  // namespace htable

#endif  // HTABLE_HTABLE_H
