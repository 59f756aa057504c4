// SPDX-License-Identifier: GPL-2.0
//
// Model-based randomized test of the core.
//
// A reference model (a map of leaves: start VA -> pa, size, prot) is driven
// with the same random operations as a hat: maps of every size at aligned VAs
// drawn from a few small clustered regions (so that overlaps, -EEXIST and
// ranges that cut large leaves are common), unmaps of random ranges, translates,
// CPUs entering and leaving, allocation failures injected into maps, and now
// and then destroying the hat and starting again with other CPU features.
//
// After every operation the model is compared with the raw tables (walker.h)
// over the range the operation touched, plus the table count against the
// allocator; every few hundred operations the whole hierarchy is compared:
// every leaf, every table (none empty, none shared, each a live page) and the
// set of tables the model's leaves require.  TLB flushes are checked too: one
// per unmap that removes something while CPUs are on the hat, to exactly those
// CPUs, covering what was removed, and before any table page is freed.
//
//   model_test [--seed S] [--ops N] [--verbose]
//
// On a mismatch it prints the seed, the operation index and the last few
// operations, and exits 1.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>

#include "htable_api.h"
#include "shim_host.h"
#include "walker.h"

namespace {

using u64 = std::uint64_t;
using walker::k1G;
using walker::k2M;
using walker::k4K;

constexpr hx_u32 R = HTABLE_P_READ, W = HTABLE_P_WRITE, X = HTABLE_P_EXEC;
constexpr unsigned kFullCheckEvery = 500;
constexpr unsigned kHistory = 12;

u64 Stat(const char *name) {
  htable_stat s[64];
  unsigned n = htable_stats_snapshot(s, 64);
  for (unsigned i = 0; i < n && i < 64; i++)
    if (std::strcmp(s[i].name, name) == 0) return s[i].value;
  return ~0ull;
}

struct MLeaf {
  u64 pa;
  u64 size;
  hx_u32 prot;
};

class ModelTest {
 public:
  ModelTest(u64 seed, u64 ops, bool verbose) : seed_(seed), ops_(ops), verbose_(verbose), rng_(seed) {}

  int Run() {
    hxhost::reset();
    base_pages_ = hxhost::pages_live();
    base_kmem_ = hxhost::kmem_live();
    if (htable_core_init() != 0) Fail("htable_core_init failed");
    NewHat();
    for (op_ = 0; op_ < ops_; op_++) {
      Step();
      if (op_ % kFullCheckEvery == kFullCheckEvery - 1) FullCheck();
    }
    FullCheck();
    DestroyHat();
    htable_core_exit();
    if (hxhost::warnings() != 0) Fail("hx_warn: %s", hxhost::warning_log()[0].c_str());
    if (hxhost::shim_errors() != 0) Fail("shim misuse: %s", hxhost::shim_error_log()[0].c_str());
    std::printf(
        "model: seed %" PRIu64 ", %" PRIu64 " ops OK: maps %" PRIu64 " ok / %" PRIu64 " eexist / %" PRIu64
        " enomem / %" PRIu64 " einval, unmaps %" PRIu64 " ok / %" PRIu64 " einval, %" PRIu64
        " translates, %" PRIu64 " shootdowns, %" PRIu64 " hats, max %" PRIu64 " leaves / %" PRIu64 " tables\n",
        seed_, ops_, n_map_ok_, n_map_eexist_, n_map_enomem_, n_map_einval_, n_unmap_ok_, n_unmap_einval_,
        n_translate_, n_flush_, n_hats_, max_leaves_, max_tables_);
    return 0;
  }

 private:
  // ---- failure reporting -------------------------------------------------------------

