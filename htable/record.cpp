// SPDX-License-Identifier: GPL-2.0
//
// The record's treap (see record.h).
#include "record.h"

namespace htable {

hx_u64 Record::Prio(hx_u64 va) {
  hx_u64 x = (va >> 12) * 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 31);
}

PaArray *Record::NewPaArray(hx_u64 n) {
  auto *a = static_cast<PaArray *>(core_kvzalloc(sizeof(PaArray) + n * sizeof(hx_paddr_t)));
  if (a) {
    a->refs = 1;
    a->n = n;
  }
  return a;
}

void Record::PutPaArray(PaArray *a) {
  if (a && --a->refs == 0) hx_kvfree(a);
}

// Split @t into keys < va (@l) and >= va (@r).
void Record::Split(Extent *t, hx_u64 va, Extent **l, Extent **r) {
  if (!t) {
    *l = *r = nullptr;
  } else if (t->va < va) {
    Split(t->right, va, &t->right, r);
    *l = t;
  } else {
    Split(t->left, va, l, &t->left);
    *r = t;
  }
}

// Every key of @l is below every key of @r.
Extent *Record::Merge(Extent *l, Extent *r) {
  if (!l) return r;
  if (!r) return l;
  if (l->prio > r->prio) {
    l->right = Merge(l->right, r);
    return l;
  }
  r->left = Merge(l, r->left);
  return r;
}

const Extent *Record::Find(hx_u64 va) const {
  const Extent *e = LowerBound(va);
  return e && e->va <= va ? e : nullptr;
}

const Extent *Record::LowerBound(hx_u64 va) const {
  const Extent *best = nullptr;
  for (const Extent *t = root_; t;) {
    if (t->end() > va) {
      best = t;
      t = t->left;
    } else {
      t = t->right;
    }
  }
  return best;
}

bool Record::Overlaps(hx_u64 va, hx_u64 end) const {
  const Extent *e = LowerBound(va);
  return e && e->va < end;
}

Status Record::Insert(const Extent &src, hx_u64 *id) {
  auto *n = static_cast<Extent *>(core_kzalloc(sizeof(Extent)));
  if (!n) return Status::Err(HX_ENOMEM);
  new (n) Extent(src);
  n->left = n->right = nullptr;
  n->prio = Prio(n->va);
  n->id = next_id_++;
  if (id) *id = n->id;
  if (n->pages) n->pages->refs++;
  Extent *l, *r;
  Split(root_, n->va, &l, &r);
  root_ = Merge(Merge(l, n), r);
  count_++;
  bytes_ += n->len;
  return Status::Ok();
}

Status Record::ReserveNodes() {
  for (Extent *&s : spare_) {
    if (!s) s = static_cast<Extent *>(core_kzalloc(sizeof(Extent)));
    if (!s) return Status::Err(HX_ENOMEM);
  }
  return Status::Ok();
}

Extent *Record::TakeSpare() {
  for (Extent *&s : spare_) {
    if (s) {
      Extent *e = s;
      s = nullptr;
      return e;
    }
  }
  return nullptr;
}

// Make @va an extent boundary: an extent [a, b) with a < va < b becomes
// [a, va) and [va, b).  Boundaries fall on leaf boundaries of the extent
// (callers align), so both halves keep whole leaves.
void Record::SplitAt(hx_u64 va) {
  const Extent *c = Find(va);
  if (!c || c->va == va) return;
  auto *e = const_cast<Extent *>(c);
  Extent *hi = TakeSpare();
  if (HX_WARN_ONCE(!hi, "record split without a reserved node")) return;
  if (HX_WARN_ONCE((va - e->va) & (e->leaf_size() - 1), "record split inside a leaf")) {
    hx_kfree(hi);
    return;
  }
  new (hi) Extent(*e);
  hi->left = hi->right = nullptr;
  hi->va = va;
  hi->len = e->end() - va;
  hi->prio = Prio(va);
  if (e->pages) {
    hi->first = e->first + ((va - e->va) >> (12 + 9 * e->level));
    e->pages->refs++;
  } else {
    hi->pa_base = e->pa_base + (va - e->va);
  }
  e->len = va - e->va;
  Extent *l, *r;
  Split(root_, va, &l, &r);
  root_ = Merge(Merge(l, hi), r);
  count_++;
}

void Record::Demote(hx_u64 va, hx_u64 *leaf_va, hx_u64 *leaf_len) {
  const Extent *c = Find(va);
  *leaf_va = *leaf_len = 0;
  if (!c || c->level == 0 || c->share_table) return;
  hx_u64 size = c->leaf_size();
  hx_u64 start = va & ~(size - 1);
  *leaf_va = start;
  *leaf_len = size;
  SplitAt(start);
  SplitAt(start + size);
  auto *e = const_cast<Extent *>(Find(va));
  e->pa_base = e->pa_of(start);
  if (e->pages) {
    PutPaArray(e->pages);
    e->pages = nullptr;
    e->first = 0;
  }
  e->level = 0;
}

void Record::Cut(hx_u64 va, hx_u64 end) {
  SplitAt(va);
  SplitAt(end);
  Extent *l, *mid, *r;
  Split(root_, va, &l, &mid);
  Split(mid, end, &mid, &r);
  root_ = Merge(l, r);
  // Everything in mid lies inside [va, end) now.
  FreeTree(mid, this);
}

// Free a subtree in O(n) without recursion or a stack: rotate left
// children up until the node has none, then free it and go right.
// Callers hold the hat's mutex at most: a tree of a million extents gets
// scheduling points.
void Record::FreeTree(Extent *t, Record *acct) {
  for (hx_u64 n = 1; t; n++) {
    if (!(n % 256)) hx_cond_resched();
    if (t->left) {
      Extent *l = t->left;
      t->left = l->right;
      l->right = t;
      t = l;
      continue;
    }
    Extent *r = t->right;
    if (acct) {
      acct->count_--;
      acct->bytes_ -= t->len;
    }
    PutPaArray(t->pages);
    hx_kfree(t);
    t = r;
  }
}

void Record::Clear() {
  FreeTree(root_, nullptr);
  root_ = nullptr;
  count_ = bytes_ = 0;
  for (Extent *&s : spare_) {
    hx_kfree(s);
    s = nullptr;
  }
}

}  // namespace htable
