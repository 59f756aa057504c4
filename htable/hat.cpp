// SPDX-License-Identifier: GPL-2.0
//
// Hats: the hash of htables, link_ptp/unlink_ptp, htable_release, and the
// operations on mappings (map, unmap, protect, lock, share, fault), each of
// which changes the record first (the truth) and the tables second (the
// cache), under the hat's lock.
#include "htable.h"

namespace htable {

Stats g_stats;

namespace {

// Hash sizing: start small, double when the average chain passes 2, so a
// lookup costs O(1) probes whether the hat has a thousand tables or a
// million.
constexpr unsigned kInitialBuckets = 64;
constexpr unsigned kMaxLoad = 2;

constexpr hx_size_t kBitsPerLong = 8 * sizeof(unsigned long);

hx_size_t cpumask_words() { return hx_cpumask_bytes() / sizeof(unsigned long); }

bool cpuset_empty(const unsigned long *cpus) {
  for (hx_size_t i = 0; i < cpumask_words(); i++)
    if (__atomic_load_n(&cpus[i], __ATOMIC_SEQ_CST) != 0) return false;
  return true;
}

// The hats that link tables of another hat: a change to one of those
// tables must reach the CPUs of every sharer too.  One global list, small
// and rarely changed (share/unshare), under g_share_lock.
struct ShareLink {
  ShareLink *next;
  Hat *src;
  Hat *dst;
  htable *table;  // src's table, linked into dst
};
hx_spinlock *g_share_lock;
ShareLink *g_share_links;  // TA_GUARDED(g_share_lock)
// Links dst has dropped whose table src has not taken back yet: that needs
// src's lock, which the unlinking thread may not take while it holds dst's
// (the two hat locks are never held together).  htable_reap_dead() hands
// them back with no lock held.
ShareLink *g_unshared;     // TA_GUARDED(g_share_lock)

void unshare_done(ShareLink *l);

// Hats whose last reference went while a lock may be held; purged at the
// end of the API call (htable_reap_dead()), where no lock is held.
Hat *g_dead;  // TA_GUARDED(g_share_lock), linked through Hat::dead_next_

Status page_size_level(hx_u64 page_size, unsigned *level) {
  switch (page_size) {
    case 1ull << 12: *level = 0; return Status::Ok();
    case 1ull << 21: *level = 1; return Status::Ok();
    case 1ull << 30:
      if (!hx_cpu_has_gbpages()) return Status::Err(HX_EOPNOTSUPP);
      *level = 2;
      return Status::Ok();
    default: return Status::Err(HX_EOPNOTSUPP);
  }
}

bool range_ok(hx_u64 va, hx_u64 len, hx_u64 end) {
  return len != 0 && va < end && len <= end - va;
}

// A page-aligned, non-empty range inside the mappable half.
Status page_range_ok(hx_u64 va, hx_u64 len, unsigned levels) {
  if ((va | len) & (HX_PAGE_SIZE - 1)) return Status::Err(HX_EINVAL);
  if (!range_ok(va, len, x86::user_va_end(levels))) return Status::Err(HX_EINVAL);
  return Status::Ok();
}

bool attrs_ok(hx_u32 attrs) {
  return (attrs & x86::kProtRead) && !(attrs & ~x86::kAttrAll);
}

}  // namespace

// ---- PTE primitives -----------------------------------------------------------------

pte_t x86pte_update(htable *ht, unsigned entry, pte_t expected, pte_t v) {
  constexpr pte_t kHw = x86::PT_REF | x86::PT_MOD;
  pte_t cur = x86pte_get(ht, entry);
  while ((cur & ~kHw) == (expected & ~kHw)) {
    pte_t found = x86pte_cas(ht, entry, cur, v);
    if (found == cur) return cur;
    cur = found;
  }
  return cur;
}

pte_t x86pte_invalidate_pfn(htable *ht, unsigned entry, hx_paddr_t pa) {
  pte_t cur = x86pte_get(ht, entry);
  while (x86::pte_valid(cur) && x86::pte_pa(cur, ht->ht_level) == pa) {
    pte_t found = x86pte_cas(ht, entry, cur, 0);
    if (found == cur) return cur;
    cur = found;
  }
  return 0;
}

void x86pte_copy(const htable *src, htable *dest, unsigned entry, unsigned count) {
  for (unsigned i = entry; i < entry + count && i < x86::kPtesPerTable; i++)
    x86pte_set(dest, i, x86pte_get(src, i));
}

void x86pte_zero(htable *dest, unsigned entry, unsigned count) {
  for (unsigned i = entry; i < entry + count && i < x86::kPtesPerTable; i++)
    __atomic_store_n(&dest->ht_entries[i], 0, __ATOMIC_RELAXED);
}

// ---- TLB batching --------------------------------------------------------------------

void TlbBatch::AddRange(hx_u64 va, hx_u64 len) {
  start_ = min(start_, va);
  end_ = max(end_, va + len);
}

void TlbBatch::DeferFree(htable *ht) {
  ht->ht_next = free_list_;
  free_list_ = ht;
}

// One invalidation covering everything the operation changed, sent only to
// the CPUs that may cache the hat or a hat sharing its tables.  Ordering: a
// changed entry was written with a seq_cst atomic before the CPU set is
// read here, and a CPU joins the set (seq_cst) before it loads our CR3, so
// a CPU we miss loaded CR3 after the change and cannot hold the old entry.
void TlbBatch::Flush() {
  if (start_ < end_) {
    unsigned long *mask = hat_->flush_mask_;
    for (hx_size_t i = 0; i < cpumask_words(); i++)
      mask[i] = __atomic_load_n(&hat_->cpus_[i], __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&hat_->nr_sharers_, __ATOMIC_SEQ_CST)) {
      SpinGuard g(g_share_lock);
      for (ShareLink *l = g_share_links; l; l = l->next)
        if (l->src == hat_)
          for (hx_size_t i = 0; i < cpumask_words(); i++)
            mask[i] |= __atomic_load_n(&l->dst->cpus_[i], __ATOMIC_SEQ_CST);
    }
    if (!cpuset_empty(mask)) {
      hx_flush_tlb_range(mask, hat_->top_pa(), start_, end_ - start_);
      g_stats.shootdowns.Add();
      g_stats.shootdown_pages.Add((end_ - start_) >> HX_PAGE_SHIFT);
    }
    start_ = ~0ull;
    end_ = 0;
  }
  // Only now may a table page be reused: no paging-structure cache can
  // still reach it.
  while (free_list_) {
    htable *ht = free_list_;
    free_list_ = ht->ht_next;
    hat_->htable_free(ht);
  }
}