  [[noreturn]] __attribute__((format(printf, 2, 3))) void Fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\nMODEL MISMATCH: seed %" PRIu64 " op %" PRIu64 " (levels %u, nx %d, gbpages %d): %s\n",
                 seed_, op_, levels_, nx_, gbpages_, buf);
    std::fprintf(stderr, "last operations:\n");
    for (const auto &h : history_) std::fprintf(stderr, "  %s\n", h.c_str());
    std::fprintf(stderr, "reproduce: make -C tests/host model SEED=%" PRIu64 " OPS=%" PRIu64 "\n", seed_, op_ + 1);
    std::exit(1);
  }

  __attribute__((format(printf, 2, 3))) void Note(const char *fmt, ...) {
    char buf[256];
    int n = std::snprintf(buf, sizeof(buf), "#%" PRIu64 " ", op_);
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    va_end(ap);
    if (verbose_) std::fprintf(stderr, "%s\n", buf);
    history_.push_back(buf);
    if (history_.size() > kHistory) history_.pop_front();
  }

  // ---- randomness ---------------------------------------------------------------------

  u64 Below(u64 n) { return rng_() % n; }
  bool Chance(unsigned percent) { return Below(100) < percent; }

  // Four 4 GiB regions: the bottom of the address space, one across a
  // top-level entry boundary, the top of the user half, and one across a
  // PML5 entry boundary (beyond the user half with 4 levels: -EINVAL).
  u64 RegionBase(unsigned r) const {
    switch (r) {
      case 0: return 0;
      case 1: return (1ull << 39) - 2 * k1G;
      case 2: return walker::half_end(levels_) - 4 * k1G;
      default: return (1ull << 48) - 2 * k1G;
    }
  }

  // An address in a region, at one of a few 1G, 2M and 4K slots so that
  // different operations keep landing on each other.
  u64 RandomVa() {
    unsigned r = Chance(8) ? 3 : static_cast<unsigned>(Below(3));
    static const u64 m_slots[] = {0, 1, 2, 3, 7, 255, 256, 510, 511};
    static const u64 p_slots[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 255, 256, 511};
    u64 g = Below(4);
    u64 m = m_slots[Below(sizeof(m_slots) / sizeof(m_slots[0]))];
    u64 p = p_slots[Below(sizeof(p_slots) / sizeof(p_slots[0]))];
    return RegionBase(r) + g * k1G + m * k2M + p * k4K;
  }

  u64 RandomSize() {
    unsigned c = static_cast<unsigned>(Below(100));
    return c < 60 ? k4K : c < 90 ? k2M : k1G;
  }

  hx_u32 RandomProt() {
    static const hx_u32 prots[] = {R, R | W, R | X, R | W | X};
    return prots[Below(4)];
  }

  // ---- the model ----------------------------------------------------------------------

  bool ModelOverlaps(u64 va, u64 size) const {
    auto it = model_.lower_bound(va);
    if (it != model_.end() && it->first < va + size) return true;
    if (it != model_.begin()) {
      --it;
      if (it->first + it->second.size > va) return true;
    }
    return false;
  }

  // The leaf containing @va, or end().
  std::map<u64, MLeaf>::const_iterator ModelFind(u64 va) const {
    auto it = model_.upper_bound(va);
    if (it == model_.begin()) return model_.end();
    --it;
    return va < it->first + it->second.size ? it : model_.end();
  }

  u64 ExpectedRaw(const MLeaf &l) const {
    u64 e = l.pa | walker::kP | walker::kUS;
    if (l.prot & W) e |= walker::kRW;
    if (!(l.prot & X) && nx_) e |= walker::kNX;
    if (l.size > k4K) e |= walker::kPS;
    return e;
  }

  // Compare the leaves of [lo, hi) with the model.  Bits the core may choose
  // freely (accessed, dirty) are masked out; everything else must match.
  void CheckRange(u64 lo, u64 hi, const char *what) {
    if (hi > walker::half_end(levels_)) hi = walker::half_end(levels_);
    if (lo >= hi) return;
    walker::Walk w = walker::walk(top_, levels_, lo, hi);
    if (!w.ok()) Fail("%s: raw tables broken: %s", what, w.errors[0].c_str());
    auto it = model_.upper_bound(lo);
    if (it != model_.begin() && std::prev(it)->first + std::prev(it)->second.size > lo) --it;
    size_t i = 0;
    for (; it != model_.end() && it->first < hi; ++it, ++i) {
      if (i >= w.leaves.size())
        Fail("%s: model leaf %#" PRIx64 " (+%#" PRIx64 ") missing from the tables", what, it->first,
             it->second.size);
      const walker::Leaf &l = w.leaves[i];
      const u64 mask = ~((1ull << 5) | (1ull << 6));  // A, D
      if (l.va != it->first || l.size != it->second.size || l.pa != it->second.pa ||
          (l.raw & mask) != ExpectedRaw(it->second))
        Fail("%s: at %#" PRIx64 " the tables have va %#" PRIx64 " size %#" PRIx64 " pa %#" PRIx64
             " raw %#" PRIx64 ", the model va %#" PRIx64 " size %#" PRIx64 " pa %#" PRIx64 " raw %#" PRIx64,
             what, lo, l.va, l.size, l.pa, l.raw & mask, it->first, it->second.size, it->second.pa,
             ExpectedRaw(it->second));
    }
    if (i != w.leaves.size())
      Fail("%s: the tables have a leaf at %#" PRIx64 " the model does not", what, w.leaves[i].va);
  }

  // Table count: the hat says, the allocator sees and the counters agree.
  void CheckCounts(const char *what) {
    u64 nr = htable_hat_nr_tables(hat_);
    if (hxhost::pages_live() - base_pages_ != nr)
      Fail("%s: %" PRIu64 " pages live but nr_tables %" PRIu64, what, hxhost::pages_live() - base_pages_, nr);
    if (Stat("tables_live") != nr) Fail("%s: tables_live %" PRIu64 " but nr_tables %" PRIu64, what, Stat("tables_live"), nr);
    if (hxhost::warnings() != 0) Fail("%s: hx_warn: %s", what, hxhost::warning_log()[0].c_str());
    if (hxhost::shim_errors() != 0) Fail("%s: shim misuse: %s", what, hxhost::shim_error_log()[0].c_str());
    if (nr > max_tables_) max_tables_ = nr;
    if (model_.size() > max_leaves_) max_leaves_ = model_.size();
  }

  // The whole hierarchy against the model.
  void FullCheck() {
    walker::Walk w = walker::walk(top_, levels_);
    if (!w.ok()) Fail("full check: %s", w.errors[0].c_str());
    CheckRange(0, walker::half_end(levels_), "full check");
    // The tables the model's leaves need: for a leaf at level L, one table at
    // each level L .. top-1 containing it (plus the top).
    std::set<std::pair<unsigned, u64>> need;
    for (const auto &[va, l] : model_)
      for (unsigned level = walker::level_of_size(l.size); level < levels_ - 1; level++)
        need.insert({level, va & ~(walker::size_of(level + 1) - 1)});
    std::set<std::pair<unsigned, u64>> have;
    for (size_t i = 1; i < w.tables.size(); i++) have.insert({w.tables[i].level, w.tables[i].va});
    if (have != need || w.tables.size() != have.size() + 1)
      Fail("full check: the tables (%zu) are not those the model's leaves need (%zu + top)", w.tables.size(),
           need.size());
    if (htable_hat_nr_tables(hat_) != w.tables.size())
      Fail("full check: nr_tables %" PRIu64 ", %zu tables reachable", htable_hat_nr_tables(hat_), w.tables.size());
    CheckCounts("full check");
  }

  // Flushes since the operation started: none, or exactly one to our CPUs
  // that covers every removed leaf.
  void CheckFlushes(const std::vector<std::pair<u64, u64>> &removed, bool may_flush, const char *what) {
    const auto &f = hxhost::flushes();
    bool want = !removed.empty() && cpus_ != 0;
    if (f.size() > 1) Fail("%s: %zu flushes for one operation", what, f.size());
    if (want && f.empty()) Fail("%s: %zu leaves removed with CPUs %#lx on the hat, no flush", what, removed.size(), cpus_);
    if (!want && !may_flush && !f.empty()) Fail("%s: unexpected flush (cpus %#lx)", what, cpus_);
    if (!f.empty()) {
      if (cpus_ == 0) Fail("%s: flush with no CPU on the hat", what);
      if (f[0].cpus.size() != 1 || f[0].cpus[0] != cpus_)
        Fail("%s: flush to CPUs %#lx, the hat has %#lx", what, f[0].cpus.empty() ? 0 : f[0].cpus[0], cpus_);
      if (f[0].top_pa != top_) Fail("%s: flush for another top", what);
      for (const auto &[va, size] : removed)
        if (!f[0].covers(va, size))
          Fail("%s: flush [%#" PRIx64 ", +%#" PRIx64 ") misses leaf %#" PRIx64, what, f[0].va, f[0].len, va);
      n_flush_++;
    }
    // Table pages are freed only after the flush: until then a CPU's
    // paging-structure cache may still reach them.
    bool flushed = false;
    for (const hxhost::Event &e : hxhost::events()) {
      if (e.kind == hxhost::Event::kFlush) flushed = true;
      if (e.kind == hxhost::Event::kFreePage && cpus_ != 0 && !flushed)
        Fail("%s: table page %#" PRIx64 " freed before any flush, CPUs %#lx on the hat", what, e.addr, cpus_);
    }
    hxhost::clear_flushes();
  }

  // ---- operations -----------------------------------------------------------------------

  void Step() {
    hxhost::record_events(true);  // a fresh log for this operation
    hxhost::clear_flushes();
    unsigned c = static_cast<unsigned>(Below(1000));
    if (c < 400)
      OpMap();
    else if (c < 600)
      OpUnmap();
    else if (c < 940)
      OpTranslate();
    else if (c < 995)
      OpCpu();
    else if (c < 999)
      OpBurst();
    else if (Chance(20))
      OpRecreate();
    else
      OpTranslate();
  }

  void OpMap() {
    u64 size = RandomSize();
    u64 va = RandomVa() & ~(size - 1);
    u64 pa = (Below(1ull << 20) << 12) & ~(size - 1);
    hx_u32 prot = RandomProt();
    // Now and then an argument the core must refuse.
    unsigned bad = Chance(2) ? 1 + static_cast<unsigned>(Below(3)) : 0;
    if (bad == 1) va += k4K * (size > k4K);  // misaligned (a 4K leaf: leave it valid)
    if (bad == 2) prot = W;
    if (bad == 3) pa |= 1ull << 52;
    bool inject = Chance(4);
    unsigned k = static_cast<unsigned>(Below(8));
    Note("map va %#" PRIx64 " pa %#" PRIx64 " size %#" PRIx64 " prot %u%s", va, pa, size, prot,
         inject ? " (failing an allocation)" : "");

    // The size is checked first, then the arguments, then what is mapped.
    int expect = 0;
    if (size == k1G && !gbpages_)
      expect = -HX_EOPNOTSUPP;
    else if ((bad == 1 && size > k4K) || bad == 2 || bad == 3 || va + size > end_)
      expect = -HX_EINVAL;
    else if (ModelOverlaps(va, size))
      expect = -HX_EEXIST;

    u64 nr = htable_hat_nr_tables(hat_);
    if (inject) hxhost::fail_nth(hxhost::kAnyAlloc, k);
    int rc = htable_hat_map(hat_, va, pa, size, prot);
    bool fired = inject && !hxhost::failure_pending();
    hxhost::clear_failures();
    // A failed table allocation is -ENOMEM; a failed hash grow is harmless.
    // A map that fails for another reason must not have allocated at all.
    if (fired && hxhost::last_failed_kind() != hxhost::kKvzalloc) {
      if (expect != 0) Fail("map allocated although it fails with %d", expect);
      expect = -HX_ENOMEM;
    }
    if (rc != expect) Fail("map returned %d, the model expects %d", rc, expect);

    switch (rc) {
      case 0: model_[va] = MLeaf{pa, size, prot}; n_map_ok_++; break;
      case -HX_EEXIST: n_map_eexist_++; break;
      case -HX_ENOMEM: n_map_enomem_++; break;
      default: n_map_einval_++; break;
    }
    if (rc != 0 && htable_hat_nr_tables(hat_) != nr) Fail("failed map changed nr_tables");
    // A map only fills empty entries: it never flushes, except that rolling
    // back after -ENOMEM may flush what it unlinks.
    CheckFlushes({}, rc == -HX_ENOMEM, "map");
    // The slot and its neighbours on both sides.
    CheckRange(va >= size ? va - size : 0, va + 2 * size, "map");
    CheckCounts("map");
  }

  void OpUnmap() {
    u64 va = RandomVa();
    static const u64 lens[] = {k4K, 2 * k4K, 5 * k4K, k2M, k2M - k4K, k2M + k4K, 3 * k2M, k1G,
                               k1G - k4K, k1G + k2M, 2 * k1G, 4 * k1G};
    u64 len = lens[Below(sizeof(lens) / sizeof(lens[0]))];
    if (Chance(50)) va &= ~(k2M - 1);
    if (Chance(20)) va &= ~(k1G - 1);
    bool misaligned = Chance(1);
    if (misaligned) len += 1;
    Note("unmap va %#" PRIx64 " len %#" PRIx64, va, len);

    u64 end = va + len;
    int expect = 0;
    std::vector<std::pair<u64, u64>> removed;
    if (misaligned || end > end_) {
      expect = -HX_EINVAL;
    } else {
      auto first = ModelFind(va), last = ModelFind(end - 1);
      if ((first != model_.end() && first->first < va) ||
          (last != model_.end() && last->first + last->second.size > end))
        expect = -HX_EINVAL;  // cuts a leaf
    }
    int rc = htable_hat_unmap(hat_, va, len);
    if (rc != expect) Fail("unmap returned %d, the model expects %d", rc, expect);
    if (rc == 0) {
      for (auto it = model_.lower_bound(va); it != model_.end() && it->first < end;) {
        removed.push_back({it->first, it->second.size});
        it = model_.erase(it);
      }
      n_unmap_ok_++;
    } else {
      n_unmap_einval_++;
    }
    CheckFlushes(removed, false, "unmap");
    CheckRange(va >= k2M ? va - k2M : 0, va + len + k2M, "unmap");
    CheckCounts("unmap");
  }

  // Many 4K maps 2 MiB apart, each needing its own level-0 table: the hat's
  // hash (64 buckets when created) has to grow, more than once.
  void OpBurst() {
    unsigned r = static_cast<unsigned>(Below(3));
    u64 n = 100 + Below(500);
    u64 start = RegionBase(r) + Below(4) * k1G + Below(8) * k2M;
    u64 p = Below(512) * k4K;
    Note("burst of %" PRIu64 " 4K maps from %#" PRIx64, n, start + p);
    u64 lo = start, hi = start;
    for (u64 i = 0; i < n; i++) {
      u64 va = start + i * k2M + p;
      if (va + k4K > end_) break;
      int expect = ModelOverlaps(va, k4K) ? -HX_EEXIST : 0;
      int rc = htable_hat_map(hat_, va, (i << 12) & ((1ull << 40) - 1), k4K, R | W);
      if (rc != expect) Fail("burst map %" PRIu64 " at %#" PRIx64 " returned %d, the model expects %d", i, va, rc, expect);
      if (rc == 0) {
        model_[va] = MLeaf{(i << 12) & ((1ull << 40) - 1), k4K, R | W};
        n_map_ok_++;
      } else {
        n_map_eexist_++;
      }
      hi = va + k4K;
    }
    CheckFlushes({}, false, "burst");
    CheckRange(lo, hi, "burst");
    CheckCounts("burst");
  }

  void OpTranslate() {
    u64 va = RandomVa() + Below(k4K);
    if (Chance(3)) va = end_ + Below(1ull << 40);
    Note("translate %#" PRIx64, va);
    htable_xlate x;
    int rc = htable_hat_translate(hat_, va, &x);
    n_translate_++;
    if (va >= end_) {
      if (rc != -HX_EINVAL) Fail("translate beyond the user half returned %d", rc);
      return;
    }
    auto it = ModelFind(va);
    if (it == model_.end()) {
      if (rc != -HX_ENOENT) Fail("translate of an unmapped va returned %d", rc);
      return;
    }
    const MLeaf &l = it->second;
    hx_u32 prot = nx_ ? l.prot : l.prot | X;
    if (rc != 0 || x.pa != l.pa + (va - it->first) || x.page_size != l.size ||
        x.level != walker::level_of_size(l.size) || x.prot != prot)
      Fail("translate: rc %d pa %#" PRIx64 " size %#" PRIx64 " level %u prot %u; model pa %#" PRIx64
           " size %#" PRIx64 " prot %u",
           rc, x.pa, x.page_size, x.level, x.prot, l.pa + (va - it->first), l.size, prot);
  }

  void OpCpu() {
    unsigned cpu = static_cast<unsigned>(Below(hx_nr_cpu_ids()));
    if (cpus_ & (1ul << cpu)) {
      Note("cpu %u leaves", cpu);
      htable_hat_cpu_leave(hat_, cpu);
      cpus_ &= ~(1ul << cpu);
    } else {
      Note("cpu %u enters", cpu);
      htable_hat_cpu_enter(hat_, cpu);
      cpus_ |= 1ul << cpu;
    }
  }

  void OpRecreate() {
    Note("destroy the hat and create a new one");
    FullCheck();
    DestroyHat();
    NewHat();
  }

  void NewHat() {
    levels_ = Chance(50) ? 5 : 4;
    nx_ = Chance(85);
    gbpages_ = Chance(85);
    hxhost::set_paging_levels(levels_);
    hxhost::set_nx(nx_);
    hxhost::set_gbpages(gbpages_);
    if (htable_hat_create(levels_, &hat_) != 0) Fail("htable_hat_create failed");
    top_ = htable_hat_top_pa(hat_);
    end_ = htable_user_va_end(levels_);
    if (end_ != walker::half_end(levels_) - k4K) Fail("htable_user_va_end(%u) is %#" PRIx64, levels_, end_);
    model_.clear();
    cpus_ = 0;
    n_hats_++;
    CheckCounts("create");
  }

  // Everything goes, the CPUs having left first.
  void DestroyHat() {
    for (unsigned cpu = 0; cpu < hx_nr_cpu_ids(); cpu++)
      if (cpus_ & (1ul << cpu)) htable_hat_cpu_leave(hat_, cpu);
    cpus_ = 0;
    htable_hat_destroy(hat_);
    hat_ = nullptr;
    if (hxhost::pages_live() != base_pages_ || hxhost::kmem_live() != base_kmem_)
      Fail("destroy leaked: %" PRIu64 " pages, %" PRIu64 " kmem", hxhost::pages_live() - base_pages_,
           hxhost::kmem_live() - base_kmem_);
    if (Stat("tables_live") != 0 || Stat("hats_live") != 0) Fail("destroy: tables_live or hats_live not 0");
  }

  u64 seed_, ops_, op_ = 0;
  bool verbose_;
  std::mt19937_64 rng_;
  std::deque<std::string> history_;

  htable_hat *hat_ = nullptr;
  u64 top_ = 0;
  u64 end_ = 0;  // htable_user_va_end(): what may be mapped is below it
  unsigned levels_ = 4;
  int nx_ = 1, gbpages_ = 1;
  unsigned long cpus_ = 0;  // the CPUs the model has on the hat
  std::map<u64, MLeaf> model_;
  u64 base_pages_ = 0, base_kmem_ = 0;

  u64 n_map_ok_ = 0, n_map_eexist_ = 0, n_map_enomem_ = 0, n_map_einval_ = 0;
  u64 n_unmap_ok_ = 0, n_unmap_einval_ = 0, n_translate_ = 0, n_flush_ = 0, n_hats_ = 0;
  u64 max_leaves_ = 0, max_tables_ = 0;
};

u64 ParseNumber(const char *s, const char *what) {
  char *end;
  u64 v = std::strtoull(s, &end, 0);
  if (!*s || *end) {
    std::fprintf(stderr, "model_test: bad %s '%s'\n", what, s);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char **argv) {
  u64 seed = 1, ops = 200000;
  bool verbose = false;
  if (const char *s = std::getenv("HTABLE_SEED")) seed = ParseNumber(s, "HTABLE_SEED");
  if (const char *s = std::getenv("HTABLE_OPS")) ops = ParseNumber(s, "HTABLE_OPS");
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = ParseNumber(argv[++i], "seed");
    else if (!std::strcmp(argv[i], "--ops") && i + 1 < argc)
      ops = ParseNumber(argv[++i], "ops");
    else if (!std::strcmp(argv[i], "--verbose"))
      verbose = true;
    else {
      std::fprintf(stderr, "usage: %s [--seed S] [--ops N] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  return ModelTest(seed, ops, verbose).Run();
}
