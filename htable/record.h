// SPDX-License-Identifier: GPL-2.0
//
// The authoritative record of what a hat maps.
//
// Page tables are a cache: htable_steal() may take any unlocked, unshared
// table at any time, and the next access through it faults and is reloaded
// from here.  The seed leaves that job to the segment drivers above the
// HAT; here the core owns it.
//
// An extent is a run of leaves of one size and one set of attributes whose
// physical pages come either from a contiguous range (module-owned memory,
// large pages) or from an array (the pinned pages of a process buffer).
// Arrays are refcounted blocks so that splitting an extent (a partial unmap
// or protect) never copies them.
//
// Extents live in a treap ordered by VA: O(log n) to find the extent that
// covers an address, to insert, and to cut a range out.  Priorities are a
// hash of the VA, so the shape is deterministic for a given set of extents.
#ifndef HTABLE_RECORD_H
#define HTABLE_RECORD_H

#include "base.h"

namespace htable {

struct PaArray {
  hx_u64 refs;
  hx_u64 n;
  hx_paddr_t pa[];  // one per leaf
};

struct Extent {
  Extent *left = nullptr;
  Extent *right = nullptr;
  hx_u64 prio = 0;
  hx_u64 va = 0;
  hx_u64 len = 0;           // multiple of the leaf size
  hx_u32 attrs = 0;         // htable attribute bits (prot, cache, global)
  hx_u8 level = 0;          // leaf level: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB
  hx_u8 locked = 0;         // tables holding these leaves are not stealable
  hx_u64 id = 0;            // the Map that made it; pieces of a split keep it
  hx_u64 lock_call = 0;     // the Lock() call that locked it, for its undo
  PaArray *pages = nullptr; // null: contiguous from pa_base
  hx_u64 first = 0;         // index into pages->pa of the leaf at va
  hx_paddr_t pa_base = 0;
  // A shared range: [va, va + len) is the table share_table of hat
  // share_src, linked into this hat (see Hat::ShareFrom).  No leaves here.
  void *share_src = nullptr;
  void *share_table = nullptr;

  hx_u64 end() const { return va + len; }
  hx_u64 leaf_size() const { return 1ull << (12 + 9 * level); }
  hx_paddr_t pa_of(hx_u64 addr) const {  // physical address of the leaf at addr
    hx_u64 i = (addr - va) >> (12 + 9 * level);
    return pages ? pages->pa[first + i] : pa_base + (i << (12 + 9 * level));
  }
};

class Record {
 public:
  Record() = default;
  ~Record() { Clear(); }
  Record(const Record &) = delete;
  Record &operator=(const Record &) = delete;

  // The extent containing @va, or null.
  const Extent *Find(hx_u64 va) const;
  // The first extent that ends above @va (contains it or lies above), or null.
  const Extent *LowerBound(hx_u64 va) const;
  // True if any extent intersects [va, end).
  bool Overlaps(hx_u64 va, hx_u64 end) const;

  // Insert a new extent (copied) with a new id (stored in *id if not
  // null); the caller checked it overlaps nothing.  Takes a reference on
  // e.pages.  -ENOMEM leaves the record unchanged.
  Status Insert(const Extent &e, hx_u64 *id);

  // Remove [va, end) from the record, splitting extents at the ends.  A
  // split needs a new node: ReserveNodes() them first so that Cut(),
  // ForEachSplit() and Demote() cannot fail half way.
  static constexpr unsigned kSpares = 6;
  Status ReserveNodes();
  // ReserveNodes() only if an operation on [va, end) splits anything: one
  // whose ends are extent boundaries (and so cut no large leaf) allocates
  // nothing and cannot fail -- module/dev.c relies on that to undo a MAP.
  Status ReserveNodesFor(hx_u64 va, hx_u64 end) {
    const hx_u64 ends[] = {va, end};
    for (hx_u64 a : ends) {
      const Extent *e = Find(a);
      if (e && e->va != a) return ReserveNodes();
    }
    return Status::Ok();
  }
  void Cut(hx_u64 va, hx_u64 end);

  // The large leaf of the extent containing @va becomes a run of 4 KiB
  // leaves (same pages, same attributes), so that a change can cut inside
  // it.  Uses up to two reserved nodes.  Returns the leaf's old range.
  void Demote(hx_u64 va, hx_u64 *leaf_va, hx_u64 *leaf_len);

  // Apply @fn to every extent intersecting [va, end), first split at the
  // ends so each one lies wholly inside (same reservation rule as Cut).
  template <typename Fn>
  void ForEachSplit(hx_u64 va, hx_u64 end, Fn fn);

  void Clear();
  hx_u64 size() const { return count_; }
  hx_u64 bytes_mapped() const { return bytes_; }

  static PaArray *NewPaArray(hx_u64 n);
  static void PutPaArray(PaArray *a);

 private:
  static hx_u64 Prio(hx_u64 va);
  static void Split(Extent *t, hx_u64 va, Extent **l, Extent **r);  // l: < va
  static Extent *Merge(Extent *l, Extent *r);
  Extent *TakeSpare();
  void SplitAt(hx_u64 va);  // ensure no extent straddles va
  static void FreeTree(Extent *t, Record *acct);

  Extent *root_ = nullptr;
  Extent *spare_[kSpares] = {};
  hx_u64 count_ = 0;
  hx_u64 bytes_ = 0;
  hx_u64 next_id_ = 1;
};

template <typename Fn>
void Record::ForEachSplit(hx_u64 va, hx_u64 end, Fn fn) {
  SplitAt(va);
  SplitAt(end);
  for (const Extent *e = LowerBound(va); e && e->va < end; e = LowerBound(e->end()))
    fn(const_cast<Extent *>(e));
}

}  // namespace htable

#endif  // HTABLE_RECORD_H
