// SPDX-License-Identifier: GPL-2.0
//
// Where table pages come from and go to: the page allocator, the hat's own
// cache of free tables (seed: hat_ht_cached), and the global reserve (seed:
// htable_reserve_pool).
//
// A table asked for by htable_create() always comes from the hat's cache,
// under the hat's lock.  The cache is filled by htable_refill() with the
// lock dropped, from, in order:
//   1. the page allocator, charged to the caller's memory cgroup;
//   2. for a fault reload (a path that must not fail, as the seed reserves
//      for the kernel hat and htable_steal itself), the reserve;
//   3. a steal of one table from the coldest end of the LRU (any hat, ours
//      included: our lock is not held), whose page lands in the reserve,
//      taken from there -- for a plain map only while the reserve stays
//      above half its target, so that maps can never drain what the
//      reloads rely on.
// The reserve refills from freed and stolen tables first (ptable_release)
// and from the page allocator in htable_adjust_reserve() (at load, when a
// hat is created, and when the target changes) -- never in reclaim.
#include "htable.h"

namespace htable {

hx_u32 htable_reserve_amount = 200;

namespace {

struct ReservePool {
  hx_spinlock *lock = nullptr;
  htable *head = nullptr;  // TA_GUARDED(lock)
  hx_u64 count = 0;        // TA_GUARDED(lock); read racily for reports
};
ReservePool g_reserve;

// Fail-on-demand: the next `skip` allocations succeed, then `fail` fail.
struct FailHook {
  hx_u64 skip;
  hx_u64 fail;
};
FailHook g_fail;

constexpr unsigned kHatCacheMax = 8;

}  // namespace

bool htable_test_should_fail() {
  // Racy by design: only tests arm it, single-threaded.
  if (__atomic_load_n(&g_fail.fail, __ATOMIC_RELAXED) == 0) return false;
  if (g_fail.skip) {
    g_fail.skip--;
    return false;
  }
  g_fail.fail--;
  return true;
}

void htable_test_fail_allocs(hx_u64 skip, hx_u64 count) {
  g_fail.skip = skip;
  __atomic_store_n(&g_fail.fail, count, __ATOMIC_RELAXED);
}

// A fresh htable with a zeroed page from the page allocator.
static htable *ptable_alloc() {
  auto *ht = static_cast<htable *>(core_kzalloc(sizeof(htable)));
  if (!ht) {
    g_stats.alloc_fails.Add();
    return nullptr;
  }
  void *page = htable_test_should_fail() ? nullptr : hx_alloc_pages(0, HX_ALLOC_ACCOUNT);
  if (!page) {
    hx_kfree(ht);
    g_stats.alloc_fails.Add();
    return nullptr;
  }
  new (ht) htable();
  ht->ht_entries = static_cast<pte_t *>(page);
  ht->ht_pa = hx_virt_to_phys(page);
  g_stats.ptable_allocs.Add();
  return ht;
}

static void ptable_free(htable *ht) {
  hx_free_pages(ht->ht_entries, ht->ht_order);
  hx_kfree(ht);
  g_stats.ptable_frees.Add();
}

// seed: htable_put_reserve().  The page must be all zero.
static bool htable_put_reserve(htable *ht) {
  SpinGuard g(g_reserve.lock);
  if (g_reserve.count >= htable_reserve_amount) return false;
  ht->ht_next = g_reserve.head;
  g_reserve.head = ht;
  g_reserve.count++;
  return true;
}

// seed: htable_get_reserve().  @floor: leave at least this many.
static htable *htable_get_reserve(hx_u64 floor) {
  SpinGuard g(g_reserve.lock);
  if (g_reserve.count <= floor || !g_reserve.head) return nullptr;
  htable *ht = g_reserve.head;
  g_reserve.head = ht->ht_next;
  g_reserve.count--;
  return ht;
}

hx_u64 htable_reserve_count() { return __atomic_load_n(&g_reserve.count, __ATOMIC_RELAXED); }

// seed: htable_initial_reserve().
Status htable_initial_reserve(hx_u32 count) {
  if (!g_reserve.lock) {
    g_reserve.lock = HX_SPIN_LOCK_CREATE("htable_reserve_lock");
    if (!g_reserve.lock) return Status::Err(HX_ENOMEM);
  }
  htable_reserve_amount = count;
  htable_adjust_reserve();
  return htable_reserve_count() >= count ? Status::Ok() : Status::Err(HX_ENOMEM);
}

// seed: htable_adjust_reserve(): bring the reserve to its target, growing
// from the page allocator or giving the excess back.
void htable_adjust_reserve() {
  while (htable_reserve_count() < htable_reserve_amount) {
    htable *ht = ptable_alloc();
    if (!ht) break;
    if (!htable_put_reserve(ht)) {
      ptable_free(ht);
      break;
    }
  }
  while (htable_reserve_count() > htable_reserve_amount) {
    htable *ht = htable_get_reserve(htable_reserve_amount);
    if (!ht) break;
    ptable_free(ht);
  }
}

void htable_reserve_fini() {
  if (!g_reserve.lock) return;
  while (htable *ht = htable_get_reserve(0)) ptable_free(ht);
  hx_spin_lock_destroy(g_reserve.lock);
  g_reserve.lock = nullptr;
}

// One table page for htable_refill(), obtained without any hat lock held:
// the page allocator (which may enter reclaim, and so our own shrinker),
// then for a reload the reserve, then a steal from the coldest end of the
// LRU, whose page htable_free() puts in the reserve.
static htable *table_page_get(bool reload) {
  htable *ht = ptable_alloc();
  if (!ht && reload) {
    ht = htable_get_reserve(0);
    (ht ? g_stats.reserve_hits : g_stats.reserve_misses).Add();
  }
  if (!ht) {
    htable_steal(1);
    ht = htable_get_reserve(reload ? 0 : htable_reserve_amount / 2);
    (ht ? g_stats.reserve_hits : g_stats.reserve_misses).Add();
  }
  return ht;
}

// seed: htable_create() allocates outside the hat's lock and, once the lock
// is back, looks up again in case another thread created the table in the
// meantime.  Here the unit of that dance is the operation: when
// htable_alloc() finds the hat's cache empty, the operation calls
// htable_refill() -- drop the lock, get @need pages, retake the lock, put
// them in the cache -- and starts its walk again from the top, which is the
// re-lookup.  Pages left over stay in the cache for the next time.
Status Hat::htable_refill(unsigned need, bool reload) {
  g_stats.refills.Add();
  htable *got = nullptr;
  unsigned n = 0;
  hx_mutex_unlock(lock_);
  for (; n < need; n++) {
    htable *ht = table_page_get(reload);
    if (!ht) break;
    ht->ht_next = got;
    got = ht;
  }
  hx_mutex_lock(lock_);
  while (htable *ht = got) {
    got = ht->ht_next;
    ht->ht_hat = this;
    ht->ht_lru.owner = ht;
    ht->ht_flags = HTABLE_CACHED;
    ht->ht_next = cache_;
    cache_ = ht;
    nr_cached_++;
    lru_update(ht);
  }
  return n ? Status::Ok() : Status::Err(HX_ENOMEM);
}

// seed: htable_alloc(): a table from the hat's cache.  Null means "call
// htable_refill() and try again": no allocation happens under the lock.
htable *Hat::htable_alloc(hx_u64 vaddr, unsigned level) {
  htable *ht = cache_;
  if (!ht) return nullptr;
  cache_ = ht->ht_next;
  nr_cached_--;
  lru_remove(ht);  // cached tables sit at the cold end of the LRU
  g_stats.cache_hits.Add();
  if (!ht) return nullptr;
  hx_paddr_t pa = ht->ht_pa;
  pte_t *entries = ht->ht_entries;
  new (ht) htable();
  ht->ht_pa = pa;
  ht->ht_entries = entries;
  ht->ht_hat = this;
  ht->ht_vaddr = vaddr;
  ht->ht_level = static_cast<hx_u8>(level);
  ht->ht_lru.owner = ht;
  g_stats.tables_live.Add();
  __atomic_fetch_add(&nr_tables_, 1, __ATOMIC_RELAXED);
  return ht;
}

// seed: htable_free().  The table is unlinked and no CPU can reach it (the
// caller flushed).  Keep a few in the hat's cache, then refill the reserve,
// then give the page back.
void Hat::htable_free(htable *ht) {
  g_stats.tables_live.Sub();
  __atomic_fetch_sub(&nr_tables_, 1, __ATOMIC_RELAXED);
  if (ht->ht_flags & HTABLE_VLP) {  // a copied top level: kernel memory, not a page
    hx_kfree(ht->ht_entries);
    hx_kfree(ht);
    return;
  }
  if (ht->ht_order) {  // a top table pair
    ptable_free(ht);
    return;
  }
  // A stolen table still holds its entries; a released one is empty.
  if (ht->ht_valid_cnt) x86pte_zero(ht, 0, x86::kPtesPerTable);
  ht->ht_valid_cnt = ht->ht_busy = 0;
  ht->ht_lock_cnt = ht->ht_share_cnt = 0;
  ht->ht_flags = 0;
  if (!dying_ && !dont_cache_ && nr_cached_ < kHatCacheMax) {
    ht->ht_next = cache_;
    cache_ = ht;
    nr_cached_++;
    ht->ht_flags = HTABLE_CACHED;
    lru_update(ht);  // reclaimable first
    return;
  }
  ptable_release(ht);
}

void ptable_release(htable *ht) {
  if (!htable_put_reserve(ht)) ptable_free(ht);
}

// Give the cached tables back (hat teardown, reaping).
hx_u64 Hat::drain_cache() {
  hx_u64 n = 0;
  while (htable *ht = cache_) {
    cache_ = ht->ht_next;
    nr_cached_--;
    lru_remove(ht);
    ptable_release(ht);
    n++;
  }
  return n;
}

}  // namespace htable
