// SPDX-License-Identifier: GPL-2.0
//
// The C API of the core (htable_api.h): Status becomes -errno here and
// nowhere else.  Calls that may drop a hat's last reference end with
// htable_reap_dead(), where no lock is held; htable_reap() does not, since
// it runs in reclaim where taking a hat lock unconditionally would order
// the lock after fs_reclaim (dead hats wait for the next call instead).
#include "htable.h"
#include "htable_api.h"

using htable::Hat;
using htable::Status;
using htable::g_stats;

namespace {

Hat *H(htable_hat *h) { return reinterpret_cast<Hat *>(h); }
const Hat *H(const htable_hat *h) { return reinterpret_cast<const Hat *>(h); }

// Counters kept for module/ (jobs, CR3 windows, pinning).
htable::Counter g_ext[HTABLE_STAT_NR_EXT];

int done(Status s) {
  htable::htable_reap_dead();
  return s.to_errno();
}

}  // namespace

extern "C" {

int htable_core_init(hx_u32 reserve_amount) {
  Status s = htable::htable_share_init();
  if (s.ok()) s = htable::lru_init();
  if (s.ok()) s = htable::htable_initial_reserve(reserve_amount);
  if (!s.ok()) htable_core_exit();
  return s.to_errno();
}

void htable_core_exit(void) {
  htable::htable_reap_dead();
  htable::htable_reserve_fini();
  htable::lru_fini();
  htable::htable_share_fini();
  HX_WARN_ONCE(g_stats.hats_live.Load() != 0, "htable: hats alive at exit");
  HX_WARN_ONCE(g_stats.tables_live.Load() != 0, "htable: tables alive at exit");
}

int htable_hat_create(unsigned int levels, struct htable_hat **out) {
  return htable_hat_create_flags(levels, 0, out);
}

int htable_hat_create_flags(unsigned int levels, hx_u32 flags, struct htable_hat **out) {
  // A good moment to top the reserve up again after reclaim used it.
  htable::htable_adjust_reserve();
  Hat *hat;
  Status s = Hat::Create(levels, flags, &hat);
  if (s.ok()) *out = reinterpret_cast<htable_hat *>(hat);
  return done(s);
}

void htable_hat_destroy(struct htable_hat *hat) {
  if (hat) H(hat)->Destroy();
  htable::htable_reap_dead();
}

int htable_hat_map(struct htable_hat *hat, hx_u64 va, hx_paddr_t pa, hx_u64 page_size,
                   hx_u32 prot) {
  return done(H(hat)->Map(va, page_size, page_size, prot, pa, nullptr));
}

int htable_hat_map_range(struct htable_hat *hat, hx_u64 va, hx_u64 len, hx_u64 page_size,
                         hx_u32 attrs, hx_paddr_t pa, const hx_paddr_t *pas) {
  return done(H(hat)->Map(va, len, page_size, attrs, pa, pas));
}

int htable_hat_unmap(struct htable_hat *hat, hx_u64 va, hx_u64 len) {
  return done(H(hat)->Unmap(va, len));
}

int htable_hat_protect(struct htable_hat *hat, hx_u64 va, hx_u64 len, hx_u32 attrs) {
  return done(H(hat)->Protect(va, len, attrs));
}

int htable_hat_lock(struct htable_hat *hat, hx_u64 va, hx_u64 len, int lock) {
  return done(H(hat)->Lock(va, len, lock != 0));
}

int htable_hat_share(struct htable_hat *dst, struct htable_hat *src, hx_u64 va,
                     unsigned int level) {
  return done(H(dst)->ShareFrom(H(src), va, level));
}

int htable_hat_fault(struct htable_hat *hat, hx_u64 va) { return done(H(hat)->Fault(va)); }

int htable_hat_translate(struct htable_hat *hat, hx_u64 va, struct htable_xlate *out) {
  Hat::Xlate x = {};
  Status s = H(hat)->Translate(va, &x);
  if (s.ok()) {
    out->pa = x.pa;
    out->page_size = x.page_size;
    out->level = x.level;
    out->prot = x.attrs;
    out->locked = x.locked;
    out->shared = x.shared;
  }
  return done(s);
}

int htable_hat_next_mapping(struct htable_hat *hat, hx_u64 va, hx_u64 end,
                            struct htable_mapping *out) {
  Hat::Mapping m = {};
  Status s = H(hat)->NextMapping(va, end, &m);
  if (s.ok()) {
    out->va = m.va;
    out->len = m.len;
    out->pa = m.pa;
    out->attrs = m.attrs;
    out->level = m.level;
    out->locked = m.locked;
    out->shared = m.shared;
  }
  return s.to_errno();
}

hx_u64 htable_hat_getpte(struct htable_hat *hat, hx_u64 va, unsigned int *level) {
  return H(hat)->GetPte(va, level);
}

hx_u64 htable_hat_walk(struct htable_hat *hat, hx_u64 *va, hx_u64 end, unsigned int *level) {
  return H(hat)->Walk(va, end, level);
}

hx_u64 htable_hat_drop_tables(struct htable_hat *hat) {
  hx_u64 n = H(hat)->DropTables();
  htable::htable_reap_dead();
  return n;
}

int htable_hat_check(struct htable_hat *hat) { return H(hat)->Check().to_errno(); }

void htable_hat_dump(struct htable_hat *hat, void (*emit)(void *, const char *), void *arg,
                     int show_pa) {
  H(hat)->Dump(emit, arg, show_pa != 0);
}

unsigned int htable_hat_levels(const struct htable_hat *hat) { return H(hat)->levels(); }
hx_paddr_t htable_hat_top_pa(const struct htable_hat *hat) { return H(hat)->top_pa(); }
int htable_hat_copied_top(const struct htable_hat *hat) { return H(hat)->copied_top(); }
void htable_hat_load_top(struct htable_hat *hat, void *dst) {
  H(hat)->LoadTop(static_cast<htable::pte_t *>(dst));
}
hx_u64 htable_hat_nr_tables(const struct htable_hat *hat) { return H(hat)->nr_tables(); }
hx_u64 htable_hat_nr_cached(const struct htable_hat *hat) { return H(hat)->nr_cached(); }
hx_u64 htable_hat_nr_extents(const struct htable_hat *hat) { return H(hat)->record_extents(); }

void htable_hat_copy_kernel_half(struct htable_hat *hat, const void *src_top) {
  H(hat)->CopyKernelHalf(static_cast<const htable::pte_t *>(src_top));
}

void htable_hat_cpu_enter(struct htable_hat *hat, unsigned int cpu) { H(hat)->CpuEnter(cpu); }
void htable_hat_cpu_leave(struct htable_hat *hat, unsigned int cpu) { H(hat)->CpuLeave(cpu); }

hx_u64 htable_user_va_end(unsigned int levels) { return htable::x86::user_va_end(levels); }

hx_u64 htable_page_sizes(void) {
  hx_u64 sizes = (1ull << 12) | (1ull << 21);
  if (hx_cpu_has_gbpages()) sizes |= 1ull << 30;
  return sizes;
}

hx_u64 htable_reap(hx_u64 nr) { return htable::htable_reap(nr); }
hx_u64 htable_reclaimable(void) { return htable::htable_reclaimable(); }
void htable_steal_hold(int hold) { htable::htable_steal_hold(hold != 0); }
void htable_purge_dead(void) { htable::htable_reap_dead(); }
int htable_dead_pending(void) { return htable::htable_dead_pending(); }
hx_u64 htable_reserve_count(void) { return htable::htable_reserve_count(); }
hx_u32 htable_reserve_target(void) {
  return __atomic_load_n(&htable::htable_reserve_amount, __ATOMIC_RELAXED);
}

void htable_reserve_set(hx_u32 amount) {
  __atomic_store_n(&htable::htable_reserve_amount, amount, __ATOMIC_RELAXED);
  htable::htable_adjust_reserve();
}

// The PTE primitives on a raw table page, for the x86pte KUnit suite.
namespace {
htable::htable view_of(void *table, unsigned level) {
  htable::htable ht;
  ht.ht_entries = static_cast<htable::pte_t *>(table);
  ht.ht_level = static_cast<hx_u8>(level);
  return ht;
}
}  // namespace

hx_u64 htable_pte_make_leaf(hx_paddr_t pa, unsigned int level, hx_u32 attrs) {
  return htable::x86::make_leaf(pa, level, attrs, hx_cpu_has_nx());
}

hx_u64 htable_pte_cas(void *table, unsigned int entry, hx_u64 expected, hx_u64 v) {
  htable::htable ht = view_of(table, 0);
  return htable::x86pte_cas(&ht, entry, expected, v);
}

hx_u64 htable_pte_update(void *table, unsigned int entry, hx_u64 expected, hx_u64 v) {
  htable::htable ht = view_of(table, 0);
  return htable::x86pte_update(&ht, entry, expected, v);
}

hx_u64 htable_pte_invalidate_pfn(void *table, unsigned int level, unsigned int entry,
                                 hx_paddr_t pa) {
  htable::htable ht = view_of(table, level);
  return htable::x86pte_invalidate_pfn(&ht, entry, pa);
}

void htable_pte_copy(void *src, void *dst, unsigned int entry, unsigned int count) {
  htable::htable s = view_of(src, 0), d = view_of(dst, 0);
  htable::x86pte_copy(&s, &d, entry, count);
}

void htable_pte_zero(void *table, unsigned int entry, unsigned int count) {
  htable::htable ht = view_of(table, 0);
  htable::x86pte_zero(&ht, entry, count);
}

void htable_test_fail_allocs(hx_u64 skip, hx_u64 count) {
  htable::htable_test_fail_allocs(skip, count);
}

void htable_stat_add(enum htable_ext_stat which, hx_s64 delta) {
  if (HX_WARN_ONCE(which >= HTABLE_STAT_NR_EXT, "unknown counter")) return;
  if (which == HTABLE_STAT_MAX_WINDOW_NS)
    g_ext[which].Max(static_cast<hx_u64>(delta));
  else
    g_ext[which].Add(static_cast<hx_u64>(delta));
}

hx_s64 htable_stat_read(enum htable_ext_stat which) {
  if (HX_WARN_ONCE(which >= HTABLE_STAT_NR_EXT, "unknown counter")) return 0;
  return static_cast<hx_s64>(g_ext[which].Load());
}

unsigned int htable_stats_snapshot(struct htable_stat *out, unsigned int max) {
  const htable_stat all[] = {
      {"hats_live", g_stats.hats_live.Load()},
      {"tables_live", g_stats.tables_live.Load()},
      {"ptable_allocs", g_stats.ptable_allocs.Load()},
      {"ptable_frees", g_stats.ptable_frees.Load()},
      {"alloc_fails", g_stats.alloc_fails.Load()},
      {"cache_hits", g_stats.cache_hits.Load()},
      {"reserve", htable::htable_reserve_count()},
      {"reserve_target", htable_reserve_target()},
      {"reserve_hits", g_stats.reserve_hits.Load()},
      {"reserve_misses", g_stats.reserve_misses.Load()},
      {"stealable", htable::lru_count()},
      {"steals", g_stats.steals.Load()},
      {"steal_passes", g_stats.steal_passes.Load()},
      {"steal_scanned", g_stats.steal_scanned.Load()},
      {"steal_second_chance", g_stats.steal_second_chance.Load()},
      {"steal_held", g_stats.steal_held.Load()},
      {"reaps", g_stats.reaps.Load()},
      {"lookups", g_stats.lookups.Load()},
      {"lookup_probes", g_stats.lookup_probes.Load()},
      {"maps", g_stats.maps.Load()},
      {"unmaps", g_stats.unmaps.Load()},
      {"protects", g_stats.protects.Load()},
      {"reloads", g_stats.reloads.Load()},
      {"holes", g_stats.holes.Load()},
      {"reload_failures", g_stats.reload_failures.Load()},
      {"demotions", g_stats.demotions.Load()},
      {"refills", g_stats.refills.Load()},
      {"shares", g_stats.shares.Load()},
      {"unshares", g_stats.unshares.Load()},
      {"shootdowns", g_stats.shootdowns.Load()},
      {"shootdown_pages", g_stats.shootdown_pages.Load()},
      {"invariant_failures", g_stats.invariant_failures.Load()},
      {"jobs", g_ext[HTABLE_STAT_JOBS].Load()},
      {"job_faults", g_ext[HTABLE_STAT_JOB_FAULTS].Load()},
      {"windows", g_ext[HTABLE_STAT_WINDOWS].Load()},
      {"max_window_ns", g_ext[HTABLE_STAT_MAX_WINDOW_NS].Load()},
      {"pinned_pages", g_ext[HTABLE_STAT_PINNED_PAGES].Load()},
      {"pages_live", g_ext[HTABLE_STAT_PAGES_LIVE].Load()},
      {"objects_live", g_ext[HTABLE_STAT_OBJECTS_LIVE].Load()},
  };
  constexpr unsigned n = sizeof(all) / sizeof(all[0]);
  for (unsigned i = 0; i < n && i < max; i++) out[i] = all[i];
  return n;
}

}  // extern "C"
