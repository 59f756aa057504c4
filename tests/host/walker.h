// SPDX-License-Identifier: GPL-2.0
//
// An independent walker of raw x86-64 page tables, for checking the core.
//
// It shares nothing with arch/x86/paging.h or htable/: the entry format and
// the level geometry are restated here from the Intel SDM (vol. 3A, 4.5), and
// the tables are read the way the MMU reads them, from the top table's
// physical address down.  On the host a physical address is the pointer
// (shim_host.cpp), so an entry's address field is dereferenced directly.
//
// Besides collecting leaves, a walk checks what every hierarchy the core
// builds must satisfy and reports violations as strings in Walk::errors.
//
// Attribute bits (HTABLE_A_GLOBAL, HTABLE_A_CACHE) put G and PAT/PCD/PWT into
// leaves: bit 7 of a 4 KiB leaf is its PAT bit and bit 12 of a large leaf is
// its PAT bit, so neither is an error.  A G bit is reported unless the
// caller says global leaves are expected (Options::allow_global).  A table
// that another hat links (a shared table) may be empty while linked:
// Options::may_be_empty lists the (level, va) of such tables.
#ifndef HTABLE_TESTS_HOST_WALKER_H
#define HTABLE_TESTS_HOST_WALKER_H

#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "shim_host.h"

namespace walker {

using u64 = std::uint64_t;

// ---- x86-64 facts ----------------------------------------------------------------
inline constexpr u64 kP = 1ull << 0;     // present
inline constexpr u64 kRW = 1ull << 1;    // writable
inline constexpr u64 kUS = 1ull << 2;    // user
inline constexpr u64 kPWT = 1ull << 3;   // write-through (PAT index bit 0)
inline constexpr u64 kPCD = 1ull << 4;   // cache disable (PAT index bit 1)
inline constexpr u64 kA = 1ull << 5;     // accessed
inline constexpr u64 kD = 1ull << 6;     // dirty
inline constexpr u64 kPS = 1ull << 7;    // page size (leaf) in a PDPTE/PDE; PAT in a PTE
inline constexpr u64 kPat4K = 1ull << 7; // PAT index bit 2 of a 4 KiB leaf
inline constexpr u64 kG = 1ull << 8;     // global
inline constexpr u64 kPatLarge = 1ull << 12;
inline constexpr u64 kNX = 1ull << 63;   // execute disable
inline constexpr u64 kAddr = 0x000ffffffffff000ull;  // bits 51:12
inline constexpr u64 kReservedHigh = 0x7ff0000000000000ull;  // bits 62:52 (ignored/PKE: keep 0)
inline constexpr unsigned kEntries = 512;
inline constexpr unsigned kKernelFirst = 256;  // top-level entries from here: kernel half

inline constexpr u64 k4K = 1ull << 12;
inline constexpr u64 k2M = 1ull << 21;
inline constexpr u64 k1G = 1ull << 30;

// Level 0 = PT (4 KiB leaves), 1 = PD (2 MiB), 2 = PDPT (1 GiB), 3 = PML4, 4 = PML5.
constexpr unsigned shift_of(unsigned level) { return 12 + 9 * level; }
constexpr u64 size_of(unsigned level) { return 1ull << shift_of(level); }
constexpr unsigned index_of(u64 va, unsigned level) { return (va >> shift_of(level)) & 511; }
// End of the lower canonical half: bit 47 (4 levels) or 56 (5 levels) clear
// below it.  (What the core lets one map ends a page earlier; see
// htable_user_va_end().)
constexpr u64 half_end(unsigned levels) { return levels == 5 ? 1ull << 56 : 1ull << 47; }
constexpr unsigned level_of_size(u64 size) {
  return size == k1G ? 2 : size == k2M ? 1 : 0;
}

inline const u64 *table_at(u64 pa) { return reinterpret_cast<const u64 *>(pa); }
inline u64 read_entry(u64 table_pa, unsigned i) {
  return __atomic_load_n(&table_at(table_pa)[i], __ATOMIC_RELAXED);
}

struct Leaf {
  u64 va;
  u64 pa;
  u64 size;
  unsigned level;
  u64 raw;
  bool operator==(const Leaf &o) const {
    return std::tie(va, pa, size, level, raw) == std::tie(o.va, o.pa, o.size, o.level, o.raw);
  }
};

struct Table {
  u64 pa;
  unsigned level;
  u64 va;          // first VA it covers
  unsigned valid;  // present entries (all 512; the user half only for the top)
  bool operator==(const Table &o) const {
    return std::tie(pa, level, va, valid) == std::tie(o.pa, o.level, o.va, o.valid);
  }
};

struct Options {
  bool allow_global = false;                       // G set in leaves is expected
  std::set<std::pair<unsigned, u64>> may_be_empty;  // (level, va) of shared tables
};

struct Walk {
  std::vector<Leaf> leaves;    // VA order
  std::vector<Table> tables;   // depth first, top first
  std::vector<std::string> errors;
  bool ok() const { return errors.empty(); }
  std::string error_text() const {
    std::string s;
    for (const auto &e : errors) s += e + "\n";
    return s;
  }
};

namespace detail {

inline std::string fmt(const char *f, u64 a, u64 b = 0, u64 c = 0) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), f, (unsigned long long)a, (unsigned long long)b,
                (unsigned long long)c);
  return buf;
}

