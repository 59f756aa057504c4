// SPDX-License-Identifier: GPL-2.0
//
// The freestanding base of the core: what a hosted C++ program would take
// from <new>, <atomic> and friends, kept tiny because the kernel build has
// no C++ standard library (-nostdinc++ -ffreestanding).
#ifndef HTABLE_BASE_H
#define HTABLE_BASE_H

#include "shim.h"

#ifdef HTABLE_HOST
#include <new>  // placement new; the host build links libstdc++
#else
// Placement new, normally from <new>.
inline void *operator new(hx_size_t, void *p) noexcept { return p; }
#endif

// Thread-safety annotations in the style of Zircon's TA_* macros.  GCC
// ignores them; they document which lock guards what, and clang's
// -Wthread-safety can check them on the host build.
#if defined(__clang__)
#define TA_GUARDED(x) __attribute__((guarded_by(x)))
#define TA_REQ(x) __attribute__((requires_capability(x)))
#else
#define TA_GUARDED(x)
#define TA_REQ(x)
#endif

namespace htable {

// One status type that fits in a register: 0 or a negative errno.  Turned
// into an errno only at the C boundary (htable/capi.cpp).
class [[nodiscard]] Status {
 public:
  constexpr Status() : err_(0) {}
  static constexpr Status Ok() { return Status(); }
  static constexpr Status Err(int positive_errno) { return Status(-positive_errno); }
  constexpr bool ok() const { return err_ == 0; }
  constexpr int to_errno() const { return err_; }  // 0 or -E...
  constexpr bool operator==(const Status &o) const { return err_ == o.err_; }

 private:
  constexpr explicit Status(int e) : err_(e) {}
  int err_;
};

// Broken invariants warn once per site and the caller returns an error:
// never a BUG().  The kernel's WARN gives the backtrace and fails the guest.
#define HX_WARN_ONCE(cond, what)                        \
  ({                                                    \
    bool hx_c_ = !!(cond);                              \
    static bool hx_warned_;                             \
    if (__builtin_expect(hx_c_, 0) && !hx_warned_) {    \
      hx_warned_ = true;                                \
      hx_warn(__FILE__, __LINE__, what);                \
    }                                                   \
    hx_c_;                                              \
  })

template <typename T>
constexpr T min(T a, T b) { return a < b ? a : b; }
template <typename T>
constexpr T max(T a, T b) { return a > b ? a : b; }

// Relaxed statistics counter; read with Load() for reporting only.
class Counter {
 public:
  void Add(hx_u64 n = 1) { __atomic_fetch_add(&v_, n, __ATOMIC_RELAXED); }
  void Sub(hx_u64 n = 1) { __atomic_fetch_sub(&v_, n, __ATOMIC_RELAXED); }
  void Max(hx_u64 n) {
    hx_u64 cur = Load();
    while (n > cur &&
           !__atomic_compare_exchange_n(&v_, &cur, n, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
  }
  hx_u64 Load() const { return __atomic_load_n(&v_, __ATOMIC_RELAXED); }

 private:
  hx_u64 v_ = 0;
};

// A scoped mutex holder; the shim's lock is a kernel struct mutex.
class MutexGuard {
 public:
  explicit MutexGuard(hx_mutex *m) : m_(m) { hx_mutex_lock(m_); }
  ~MutexGuard() { hx_mutex_unlock(m_); }
  MutexGuard(const MutexGuard &) = delete;
  MutexGuard &operator=(const MutexGuard &) = delete;

 private:
  hx_mutex *m_;
};

// Every allocation of the core goes through these, so that a test can make
// any one of them fail (htable_test_fail_allocs(), reserve.cpp).
bool htable_test_should_fail();
inline void *core_kzalloc(hx_size_t n) { return htable_test_should_fail() ? nullptr : hx_kzalloc(n); }
inline void *core_kvzalloc(hx_size_t n) {
  return htable_test_should_fail() ? nullptr : hx_kvzalloc(n);
}

// A scoped spinlock holder.
class SpinGuard {
 public:
  explicit SpinGuard(hx_spinlock *l) : l_(l) { hx_spin_lock(l_); }
  ~SpinGuard() { hx_spin_unlock(l_); }
  SpinGuard(const SpinGuard &) = delete;
  SpinGuard &operator=(const SpinGuard &) = delete;

 private:
  hx_spinlock *l_;
};

#define HX_SPIN_LOCK_CREATE(name)             \
  ({                                          \
    static hx_lock_key hx_key_;               \
    hx_spin_lock_create(name, &hx_key_);      \
  })

// Each call site gets its own lockdep class (see shim.h).
#define HX_MUTEX_CREATE(name)                 \
  ({                                          \
    static hx_lock_key hx_key_;               \
    hx_mutex_create(name, &hx_key_);          \
  })

}  // namespace htable

#endif  // HTABLE_BASE_H
