// SPDX-License-Identifier: GPL-2.0
/*
 * Shim: locks.  Each lock site in the core passes its own static key, so
 * lockdep keeps one class per site (see HX_MUTEX_CREATE in htable/base.h).
 */
#include <linux/build_bug.h>
#include <linux/lockdep.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "../htable/shim.h"

static_assert(sizeof(struct lock_class_key) <= sizeof(hx_lock_key),
	      "hx_lock_key too small for struct lock_class_key");

hx_mutex *hx_mutex_create(const char *name, hx_lock_key *key)
{
	struct mutex *m = kmalloc(sizeof(*m), GFP_KERNEL);

	if (m)
		__mutex_init(m, name, (struct lock_class_key *)key);
	return (hx_mutex *)m;
}

void hx_mutex_destroy(hx_mutex *m)
{
	mutex_destroy((struct mutex *)m);
	kfree(m);
}

void hx_mutex_lock(hx_mutex *m)
{
	mutex_lock((struct mutex *)m);
}

void hx_mutex_unlock(hx_mutex *m)
{
	mutex_unlock((struct mutex *)m);
}

void hx_mutex_assert_held(hx_mutex *m)
{
	lockdep_assert_held((struct mutex *)m);
}

int hx_mutex_trylock(hx_mutex *m)
{
	return mutex_trylock((struct mutex *)m);
}

hx_spinlock *hx_spin_lock_create(const char *name, hx_lock_key *key)
{
	spinlock_t *l = kmalloc(sizeof(*l), GFP_KERNEL);

	if (!l)
		return NULL;
#ifdef CONFIG_DEBUG_SPINLOCK	/* selected by lockdep: give the lock its site's class */
	__raw_spin_lock_init(spinlock_check(l), name, (struct lock_class_key *)key, LD_WAIT_CONFIG);
#else
	spin_lock_init(l);
#endif
	return (hx_spinlock *)l;
}

void hx_spin_lock_destroy(hx_spinlock *l)
{
	kfree(l);
}

void hx_spin_lock(hx_spinlock *l)
{
	spin_lock((spinlock_t *)l);
}

void hx_spin_unlock(hx_spinlock *l)
{
	spin_unlock((spinlock_t *)l);
}