TlbBatch::~TlbBatch() { Flush(); }

// ---- the per-hat hash of htables --------------------------------------------------------

unsigned Hat::hash_of(hx_u64 vaddr, unsigned level, unsigned nbuckets) {
  // Tables at one level are table_span(level) apart: divide that out so
  // neighbours land in neighbouring buckets, then mix in the level.
  hx_u64 k = (vaddr >> x86::level_shift(level + 1)) * 0x9e3779b97f4a7c15ull + level;
  return static_cast<unsigned>((k ^ (k >> 32)) & (nbuckets - 1));
}

// seed: htable_lookup().
htable *Hat::htable_lookup(hx_u64 vaddr, unsigned level) {
  hx_mutex_assert_held(lock_);
  g_stats.lookups.Add();
  hx_u64 probes = 0;
  htable *found = nullptr;
  for (htable *ht = buckets_[hash_of(vaddr, level, nbuckets_)]; ht; ht = ht->ht_next) {
    probes++;
    if (ht->ht_vaddr == vaddr && ht->ht_level == level) {
      found = ht;
      break;
    }
  }
  g_stats.lookup_probes.Add(probes);
  return found;
}

void Hat::hash_insert(htable *ht) {
  unsigned b = hash_of(ht->ht_vaddr, ht->ht_level, nbuckets_);
  ht->ht_next = buckets_[b];
  buckets_[b] = ht;
}

void Hat::hash_remove(htable *ht) {
  htable **pp = &buckets_[hash_of(ht->ht_vaddr, ht->ht_level, nbuckets_)];
  while (*pp && *pp != ht) pp = &(*pp)->ht_next;
  if (HX_WARN_ONCE(!*pp, "htable missing from its hat's hash")) return;
  *pp = ht->ht_next;
  ht->ht_next = nullptr;
}

// Rehash into twice the buckets.  Failure to allocate is not an error: the
// hash still works, with longer chains.
Status Hat::hash_grow() {
  unsigned n = nbuckets_ * 2;
  auto **nb = static_cast<htable **>(core_kvzalloc(n * sizeof(htable *)));
  if (!nb) return Status::Err(HX_ENOMEM);
  for (unsigned i = 0; i < nbuckets_; i++) {
    for (htable *ht = buckets_[i], *next; ht; ht = next) {
      next = ht->ht_next;
      unsigned b = hash_of(ht->ht_vaddr, ht->ht_level, n);
      ht->ht_next = nb[b];
      nb[b] = ht;
    }
  }
  hx_kvfree(buckets_);
  buckets_ = nb;
  nbuckets_ = n;
  return Status::Ok();
}

// ---- linking and unlinking tables ---------------------------------------------------------

// seed: link_ptp().  The parent entry goes from 0 to the new table with a
// compare-and-swap: anything else there means the hash and the tables
// disagree, a broken invariant.  The accessed bit is left clear so that
// htable_steal() can tell whether the hardware walked through since.
void Hat::link_ptp(htable *higher, htable *child) {
  unsigned entry = x86::va2entry(child->ht_vaddr, higher->ht_level);
  pte_t found = x86pte_cas(higher, entry, 0, x86::make_ptp(child->ht_pa));
  HX_WARN_ONCE(found != 0, "link_ptp: parent entry not empty");
  higher->ht_valid_cnt++;
  higher->ht_busy++;
  lru_update(higher);  // no longer terminal
}

// seed: htable_create(): allocate the table for (vaddr, level) below @parent
// and link it in.
// -EAGAIN: the cache is empty, htable_refill() and walk again.
Status Hat::htable_create(hx_u64 vaddr, unsigned level, htable *parent, htable **out) {
  htable *ht = htable_alloc(vaddr, level);
  if (!ht) return Status::Err(HX_EAGAIN);
  if (nr_tables_ > static_cast<hx_u64>(nbuckets_) * kMaxLoad) (void)hash_grow();
  ht->ht_parent = parent;
  hash_insert(ht);
  link_ptp(parent, ht);
  *out = ht;
  return Status::Ok();
}

// seed: unlink_ptp().  Clear the parent's entry for @old.  The range @old
// covered goes into the batch: its flush also drops paging-structure cache
// entries that point at @old (INVLPG invalidates those for the address),
// which must happen before the page is freed, hence DeferFree.
void Hat::unlink_ptp(htable *higher, htable *old, TlbBatch *batch) {
  unsigned entry = x86::va2entry(old->ht_vaddr, higher->ht_level);
  pte_t found = x86pte_update(higher, entry, x86::make_ptp(old->ht_pa), 0);
  HX_WARN_ONCE((found & ~x86::PT_REF) != x86::make_ptp(old->ht_pa),
               "unlink_ptp: parent entry changed");
  higher->ht_valid_cnt--;
  higher->ht_busy--;
  lru_remove(old);
  hash_remove(old);
  batch->AddRange(old->ht_vaddr, x86::table_span(old->ht_level));
  batch->DeferFree(old);
}

// seed: htable_release(): free @ht and then each ancestor left empty,
// bottom-up; the first survivor's LRU state is brought up to date.  The
// top table stays for the life of the hat; a shared table stays while
// another hat links it.
void Hat::htable_release(htable *ht, TlbBatch *batch) {
  while (ht != top_ && ht->ht_valid_cnt == 0 && ht->ht_share_cnt == 0) {
    htable *parent = ht->ht_parent;
    unlink_ptp(parent, ht, batch);
    ht = parent;
  }
  lru_update(ht);
}

// The resident table covering @va at @level, or null.
htable *Hat::find_table(hx_u64 va, unsigned level) {
  if (level == top_level()) return top_;
  return htable_lookup(va & ~(x86::table_span(level) - 1), level);
}

