// SPDX-License-Identifier: GPL-2.0
//
// The htable core: a hat (private address space) is a hierarchy of htables,
// one per page-table page, found by (vaddr, level) in a per-hat hash as in
// the Solaris seed (../shared/seed/htable.c).  Beyond the seed, each hat
// keeps an authoritative Record of its mappings, so page tables are only a
// cache that htable_steal() can take back at any time.
//
// Lock order (outermost first):
//   module locks (fd, fd_hat) -> Hat::lock_ -> g_share_lock -> StealLru::lock_
//   -> Reserve::lock_.
// htable_steal() holds StealLru::lock_ and only *try*-locks a hat, so it
// never waits against the order; a hat found busy is left alone (the seed's
// "leave busy hats alone" rule).  CR3 windows take no lock at all.
#ifndef HTABLE_HTABLE_H
#define HTABLE_HTABLE_H

#include "../arch/x86/paging.h"
#include "base.h"
#include "list.h"
#include "record.h"

namespace htable {

using x86::pte_t;

class Hat;

// ht_flags
enum : hx_u8 {
  HTABLE_SHARED_PFN = 1 << 0,  // linked into other hats too (ht_share_cnt)
  HTABLE_VLP = 1 << 1,         // copied top level: entries in kernel memory, never in CR3
  HTABLE_ON_LRU = 1 << 2,      // on the steal LRU
  HTABLE_CACHED = 1 << 3,      // free, in its hat's cache (seed: hat_ht_cached)
};

// One page-table page.  Field names follow the seed's htable_t.
struct htable {
  htable *ht_next = nullptr;    // hash chain, or free/cache/reserve list
  htable *ht_parent = nullptr;  // table whose entry points at this one (null: top)
  Hat *ht_hat = nullptr;
  hx_u64 ht_vaddr = 0;          // first VA this table covers
  hx_paddr_t ht_pa = 0;         // physical address of the table page
  pte_t *ht_entries = nullptr;  // the page through the direct map
  ListNode ht_lru;              // StealLru membership
  hx_u32 ht_lock_cnt = 0;       // locked leaves in this table: not stealable
  hx_u32 ht_share_cnt = 0;      // other hats linking this table
  hx_u16 ht_valid_cnt = 0;      // valid entries; 0 means the table can go
  hx_u16 ht_busy = 0;           // valid entries that point at lower tables
  hx_u8 ht_level = 0;
  hx_u8 ht_order = 0;           // page order of the allocation (1 for a top table)
  hx_u8 ht_flags = 0;
};

// Global counters, the seed's HATSTAT.
struct Stats {
  Counter hats_live;
  Counter tables_live;      // page-table pages in hats
  Counter ptable_allocs;    // pages from the page allocator
  Counter ptable_frees;     // pages back to the page allocator
  Counter alloc_fails;      // page allocator said no
  Counter cache_hits;       // table reused from a hat's own cache
  Counter reserve_hits;     // table taken from the reserve
  Counter reserve_misses;   // reserve empty when needed
  Counter steals;           // tables taken from a hat by htable_steal
  Counter steal_passes;
  Counter steal_scanned;
  Counter steal_second_chance;  // skipped because recently accessed
  Counter reaps;            // htable_reap calls
  Counter steal_held;       // steals given up for htable_steal_hold()
  Counter lookups;
  Counter lookup_probes;    // hash entries looked at by lookups
  Counter maps;
  Counter unmaps;
  Counter protects;
  Counter reloads;          // translations put back from the record
  Counter holes;            // faults with nothing in the record
  Counter reload_failures;  // faults the record maps but no table page could be had for
  Counter demotions;        // large leaves broken up by a partial change
  Counter refills;          // hat lock dropped to allocate tables
  Counter shares;
  Counter unshares;
  Counter shootdowns;
  Counter shootdown_pages;
  Counter invariant_failures;
};
extern Stats g_stats;

// ---- PTE primitives (seed: x86pte_*) ------------------------------------------
//
// Entries of a live table are only read and written with atomics: the page
// walker of any CPU on the hat reads them concurrently and sets A/D bits.

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
// Replace an entry that still maps what @expected maps: hardware may have
// set A or D in between, which is not a reason to fail.  Returns the entry
// replaced, or the unexpected one found.
pte_t x86pte_update(htable *ht, unsigned entry, pte_t expected, pte_t v);
// Clear the entry if it maps @pa; returns the old entry (0 if it did not).
pte_t x86pte_invalidate_pfn(htable *ht, unsigned entry, hx_paddr_t pa);
// Copy @count entries from @src to @dest starting at @entry.
void x86pte_copy(const htable *src, htable *dest, unsigned entry, unsigned count);
// Zero @count entries of @dest starting at @entry.
void x86pte_zero(htable *dest, unsigned entry, unsigned count);

// seed: htable_va2entry / htable_e2va
inline unsigned htable_va2entry(hx_u64 va, const htable *ht) { return x86::va2entry(va, ht->ht_level); }
inline hx_u64 htable_e2va(const htable *ht, unsigned entry) {
  return ht->ht_vaddr + (static_cast<hx_u64>(entry) << x86::level_shift(ht->ht_level));
}

// ---- TLB batching ---------------------------------------------------------------

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
  bool pending() const { return start_ < end_ || free_list_; }

