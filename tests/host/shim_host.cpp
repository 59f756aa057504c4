// SPDX-License-Identifier: GPL-2.0
//
// The host implementation of htable/shim.h: what module/shim_*.c and
// arch/x86/{cpu,tlb}.c provide in the kernel, done in userspace with leak
// counters, fail-on-demand allocation and a record of TLB flush requests.
// See shim_host.h for the test-facing side.
#include "shim_host.h"

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include <sys/mman.h>

namespace hxhost {
namespace {

struct Injector {
  unsigned kinds;
  std::uint64_t countdown;  // matching allocations to let through first
};

struct Alloc {
  AllocKind kind;
  std::size_t bytes;
  unsigned order;  // pages only
};

// All shim state, behind one lock (the core may be driven from several
// threads by a test).  A function-local static avoids init-order trouble.
struct State {
  std::mutex lock;
  std::map<std::uintptr_t, Alloc> live;  // ordered: containment lookups for pages
  std::uint64_t pages_live = 0;
  std::uint64_t kmem_live = 0;
  std::uint64_t attempted[kNrAllocKinds] = {};
  std::uint64_t cond_resched_calls = 0;

  std::vector<Injector> injectors;
  unsigned fail_all_kinds = 0;
  std::uint64_t injected = 0;
  AllocKind last_failed = kPages;

  std::vector<FlushCall> flushes;
  std::function<void(const FlushCall &)> flush_hook;
  std::function<void()> alloc_hook;
  bool record_events = false;
  std::vector<Event> events;

  unsigned paging_levels = 5;
  int gbpages = 1;
  int nx = 1;
  unsigned nr_cpu_ids = 4;
  unsigned processor_id = 0;