// Walk from the top to the table at @level covering @va, creating what is
// missing.  On failure, *created is the lowest table this call linked in
// (or null); the caller releases it.
Status Hat::walk_create(hx_u64 va, unsigned level, htable **out, htable **created,
                        unsigned *missing) {
  *created = nullptr;
  // First count the tables missing on the way down, so that a walk never
  // links tables it then has to unlink (and shoot down) for want of the
  // last one: either the cache holds them all, or nothing is created.
  unsigned need = 0;
  {
    const htable *ht = top_;
    for (unsigned l = top_level(); l > level && ht; l--) {
      pte_t e = x86pte_get(ht, x86::va2entry(va, l));
      if (!x86::pte_valid(e)) {
        need = l - level;
        break;
      }
      if (x86::pte_is_leaf(e, l)) break;  // reported below
      ht = htable_lookup(va & ~(x86::table_span(l - 1) - 1), l - 1);
    }
  }
  // Ask the refill for the whole walk, not for what the cache lacks: the
  // cached tables sit at the front of the steal LRU, and a steal running
  // while the refill has our lock dropped takes them first.  Counting on
  // them let a steady REAP starve a reload through every retry.
  if (need > nr_cached_) {
    if (missing) *missing = need;
    return Status::Err(HX_EAGAIN);
  }
  htable *ht = top_;
  for (unsigned l = top_level(); l > level; l--) {
    pte_t e = x86pte_get(ht, x86::va2entry(va, l));
    hx_u64 child_va = va & ~(x86::table_span(l - 1) - 1);
    htable *child;
    if (!x86::pte_valid(e)) {
      Status st = htable_create(child_va, l - 1, ht, &child);
      if (HX_WARN_ONCE(!st.ok(), "walk_create: counted tables missing")) return st;
      *created = child;
    } else if (x86::pte_is_leaf(e, l)) {
      HX_WARN_ONCE(true, "walk_create: a leaf the record does not know");
      return Status::Err(HX_EEXIST);
    } else {
      child = htable_lookup(child_va, l - 1);
      if (HX_WARN_ONCE(!child || child->ht_pa != x86::pte_pa(e, 0),
                       "valid entry without its htable")) {
        return Status::Err(HX_EINVAL);
      }
    }
    ht = child;
  }
  *out = ht;
  return Status::Ok();
}

// ---- leaves ----------------------------------------------------------------------------------

// Make the leaf of @e that covers @va resident.  Already there: fine.
// -EAGAIN: a table is needed and the cache is empty (nothing changed).
Status Hat::install_leaf(const Extent &e, hx_u64 va, unsigned *missing) {
  hx_u64 leaf_va = va & ~(e.leaf_size() - 1);
  htable *ht, *created;
  Status st = walk_create(leaf_va, e.level, &ht, &created, missing);
  if (!st.ok()) {
    if (created) {
      TlbBatch batch(this);
      htable_release(created, &batch);
    }
    return st;
  }
  pte_t leaf = x86::make_leaf(e.pa_of(leaf_va), e.level, e.attrs, hx_cpu_has_nx());
  unsigned entry = x86::va2entry(leaf_va, e.level);
  pte_t found = x86pte_cas(ht, entry, 0, leaf);
  if (found != 0) {
    constexpr pte_t kHw = x86::PT_REF | x86::PT_MOD;
    // A table we keep only because another hat links it (emptied, shared
    // out) occupies the slot: the range is not free for a large leaf.
    if (e.level && !x86::pte_is_leaf(found, e.level)) return Status::Err(HX_EEXIST);
    if (HX_WARN_ONCE((found & ~kHw) != (leaf & ~kHw), "resident leaf disagrees with record"))
      return Status::Err(HX_EINVAL);
    return Status::Ok();
  }
  ht->ht_valid_cnt++;
  if (e.locked) ht->ht_lock_cnt++;
  lru_update(ht);
  return Status::Ok();
}

// The record may change while htable_refill() has the lock dropped, so each
// attempt installs what the record says now.  Refills are bounded: pages
// put in the cache are stealable, and under heavy pressure a steal may
// take them before we do.
Status Hat::reload_leaf(hx_u64 va, bool reload) {
  constexpr int kMaxRefills = 8;
  for (int i = 0;; i++) {
    const Extent *e = record_.Find(va);
    if (!e || e->share_table) return Status::Err(HX_ENOENT);
    unsigned missing = top_level() - e->level;
    Status st = install_leaf(*e, va, &missing);
    if (!(st == Status::Err(HX_EAGAIN))) return st;
    if (i == kMaxRefills) return Status::Err(HX_ENOMEM);
    st = htable_refill(missing, reload);
    if (!st.ok()) return st;
  }
}

// Clear the resident leaves of [va, end) below @ht, visiting each table
// once; free the tables that become empty.  Shared links and large leaves
// that straddle the ends were dealt with by the caller.
void Hat::clear_leaves(htable *ht, hx_u64 va, hx_u64 end, TlbBatch *batch) {
  unsigned l = ht->ht_level;
  hx_u64 size = x86::level_size(l);
  hx_u64 table_end = ht->ht_vaddr + x86::table_span(l);
  for (hx_u64 a = va; a < end && a >= va && a < table_end; a = (a & x86::level_mask(l)) + size) {
    unsigned entry = x86::va2entry(a, l);
    pte_t e = x86pte_get(ht, entry);
    if (!x86::pte_valid(e)) continue;
    hx_u64 base = a & x86::level_mask(l);
    if (x86::pte_is_leaf(e, l)) {
      const Extent *x = record_.Find(base);
      x86pte_set(ht, entry, 0);
      ht->ht_valid_cnt--;
      if (x && x->locked && !HX_WARN_ONCE(!ht->ht_lock_cnt, "lock count underflow"))
        ht->ht_lock_cnt--;
      batch->AddRange(base, size);
      continue;
    }
    htable *child = htable_lookup(base, l - 1);
    if (!child) continue;  // a shared link: unshare_range() owns those
    clear_leaves(child, a, min(end, base + size), batch);
    if (child->ht_valid_cnt == 0 && child->ht_share_cnt == 0) unlink_ptp(ht, child, batch);
  }
  lru_update(ht);
}