 private:
  Hat *hat_;
  hx_u64 start_ = ~0ull;
  hx_u64 end_ = 0;
  htable *free_list_ = nullptr;
};

// ---- table page supply (htable/reserve.cpp) ---------------------------------------

// The reserve: table pages kept aside so that paths that must not fail (a
// fault reload) can always get one.  Refilled from freed tables first, then
// from the page allocator by htable_adjust_reserve().
extern hx_u32 htable_reserve_amount;  // tunable, default 200 as in the seed
hx_u64 htable_reserve_count();
Status htable_initial_reserve(hx_u32 count);
void htable_adjust_reserve();
void htable_reserve_fini();
// A table page nobody uses any more (zeroed): to the reserve if it is
// short, else back to the page allocator.
void ptable_release(htable *ht);
// Fail-on-demand for tests: skip @skip allocations, then fail @count.
void htable_test_fail_allocs(hx_u64 skip, hx_u64 count);
bool htable_test_should_fail();

// ---- the steal LRU (htable/steal.cpp) ------------------------------------------------

// Tables that can be stolen: not a top table, no lower tables below them,
// no locked leaves, not shared.  A CLOCK list: the front is the coldest.
Status lru_init();
void lru_fini();
void lru_update(htable *ht);  // caller holds ht->ht_hat->lock_
void lru_remove(htable *ht);
hx_u64 lru_count();
// htable_steal(): take up to @cnt tables from any hat; returns tables freed
// (their pages refill the reserve first, the rest go back to the system).
hx_u64 htable_steal(hx_u64 cnt);
// htable_reap(): the reclaim entry point (the shrinker's scan_objects):
// empty the hats' caches, then steal.  Returns pages given back.
hx_u64 htable_reap(hx_u64 cnt);
// What htable_reap() could give back now (the shrinker's count_objects).
hx_u64 htable_reclaimable();
// While held (a count), htable_steal() takes nothing: see steal.cpp.
void htable_steal_hold(bool hold);

// ---- hats ---------------------------------------------------------------------------

class Hat final {
 public:
  struct Xlate {
    hx_paddr_t pa;
    hx_u64 page_size;
    unsigned level;
    hx_u32 attrs;
    bool locked;
    bool shared;
  };
  // A mapping as found in the record, for walks.
  struct Mapping {
    hx_u64 va;
    hx_u64 len;
    hx_paddr_t pa;      // of the first byte
    hx_u32 attrs;
    unsigned level;
    bool locked;
    bool shared;
  };

