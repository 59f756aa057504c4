// SPDX-License-Identifier: GPL-2.0
//
// The C API of the core (htable_api.h): Status becomes -errno here and
// nowhere else.
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

}  // namespace

extern "C" {

int htable_core_init(void) { return 0; }

void htable_core_exit(void) {
  HX_WARN_ONCE(g_stats.hats_live.Load() != 0, "htable: hats alive at exit");
  HX_WARN_ONCE(g_stats.tables_live.Load() != 0, "htable: tables alive at exit");
}

int htable_hat_create(unsigned int levels, struct htable_hat **out) {
  Hat *hat;
  Status s = Hat::Create(levels, &hat);
  if (s.ok()) *out = reinterpret_cast<htable_hat *>(hat);
  return s.to_errno();
}

void htable_hat_destroy(struct htable_hat *hat) {
  if (hat) H(hat)->Destroy();
}

int htable_hat_map(struct htable_hat *hat, hx_u64 va, hx_paddr_t pa, hx_u64 page_size,
                   hx_u32 prot) {
  return H(hat)->Map(va, pa, page_size, prot).to_errno();
}

int htable_hat_unmap(struct htable_hat *hat, hx_u64 va, hx_u64 len) {
  return H(hat)->Unmap(va, len).to_errno();
}

int htable_hat_translate(struct htable_hat *hat, hx_u64 va, struct htable_xlate *out) {
  Hat::Xlate x;
  Status s = H(hat)->Translate(va, &x);
  if (s.ok()) {
    out->pa = x.pa;
    out->page_size = x.page_size;
    out->level = x.level;
    out->prot = x.prot;
  }
  return s.to_errno();
}

unsigned int htable_hat_levels(const struct htable_hat *hat) { return H(hat)->levels(); }
hx_paddr_t htable_hat_top_pa(const struct htable_hat *hat) { return H(hat)->top_pa(); }
hx_u64 htable_hat_nr_tables(const struct htable_hat *hat) { return H(hat)->nr_tables(); }

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

void htable_stat_add(enum htable_ext_stat which, hx_s64 delta) {
  if (HX_WARN_ONCE(which >= HTABLE_STAT_NR_EXT, "unknown counter")) return;
  if (which == HTABLE_STAT_MAX_WINDOW_NS)
    g_ext[which].Max(static_cast<hx_u64>(delta));
  else
    g_ext[which].Add(static_cast<hx_u64>(delta));
}

unsigned int htable_stats_snapshot(struct htable_stat *out, unsigned int max) {
  const htable_stat all[] = {
      {"hats_live", g_stats.hats_live.Load()},
      {"tables_live", g_stats.tables_live.Load()},
      {"ptable_allocs", g_stats.ptable_allocs.Load()},
      {"ptable_frees", g_stats.ptable_frees.Load()},
      {"ptable_alloc_fails", g_stats.ptable_alloc_fails.Load()},
      {"lookups", g_stats.lookups.Load()},
      {"maps", g_stats.maps.Load()},
      {"unmaps", g_stats.unmaps.Load()},
      {"shootdowns", g_stats.shootdowns.Load()},
      {"shootdown_pages", g_stats.shootdown_pages.Load()},
      {"jobs", g_ext[HTABLE_STAT_JOBS].Load()},
      {"job_faults", g_ext[HTABLE_STAT_JOB_FAULTS].Load()},
      {"windows", g_ext[HTABLE_STAT_WINDOWS].Load()},
      {"max_window_ns", g_ext[HTABLE_STAT_MAX_WINDOW_NS].Load()},
      {"pinned_pages", g_ext[HTABLE_STAT_PINNED_PAGES].Load()},
  };
  constexpr unsigned n = sizeof(all) / sizeof(all[0]);
  for (unsigned i = 0; i < n && i < max; i++) out[i] = all[i];
  return n;
}

}  // extern "C"