// Break the resident large leaf covering @va (if any) out of the tables and
// the record's extent into 4 KiB granularity, so that a change may start or
// end inside it.  The 4 KiB leaves are reloaded on the next fault.
void Hat::demote_cut(hx_u64 va, hx_u64 end, TlbBatch *batch) {
  // Only a large leaf that the range starts or ends inside is broken up;
  // one the range covers whole is changed whole.
  const Extent *e = record_.Find(va);
  if (e && e->level && (va & (e->leaf_size() - 1))) demote(va, batch);
  e = record_.Find(end - 1);
  if (e && e->level && (end & (e->leaf_size() - 1))) demote(end - 1, batch);
}

void Hat::demote(hx_u64 va, TlbBatch *batch) {
  hx_u64 leaf_va, leaf_len;
  record_.Demote(va, &leaf_va, &leaf_len);
  if (!leaf_len) return;
  g_stats.demotions.Add();
  for (unsigned l = 1; l <= x86::kMaxLeafLevel && l < top_level(); l++) {
    htable *ht = find_table(leaf_va, l);
    if (!ht) continue;
    unsigned entry = x86::va2entry(leaf_va, l);
    pte_t e = x86pte_get(ht, entry);
    if (x86::pte_valid(e) && x86::pte_is_leaf(e, l)) {
      const Extent *x = record_.Find(leaf_va);
      x86pte_set(ht, entry, 0);
      ht->ht_valid_cnt--;
      if (x && x->locked && !HX_WARN_ONCE(!ht->ht_lock_cnt, "lock count underflow"))
        ht->ht_lock_cnt--;
      batch->AddRange(leaf_va, leaf_len);
      htable_release(ht, batch);
      return;
    }
  }
}

// Locked leaves count in their table's ht_lock_cnt; a table with any is not
// stealable.  Leaves of [va, end) are made resident first (with the
// reserve: a locked mapping must not depend on a later fault).
void Hat::lock_leaves(hx_u64 va, hx_u64 end, int delta) {
  for (const Extent *e = record_.LowerBound(va); e && e->va < end; e = record_.LowerBound(e->end())) {
    if (e->share_table) continue;
    for (hx_u64 a = max(va, e->va); a < min(end, e->end()); a += e->leaf_size()) {
      htable *ht = find_table(a, e->level);
      if (!ht) continue;
      pte_t pte = x86pte_get(ht, x86::va2entry(a, e->level));
      if (!x86::pte_valid(pte)) continue;
      if (delta < 0 && HX_WARN_ONCE(!ht->ht_lock_cnt, "lock count underflow")) continue;
      ht->ht_lock_cnt += delta;
      lru_update(ht);
    }
  }
}

// ---- hats ---------------------------------------------------------------------------------------

