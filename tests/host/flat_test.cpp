// SPDX-License-Identifier: GPL-2.0
//
// Lookup flatness: the per-hat hash of htables must answer in O(1) probes
// whether the hat has a thousand tables or a million.
//
// One 4-level hat gets 4 KiB pages mapped at 2 MiB strides, so that each
// page needs a level-0 table of its own (plus one PD per 512 of them).  At
// each size N in 1K, 4K, 16K, 64K, 256K, 1M tables the test measures the
// average number of hash entries looked at per lookup (the core's
// "lookup_probes" / "lookups" counters, as deltas):
//   - while mapping up to N (the walk down to the leaf's table), and
//   - over 200,000 htable_hat_getpte() calls at random mapped addresses
//     (each looks up the PDPT, the PD and the PT of its address).
// Both must stay small (at most kMaxProbes) and flat: the largest size may
// not average more than kMaxGrowth times the smallest.  A million level-0
// tables are 4 GiB of table pages, so this is its own binary, built with -O2
// and without sanitizers (make run builds and runs it).
//
//   flat_test [--max N] [--lookups N]
//
// Exits 1 when a bound is broken, 2 on a setup failure; prints one line per
// size, then "flat: OK" or the failure.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "htable_api.h"
#include "shim_host.h"

namespace {

using u64 = std::uint64_t;

constexpr u64 k4K = 1ull << 12, k2M = 1ull << 21;
constexpr u64 kBase = 1ull << 39;  // PML4 entry 1: all of it ours
constexpr double kMaxProbes = 3.0;
constexpr double kMaxGrowth = 1.5;

u64 Stat(const char *name) {
  htable_stat s[64];
  unsigned n = htable_stats_snapshot(s, 64);
  for (unsigned i = 0; i < n && i < 64; i++)
    if (std::strcmp(s[i].name, name) == 0) return s[i].value;
  std::fprintf(stderr, "flat: no counter %s\n", name);
  std::exit(2);
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char **argv) {
  u64 max = 1000000, nlookups = 200000;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--max") && i + 1 < argc)
      max = std::strtoull(argv[++i], nullptr, 0);
    else if (!std::strcmp(argv[i], "--lookups") && i + 1 < argc)
      nlookups = std::strtoull(argv[++i], nullptr, 0);
    else {
      std::fprintf(stderr, "usage: %s [--max N] [--lookups N]\n", argv[0]);
      return 2;
    }
  }
  hxhost::reset();
  hxhost::set_paging_levels(4);
  if (htable_core_init(8) != 0) return 2;
  htable_hat *hat = nullptr;
  if (htable_hat_create(4, &hat) != 0) return 2;

  std::mt19937_64 rng(42);
  const u64 sizes[] = {1000, 4000, 16000, 64000, 256000, 1000000};
  double first = 0, worst = 0, worst_ratio = 0;
  bool ok = true;
  u64 mapped = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::printf("%10s %10s %12s %12s %10s\n", "tables", "level-0", "map probes", "get probes", "seconds");
  for (u64 n : sizes) {
    if (n > max) break;
    u64 l0 = Stat("lookups"), p0 = Stat("lookup_probes");
    for (; mapped < n; mapped++) {
      if (htable_hat_map(hat, kBase + mapped * k2M, (mapped & 0xffffff) << 12, k4K, HTABLE_P_READ) != 0) {
        std::fprintf(stderr, "flat: map %" PRIu64 " failed\n", mapped);
        return 2;
      }
    }
    double map_avg = double(Stat("lookup_probes") - p0) / double(Stat("lookups") - l0 ? Stat("lookups") - l0 : 1);
    l0 = Stat("lookups");
    p0 = Stat("lookup_probes");
    for (u64 i = 0; i < nlookups; i++) {
      u64 k = rng() % n;
      unsigned level = 99;
      if (!htable_hat_getpte(hat, kBase + k * k2M, &level) || level != 0) {
        std::fprintf(stderr, "flat: page %" PRIu64 " not resident\n", k);
        return 2;
      }
    }
    u64 lookups = Stat("lookups") - l0;
    double get_avg = double(Stat("lookup_probes") - p0) / double(lookups);
    if (lookups < 3 * nlookups) {
      std::fprintf(stderr, "flat: only %" PRIu64 " lookups for %" PRIu64 " getpte calls\n", lookups, nlookups);
      return 2;
    }
    std::printf("%10" PRIu64 " %10" PRIu64 " %12.3f %12.3f %10.1f\n", htable_hat_nr_tables(hat), n, map_avg, get_avg,
                Seconds(t0));
    std::fflush(stdout);
    if (first == 0) first = get_avg;
    for (double a : {map_avg, get_avg}) {
      if (a > kMaxProbes) ok = false;
      worst = a > worst ? a : worst;
    }
    double ratio = get_avg / first;
    worst_ratio = ratio > worst_ratio ? ratio : worst_ratio;
    if (ratio > kMaxGrowth) ok = false;
  }
  if (htable_hat_check(hat) != 0) ok = false;
  htable_hat_destroy(hat);
  htable_core_exit();
  if (hxhost::warnings() || hxhost::shim_errors()) {
    std::fprintf(stderr, "flat: %" PRIu64 " warnings, %" PRIu64 " shim errors\n", hxhost::warnings(),
                 hxhost::shim_errors());
    ok = false;
  }
  if (hxhost::pages_live() != 0 || hxhost::kmem_live() != 0) {
    std::fprintf(stderr, "flat: leaked %" PRIu64 " pages, %" PRIu64 " kmem\n", hxhost::pages_live(),
                 hxhost::kmem_live());
    ok = false;
  }
  if (!ok) {
    std::printf("flat: FAILED (worst %.3f probes per lookup, bound %.1f; growth %.2fx, bound %.1fx)\n", worst,
                kMaxProbes, worst_ratio, kMaxGrowth);
    return 1;
  }
  std::printf("flat: OK (worst %.3f probes per lookup, growth %.2fx from the smallest size, %.1f s)\n", worst,
              worst_ratio, Seconds(t0));
  return 0;
}