  std::uint64_t warnings = 0;
  std::vector<std::string> warning_log;
  std::uint64_t shim_errors = 0;
  std::vector<std::string> shim_error_log;
  bool verbose = false;
  bool quiet = false;
};

State &S() {
  static State *s = [] {
    auto *st = new State;
    const char *v = std::getenv("HTABLE_VERBOSE");
    st->verbose = v && *v && std::strcmp(v, "0") != 0;
    return st;
  }();
  return *s;
}

// Spinlocks held by this thread: nothing that may sleep is allowed then.
thread_local unsigned t_spin_depth = 0;

void shim_error(const std::string &what);

void might_sleep(const char *fn) {
  if (t_spin_depth) shim_error(std::string(fn) + ": may sleep, called under a spinlock");
}

unsigned kind_index(AllocKind k) { return static_cast<unsigned>(__builtin_ctz(k)); }

// Caller holds S().lock.
void shim_error_locked(const std::string &what) {
  State &s = S();
  s.shim_errors++;
  s.shim_error_log.push_back(what);
  if (!s.quiet) std::fprintf(stderr, "shim_host: misuse: %s\n", what.c_str());
}

void shim_error(const std::string &what) {
  std::lock_guard<std::mutex> g(S().lock);
  shim_error_locked(what);
}

// Decide whether this allocation fails, and count it.  Caller holds the lock.
bool should_fail_locked(AllocKind kind) {
  State &s = S();
  s.attempted[kind_index(kind)]++;
  bool fail = (s.fail_all_kinds & kind) != 0;
  for (auto it = s.injectors.begin(); it != s.injectors.end();) {
    if (!(it->kinds & kind)) {
      ++it;
    } else if (it->countdown == 0) {
      fail = true;
      it = s.injectors.erase(it);
    } else {
      it->countdown--;
      ++it;
    }
  }
  if (fail) {
    s.injected++;
    s.last_failed = kind;
  }
  return fail;
}

#ifdef HXHOST_FAST
// The flatness benchmark's shim (flat_test, built with -DHXHOST_FAST): a
// million table pages, so no per-allocation bookkeeping -- live counts only
// (what the benchmark's leak check needs), no misuse checks on free, and
// single pages carved from 2 MiB chunks with a free list instead of one
// aligned_alloc() each (which would double the memory).
struct PagePool {
  std::vector<void *> chunks;
  std::vector<void *> free_pages;
  char *next = nullptr, *end = nullptr;
  ~PagePool() {
    for (void *c : chunks) std::free(c);
  }
};
PagePool &Pool() {
  static PagePool *p = new PagePool;  // never destroyed: pages may outlive static destructors
  return *p;
}
void *pool_alloc() {
  PagePool &p = Pool();
  void *page;
  if (!p.free_pages.empty()) {
    page = p.free_pages.back();
    p.free_pages.pop_back();
  } else {
    if (p.next == p.end) {
      constexpr std::size_t kChunk = 64u << 20;
      p.next = static_cast<char *>(std::aligned_alloc(2u << 20, kChunk));
      if (!p.next) return nullptr;
      madvise(p.next, kChunk, MADV_HUGEPAGE);  // fewer page faults for a few GiB
      p.end = p.next + kChunk;
      p.chunks.push_back(p.next);
    }
    page = p.next;
    p.next += HX_PAGE_SIZE;
  }
  std::memset(page, 0, HX_PAGE_SIZE);
  return page;
}
#endif

// Allocate and register @bytes of zeroed memory, aligned to @align.
void *tracked_alloc(AllocKind kind, std::size_t bytes, std::size_t align, unsigned order) {
  State &s = S();
  std::lock_guard<std::mutex> g(s.lock);
  if (should_fail_locked(kind)) return nullptr;
#ifdef HXHOST_FAST
  void *fp = kind == kPages && order == 0 ? pool_alloc() : std::aligned_alloc(align, (bytes + align - 1) / align * align);
  if (!fp) return nullptr;
  if (!(kind == kPages && order == 0)) std::memset(fp, 0, bytes);
  (kind == kPages ? s.pages_live : s.kmem_live)++;
  return fp;
#endif
  // aligned_alloc() wants a size that is a multiple of the alignment.
  void *p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  if (!p) return nullptr;
  std::memset(p, 0, bytes);
  s.live[reinterpret_cast<std::uintptr_t>(p)] = Alloc{kind, bytes, order};
  if (s.record_events && kind == kPages) s.events.push_back(Event{Event::kAllocPage, reinterpret_cast<std::uint64_t>(p)});
  if (kind == kPages)
    s.pages_live++;
  else
    s.kmem_live++;
  return p;
}

// Unregister and free @p, which must be a live allocation of a kind in
// @kinds (and of @order for pages).
void tracked_free(const void *p, unsigned kinds, unsigned order, const char *fn) {
  State &s = S();
  std::lock_guard<std::mutex> g(s.lock);
#ifdef HXHOST_FAST
  (void)fn;
  if (kinds == kPages) {
    s.pages_live--;
    if (order == 0) {
      Pool().free_pages.push_back(const_cast<void *>(p));
      return;
    }
  } else {
    s.kmem_live--;
  }
  std::free(const_cast<void *>(p));
  return;
#endif
  auto it = s.live.find(reinterpret_cast<std::uintptr_t>(p));
  char buf[160];
  if (it == s.live.end()) {
    std::snprintf(buf, sizeof(buf), "%s(%p): not a live allocation (double free?)", fn, p);
    shim_error_locked(buf);
    return;  // leave it alone: it may not be ours at all
  }
  if (!(it->second.kind & kinds)) {
    std::snprintf(buf, sizeof(buf), "%s(%p): allocated as kind %u", fn, p, it->second.kind);
    shim_error_locked(buf);
  }
  if (it->second.kind == kPages && it->second.order != order) {
    std::snprintf(buf, sizeof(buf), "%s(%p, order %u): allocated with order %u", fn, p, order,
                  it->second.order);
    shim_error_locked(buf);
  }
  if (s.record_events && it->second.kind == kPages)
    s.events.push_back(Event{Event::kFreePage, reinterpret_cast<std::uint64_t>(p)});
  if (it->second.kind == kPages)
    s.pages_live--;
  else
    s.kmem_live--;
  s.live.erase(it);
  std::free(const_cast<void *>(p));
}

bool is_live_page_locked(const void *p, unsigned *order) {
#ifdef HXHOST_FAST
  (void)p;
  if (order) *order = 0;
  return true;  // not tracked
#endif
  State &s = S();
  auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = s.live.upper_bound(a);
  if (it == s.live.begin()) return false;
  --it;
  if (it->second.kind != kPages) return false;
  if (a + HX_PAGE_SIZE > it->first + it->second.bytes) return false;
  if (order) *order = it->second.order;
  return true;
}

}  // namespace

// ---- control / inspection (shim_host.h) ----------------------------------------

void reset() {
  State &s = S();
  std::lock_guard<std::mutex> g(s.lock);
  s.injectors.clear();
  s.fail_all_kinds = 0;
  s.injected = 0;
  s.last_failed = kPages;
  s.flushes.clear();
  s.flush_hook = nullptr;
  s.alloc_hook = nullptr;
  s.record_events = false;
  s.events.clear();
  s.paging_levels = 5;
  s.gbpages = 1;
  s.nx = 1;
  s.nr_cpu_ids = 4;
  s.processor_id = 0;
  s.warnings = 0;
  s.warning_log.clear();
  s.shim_errors = 0;
  s.shim_error_log.clear();
}

void fail_nth(unsigned kinds, unsigned n) {
  std::lock_guard<std::mutex> g(S().lock);
  S().injectors.push_back(Injector{kinds, n});
}

void fail_all(unsigned kinds) {
  std::lock_guard<std::mutex> g(S().lock);
  S().fail_all_kinds = kinds;
}

void clear_failures() {
  std::lock_guard<std::mutex> g(S().lock);
  S().injectors.clear();
  S().fail_all_kinds = 0;
}

std::uint64_t injected_failures() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().injected;
}

