// SPDX-License-Identifier: GPL-2.0
/*
 * The "htable" shrinker: memory pressure takes page tables back.
 *
 * count_objects reports what htable_reap() could take right now (free
 * tables cached in hats, then unlocked, unshared tables in use: the steal
 * LRU); scan_objects steals up to the request.  Stealing never blocks on a
 * hat: a hat whose lock is held is skipped (its owner may be the allocation
 * that entered reclaim), so when nothing could be taken the answer is
 * SHRINK_STOP rather than a retry loop.  What a stolen table mapped stays
 * in the hat's record and is reloaded on the next access.
 *
 * Linux 6.7 replaced register_shrinker() by shrinker_alloc()/
 * shrinker_register()/shrinker_free(); both are supported, chosen at build
 * time.
 */
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/shrinker.h>
#include <linux/swap.h>
#include <linux/version.h>
#include <linux/workqueue.h>

#include "internal.h"

/* How costly our objects are to recreate, relative to others (the kernel's
 * DEFAULT_SEEKS is 2): higher means the VM asks us for fewer.  The steal
 * aggressiveness knob. */
static unsigned int shrinker_seeks = DEFAULT_SEEKS;
module_param(shrinker_seeks, uint, 0444);
MODULE_PARM_DESC(shrinker_seeks, "shrinker seeks: lower = reaped harder (default 2)");

static unsigned long htable_shrink_count(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long n = htable_reclaimable();

	return n ? n : SHRINK_EMPTY;
}

/*
 * Reclaim counts progress in pages it reclaimed from the LRUs plus what
 * shrinkers report through the task's reclaim_state (the slab allocator
 * does that for the slab pages it frees).  Our tables are plain pages: say
 * so, or direct reclaim that gets its memory only from us sees no progress
 * and heads for the OOM killer with tables still to give.  Only pages that
 * went back to the page allocator count (a stolen table may refill the
 * reserve instead); pages_live is module-wide, so concurrent allocations
 * can only make this an underestimate.
 */
static void htable_account_reclaimed(s64 pages_before)
{
	s64 gone = pages_before - htable_stat_read(HTABLE_STAT_PAGES_LIVE);

	if (gone <= 0)
		return;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	mm_account_reclaimed_pages(gone);
#else
	if (current->reclaim_state)
		current->reclaim_state->reclaimed_slab += gone;
#endif
}

/*
 * A steal holds a reference on its victim hat; when the owner closed its
 * fd meanwhile, the steal's put is the last and the hat waits to be freed
 * (with all its tables).  Not here, in reclaim: in a work item.
 */
static void htable_purge_fn(struct work_struct *work)
{
	htable_purge_dead();
}
static DECLARE_WORK(htable_purge_work, htable_purge_fn);

static unsigned long htable_shrink_scan(struct shrinker *s, struct shrink_control *sc)
{
	s64 pages = htable_stat_read(HTABLE_STAT_PAGES_LIVE);
	unsigned long freed = htable_reap(sc->nr_to_scan);

	if (htable_dead_pending())
		schedule_work(&htable_purge_work);
	htable_account_reclaimed(pages);
	htable_note_shrink(sc->nr_to_scan, freed);
	return freed ? freed : SHRINK_STOP;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)

static struct shrinker *htable_shrinker;

int htable_shrinker_init(void)
{
	htable_shrinker = shrinker_alloc(0, "htable");
	if (!htable_shrinker)
		return -ENOMEM;
	htable_shrinker->count_objects = htable_shrink_count;
	htable_shrinker->scan_objects = htable_shrink_scan;
	htable_shrinker->seeks = shrinker_seeks;
	shrinker_register(htable_shrinker);
	return 0;
}

void htable_shrinker_exit(void)
{
	shrinker_free(htable_shrinker);
	htable_shrinker = NULL;
	flush_work(&htable_purge_work);	/* no scan can queue it again */
}

#else

static struct shrinker htable_shrinker = {
	.count_objects = htable_shrink_count,
	.scan_objects = htable_shrink_scan,
	.seeks = DEFAULT_SEEKS,
};

int htable_shrinker_init(void)
{
	htable_shrinker.seeks = shrinker_seeks;
	return register_shrinker(&htable_shrinker, "htable");
}

void htable_shrinker_exit(void)
{
	unregister_shrinker(&htable_shrinker);
	flush_work(&htable_purge_work);	/* no scan can queue it again */
}

#endif
