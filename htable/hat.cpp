// SPDX-License-Identifier: GPL-2.0
//
// Hats and their htables: allocation, the per-hat hash, link_ptp/unlink_ptp,
// htable_release, map/unmap/translate and htable_purge_hat.
//
// Locking: one mutex per hat (lock_) serialises every change to the hat's
// tables and its hash.  CR3 windows (module/runner.c) never take it: a
// runner only reads the tables through the MMU, with interrupts off, so a
// thread holding lock_ may wait for a runner (a TLB shootdown IPI is taken
// when the window ends) but a runner never waits for lock_.  Lock order:
// the fd's hat list lock (module/dev.c) -> hat lock_ -> nothing.
#include "htable.h"

namespace htable {

Stats g_stats;

namespace {

// Table pages of a hat are charged to the memory cgroup of the task that
// caused them (the ioctl caller), like the kernel's own page tables.
constexpr unsigned kTableAllocFlags = HX_ALLOC_ACCOUNT;

// Hash sizing: start small, double when the average chain passes 2.  Lookup
// cost is then O(1) expected whatever the number of tables.
constexpr unsigned kInitialBuckets = 64;
constexpr unsigned kMaxLoad = 2;

constexpr hx_size_t kBitsPerLong = 8 * sizeof(unsigned long);

bool cpuset_empty(const unsigned long *cpus) {
  for (hx_size_t i = 0; i < hx_cpumask_bytes() / sizeof(unsigned long); i++)
    if (__atomic_load_n(&cpus[i], __ATOMIC_SEQ_CST) != 0) return false;
  return true;
}

}  // namespace

// ---- TLB batching -----------------------------------------------------------

void TlbBatch::AddRange(hx_u64 va, hx_u64 len) {
  start_ = min(start_, va);
  end_ = max(end_, va + len);
}

void TlbBatch::DeferFree(htable *ht) {
  ht->ht_next = free_list_;
  free_list_ = ht;
}

// One invalidation covering everything the operation changed, sent only to
// the CPUs that may cache the hat.  The ordering argument: every entry was
// changed with a seq_cst atomic before we read the CPU set here, and a CPU
// joins the set (seq_cst) before it loads our CR3; so a CPU we miss loaded
// CR3 after our change and cannot have cached the old entry.
void TlbBatch::Flush() {
  if (start_ < end_) {
    if (!cpuset_empty(hat_->cpus_)) {
      hx_flush_tlb_range(hat_->cpus_, hat_->top_pa(), start_, end_ - start_);
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

// ---- htable allocation ------------------------------------------------------

htable *Hat::htable_alloc(hx_u64 vaddr, unsigned level, unsigned order) {
  auto *ht = static_cast<htable *>(hx_kzalloc(sizeof(htable)));
  if (!ht) {
    g_stats.ptable_alloc_fails.Add();
    return nullptr;
  }
  void *page = hx_alloc_pages(order, kTableAllocFlags);
  if (!page) {
    hx_kfree(ht);
    g_stats.ptable_alloc_fails.Add();
    return nullptr;
  }
  ht->ht_hat = this;
  ht->ht_vaddr = vaddr;
  ht->ht_level = static_cast<hx_u8>(level);
  ht->ht_order = static_cast<hx_u8>(order);
  ht->ht_entries = static_cast<pte_t *>(page);
  ht->ht_pa = hx_virt_to_phys(page);
  g_stats.ptable_allocs.Add();
  g_stats.tables_live.Add();
  __atomic_fetch_add(&nr_tables_, 1, __ATOMIC_RELAXED);
  return ht;
}

void Hat::htable_free(htable *ht) {
  hx_free_pages(ht->ht_entries, ht->ht_order);
  hx_kfree(ht);
  g_stats.ptable_frees.Add();
  g_stats.tables_live.Sub();
  __atomic_fetch_sub(&nr_tables_, 1, __ATOMIC_RELAXED);
}

// ---- the per-hat hash of htables ---------------------------------------------

unsigned Hat::hash_of(hx_u64 vaddr, unsigned level, unsigned nbuckets) {
  // Tables at one level are table_span(level) apart: divide that out so
  // neighbours land in neighbouring buckets, then mix in the level.
  hx_u64 k = (vaddr >> x86::level_shift(level + 1)) * 0x9e3779b97f4a7c15ull + level;
  return static_cast<unsigned>((k ^ (k >> 32)) & (nbuckets - 1));
}

htable *Hat::htable_lookup(hx_u64 vaddr, unsigned level) {
  hx_mutex_assert_held(lock_);
  g_stats.lookups.Add();
  for (htable *ht = buckets_[hash_of(vaddr, level, nbuckets_)]; ht; ht = ht->ht_next)
    if (ht->ht_vaddr == vaddr && ht->ht_level == level) return ht;
  return nullptr;
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
  auto **nb = static_cast<htable **>(hx_kvzalloc(n * sizeof(htable *)));
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

// ---- linking and unlinking tables ------------------------------------------

// htable_create(): allocate the table for (vaddr, level) below @parent and
// link it in (the seed's link_ptp).  The parent entry goes from 0 to the new
// table with a compare-and-swap: an entry that is not 0 here means another
// path changed it behind the lock, a broken invariant.
Status Hat::htable_create(hx_u64 vaddr, unsigned level, htable *parent, htable **out) {
  htable *ht = htable_alloc(vaddr, level, 0);
  if (!ht) return Status::Err(HX_ENOMEM);
  if (nr_tables_ > static_cast<hx_u64>(nbuckets_) * kMaxLoad) (void)hash_grow();
  ht->ht_parent = parent;
  hash_insert(ht);
  unsigned entry = x86::va2entry(vaddr, parent->ht_level);
  pte_t found = x86pte_cas(parent, entry, 0, x86::make_ptp(ht->ht_pa));
  if (HX_WARN_ONCE(found != 0, "link_ptp: parent entry not empty")) {
    hash_remove(ht);
    htable_free(ht);
    return Status::Err(HX_EEXIST);
  }
  parent->ht_valid_cnt++;
  *out = ht;
  return Status::Ok();
}

// unlink_ptp(): clear the parent's entry for @old.  The range @old covered
// goes into the batch: its flush also drops paging-structure cache entries
// that point at @old (INVLPG invalidates those for the address), which must
// happen before the page is freed, hence DeferFree.
void Hat::unlink_ptp(htable *higher, htable *old, TlbBatch *batch) {
  unsigned entry = x86::va2entry(old->ht_vaddr, higher->ht_level);
  pte_t found = x86pte_cas(higher, entry, x86::make_ptp(old->ht_pa), 0);
  HX_WARN_ONCE(found != x86::make_ptp(old->ht_pa), "unlink_ptp: parent entry changed");
  higher->ht_valid_cnt--;
  hash_remove(old);
  batch->AddRange(old->ht_vaddr, x86::table_span(old->ht_level));
  batch->DeferFree(old);
}

// htable_release(): free @ht and then each ancestor left empty, bottom-up.
// The top table stays for the life of the hat.
void Hat::htable_release(htable *ht, TlbBatch *batch) {
  while (ht != top_ && ht->ht_valid_cnt == 0) {
    htable *parent = ht->ht_parent;
    unlink_ptp(parent, ht, batch);
    ht = parent;
  }
}

// ---- hats -------------------------------------------------------------------

Status Hat::Create(unsigned levels, Hat **out) {
  if (levels != 4 && levels != 5) return Status::Err(HX_EINVAL);
  auto *hat = static_cast<Hat *>(hx_kzalloc(sizeof(Hat)));
  if (!hat) return Status::Err(HX_ENOMEM);
  new (hat) Hat();
  hat->levels_ = levels;
  hat->lock_ = HX_MUTEX_CREATE("htable_hat_lock");
  hat->nbuckets_ = kInitialBuckets;
  hat->buckets_ = static_cast<htable **>(hx_kvzalloc(kInitialBuckets * sizeof(htable *)));
  hat->cpus_ = static_cast<unsigned long *>(hx_kzalloc(hx_cpumask_bytes()));
  // The top table is allocated as an 8 KiB-aligned pair and only the first
  // page used: with page-table isolation, entry code that finds CR3 bit 12
  // set takes it for the user half of a PTI pair and switches to CR3 - 4K.
  // A top table at an odd page would send an NMI taken during a CR3 window
  // onto an unrelated page.
  if (hat->lock_ && hat->buckets_ && hat->cpus_)
    hat->top_ = hat->htable_alloc(0, levels - 1, 1);
  if (!hat->top_) {
    hat->Destroy();
    return Status::Err(HX_ENOMEM);
  }
  {
    MutexGuard g(hat->lock_);
    hat->hash_insert(hat->top_);
  }
  g_stats.hats_live.Add();
  *out = hat;
  return Status::Ok();
}

// htable_purge_hat(): every table goes, the top one included.  No CPU may
// be on the hat any more, so no flush is needed: each CPU's CR3 restore
// flushed our (non-global) entries when it left.
void Hat::htable_purge_hat() {
  if (!buckets_) return;
  for (unsigned i = 0; i < nbuckets_; i++) {
    while (htable *ht = buckets_[i]) {
      buckets_[i] = ht->ht_next;
      htable_free(ht);
    }
  }
  top_ = nullptr;
}

void Hat::Destroy() {
  HX_WARN_ONCE(cpus_ && !cpuset_empty(cpus_), "hat destroyed while a CPU runs on it");
  bool counted = top_ != nullptr;
  htable_purge_hat();
  HX_WARN_ONCE(nr_tables_ != 0, "hat destroyed with tables outside its hash");
  hx_kvfree(buckets_);
  hx_kfree(cpus_);
  if (lock_) hx_mutex_destroy(lock_);
  this->~Hat();
  hx_kfree(this);
  if (counted) g_stats.hats_live.Sub();
}

void Hat::CopyKernelHalf(const pte_t *src_top) {
  for (unsigned i = x86::kKernelHalfFirstEntry; i < x86::kPtesPerTable; i++)
    x86pte_set(top_, i, __atomic_load_n(&src_top[i], __ATOMIC_RELAXED));
}

void Hat::CpuEnter(unsigned cpu) {
  __atomic_fetch_or(&cpus_[cpu / kBitsPerLong], 1ul << (cpu % kBitsPerLong), __ATOMIC_SEQ_CST);
}

void Hat::CpuLeave(unsigned cpu) {
  __atomic_fetch_and(&cpus_[cpu / kBitsPerLong], ~(1ul << (cpu % kBitsPerLong)),
                     __ATOMIC_SEQ_CST);
}

// ---- map / unmap / translate -----------------------------------------------

namespace {

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

}  // namespace

Status Hat::Map(hx_u64 va, hx_paddr_t pa, hx_u64 page_size, hx_u32 prot) {
  unsigned level;
  if (Status s = page_size_level(page_size, &level); !s.ok()) return s;
  if ((va | pa) & (page_size - 1)) return Status::Err(HX_EINVAL);
  if (pa & ~x86::PT_PADDR) return Status::Err(HX_EINVAL);
  if (!range_ok(va, page_size, x86::user_va_end(levels_))) return Status::Err(HX_EINVAL);
  if (!(prot & x86::kProtRead) || (prot & ~(x86::kProtRead | x86::kProtWrite | x86::kProtExec)))
    return Status::Err(HX_EINVAL);

  MutexGuard g(lock_);
  TlbBatch batch(this);
  htable *ht = top_;
  htable *created = nullptr;  // lowest table this call linked in
  Status st;
  for (unsigned l = top_level(); l > level; l--) {
    pte_t e = x86pte_get(ht, x86::va2entry(va, l));
    hx_u64 child_va = va & ~(x86::table_span(l - 1) - 1);
    htable *child;
    if (!x86::pte_valid(e)) {
      st = htable_create(child_va, l - 1, ht, &child);
      if (!st.ok()) break;
      created = child;
    } else if (x86::pte_is_leaf(e, l)) {
      st = Status::Err(HX_EEXIST);  // a larger leaf covers va
      break;
    } else {
      child = htable_lookup(child_va, l - 1);
      if (HX_WARN_ONCE(!child || child->ht_pa != x86::pte_pa(e, 0),
                       "valid entry without its htable")) {
        st = Status::Err(HX_EINVAL);
        break;
      }
    }
    ht = child;
  }
  if (st.ok()) {
    // A valid entry here, leaf or table, means something is mapped in the
    // range already (empty tables are freed, so a table is never empty).
    pte_t leaf = x86::make_leaf(pa, level, prot, hx_cpu_has_nx());
    if (x86pte_cas(ht, x86::va2entry(va, level), 0, leaf) != 0) {
      st = Status::Err(HX_EEXIST);
    } else {
      ht->ht_valid_cnt++;
      g_stats.maps.Add();
      return st;
    }
  }
  // Give back the tables this call linked in and left empty.
  if (created) htable_release(created, &batch);
  return st;
}

// Clear the leaves of [va, end) below @ht, visiting each table once, and
// free the tables that become empty.  The caller checked that no large leaf
// straddles either end of the range.
void Hat::unmap_range(htable *ht, hx_u64 va, hx_u64 end, TlbBatch *batch) {
  unsigned l = ht->ht_level;
  hx_u64 size = x86::level_size(l);
  hx_u64 table_end = ht->ht_vaddr + x86::table_span(l);
  for (hx_u64 a = va; a < end && a >= va && a < table_end; a = (a & x86::level_mask(l)) + size) {
    unsigned entry = x86::va2entry(a, l);
    pte_t e = x86pte_get(ht, entry);
    if (!x86::pte_valid(e)) continue;
    if (x86::pte_is_leaf(e, l)) {
      x86pte_set(ht, entry, 0);
      ht->ht_valid_cnt--;
      batch->AddRange(a & x86::level_mask(l), size);
      g_stats.unmaps.Add();
      continue;
    }
    htable *child = htable_lookup(a & x86::level_mask(l), l - 1);
    if (HX_WARN_ONCE(!child, "valid entry without its htable")) continue;
    unmap_range(child, a, min(end, (a & x86::level_mask(l)) + size), batch);
    if (child->ht_valid_cnt == 0) unlink_ptp(ht, child, batch);
  }
}

Status Hat::Unmap(hx_u64 va, hx_u64 len) {
  if ((va | len) & (HX_PAGE_SIZE - 1)) return Status::Err(HX_EINVAL);
  if (!range_ok(va, len, x86::user_va_end(levels_))) return Status::Err(HX_EINVAL);
  hx_u64 end = va + len;

  MutexGuard g(lock_);
  // Refuse before changing anything when a large leaf straddles an end:
  // splitting one is not supported yet.
  const hx_u64 probes[] = {va, end - 1};
  for (hx_u64 probe : probes) {
    Xlate x;
    if (translate_locked(probe, &x).ok()) {
      hx_u64 base = probe & ~(x.page_size - 1);
      if (base < va || base + x.page_size > end) return Status::Err(HX_EINVAL);
    }
  }
  TlbBatch batch(this);
  unmap_range(top_, va, end, &batch);
  return Status::Ok();
}

Status Hat::translate_locked(hx_u64 va, Xlate *out) {
  if (va >= x86::user_va_end(levels_)) return Status::Err(HX_EINVAL);
  const htable *ht = top_;
  for (unsigned l = top_level();; l--) {
    pte_t e = x86pte_get(ht, x86::va2entry(va, l));
    if (!x86::pte_valid(e)) return Status::Err(HX_ENOENT);
    if (x86::pte_is_leaf(e, l)) {
      out->level = l;
      out->page_size = x86::level_size(l);
      out->pa = x86::pte_pa(e, l) + (va & (out->page_size - 1));
      out->prot = x86::leaf_prot(e);
      return Status::Ok();
    }
    ht = htable_lookup(va & ~(x86::table_span(l - 1) - 1), l - 1);
    if (HX_WARN_ONCE(!ht, "valid entry without its htable")) return Status::Err(HX_EINVAL);
  }
}

Status Hat::Translate(hx_u64 va, Xlate *out) {
  MutexGuard g(lock_);
  return translate_locked(va, out);
}

}  // namespace htable