bool Hat::TryGet() {
  hx_u64 r = __atomic_load_n(&refs_, __ATOMIC_RELAXED);
  while (r) {
    if (__atomic_compare_exchange_n(&refs_, &r, r + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      return true;
  }
  return false;
}

// The last reference queues the hat for htable_reap_dead(): a caller may
// hold another hat's lock (an unshare) or the LRU lock's neighbours.
void Hat::Put() {
  if (__atomic_sub_fetch(&refs_, 1, __ATOMIC_ACQ_REL) != 0) return;
  SpinGuard g(g_share_lock);
  dead_next_ = g_dead;
  g_dead = this;
}

Status Hat::Create(unsigned levels, hx_u32 flags, Hat **out) {
  if (levels != 4 && levels != 5) return Status::Err(HX_EINVAL);
  if (flags & ~kCopiedTop) return Status::Err(HX_EINVAL);
  auto *hat = static_cast<Hat *>(core_kzalloc(sizeof(Hat)));
  if (!hat) return Status::Err(HX_ENOMEM);
  new (hat) Hat();
  hat->levels_ = levels;
  hat->refs_ = 1;
  hat->lock_ = HX_MUTEX_CREATE("htable_hat_lock");
  hat->nbuckets_ = kInitialBuckets;
  hat->buckets_ = static_cast<htable **>(core_kvzalloc(kInitialBuckets * sizeof(htable *)));
  hat->cpus_ = static_cast<unsigned long *>(core_kzalloc(hx_cpumask_bytes()));
  hat->flush_mask_ = static_cast<unsigned long *>(core_kzalloc(hx_cpumask_bytes()));
  htable *top = nullptr;
  if (hat->lock_ && hat->buckets_ && hat->cpus_ && hat->flush_mask_) {
    top = static_cast<htable *>(core_kzalloc(sizeof(htable)));
    void *page = nullptr;
    if (top && (flags & kCopiedTop)) {
      // seed: VLP hats keep their top level in the hat; it never goes into
      // CR3 itself but is copied into a per-CPU top table (LoadTop()).
      page = core_kzalloc(x86::kPtesPerTable * sizeof(pte_t));
    } else if (top && !htable_test_should_fail()) {
      // A top table is an 8 KiB-aligned pair of which only the first page
      // is used: with page-table isolation, entry code that finds CR3 bit
      // 12 set takes it for the user half of a PTI pair and switches to
      // CR3 - 4K.  An NMI in a CR3 window on an odd page would land on an
      // unrelated page.
      page = hx_alloc_pages(1, HX_ALLOC_ACCOUNT);
    }
    if (page) {
      new (top) htable();
      top->ht_entries = static_cast<pte_t *>(page);
      top->ht_pa = (flags & kCopiedTop) ? 0 : hx_virt_to_phys(page);
      top->ht_order = (flags & kCopiedTop) ? 0 : 1;
      top->ht_flags = (flags & kCopiedTop) ? HTABLE_VLP : 0;
      top->ht_level = static_cast<hx_u8>(levels - 1);
      top->ht_hat = hat;
      top->ht_lru.owner = top;
      if (!(flags & kCopiedTop)) g_stats.ptable_allocs.Add();
    } else {
      hx_kfree(top);
      top = nullptr;
    }
  }
  if (!top) {
    hat->refs_ = 0;
    hat->Free();
    return Status::Err(HX_ENOMEM);
  }
  hat->top_ = top;
  hat->nr_tables_ = 1;
  g_stats.tables_live.Add();
  {
    MutexGuard g(hat->lock_);
    hat->hash_insert(top);
  }
  g_stats.hats_live.Add();
  *out = hat;
  return Status::Ok();
}

// The creator is done with the hat.  Hats that link our tables lose those
// ranges now (as if they had unmapped them): what our tables map is the
// creator's memory, which it is about to release, so no other hat may keep
// reaching it.  The tables themselves go once the last link is dropped.
void Hat::Destroy() {
  {
    MutexGuard g(lock_);
    dying_ = true;
  }
  for (;;) {
    Hat *dst = nullptr;
    htable *t = nullptr;
    {
      SpinGuard g(g_share_lock);
      for (ShareLink *l = g_share_links; l; l = l->next) {
        if (l->src == this && l->dst->TryGet()) {
          dst = l->dst;
          t = l->table;
          break;
        }
      }
    }
    if (!dst) break;  // none left, or only sharers being torn down themselves
    dst->RevokeShare(t);
    dst->Put();
  }
  Put();
}

// Drop our link to another hat's table @t (its owner is being destroyed):
// the shared range becomes a hole.
void Hat::RevokeShare(htable *t) {
  MutexGuard g(lock_);
  const Extent *e = record_.Find(t->ht_vaddr);
  if (!e || e->share_table != t) return;
  hx_u64 va = e->va, end = e->end();
  TlbBatch batch(this);
  unshare_range(va, end, &batch);
  record_.Cut(va, end);  // exactly one whole extent: no split
  g_stats.unmaps.Add();
}

// seed: htable_purge_hat().  The last reference is gone: no CPU is on the
// hat and nobody links its tables.  Links into other hats' tables are
// dropped first (their owners may be queued for purging in turn).
void Hat::htable_purge_hat() {
  HX_WARN_ONCE(!cpuset_empty(cpus_), "hat purged while a CPU runs on it");
  {
    MutexGuard g(lock_);
    dying_ = true;
    TlbBatch batch(this);
    unshare_range(0, x86::user_va_end(levels_), &batch);
    batch.Flush();
    drain_cache();
    // A hat may hold a million tables, and the kernel may not preempt us:
    // a scheduling point now and then (the lock is a mutex, nobody else
    // can reach the hat).
    hx_u64 freed = 0;
    for (unsigned i = 0; i < nbuckets_; i++) {
      while (htable *ht = buckets_[i]) {
        buckets_[i] = ht->ht_next;
        lru_remove(ht);
        HX_WARN_ONCE(ht->ht_share_cnt, "purged table still shared");
        htable_free(ht);
        if (!(++freed % 64)) hx_cond_resched();
      }
    }
    top_ = nullptr;
    record_.Clear();
  }
}

void Hat::Free() {
  if (top_) {
    htable_purge_hat();
    g_stats.hats_live.Sub();
  }
  HX_WARN_ONCE(nr_tables_ != 0, "hat freed with tables outside its hash");
  hx_kvfree(buckets_);
  hx_kfree(cpus_);
  hx_kfree(flush_mask_);
  if (lock_) hx_mutex_destroy(lock_);
  this->~Hat();
  hx_kfree(this);
}

// Purge and free the hats whose last reference went (Put()).  Called where
// no lock is held: at the end of every C API call.
void htable_reap_dead() {
  if (!g_share_lock) return;  // core init failed before it existed
  for (;;) {
    ShareLink *l;
    Hat *hat = nullptr;
    {
      SpinGuard g(g_share_lock);
      l = g_unshared;
      if (l) {
        g_unshared = l->next;
      } else {
        hat = g_dead;
        if (hat) g_dead = hat->dead_next_;
      }
    }
    if (l) {
      unshare_done(l);
      continue;
    }
    if (!hat) return;
    hat->Free();
  }
}

bool htable_dead_pending() {
  return __atomic_load_n(&g_dead, __ATOMIC_RELAXED) || __atomic_load_n(&g_unshared, __ATOMIC_RELAXED);
}

Status htable_share_init() {
  if (!g_share_lock) g_share_lock = HX_SPIN_LOCK_CREATE("htable_share_lock");
  return g_share_lock ? Status::Ok() : Status::Err(HX_ENOMEM);
}

void htable_share_fini() {
  htable_reap_dead();
  HX_WARN_ONCE(g_share_links != nullptr || g_unshared != nullptr, "share links left at exit");
  if (g_share_lock) hx_spin_lock_destroy(g_share_lock);
  g_share_lock = nullptr;
}

void Hat::CopyKernelHalf(const pte_t *src_top) {
  for (unsigned i = x86::kKernelHalfFirstEntry; i < x86::kPtesPerTable; i++)
    x86pte_set(top_, i, __atomic_load_n(&src_top[i], __ATOMIC_RELAXED));
}

// Copied top level (VLP): the caller's per-CPU top table gets our user
// half; its kernel half was filled once by the caller.  Runs with
// interrupts off on the way into a CR3 window, after CpuEnter(): a table
// unlinked from our top level after this copy is freed only once this CPU
// took the shootdown, i.e. left the window.
void Hat::LoadTop(pte_t *dst) {
  for (unsigned i = 0; i < x86::kKernelHalfFirstEntry; i++)
    __atomic_store_n(&dst[i], x86pte_get(top_, i), __ATOMIC_RELAXED);
}

void Hat::CpuEnter(unsigned cpu) {
  __atomic_fetch_or(&cpus_[cpu / kBitsPerLong], 1ul << (cpu % kBitsPerLong), __ATOMIC_SEQ_CST);
}

void Hat::CpuLeave(unsigned cpu) {
  __atomic_fetch_and(&cpus_[cpu / kBitsPerLong], ~(1ul << (cpu % kBitsPerLong)),
                     __ATOMIC_SEQ_CST);
}

// ---- map / unmap / protect / lock -----------------------------------------------------------------

Status Hat::Map(hx_u64 va, hx_u64 len, hx_u64 page_size, hx_u32 attrs, hx_paddr_t pa,
                const hx_paddr_t *pas) {
  unsigned level;
  if (Status s = page_size_level(page_size, &level); !s.ok()) return s;
  if ((va | len) & (page_size - 1)) return Status::Err(HX_EINVAL);
  if (!range_ok(va, len, x86::user_va_end(levels_))) return Status::Err(HX_EINVAL);
  if (!attrs_ok(attrs)) return Status::Err(HX_EINVAL);
  hx_u64 n = len / page_size;
  if (!pas && ((pa & (page_size - 1)) || pa + len < pa || ((pa + len - 1) >> 52)))
    return Status::Err(HX_EINVAL);
  for (hx_u64 i = 0; pas && i < n; i++)
    if ((pas[i] & (page_size - 1)) || (pas[i] & ~x86::PT_PADDR)) return Status::Err(HX_EINVAL);

  Extent e;
  e.va = va;
  e.len = len;
  e.attrs = attrs;
  e.level = static_cast<hx_u8>(level);
  e.pa_base = pa;
  PaArray *arr = nullptr;
  if (pas) {
    arr = Record::NewPaArray(n);
    if (!arr) return Status::Err(HX_ENOMEM);
    for (hx_u64 i = 0; i < n; i++) arr->pa[i] = pas[i];
    e.pages = arr;
  }

  MutexGuard g(lock_);
  Status st;
  if (record_.Overlaps(va, va + len)) {
    st = Status::Err(HX_EEXIST);
  } else {
    st = record_.Insert(e, &e.id);
  }
  Record::PutPaArray(arr);  // the record holds its own reference now
  if (!st.ok()) return st;

  // Populate eagerly.  The lock may be dropped to allocate tables, and
  // another thread may change the range meanwhile: what it unmapped is not
  // ours to install (-ENOENT), and it can only have changed our own extent.
  for (hx_u64 a = va; a < va + len; a += page_size) {
    st = reload_leaf(a, false);
    if (st == Status::Err(HX_ENOENT)) st = Status::Ok();
    if (!st.ok()) break;
    g_stats.maps.Add();
    if (!((a / page_size + 1) % 512)) hx_cond_resched();  // a large range, no preemption
  }
  if (!st.ok()) {
    // Undo: the mapping must either exist or not (the record is the truth;
    // a half-installed extent would be a mapping the caller was told
    // failed).  Only what is still our extent goes: whole pieces of it, so
    // no split (and no allocation) is needed.
    TlbBatch batch(this);
    for (hx_u64 a = va; a < va + len;) {
      const Extent *x = record_.LowerBound(a);
      if (!x || x->va >= va + len) break;
      hx_u64 xva = x->va, xend = x->end();
      if (x->id == e.id) {
        clear_leaves(top_, xva, xend, &batch);
        record_.Cut(xva, xend);
      }
      a = xend;
    }
  }
  debug_check();
  return st;
}

// Drop the links of this hat to other hats' tables inside [va, end) (the
// caller checked that no shared range straddles an end).
void Hat::unshare_range(hx_u64 va, hx_u64 end, TlbBatch *batch) {
  for (const Extent *e = record_.LowerBound(va); e && e->va < end;
       e = record_.LowerBound(e->end())) {
    if (!e->share_table) continue;
    auto *t = static_cast<htable *>(e->share_table);
    auto *src = static_cast<Hat *>(e->share_src);
    htable *p = find_table(e->va, t->ht_level + 1);
    if (!HX_WARN_ONCE(!p, "shared link without its parent")) {
      unsigned entry = x86::va2entry(e->va, p->ht_level);
      x86pte_update(p, entry, x86::make_ptp(t->ht_pa), 0);
      p->ht_valid_cnt--;
      p->ht_busy--;
      batch->AddRange(e->va, e->len);
    }
    // Our CPUs no longer reach the table once this flush is done; from then
    // on its owner alone decides its fate (unshare_done()).
    batch->Flush();
    {
      SpinGuard g(g_share_lock);
      for (ShareLink **pp = &g_share_links; *pp; pp = &(*pp)->next) {
        ShareLink *l = *pp;
        if (l->src == src && l->dst == this && l->table == t) {
          *pp = l->next;
          __atomic_fetch_sub(&src->nr_sharers_, 1, __ATOMIC_SEQ_CST);
          l->next = g_unshared;
          g_unshared = l;
          break;
        }
      }
    }
    g_stats.unshares.Add();
    if (p) htable_release(p, batch);
  }
}

// The owner takes a table back after its last sharer dropped the link:
// pinned no more, it is released if it became empty meanwhile or goes back
// on the LRU.  The link's reference on the owner goes last.
namespace {
void unshare_done(ShareLink *l) {
  Hat *src = l->src;
  htable *t = l->table;
  src->ReleaseShared(t);
  hx_kfree(l);
  src->Put();
}
}  // namespace

void Hat::ReleaseShared(htable *t) {
  MutexGuard g(lock_);
  if (HX_WARN_ONCE(!t->ht_share_cnt, "share count underflow")) return;
  if (--t->ht_share_cnt) return;
  t->ht_flags &= ~HTABLE_SHARED_PFN;
  TlbBatch batch(this);
  htable_release(t, &batch);  // frees it if empty, else brings its LRU state up to date
}

// The ends of [va, end) against the record, before an operation changes
// anything: a shared range is never cut (-EINVAL); a large leaf may be cut
// only if @demotable and not locked (-EBUSY for a locked one, -EINVAL for
// any when not @demotable).
Status Hat::check_ends(hx_u64 va, hx_u64 end, bool demotable) {
  const hx_u64 probes[] = {va, end - 1};
  for (hx_u64 p : probes) {
    const Extent *e = record_.Find(p);
    if (!e) continue;
    if (e->share_table) {
      if (e->va < va || e->end() > end) return Status::Err(HX_EINVAL);
      continue;
    }
    hx_u64 base = p & ~(e->leaf_size() - 1);
    if (base >= va && base + e->leaf_size() <= end) continue;
    if (!demotable) return Status::Err(HX_EINVAL);
    if (e->locked) return Status::Err(HX_EBUSY);
  }
  return Status::Ok();
}

Status Hat::Unmap(hx_u64 va, hx_u64 len) {
  if (Status st = page_range_ok(va, len, levels_); !st.ok()) return st;
  hx_u64 end = va + len;

  MutexGuard g(lock_);
  // Refuse before changing anything.
  if (Status st = check_ends(va, end, true); !st.ok()) return st;
  if (Status st = record_.ReserveNodesFor(va, end); !st.ok()) return st;

  TlbBatch batch(this);
  demote_cut(va, end, &batch);
  unshare_range(va, end, &batch);
  clear_leaves(top_, va, end, &batch);
  record_.Cut(va, end);
  g_stats.unmaps.Add();
  batch.Flush();
  debug_check();
  return Status::Ok();
}

Status Hat::Protect(hx_u64 va, hx_u64 len, hx_u32 attrs) {
  if (Status st = page_range_ok(va, len, levels_); !st.ok()) return st;
  if (!attrs_ok(attrs)) return Status::Err(HX_EINVAL);
  hx_u64 end = va + len;

  MutexGuard g(lock_);
  for (const Extent *e = record_.LowerBound(va); e && e->va < end; e = record_.LowerBound(e->end()))
    if (e->share_table) return Status::Err(HX_EINVAL);  // the owner's to change
  if (Status st = check_ends(va, end, true); !st.ok()) return st;
  if (Status st = record_.ReserveNodesFor(va, end); !st.ok()) return st;

  TlbBatch batch(this);
  demote_cut(va, end, &batch);
  record_.ForEachSplit(va, end, [&](Extent *e) {
    e->attrs = attrs;
    for (hx_u64 a = e->va; a < e->end(); a += e->leaf_size()) {
      htable *ht = find_table(a, e->level);
      if (!ht) continue;
      unsigned entry = x86::va2entry(a, e->level);
      pte_t old = x86pte_get(ht, entry);
      if (!x86::pte_valid(old)) continue;
      x86pte_update(ht, entry, old, x86::make_leaf(e->pa_of(a), e->level, attrs, hx_cpu_has_nx()));
      batch.AddRange(a, e->leaf_size());
    }
  });
  g_stats.protects.Add();
  batch.Flush();
  debug_check();
  return Status::Ok();
}

Status Hat::Lock(hx_u64 va, hx_u64 len, bool lock) {
  if (Status st = page_range_ok(va, len, levels_); !st.ok()) return st;
  hx_u64 end = va + len;

  MutexGuard g(lock_);
  // The range may not cut a large leaf: locking never breaks one up.
  if (Status st = check_ends(va, end, false); !st.ok()) return st;
  if (Status st = record_.ReserveNodesFor(va, end); !st.ok()) return st;
  hx_u64 call = ++lock_calls_;
  record_.ForEachSplit(va, end, [&](Extent *e) {
    if (e->share_table || !!e->locked == lock) return;
    e->locked = lock;
    e->lock_call = lock ? call : 0;
    lock_leaves(e->va, e->end(), lock ? 1 : -1);  // the resident leaves
  });
  if (!lock) return Status::Ok();

  // Now make the rest resident.  Flags first: a table with a locked leaf
  // is off the LRU at once, so what a refill's dropped lock lets a steal
  // take can only be a table we have not reached yet.  The walk is by
  // address, since the record may change while the lock is dropped.
  for (hx_u64 a = va; a < end;) {
    const Extent *e = record_.LowerBound(a);
    if (!e || e->va >= end) break;
    a = max(a, e->va);
    hx_u64 step = e->leaf_size(), next = e->end();
    if (e->share_table || !e->locked) {
      a = next;
      continue;
    }
    Status st = reload_leaf(a, true);
    if (!st.ok() && !(st == Status::Err(HX_ENOENT))) {
      // Undo exactly what this call locked (leaves made resident stay: a
      // cache).  The range's ends are extent boundaries already, so no
      // split and no allocation is needed.
      for (const Extent *x = record_.LowerBound(va); x && x->va < end;
           x = record_.LowerBound(x->end())) {
        if (x->lock_call != call) continue;
        auto *w = const_cast<Extent *>(x);
        w->locked = 0;
        w->lock_call = 0;
        lock_leaves(w->va, w->end(), -1);
      }
      return st;
    }
    a = (a & ~(step - 1)) + step;
  }
  return Status::Ok();
}

// ---- sharing -----------------------------------------------------------------------------------------

// seed: HTABLE_SHARED_PFN.  Link @src's table at (@va, @level) into this
// hat, so both hats see the same entries below it.  The table is pinned in
// @src (never stolen, never released) while shared, and @src itself stays
// alive (a reference) until we unlink it.  The two hat locks are never held
// together: @src's first, to find and pin the table, then ours to link it.
Status Hat::ShareFrom(Hat *src, hx_u64 va, unsigned level) {
  if (src == this || src->levels_ != levels_) return Status::Err(HX_EINVAL);
  if (level >= top_level()) return Status::Err(HX_EINVAL);
  hx_u64 span = x86::table_span(level);
  if ((va & (span - 1)) || !range_ok(va, span, x86::user_va_end(levels_)))
    return Status::Err(HX_EINVAL);

  auto *link = static_cast<ShareLink *>(core_kzalloc(sizeof(ShareLink)));
  if (!link) return Status::Err(HX_ENOMEM);
  htable *t;
  {
    MutexGuard g(src->lock_);
    if (src->dying_) {
      hx_kfree(link);
      return Status::Err(HX_ENOENT);
    }
    // Shared tables hold only the source's own leaves and tables.
    for (const Extent *e = src->record_.LowerBound(va); e && e->va < va + span;
         e = src->record_.LowerBound(e->end())) {
      if (e->share_table || e->va < va || e->end() > va + span) {
        hx_kfree(link);
        return Status::Err(HX_EINVAL);
      }
    }
    // Everything below the table resident: another hat will read it.
    for (hx_u64 a = va; a < va + span;) {
      const Extent *e = src->record_.LowerBound(a);
      if (!e || e->va >= va + span) break;
      a = max(a, e->va);
      hx_u64 step = e->leaf_size();
      Status st = src->reload_leaf(a, true);
      if (!st.ok() && !(st == Status::Err(HX_ENOENT))) {
        hx_kfree(link);
        return st;
      }
      a = (a & ~(step - 1)) + step;
    }
    if (src->dying_) {  // destroyed while a refill had the lock dropped
      hx_kfree(link);
      return Status::Err(HX_ENOENT);
    }
    t = src->find_table(va, level);
    if (!t) {
      hx_kfree(link);
      return Status::Err(HX_ENOENT);  // nothing mapped there to share
    }
    SpinGuard sg(g_share_lock);
    t->ht_share_cnt++;
    t->ht_flags |= HTABLE_SHARED_PFN;
    lru_remove(t);
    __atomic_fetch_add(&src->refs_, 1, __ATOMIC_RELAXED);  // dying_ false: refs_ > 0
    link->src = src;
    link->dst = this;
    link->table = t;
    link->next = g_share_links;
    g_share_links = link;
    __atomic_fetch_add(&src->nr_sharers_, 1, __ATOMIC_SEQ_CST);
  }

  Status st;
  {
    MutexGuard g(lock_);
    Extent e;
    e.va = va;
    e.len = span;
    e.attrs = x86::kProtRead;
    e.level = static_cast<hx_u8>(level);
    e.share_src = src;
    e.share_table = t;
    htable *p = nullptr, *created = nullptr;
    for (int i = 0;; i++) {
      if (dying_ || record_.Overlaps(va, va + span)) {
        st = Status::Err(dying_ ? HX_ENOENT : HX_EEXIST);
        break;
      }
      st = walk_create(va, level + 1, &p, &created);
      if (!(st == Status::Err(HX_EAGAIN))) break;
      st = i < 8 ? htable_refill(top_level() - level - 1, false) : Status::Err(HX_ENOMEM);
      if (!st.ok()) break;
    }
    if (st.ok()) {
      // The slot may hold a table we keep only because another hat links
      // it; and a link below a table that is itself shared out would reach
      // hats whose CPUs our shootdowns do not cover.
      if (x86pte_get(p, x86::va2entry(va, level + 1)) != 0) st = Status::Err(HX_EEXIST);
      for (const htable *q = p; q && st.ok(); q = q->ht_parent)
        if (q->ht_share_cnt) st = Status::Err(HX_EINVAL);
    }
    if (st.ok()) st = record_.Insert(e, nullptr);
    if (st.ok()) {
      pte_t found = x86pte_cas(p, x86::va2entry(va, level + 1), 0, x86::make_ptp(t->ht_pa));
      HX_WARN_ONCE(found != 0, "share: parent entry not empty");
      p->ht_valid_cnt++;
      p->ht_busy++;
      lru_update(p);
      g_stats.shares.Add();
      return st;
    }
    if (created) {
      TlbBatch batch(this);
      htable_release(created, &batch);
    }
  }
  // Undo the pin.
  {
    SpinGuard sg(g_share_lock);
    for (ShareLink **pp = &g_share_links; *pp; pp = &(*pp)->next) {
      if (*pp == link) {
        *pp = link->next;
        break;
      }
    }
    __atomic_fetch_sub(&src->nr_sharers_, 1, __ATOMIC_SEQ_CST);
  }
  unshare_done(link);
  return st;
}

// ---- faults and translation ------------------------------------------------------------------------

// A CR3 window hit a VA with no resident translation.  If the record has
// one, put it back (with the reserve: this path must not fail for want of
// a table); if not, it is a hole.
Status Hat::Fault(hx_u64 va) {
  if (va >= x86::user_va_end(levels_)) return Status::Err(HX_EINVAL);
  Hat *src = nullptr;
  {
    MutexGuard g(lock_);
    const Extent *e = record_.Find(va);
    if (!e) {
      g_stats.holes.Add();
      return Status::Err(HX_ENOENT);
    }
    if (!e->share_table) {
      Status st = reload_leaf(va, true);
      if (st.ok()) g_stats.reloads.Add();
      if (st == Status::Err(HX_ENOENT)) g_stats.holes.Add();  // unmapped meanwhile
      else if (!st.ok()) g_stats.reload_failures.Add();
      debug_check();
      return st;
    }
    src = static_cast<Hat *>(e->share_src);
    __atomic_fetch_add(&src->refs_, 1, __ATOMIC_RELAXED);  // the link holds one already
  }
  // In a shared range the source hat owns the leaves.
  Status st = src->Fault(va);
  src->Put();
  return st;
}

Status Hat::translate_locked(hx_u64 va, Xlate *out) {
  const Extent *e = record_.Find(va);
  if (!e) return Status::Err(HX_ENOENT);
  out->shared = e->share_table != nullptr;
  if (out->shared) return Status::Ok();
  hx_u64 size = e->leaf_size();
  out->level = e->level;
  out->page_size = size;
  out->pa = e->pa_of(va) + (va & (size - 1));
  out->attrs = e->attrs;
  out->locked = e->locked;
  return Status::Ok();
}

// What the record says @va translates to (resident or not).
Status Hat::Translate(hx_u64 va, Xlate *out) {
  if (va >= x86::user_va_end(levels_)) return Status::Err(HX_EINVAL);
  Hat *src;
  {
    MutexGuard g(lock_);
    Status st = translate_locked(va, out);
    if (!st.ok() || !out->shared) return st;
    const Extent *e = record_.Find(va);
    src = static_cast<Hat *>(e->share_src);
    __atomic_fetch_add(&src->refs_, 1, __ATOMIC_RELAXED);
  }
  Status st = src->Translate(va, out);
  src->Put();
  out->shared = true;
  return st;
}

Status Hat::NextMapping(hx_u64 va, hx_u64 end, Mapping *out) {
  MutexGuard g(lock_);
  const Extent *e = record_.LowerBound(va);
  if (!e || e->va >= end) return Status::Err(HX_ENOENT);
  hx_u64 start = max(va, e->va);
  out->va = start;
  out->len = min(end, e->end()) - start;
  out->shared = e->share_table != nullptr;
  out->attrs = e->attrs;
  out->level = e->level;
  out->locked = e->locked;
  out->pa = out->shared ? 0 : e->pa_of(start) + (start & (e->leaf_size() - 1));
  // An array extent is contiguous only leaf by leaf: report one leaf.
  if (e->pages) out->len = min(out->len, (start & ~(e->leaf_size() - 1)) + e->leaf_size() - start);
  return Status::Ok();
}

}  // namespace htable