AllocKind last_failed_kind() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().last_failed;
}

bool failure_pending() {
  std::lock_guard<std::mutex> g(S().lock);
  return !S().injectors.empty();
}

std::uint64_t pages_live() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().pages_live;
}

std::uint64_t kmem_live() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().kmem_live;
}

std::uint64_t allocs_attempted(unsigned kinds) {
  std::lock_guard<std::mutex> g(S().lock);
  std::uint64_t n = 0;
  for (unsigned i = 0; i < kNrAllocKinds; i++)
    if (kinds & (1u << i)) n += S().attempted[i];
  return n;
}

bool is_live_page(const void *p, unsigned *order) {
  std::lock_guard<std::mutex> g(S().lock);
  return is_live_page_locked(p, order);
}

const std::vector<FlushCall> &flushes() { return S().flushes; }

void clear_flushes() {
  std::lock_guard<std::mutex> g(S().lock);
  S().flushes.clear();
}

void set_flush_hook(std::function<void(const FlushCall &)> hook) {
  std::lock_guard<std::mutex> g(S().lock);
  S().flush_hook = std::move(hook);
}

void set_alloc_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> g(S().lock);
  S().alloc_hook = std::move(hook);
}

void record_events(bool on) {
  std::lock_guard<std::mutex> g(S().lock);
  S().record_events = on;
  S().events.clear();
}

const std::vector<Event> &events() { return S().events; }

void set_paging_levels(unsigned levels) { S().paging_levels = levels; }
void set_gbpages(int on) { S().gbpages = on; }
void set_nx(int on) { S().nx = on; }
void set_nr_cpu_ids(unsigned n) { S().nr_cpu_ids = n; }
void set_processor_id(unsigned cpu) { S().processor_id = cpu; }

std::uint64_t warnings() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().warnings;
}
const std::vector<std::string> &warning_log() { return S().warning_log; }

std::uint64_t shim_errors() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().shim_errors;
}
const std::vector<std::string> &shim_error_log() { return S().shim_error_log; }

void set_verbose(bool on) { S().verbose = on; }
void set_quiet(bool on) { S().quiet = on; }

std::uint64_t cond_resched_calls() {
  std::lock_guard<std::mutex> g(S().lock);
  return S().cond_resched_calls;
}

}  // namespace hxhost

using namespace hxhost;

// ---- the shim (htable/shim.h) ----------------------------------------------------

