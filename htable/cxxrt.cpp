// SPDX-License-Identifier: GPL-2.0
//
// The little C++ runtime the kernel build needs.  The core allocates with
// hx_kzalloc() explicitly; these exist so that a stray `new` links and fails
// softly (null, never a throw) instead of pulling in libstdc++.
#include "shim.h"

#ifndef HTABLE_HOST

void *operator new(hx_size_t size) noexcept { return hx_kzalloc(size); }
void *operator new[](hx_size_t size) noexcept { return hx_kzalloc(size); }
void operator delete(void *p) noexcept { hx_kfree(p); }
void operator delete[](void *p) noexcept { hx_kfree(p); }
void operator delete(void *p, hx_size_t) noexcept { hx_kfree(p); }
void operator delete[](void *p, hx_size_t) noexcept { hx_kfree(p); }

// Called through a vtable slot that was never overridden.
extern "C" void __cxa_pure_virtual(void);
extern "C" void __cxa_pure_virtual(void) { hx_warn(__FILE__, __LINE__, "pure virtual call"); }

#endif