  enum CreateFlags : hx_u32 {
    kCopiedTop = 1u << 0,  // VLP: top level kept in the hat, copied per CPU
  };

  static Status Create(unsigned levels, hx_u32 flags, Hat **out);
  // Drop the creator's reference; the hat is purged once sharers are gone.
  void Destroy();

  // Map [va, va + len) with leaves of @page_size.  @pas: one physical
  // address per leaf, or null for a contiguous range from @pa.
  Status Map(hx_u64 va, hx_u64 len, hx_u64 page_size, hx_u32 attrs, hx_paddr_t pa,
             const hx_paddr_t *pas);
  Status Unmap(hx_u64 va, hx_u64 len);
  Status Protect(hx_u64 va, hx_u64 len, hx_u32 attrs);
  Status Lock(hx_u64 va, hx_u64 len, bool lock);
  // Share @src's table that covers @va at @level into this hat.
  Status ShareFrom(Hat *src, hx_u64 va, unsigned level);
  // Put the translation for @va back from the record.  -ENOENT: a hole.
  Status Fault(hx_u64 va);
  Status Translate(hx_u64 va, Xlate *out);
  // The first mapping at or above *va and below @end, from the record.
  Status NextMapping(hx_u64 va, hx_u64 end, Mapping *out);
  // seed: htable_getpte(): the resident leaf entry for @va, 0 if none.
  pte_t GetPte(hx_u64 va, unsigned *level);
  // seed: htable_walk(): the next resident leaf at or above *va, below end.
  pte_t Walk(hx_u64 *va, hx_u64 end, unsigned *level);
  // Tear down every resident table below the top (the record stays).
  hx_u64 DropTables();
  // Check every invariant; -EINVAL (and a warning) on the first broken one.
  Status Check();
  static constexpr hx_u64 kDebugCheckMaxTables = 256;
  // seed: hat_dump(): the table tree, one line per table.
  void Dump(void (*emit)(void *arg, const char *line), void *arg, bool show_pa);

  void CopyKernelHalf(const pte_t *src_top);
  // Copied top level: write the hat's user-half top entries into @dst.
  void LoadTop(pte_t *dst);
  void CpuEnter(unsigned cpu);
  void CpuLeave(unsigned cpu);

  unsigned levels() const { return levels_; }
  bool copied_top() const { return top_->ht_flags & HTABLE_VLP; }
  hx_paddr_t top_pa() const { return top_->ht_pa; }
  hx_u64 nr_tables() const { return __atomic_load_n(&nr_tables_, __ATOMIC_RELAXED); }
  hx_u64 nr_cached() const { return __atomic_load_n(&nr_cached_, __ATOMIC_RELAXED); }
  hx_u64 record_extents() const { return record_.size(); }
  const unsigned long *cpus() const { return cpus_; }

  // Reference counting: the creator holds one, each hat sharing one of our
  // tables holds one, htable_steal() holds one while it works on us.
  bool TryGet();
  void Put();
  void Free();  // purge and free; only htable_reap_dead() and Create() call it
  // A sharer dropped its link to our table @t (called with no lock held).
  void ReleaseShared(htable *t);
  // Our link to another hat's table @t goes: its owner is destroyed.
  void RevokeShare(htable *t);

 private:
  friend class TlbBatch;
  friend hx_u64 htable_steal(hx_u64 cnt);
  friend hx_u64 htable_reap(hx_u64 cnt);
  friend void lru_update(htable *ht);
  friend void htable_reap_dead();
  Hat() = default;
  ~Hat() = default;

  unsigned top_level() const { return levels_ - 1; }

  // table supply
  htable *htable_alloc(hx_u64 vaddr, unsigned level) TA_REQ(lock_);
  Status htable_refill(unsigned need, bool reload) TA_REQ(lock_);
  // Make the leaf of the record covering @va resident, refilling the table
  // cache (lock dropped) as needed.  -ENOENT: the record has nothing there.
  Status reload_leaf(hx_u64 va, bool reload) TA_REQ(lock_);
  void htable_free(htable *ht);
  hx_u64 drain_cache();

