// SPDX-License-Identifier: GPL-2.0
//
// An intrusive doubly linked list, the core's stand-in for <list>.
#ifndef HTABLE_LIST_H
#define HTABLE_LIST_H

namespace htable {

struct ListNode {
  ListNode *prev = this;
  ListNode *next = this;
  void *owner = nullptr;  // the object this node is embedded in

  bool linked() const { return next != this; }
  void unlink() {
    prev->next = next;
    next->prev = prev;
    prev = next = this;
  }
};

class List {
 public:
  List() = default;
  List(const List &) = delete;
  List &operator=(const List &) = delete;

  bool empty() const { return head_.next == &head_; }
  ListNode *front() { return empty() ? nullptr : head_.next; }
  void push_back(ListNode *n) {
    n->prev = head_.prev;
    n->next = &head_;
    head_.prev->next = n;
    head_.prev = n;
  }
  void push_front(ListNode *n) {
    n->next = head_.next;
    n->prev = &head_;
    head_.next->prev = n;
    head_.next = n;
  }

 private:
  ListNode head_;
};

}  // namespace htable

#endif  // HTABLE_LIST_H
