// SPDX-License-Identifier: GPL-2.0
//
// htable_steal() and htable_reap(): giving page tables back.
//
// The seed walks all hats, pass after pass, looking for tables to take;
// its cost grows with the number of hats.  Here every table that could be
// taken sits on one global list, kept up to date under the owner's hat
// lock as tables gain or lose children, locked leaves and sharers
// (lru_update()).  The list is a CLOCK: the front is the coldest end.  A
// steal looks at the front table; if the hardware set the accessed bit of
// the entry that points at it since the last look, the bit is cleared and
// the table goes to the back (a second chance, as Zircon harvests accessed
// bits of non-terminal entries); otherwise it is taken.  Each table costs
// O(1) amortized whatever the number of hats, and every hat's tables age at
// the same rate, which keeps the seed's fairness between hats.
//
// Clearing the accessed bit is not followed by a TLB flush: a CPU that
// keeps the entry in its paging-structure cache will not set the bit again,
// so a table in use may look cold and be taken.  That costs a fault and a
// reload, never a wrong translation (Linux's ptep_clear_flush_young() on
// x86 makes the same trade).
//
// What can be taken: a table with no lower tables below it, no locked
// leaves, not shared into another hat, not a top table.  Since the record
// keeps every mapping, nothing else is needed: a stolen table's
// translations fault and are reloaded by Hat::Fault().  Cached free tables
// are put at the very front: they cost nothing to take.
#include "htable.h"

