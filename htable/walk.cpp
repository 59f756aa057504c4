// SPDX-License-Identifier: GPL-2.0
//
// Reading the tables: htable_getpte(), htable_scan()/htable_walk(),
// hat_dump(), and the invariant checker.
#include "htable.h"

namespace htable {

namespace {

// The table an entry at @level points at, through the direct map.  Raw on
// purpose: a shared link points at another hat's table, which is not in
// our hash.
const pte_t *child_entries(pte_t e) {
  return static_cast<const pte_t *>(hx_phys_to_virt(x86::pte_pa(e, 0)));
}

}  // namespace

// seed: htable_getpte().
pte_t Hat::GetPte(hx_u64 va, unsigned *level) {
  if (va >= x86::user_va_end(levels_)) return 0;
  MutexGuard g(lock_);
  const pte_t *t = top_->ht_entries;
  for (unsigned l = top_level();; l--) {
    pte_t e = __atomic_load_n(&t[x86::va2entry(va, l)], __ATOMIC_RELAXED);
    if (!x86::pte_valid(e)) return 0;
    if (x86::pte_is_leaf(e, l)) {
      *level = l;
      return e;
    }
    if (!htable_lookup(va & ~(x86::table_span(l - 1) - 1), l - 1)) return 0;  // shared link
    t = child_entries(e);
  }
}

// seed: htable_scan(): the first valid entry of @ht at or after *va and
// below @end; *va moves to it.  Returns 0 at the end of the table.
static pte_t htable_scan(const htable *ht, hx_u64 *va, hx_u64 end) {
  unsigned l = ht->ht_level;
  hx_u64 table_end = ht->ht_vaddr + x86::table_span(l);
  for (hx_u64 a = *va; a < end && a < table_end && a >= *va; a = (a & x86::level_mask(l)) + x86::level_size(l)) {
    pte_t e = x86pte_get(ht, x86::va2entry(a, l));
    if (x86::pte_valid(e)) {
      *va = a;
      return e;
    }
  }
  *va = min(end, table_end);
  return 0;
}

// seed: htable_walk(): the next resident leaf at or above *va and below
// @end, skipping unpopulated tables whole.  The walk stops at the end of
// the user half: the canonical hole and the kernel half are not ours.
// Shared links are not entered (another hat's tables).
pte_t Hat::Walk(hx_u64 *va, hx_u64 end, unsigned *level) {
  end = min(end, x86::user_va_end(levels_));
  MutexGuard g(lock_);
  while (*va < end) {
    const htable *ht = top_;
    for (;;) {
      hx_u64 a = *va;
      pte_t e = htable_scan(ht, &a, end);
      if (!e) {
        // Nothing more in this table: continue after it.
        *va = a;
        break;
      }
      unsigned l = ht->ht_level;
      if (x86::pte_is_leaf(e, l)) {
        *va = a & x86::level_mask(l);
        *level = l;
        return e;
      }
      const htable *child = htable_lookup(a & x86::level_mask(l), l - 1);
      if (!child) {  // a shared link: skip its range
        *va = (a & x86::level_mask(l)) + x86::level_size(l);
        break;
      }
      *va = a;
      ht = child;
    }
    if (*va == 0) break;  // wrapped
  }
  return 0;
}

// Free every resident table below the top, as if all were stolen: the
// record is untouched and the next accesses reload.  For tests of the
// reload path and for htable_purge_hat-like teardown without unmapping.
hx_u64 Hat::DropTables() {
  MutexGuard g(lock_);
  dont_cache_ = true;  // as a steal would: the pages go back
  TlbBatch batch(this);
  hx_u64 n = 0;
  for (bool again = true; again;) {
    again = false;
    for (unsigned i = 0; i < nbuckets_ && !again; i++) {
      for (htable *ht = buckets_[i]; ht; ht = ht->ht_next) {
        if (ht == top_ || ht->ht_busy || ht->ht_lock_cnt || ht->ht_share_cnt) continue;
        steal_table(ht, &batch);  // changes the hash: rescan
        n++;
        again = true;
        break;
      }
    }
  }
  batch.Flush();
  dont_cache_ = false;
  return n;
}

Status Hat::Check() {
  MutexGuard g(lock_);
  return check_locked();
}

// Under CONFIG_DEBUG_VM, every change to a small hat is followed by a full
// check (bounded: bigger hats are left to htable_hat_check()).
void Hat::debug_check() {
#ifdef HTABLE_DEBUG_VM
  if (nr_tables_ <= kDebugCheckMaxTables) (void)check_locked();
#endif
}

// Every invariant the core relies on, checked against the raw entries.
Status Hat::check_locked() {
  hx_mutex_assert_held(lock_);
  bool nx = hx_cpu_has_nx();
  hx_u64 n = 0;
  auto fail = [](const char *what) {
    g_stats.invariant_failures.Add();
    HX_WARN_ONCE(true, what);
    return Status::Err(HX_EINVAL);
  };
  for (unsigned i = 0; i < nbuckets_; i++) {
    for (htable *ht = buckets_[i]; ht; ht = ht->ht_next) {
      n++;
      unsigned valid = 0, busy = 0, locked = 0, from = 0;
      unsigned to = ht == top_ ? x86::kKernelHalfFirstEntry : x86::kPtesPerTable;
      for (unsigned j = from; j < to; j++) {
        pte_t e = x86pte_get(ht, j);
        if (!x86::pte_valid(e)) continue;
        valid++;
        hx_u64 va = htable_e2va(ht, j);
        if (!x86::pte_is_leaf(e, ht->ht_level)) {
          busy++;
          htable *c = htable_lookup(va, ht->ht_level - 1);
          if (c) {
            if (c->ht_parent != ht || c->ht_pa != x86::pte_pa(e, 0)) return fail("child link broken");
          } else {
            const Extent *x = record_.Find(va);
            if (!x || !x->share_table || static_cast<htable *>(x->share_table)->ht_pa != x86::pte_pa(e, 0))
              return fail("link to an unknown table");
          }
          continue;
        }
        const Extent *x = record_.Find(va);
        if (!x || x->share_table || x->level != ht->ht_level) return fail("leaf not in record");
        if (x86::pte_pa(e, ht->ht_level) != x->pa_of(va)) return fail("leaf pa differs from record");
        if (x86::leaf_attrs(e, ht->ht_level, nx) != (x->attrs | (nx ? 0u : static_cast<hx_u32>(x86::kProtExec))))
          return fail("leaf attributes differ from record");
        if (x->locked) locked++;
      }
      if (valid != ht->ht_valid_cnt) return fail("ht_valid_cnt wrong");
      if (busy != ht->ht_busy) return fail("ht_busy wrong");
      if (locked != ht->ht_lock_cnt) return fail("ht_lock_cnt wrong");
      if (ht != top_ && valid == 0 && !ht->ht_share_cnt) return fail("empty table kept");
      bool want_lru = ht != top_ && !(ht->ht_flags & (HTABLE_VLP | HTABLE_SHARED_PFN)) && !busy &&
                      !locked && !ht->ht_share_cnt && valid && !dying_;
      if (want_lru != !!(ht->ht_flags & HTABLE_ON_LRU)) return fail("LRU membership wrong");
    }
  }
  if (n != nr_tables_) return fail("nr_tables differs from the hash");
  hx_u64 c = 0;
  for (htable *ht = cache_; ht; ht = ht->ht_next) c++;
  if (c != nr_cached_) return fail("cache count wrong");
  if (htable_reserve_count() > htable_reserve_amount) return fail("reserve above its target");
  return Status::Ok();
}

// seed: hat_dump().  One line per table, parents before children.
void Hat::Dump(void (*emit)(void *, const char *), void *arg, bool show_pa) {
  MutexGuard g(lock_);
  char line[160];
  for (int l = static_cast<int>(top_level()); l >= 0; l--) {
    for (unsigned i = 0; i < nbuckets_; i++) {
      for (htable *ht = buckets_[i]; ht; ht = ht->ht_next) {
        if (ht->ht_level != l) continue;
        int len = __builtin_snprintf(
            line, sizeof(line), "L%u va=0x%016llx valid=%u busy=%u locked=%u shared=%u%s%s", l,
            static_cast<unsigned long long>(ht->ht_vaddr), ht->ht_valid_cnt, ht->ht_busy,
            ht->ht_lock_cnt, ht->ht_share_cnt, (ht->ht_flags & HTABLE_ON_LRU) ? " lru" : "",
            (ht->ht_flags & HTABLE_VLP) ? " copied-top" : "");
        if (show_pa && ht == top_ && len > 0 && static_cast<unsigned>(len) < sizeof(line))
          __builtin_snprintf(line + len, sizeof(line) - len, " pa=0x%llx",
                             static_cast<unsigned long long>(ht->ht_pa));
        emit(arg, line);
      }
    }
  }
}

}  // namespace htable
