// SPDX-License-Identifier: GPL-2.0
//
// The kernel build compiles the core as one translation unit.
//
// Inline functions that GCC keeps out of line (more of them under KASAN)
// are emitted in COMDAT groups, one copy per object.  Each copy also gets
// an entry in __patchable_function_entries (ftrace / call padding), and
// when `ld -r` folds the duplicate groups into one, the entries of the
// discarded copies point into discarded sections: a link error.  One
// translation unit has one copy of each.  The host build compiles the
// files separately, as usual.
#include "record.cpp"
#include "reserve.cpp"
#include "steal.cpp"
#include "hat.cpp"
#include "walk.cpp"
#include "capi.cpp"
#include "cxxrt.cpp"