  // the hash
  htable *htable_lookup(hx_u64 vaddr, unsigned level) TA_REQ(lock_);
  void hash_insert(htable *ht) TA_REQ(lock_);
  void hash_remove(htable *ht) TA_REQ(lock_);
  Status hash_grow() TA_REQ(lock_);
  static unsigned hash_of(hx_u64 vaddr, unsigned level, unsigned nbuckets);

  // structure
  Status htable_create(hx_u64 vaddr, unsigned level, htable *parent, htable **out)
      TA_REQ(lock_);
  Status walk_create(hx_u64 va, unsigned level, htable **out, htable **created,
                     unsigned *missing = nullptr) TA_REQ(lock_);
  void link_ptp(htable *higher, htable *child) TA_REQ(lock_);
  void unlink_ptp(htable *higher, htable *old, TlbBatch *batch) TA_REQ(lock_);
  void htable_release(htable *ht, TlbBatch *batch) TA_REQ(lock_);
  void steal_table(htable *ht, TlbBatch *batch) TA_REQ(lock_);
  void htable_purge_hat();
  htable *find_table(hx_u64 va, unsigned level) TA_REQ(lock_);

  // leaves
  Status install_leaf(const Extent &e, hx_u64 va, unsigned *missing = nullptr) TA_REQ(lock_);
  void clear_leaves(htable *ht, hx_u64 va, hx_u64 end, TlbBatch *batch) TA_REQ(lock_);
  void demote(hx_u64 va, TlbBatch *batch) TA_REQ(lock_);
  void demote_cut(hx_u64 va, hx_u64 end, TlbBatch *batch) TA_REQ(lock_);
  Status check_ends(hx_u64 va, hx_u64 end, bool demotable) TA_REQ(lock_);
  Status translate_locked(hx_u64 va, Xlate *out) TA_REQ(lock_);
  Status check_locked() TA_REQ(lock_);
  void debug_check() TA_REQ(lock_);
  void unshare_range(hx_u64 va, hx_u64 end, TlbBatch *batch) TA_REQ(lock_);
  void lock_leaves(hx_u64 va, hx_u64 end, int delta) TA_REQ(lock_);

  hx_mutex *lock_ = nullptr;
  hx_u64 refs_ = 0;
  unsigned levels_ = 0;
  htable *top_ = nullptr;
  Record record_ TA_GUARDED(lock_);
  htable **buckets_ TA_GUARDED(lock_) = nullptr;
  unsigned nbuckets_ TA_GUARDED(lock_) = 0;
  hx_u64 nr_tables_ = 0;   // written under lock_, read racily for reports
  htable *cache_ = nullptr;  // seed: hat_ht_cached; guarded by lock_
  hx_u64 nr_cached_ = 0;
  unsigned long *cpus_ = nullptr;  // CPUs that may cache our entries
  unsigned long *flush_mask_ = nullptr;  // scratch for TlbBatch::Flush, under lock_
  hx_u64 nr_sharers_ = 0;  // share links into us (g_share_lock; read racily)
  Hat *dead_next_ = nullptr;
  bool dying_ = false;  // destroyed by its creator: no new cache, LRU or shares
  // Set while a steal frees tables (seed: htable_dont_cache): what reclaim
  // takes must reach the reserve or the page allocator, not our cache.
  bool dont_cache_ = false;
  hx_u64 lock_calls_ = 0;  // tokens for Lock() to undo exactly its own work
};

// Purge the hats whose last reference went; call with no lock held.
void htable_reap_dead();
// Whether htable_reap_dead() has work (read racily).
bool htable_dead_pending();
Status htable_share_init();
void htable_share_fini();

}  // namespace htable

#endif  // HTABLE_HTABLE_H
