// SPDX-License-Identifier: GPL-2.0
//
// Control and inspection of the host shim (shim_host.cpp): the userspace
// implementation of htable/shim.h that the host tests link the core against.
//
// "Physical memory" is the process heap: hx_alloc_pages() returns zeroed,
// naturally aligned memory and a physical address is the pointer itself, so a
// test can walk the raw tables from htable_hat_top_pa() directly.
//
// Every allocation is tracked (leak counters, wrong-free detection) and can be
// made to fail on demand.  (Built with -DHXHOST_FAST, for the flatness
// benchmark's million tables, only the live counters and failure injection
// remain: no per-allocation record, no misuse checks on free, and
// is_live_page() is always true.)  Misuse of the shim (freeing an unknown pointer,
// a wrong order, unlocking a lock not held, asserting a lock not held,
// calling something that may sleep under a spinlock...) is counted as a shim
// error; hx_warn() calls are counted as warnings.  The test fixtures expect
// both to stay at 0.
#ifndef HTABLE_TESTS_HOST_SHIM_HOST_H
#define HTABLE_TESTS_HOST_SHIM_HOST_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shim.h"

namespace hxhost {

// Allocation kinds, usable as masks for failure injection.
enum AllocKind : unsigned {
  kPages = 1u << 0,     // hx_alloc_pages()
  kKzalloc = 1u << 1,   // hx_kzalloc()
  kKvzalloc = 1u << 2,  // hx_kvzalloc()
  kMutex = 1u << 3,     // hx_mutex_create() (a kmalloc in the kernel)
  kSpinlock = 1u << 4,  // hx_spin_lock_create() (a kmalloc in the kernel)
};
inline constexpr unsigned kNrAllocKinds = 5;
inline constexpr unsigned kPageFamily = kPages;
inline constexpr unsigned kKmemFamily = kKzalloc | kKvzalloc | kMutex | kSpinlock;
inline constexpr unsigned kAnyAlloc = kPageFamily | kKmemFamily;

// Back to defaults: no failure injection, no recorded flushes, warnings and
// shim errors at 0, CPU facts at their defaults (5 levels, gbpages, nx, 4
// CPUs, running on CPU 0).  Live allocations are not touched.
void reset();

// ---- failure injection -------------------------------------------------------

// Make the n-th (0-based) allocation from now whose kind is in @kinds fail,
// once.  Several such requests may be armed at once; each counts on its own.
void fail_nth(unsigned kinds, unsigned n);
inline void fail_nth_page(unsigned n) { fail_nth(kPageFamily, n); }
inline void fail_nth_kmem(unsigned n) { fail_nth(kKmemFamily, n); }
// Make every allocation whose kind is in @kinds fail until cleared (0).
void fail_all(unsigned kinds);
// Disarm everything.
void clear_failures();
// Allocations failed on purpose since reset(), and the kind of the last one.
std::uint64_t injected_failures();
AllocKind last_failed_kind();
// True while a fail_nth() request has not fired yet.
bool failure_pending();

// ---- leak counters -------------------------------------------------------------

std::uint64_t pages_live();  // hx_alloc_pages() allocations not yet freed
std::uint64_t kmem_live();   // kzalloc/kvzalloc/mutex/spinlock allocations not yet freed
std::uint64_t allocs_attempted(unsigned kinds);  // since process start
// Is [p, p + 4096) inside a live page allocation?  *order gets its order.
bool is_live_page(const void *p, unsigned *order = nullptr);

// ---- TLB flushes -----------------------------------------------------------------

struct FlushCall {
  std::vector<unsigned long> cpus;  // the bitmap, hx_cpumask_bytes() long
  hx_paddr_t top_pa;
  std::uint64_t va;
  std::uint64_t len;
  bool has_cpu(unsigned cpu) const {
    return cpu / (8 * sizeof(unsigned long)) < cpus.size() &&
           (cpus[cpu / (8 * sizeof(unsigned long))] >> (cpu % (8 * sizeof(unsigned long)))) & 1;
  }
  bool covers(std::uint64_t a, std::uint64_t n) const { return va <= a && a + n <= va + len; }
};
const std::vector<FlushCall> &flushes();
void clear_flushes();
// Called for every hx_flush_tlb_range(), before it returns, outside the
// shim's lock (the core's locks are held: only read lock-free state there).
// An empty function removes it; reset() does too.
void set_flush_hook(std::function<void(const FlushCall &)> hook);
// Called by every hx_alloc_pages() that may sleep, before it allocates,
// outside the shim's lock: where the kernel's allocator would enter reclaim
// (and so our shrinker), or another CPU could steal meanwhile.  The core
// holds no lock of its own there.  An empty function removes it; reset()
// does too.
void set_alloc_hook(std::function<void()> hook);

// An ordered log of page allocations, page frees and flushes, kept only while
// enabled: to check that a table page is freed only after the flush that
// stops every CPU from reaching it.
struct Event {
  enum Kind { kAllocPage, kFreePage, kFlush } kind;
  std::uint64_t addr;  // the page, or the flush's va
};
void record_events(bool on);  // also clears the log
const std::vector<Event> &events();

// ---- CPU facts -------------------------------------------------------------------

void set_paging_levels(unsigned levels);
void set_gbpages(int on);
void set_nx(int on);
void set_nr_cpu_ids(unsigned n);
void set_processor_id(unsigned cpu);

// ---- scheduling -----------------------------------------------------------------

std::uint64_t cond_resched_calls();  // since process start

// ---- warnings, misuse, logging -----------------------------------------------------

std::uint64_t warnings();  // hx_warn() calls since reset()
const std::vector<std::string> &warning_log();
std::uint64_t shim_errors();  // misuse of the shim since reset()
const std::vector<std::string> &shim_error_log();
void set_verbose(bool on);  // hx_log() to stderr; also HTABLE_VERBOSE=1
// Don't print misuse and hx_warn() reports (still counted): for tests that
// provoke them on purpose.  Not changed by reset().
void set_quiet(bool on);

}  // namespace hxhost

#endif  // HTABLE_TESTS_HOST_SHIM_HOST_H