// A kernel struct mutex, with the owner tracked for hx_mutex_assert_held().
struct hx_mutex {
  std::mutex m;
  std::atomic<std::thread::id> owner{};
  const char *name;
  hx_lock_key *key;
};

extern "C" {

void *hx_alloc_pages(unsigned int order, unsigned int flags) {
  if (order > 10) {
    shim_error("hx_alloc_pages: absurd order");
    return nullptr;
  }
  if (flags & ~(HX_ALLOC_ACCOUNT | HX_ALLOC_NOWAIT)) shim_error("hx_alloc_pages: unknown flags");
  if (!(flags & HX_ALLOC_NOWAIT)) might_sleep("hx_alloc_pages");
  std::function<void()> hook;
  if (!(flags & HX_ALLOC_NOWAIT)) {
    std::lock_guard<std::mutex> g(S().lock);
    hook = S().alloc_hook;
  }
  if (hook) hook();
  // The buddy allocator returns blocks aligned to their size.
  std::size_t bytes = static_cast<std::size_t>(HX_PAGE_SIZE) << order;
  return tracked_alloc(kPages, bytes, bytes, order);
}

void hx_free_pages(void *kva, unsigned int order) {
  if (!kva) {
    shim_error("hx_free_pages(NULL)");
    return;
  }
  tracked_free(kva, kPages, order, "hx_free_pages");
}

// Physical memory is the heap: a physical address is the pointer.
hx_paddr_t hx_virt_to_phys(const void *kva) {
  if (!is_live_page(kva)) shim_error("hx_virt_to_phys: not in a live page");
  return reinterpret_cast<hx_paddr_t>(kva);
}

void *hx_phys_to_virt(hx_paddr_t pa) { return reinterpret_cast<void *>(pa); }

void *hx_kzalloc(hx_size_t size) {
  might_sleep("hx_kzalloc");
  return tracked_alloc(kKzalloc, size ? size : 1, alignof(std::max_align_t), 0);
}

void *hx_kvzalloc(hx_size_t size) {
  might_sleep("hx_kvzalloc");
  return tracked_alloc(kKvzalloc, size ? size : 1, alignof(std::max_align_t), 0);
}

void hx_kfree(const void *p) {
  if (p) tracked_free(p, kKzalloc, 0, "hx_kfree");
}

void hx_kvfree(const void *p) {
  // kvfree() takes kmalloc'ed memory as well as vmalloc'ed.
  if (p) tracked_free(p, kKzalloc | kKvzalloc, 0, "hx_kvfree");
}

hx_mutex *hx_mutex_create(const char *name, hx_lock_key *key) {
  if (!key) shim_error("hx_mutex_create: no lock class key");
  might_sleep("hx_mutex_create");
  void *p = tracked_alloc(kMutex, sizeof(hx_mutex), alignof(hx_mutex), 0);
  if (!p) return nullptr;
  auto *m = new (p) hx_mutex;
  m->name = name;
  m->key = key;
  return m;
}

void hx_mutex_destroy(hx_mutex *m) {
  if (!m) {
    shim_error("hx_mutex_destroy(NULL)");
    return;
  }
  if (m->owner.load() != std::thread::id()) shim_error("hx_mutex_destroy: mutex is held");
  m->~hx_mutex();
  tracked_free(m, kMutex, 0, "hx_mutex_destroy");
}

void hx_mutex_lock(hx_mutex *m) {
  might_sleep("hx_mutex_lock");
  if (m->owner.load() == std::this_thread::get_id()) {
    // A kernel mutex is not recursive: this would hang.  Say so and stop.
    std::fprintf(stderr, "shim_host: recursive hx_mutex_lock(%s)\n", m->name);
    std::abort();
  }
  m->m.lock();
  m->owner.store(std::this_thread::get_id());
}

void hx_mutex_unlock(hx_mutex *m) {
  if (m->owner.load() != std::this_thread::get_id()) {
    shim_error(std::string("hx_mutex_unlock: not held: ") + m->name);
    return;
  }
  m->owner.store(std::thread::id());
  m->m.unlock();
}

int hx_mutex_trylock(hx_mutex *m) {
  // A trylock never sleeps; trying a mutex this thread holds just fails.
  if (m->owner.load() == std::this_thread::get_id()) return 0;
  if (!m->m.try_lock()) return 0;
  m->owner.store(std::this_thread::get_id());
  return 1;
}

void hx_mutex_assert_held(hx_mutex *m) {
  if (m->owner.load() != std::this_thread::get_id())
    shim_error(std::string("hx_mutex_assert_held: not held: ") + m->name);
}

// A spinlock_t, with the owner tracked to catch recursion and foreign unlocks.
struct hx_spinlock {
  std::mutex m;
  std::atomic<std::thread::id> owner{};
  const char *name;
  hx_lock_key *key;
};

hx_spinlock *hx_spin_lock_create(const char *name, hx_lock_key *key) {
  if (!key) shim_error("hx_spin_lock_create: no lock class key");
  might_sleep("hx_spin_lock_create");
  void *p = tracked_alloc(kSpinlock, sizeof(hx_spinlock), alignof(hx_spinlock), 0);
  if (!p) return nullptr;
  auto *l = new (p) hx_spinlock;
  l->name = name;
  l->key = key;
  return l;
}

void hx_spin_lock_destroy(hx_spinlock *l) {
  if (!l) {
    shim_error("hx_spin_lock_destroy(NULL)");
    return;
  }
  if (l->owner.load() != std::thread::id()) shim_error("hx_spin_lock_destroy: lock is held");
  l->~hx_spinlock();
  tracked_free(l, kSpinlock, 0, "hx_spin_lock_destroy");
}

void hx_spin_lock(hx_spinlock *l) {
  if (l->owner.load() == std::this_thread::get_id()) {
    std::fprintf(stderr, "shim_host: recursive hx_spin_lock(%s)\n", l->name);
    std::abort();
  }
  l->m.lock();
  l->owner.store(std::this_thread::get_id());
  t_spin_depth++;
}

void hx_spin_unlock(hx_spinlock *l) {
  if (l->owner.load() != std::this_thread::get_id()) {
    shim_error(std::string("hx_spin_unlock: not held: ") + l->name);
    return;
  }
  t_spin_depth--;
  l->owner.store(std::thread::id());
  l->m.unlock();
}

void hx_cond_resched(void) {
  might_sleep("hx_cond_resched");
  std::lock_guard<std::mutex> g(S().lock);
  S().cond_resched_calls++;
}

unsigned int hx_nr_cpu_ids(void) { return S().nr_cpu_ids; }
unsigned int hx_smp_processor_id(void) { return S().processor_id; }
hx_size_t hx_cpumask_bytes(void) { return sizeof(unsigned long); }

void hx_flush_tlb_range(const unsigned long *cpus, hx_paddr_t top_pa, hx_u64 va, hx_u64 len) {
  might_sleep("hx_flush_tlb_range");
  if (len == 0 || va + len < va) shim_error("hx_flush_tlb_range: empty or wrapping range");
  FlushCall c;
  c.cpus.assign(cpus, cpus + hx_cpumask_bytes() / sizeof(unsigned long));
  c.top_pa = top_pa;
  c.va = va;
  c.len = len;
  std::function<void(const FlushCall &)> hook;
  {
    std::lock_guard<std::mutex> g(S().lock);
    S().flushes.push_back(c);
    if (S().record_events) S().events.push_back(Event{Event::kFlush, va});
    hook = S().flush_hook;
  }
  if (hook) hook(c);
}

unsigned int hx_paging_levels(void) { return S().paging_levels; }
int hx_cpu_has_gbpages(void) { return S().gbpages; }
int hx_cpu_has_nx(void) { return S().nx; }

void hx_log(int level, const char *fmt, ...) {
  if (!S().verbose) return;
  std::fprintf(stderr, "htable[%d]: ", level);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

void hx_warn(const char *file, int line, const char *what) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s:%d: %s", file, line, what);
  std::lock_guard<std::mutex> g(S().lock);
  if (!S().quiet) std::fprintf(stderr, "hx_warn: %s\n", buf);
  S().warnings++;
  S().warning_log.push_back(buf);
}

}  // extern "C"