namespace htable {

namespace {

struct StealLru {
  hx_spinlock *lock = nullptr;
  List list;         // TA_GUARDED(lock)
  hx_u64 count = 0;  // TA_GUARDED(lock)
};
StealLru g_lru;

// Holders of htable_steal_hold(): while there is one, steals take nothing.
hx_u64 g_holds;

bool stealable(const htable *ht) {
  if (ht->ht_flags & HTABLE_CACHED) return true;
  return ht->ht_parent && !(ht->ht_flags & (HTABLE_VLP | HTABLE_SHARED_PFN)) &&
         ht->ht_busy == 0 && ht->ht_lock_cnt == 0 && ht->ht_share_cnt == 0 &&
         ht->ht_valid_cnt > 0;
}

}  // namespace

Status lru_init() {
  if (!g_lru.lock) g_lru.lock = HX_SPIN_LOCK_CREATE("htable_lru_lock");
  return g_lru.lock ? Status::Ok() : Status::Err(HX_ENOMEM);
}

void lru_fini() {
  HX_WARN_ONCE(g_lru.count != 0, "steal LRU not empty at exit");
  if (g_lru.lock) hx_spin_lock_destroy(g_lru.lock);
  g_lru.lock = nullptr;
}

hx_u64 lru_count() { return __atomic_load_n(&g_lru.count, __ATOMIC_RELAXED); }

void lru_update(htable *ht) {
  bool want = stealable(ht) && !ht->ht_hat->dying_;
  bool on = ht->ht_flags & HTABLE_ON_LRU;
  if (want == on) return;
  SpinGuard g(g_lru.lock);
  if (want) {
    if (ht->ht_flags & HTABLE_CACHED)
      g_lru.list.push_front(&ht->ht_lru);
    else
      g_lru.list.push_back(&ht->ht_lru);
    ht->ht_flags |= HTABLE_ON_LRU;
    g_lru.count++;
  } else {
    ht->ht_lru.unlink();
    ht->ht_flags &= ~HTABLE_ON_LRU;
    g_lru.count--;
  }
}

void lru_remove(htable *ht) {
  if (!(ht->ht_flags & HTABLE_ON_LRU)) return;
  SpinGuard g(g_lru.lock);
  ht->ht_lru.unlink();
  ht->ht_flags &= ~HTABLE_ON_LRU;
  g_lru.count--;
}

// Take @ht from its hat (lock held, @ht just left the LRU): unlink it from
// its parent, which may leave the parent empty (released) or terminal (a
// candidate itself).  The page is freed after the batch's flush.
void Hat::steal_table(htable *ht, TlbBatch *batch) {
  if (ht->ht_flags & HTABLE_CACHED) {
    // A free table in our cache: unlink it from the cache list.
    for (htable **pp = &cache_; *pp; pp = &(*pp)->ht_next) {
      if (*pp == ht) {
        *pp = ht->ht_next;
        nr_cached_--;
        break;
      }
    }
    ht->ht_flags = 0;
    ptable_release(ht);
    return;
  }
  htable *parent = ht->ht_parent;
  unlink_ptp(parent, ht, batch);
  htable_release(parent, batch);
  lru_update(parent);
  g_stats.steals.Add();
}

// seed: htable_steal().  Returns how many tables were taken.
hx_u64 htable_steal(hx_u64 cnt) {
  hx_u64 taken = 0;
  g_stats.steal_passes.Add();
  // Pass 0 gives recently used tables a second chance; pass 1 (only if
  // pass 0 fell short) takes whatever is at the front.
  for (int pass = 0; pass < 2 && taken < cnt; pass++) {
    hx_u64 budget = 2 * lru_count() + 8;
    while (taken < cnt && budget--) {
      hx_spin_lock(g_lru.lock);
      ListNode *n = g_lru.list.front();
      if (!n) {
        hx_spin_unlock(g_lru.lock);
        return taken;
      }
      auto *ht = static_cast<htable *>(n->owner);
      Hat *hat = ht->ht_hat;
      g_stats.steal_scanned.Add();
      // Rotate first: whatever happens, the next look starts elsewhere.
      n->unlink();
      g_lru.list.push_back(n);
      if (!hat->TryGet()) {  // being torn down
        hx_spin_unlock(g_lru.lock);
        continue;
      }
      // Only try: the hat's owner may be allocating under its lock right
      // now, which is how we got here.
      if (!hx_mutex_trylock(hat->lock_)) {
        hx_spin_unlock(g_lru.lock);
        hat->Put();
        continue;
      }
      // Read under the hat lock: a holder that reloaded a translation of
      // this hat did so under this lock, after raising the count, so we see
      // the count and leave its table alone (see htable_steal_hold()).
      if (__atomic_load_n(&g_holds, __ATOMIC_SEQ_CST)) {
        hx_spin_unlock(g_lru.lock);
        hx_mutex_unlock(hat->lock_);
        hat->Put();
        g_stats.steal_held.Add();
        return taken;
      }
      if (pass == 0 && !(ht->ht_flags & HTABLE_CACHED)) {
        htable *p = ht->ht_parent;
        pte_t *pe = &p->ht_entries[x86::va2entry(ht->ht_vaddr, p->ht_level)];
        if (__atomic_fetch_and(pe, ~x86::PT_REF, __ATOMIC_RELAXED) & x86::PT_REF) {
          g_stats.steal_second_chance.Add();
          hx_spin_unlock(g_lru.lock);
          hx_mutex_unlock(hat->lock_);
          hat->Put();
          continue;
        }
      }
      n->unlink();
      ht->ht_flags &= ~HTABLE_ON_LRU;
      g_lru.count--;
      hx_spin_unlock(g_lru.lock);
      {
        hat->dont_cache_ = true;
        TlbBatch batch(hat);
        hat->steal_table(ht, &batch);
        batch.Flush();
        hat->dont_cache_ = false;
      }
      hx_mutex_unlock(hat->lock_);
      hat->Put();
      taken++;
      hx_cond_resched();
    }
  }
  return taken;
}

// seed: htable_reap(): the kernel wants memory back.  Stolen pages refill
// the reserve first (ptable_release), then go back to the page allocator.
// Nothing is allocated here: this runs in reclaim.
hx_u64 htable_reap(hx_u64 cnt) {
  g_stats.reaps.Add();
  return htable_steal(cnt);
}

hx_u64 htable_reclaimable() { return lru_count(); }

// A fault reload and the access that follows it take no common lock (the
// access runs with interrupts off in a CR3 window), so a steal can take the
// reloaded table in between, every time.  A runner that lost that race a
// few times holds steals off for one more reload and access: the reload
// runs under the hat lock after the count went up, and a steal reads the
// count under the same lock, so what the reload put back stays until the
// hold ends.  Holds are short and rare; reclaim meanwhile gives back less.
void htable_steal_hold(bool hold) {
  if (hold)
    __atomic_fetch_add(&g_holds, 1, __ATOMIC_SEQ_CST);
  else
    __atomic_fetch_sub(&g_holds, 1, __ATOMIC_SEQ_CST);
}

}  // namespace htable