inline void walk_table(Walk &w, std::set<u64> &seen, u64 pa, unsigned level, u64 base,
                       bool is_top, u64 lo, u64 hi, const Options &opt) {
  unsigned order = 0;
  if (!hxhost::is_live_page(table_at(pa), &order))
    w.errors.push_back(fmt("table %#llx (level %llu) is not a live page", pa, level));
  if (!seen.insert(pa).second) {
    w.errors.push_back(fmt("table %#llx reached twice", pa));
    return;
  }
  unsigned nentries = is_top ? kKernelFirst : kEntries;
  size_t me = w.tables.size();
  w.tables.push_back(Table{pa, level, base, 0});
  unsigned valid = 0;
  for (unsigned i = 0; i < nentries; i++) {
    u64 e = read_entry(pa, i);
    if (!(e & kP)) {
      if (e != 0) w.errors.push_back(fmt("non-present entry %#llx at %#llx is not 0", e, pa));
      continue;
    }
    valid++;
    u64 va = base + static_cast<u64>(i) * size_of(level);
    u64 span = size_of(level);
    bool in_range = va < hi && va + span > lo;
    if (e & kReservedHigh) w.errors.push_back(fmt("entry %#llx for va %#llx: high bits set", e, va));
    bool leaf = level == 0 || (e & kPS);
    if (leaf) {
      if (level > 2) {
        w.errors.push_back(fmt("leaf %#llx at level %llu (va %#llx)", e, level, va));
        continue;
      }
      u64 addr = e & kAddr & ~(span - 1);
      // Bit 12 of a large leaf is its PAT bit; address bits below the
      // leaf size other than that must be clear.
      if (level > 0 && (e & kAddr & (span - 1) & ~kPatLarge))
        w.errors.push_back(fmt("large leaf %#llx: low address bits set (va %#llx)", e, va));
      if ((e & kG) && !opt.allow_global) w.errors.push_back(fmt("leaf %#llx is global (va %#llx)", e, va));
      if (!(e & kUS)) w.errors.push_back(fmt("leaf %#llx lacks US (va %#llx)", e, va));
      if (in_range) w.leaves.push_back(Leaf{va, addr, span, level, e});
    } else {
      // A table pointer: permissions wide open, narrowed at the leaf, and
      // nothing else the core sets (the accessed bit is the hardware's).
      if ((e & (kRW | kUS)) != (kRW | kUS) || (e & kNX))
        w.errors.push_back(fmt("table entry %#llx for va %#llx is not RW|US without NX", e, va));
      if (e & (kPWT | kPCD | kD | kG))
        w.errors.push_back(fmt("table entry %#llx for va %#llx has leaf-only bits", e, va));
      if (in_range) walk_table(w, seen, e & kAddr, level - 1, va, false, lo, hi, opt);
    }
  }
  w.tables[me].valid = valid;
  if (!is_top && valid == 0 && !opt.may_be_empty.count({level, base}))
    w.errors.push_back(fmt("empty table %#llx at level %llu (va %#llx) left linked", pa, level, base));
}

}  // namespace detail

// Walk the user half of the hierarchy at @top_pa, descending only into
// entries that intersect [lo, hi); leaves outside it are not reported.
inline Walk walk(u64 top_pa, unsigned levels, u64 lo = 0, u64 hi = ~0ull, const Options &opt = Options()) {
  Walk w;
  std::set<u64> seen;
  if (top_pa & (2 * k4K - 1)) w.errors.push_back(detail::fmt("top %#llx not 8 KiB aligned", top_pa));
  detail::walk_table(w, seen, top_pa, levels - 1, 0, true, lo, hi, opt);
  return w;
}

// The leaf that maps @va, the way the MMU finds it; nullopt when none.
inline std::optional<Leaf> find(u64 top_pa, unsigned levels, u64 va) {
  u64 table = top_pa;
  for (int level = static_cast<int>(levels) - 1; level >= 0; level--) {
    u64 e = read_entry(table, index_of(va, level));
    if (!(e & kP)) return std::nullopt;
    if (level == 0 || (e & kPS)) {
      u64 span = size_of(level);
      return Leaf{va & ~(span - 1), e & kAddr & ~(span - 1), span, static_cast<unsigned>(level), e};
    }
    table = e & kAddr;
  }
  return std::nullopt;
}

// Number of tables on the path to @va, top included (the tables the MMU reads).
inline unsigned path_tables(u64 top_pa, unsigned levels, u64 va) {
  u64 table = top_pa;
  unsigned n = 0;
  for (int level = static_cast<int>(levels) - 1; level >= 0; level--) {
    n++;
    u64 e = read_entry(table, index_of(va, level));
    if (!(e & kP) || level == 0 || (e & kPS)) break;
    table = e & kAddr;
  }
  return n;
}

}  // namespace walker

#endif  // HTABLE_TESTS_HOST_WALKER_H
