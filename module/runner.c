// SPDX-License-Identifier: GPL-2.0
/*
 * Runners: one kthread worker bound to each online CPU, created at load and
 * on CPU hotplug.  A job over a range of a hat is split in slices, one per
 * requested CPU; each slice is queued to its CPU's runner, which switches CR3
 * onto the hat and touches the slice through the real MMU.
 *
 * The window.  Between loading the hat's CR3 and restoring the original
 * one, nothing else may run on this CPU: the hat maps only its user half
 * plus a copy of the kernel half, so a task switched in would run on the
 * wrong tables.  Interrupts are off for the whole window, which also keeps
 * away the two ways Linux rewrites CR3 behind a lazy-TLB kthread: a TLB
 * flush IPI for the mm we borrowed (flush_tlb_func() may switch the CPU to
 * init_mm, and DEBUG_VM checks CR3 against what it expects) and a context
 * switch.  Both are taken right after the window, on the restored CR3.
 * Page faults are disabled, so a fault on a VA with no resident
 * translation is turned by the exception fixup of copy_{to,from}_user into
 * a short copy instead of a call to handle_mm_fault.
 *
 * Faults.  The window ends, the runner asks the core to put the
 * translation back from the hat's record (htable_hat_fault(): the table may
 * have been stolen) and tries the page again in a new window; a VA the
 * record does not know is a hole and is counted.  We never take a lock
 * inside a window: a CPU shooting down this hat holds the hat lock while it
 * waits for us, so the reload happens outside.
 *
 * Bound: a window copies at most HTABLE_WINDOW_BYTES (16 KiB, four pages)
 * between a kernel buffer and the hat (COPY: 8 KiB each way); the longest
 * window is measured and reported per job and in debugfs (max_window_ns,
 * and the window_hist histogram).  Under QEMU TCG almost all windows take
 * under 256 µs, with a tail that is the host descheduling the vCPU; on
 * hardware a few microseconds.  See docs/ARCHITECTURE.md.
 */
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/memcontrol.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/sched/mm.h>
#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "internal.h"
#include "../arch/x86/arch.h"

#define HTABLE_WINDOW_BYTES	(4 * PAGE_SIZE)
/* Reloads of one page before it counts as a fault: a steal may race. */
#define HTABLE_FAULT_RETRIES	3
#define HTABLE_MAX_SLICES	64

/*
 * How long windows last, for the bound documented above: bucket 0 counts
 * windows under 1 µs (2^10 ns), bucket b those in [2^(b-1), 2^b) µs, the
 * last one everything longer.  debugfs window_hist.
 */
atomic64_t htable_window_hist[HTABLE_WINDOW_BUCKETS];

static void note_window(u64 ns)
{
	unsigned int b = min_t(unsigned int, fls64(ns >> 10), HTABLE_WINDOW_BUCKETS - 1);

	atomic64_inc(&htable_window_hist[b]);
}

/* ---- the per-CPU runners ----------------------------------------------------- */

static struct kthread_worker **runners;	/* [nr_cpu_ids], under runners_lock */
static DEFINE_MUTEX(runners_lock);
static enum cpuhp_state runners_hp_state;

static int runner_online(unsigned int cpu)
{
	struct kthread_worker *w = kthread_create_worker_on_cpu(cpu, 0, "htable_run/%u", cpu);

	if (IS_ERR(w))
		return PTR_ERR(w);
	mutex_lock(&runners_lock);
	runners[cpu] = w;
	mutex_unlock(&runners_lock);
	return 0;
}

/* Queued slices finish first: kthread_destroy_worker() flushes. */
static int runner_offline(unsigned int cpu)
{
	struct kthread_worker *w;

	mutex_lock(&runners_lock);
	w = runners[cpu];
	runners[cpu] = NULL;
	mutex_unlock(&runners_lock);
	if (w)
		kthread_destroy_worker(w);
	return 0;
}

int htable_runners_init(void)
{
	int ret;

	runners = kcalloc(nr_cpu_ids, sizeof(*runners), GFP_KERNEL);
	if (!runners)
		return -ENOMEM;
	ret = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "htable/runner:online",
				runner_online, runner_offline);
	if (ret < 0) {
		kfree(runners);
		runners = NULL;
		return ret;
	}
	runners_hp_state = ret;
	return 0;
}

void htable_runners_exit(void)
{
	cpuhp_remove_state(runners_hp_state);	/* runs runner_offline everywhere */
	kfree(runners);
	runners = NULL;
}

/* ---- one slice -------------------------------------------------------------- */

struct slice {
	struct kthread_work work;
	struct completion done;
	struct htable_hat *hat;
	const struct htable_job *job;	/* the request: op, seed, va, dst_va */
	struct mem_cgroup *memcg;	/* the job's caller's: reloads are charged there */
	const atomic_t *cancel;		/* set: stop at the next window */
	u64 off, len;			/* the slice: offsets from job->va */
	u8 *buf;			/* HTABLE_WINDOW_BYTES */
	unsigned int cpu;
	/* results */
	u64 bytes, faults, result, first_bad, reloads, max_window_ns, hash, shootdowns;
	u32 windows;
	int err;
};

static u64 fnv1a(u64 h, const u8 *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Length of the piece of [va, va + len) that starts at @off and stays in one page. */
static size_t page_chunk(u64 va, size_t len, size_t off)
{
	return min_t(size_t, len - off, PAGE_SIZE - ((va + off) & ~PAGE_MASK));
}

/*
 * One window: for each page piece of [va, va + len) whose bit is set in
 * @todo, copy between s->buf + its offset and the hat (COPY: from va into
 * the buffer, then from the buffer to the matching dst piece).  Returns the
 * bitmap of pieces that faulted.
 */
static unsigned long run_window(struct slice *s, u64 va, u64 dst, size_t len,
				unsigned long todo, bool to_hat)
{
	struct htable_hat *hat = s->hat;
	unsigned int cpu = smp_processor_id();
	unsigned long flags, saved, faulted = 0;
	phys_addr_t top;
	size_t off = 0;
	int i = 0;
	u64 t0, dt;

	local_irq_save(flags);
	pagefault_disable();
	/* Join the CPU set before the hat's entries can be cached here. */
	htable_hat_cpu_enter(hat, cpu);
	t0 = local_clock();
	if (htable_hat_copied_top(hat)) {
		/* seed: VLP.  Our own top table, with the hat's user half copied in. */
		void *mine = htable_arch_cpu_top(cpu, &top);

		htable_hat_load_top(hat, mine);
	} else {
		top = htable_hat_top_pa(hat);
	}
	saved = htable_arch_cr3_switch(top);

	while (off < len) {
		size_t chunk = page_chunk(va, len, off);
		unsigned long left = 0;

		if (todo & (1ul << i)) {
			void __user *u = (void __user *)(unsigned long)(va + off);

			if (to_hat) {
				left = copy_to_user(u, s->buf + off, chunk);
			} else {
				left = copy_from_user(s->buf + off, u, chunk);
				/* Not "dst != 0": VA 0 is a destination like any other. */
				if (!left && s->job->op == HTABLE_JOB_COPY) {
					u = (void __user *)(unsigned long)(dst + off);
					left = copy_to_user(u, s->buf + off, chunk);
				}
			}
		}
		if (left)
			faulted |= 1ul << i;
		off += chunk;
		i++;
	}

	htable_arch_cr3_restore(saved);
	dt = local_clock() - t0;
	htable_hat_cpu_leave(hat, cpu);
	pagefault_enable();
	local_irq_restore(flags);

	s->windows++;
	s->max_window_ns = max(s->max_window_ns, dt);
	note_window(dt);
	return faulted;
}

/*
 * Put back the translations a faulted piece needs: 0, -ENOENT when the
 * record has none where the piece's access starts (a hole: trying again
 * cannot help), or another error (no table page to be had just now) worth
 * another try.  COPY's destination piece may be what faulted and, unless
 * dst has va's offset in the page, spans two pages: both go back, and a
 * hole in the second one still lets the piece write its part in the first
 * (docs/ABI.md), so only the source and the first page decide.
 */
static int reload_piece(struct slice *s, u64 va, u64 dst, size_t chunk)
{
	int rc = htable_hat_fault(s->hat, va);

	if (s->job->op == HTABLE_JOB_COPY && rc != -ENOENT) {
		u64 last = dst + chunk - 1;
		int drc = htable_hat_fault(s->hat, dst);

		if ((last ^ dst) >> PAGE_SHIFT)
			(void)htable_hat_fault(s->hat, last);
		if (drc == -ENOENT || !rc)
			rc = drc;
	}
	return rc;
}

/*
 * A window over [va, va + len); pieces that fault are reloaded from the
 * record and tried again in a new window.  A steal may take the table again
 * between the reload and the window (they share no lock), or take the pages
 * a reload's refill was counting on, so the last try holds steals off
 * across both (htable_steal_hold()).  A piece that faults then, or that is
 * a hole in the record, has no translation the job may use -- a hole, a
 * write to a read-only page, or a reload that found no table page even in
 * the reserve.  Returns those pieces.
 */
static unsigned long run_window_with_reload(struct slice *s, u64 va, u64 dst, size_t len,
					    bool to_hat)
{
	unsigned long faulted = run_window(s, va, dst, len, ~0ul, to_hat);
	unsigned long holes = 0;
	int tries;

	for (tries = 0; faulted & ~holes && tries <= HTABLE_FAULT_RETRIES; tries++) {
		bool hold = tries == HTABLE_FAULT_RETRIES;
		struct mem_cgroup *old_memcg;
		unsigned long retry = 0;
		size_t off = 0;
		int i = 0;

		if (hold)
			htable_steal_hold(1);
		/*
		 * The tables a reload allocates are charged like a MAP's, to
		 * the memory cgroup of the process that asked for the job, not
		 * to the root one this kthread belongs to.  At that cgroup's
		 * limit the reload falls back to the reserve, as on any
		 * allocation failure.
		 */
		old_memcg = set_active_memcg(s->memcg);
		while (off < len) {
			size_t chunk = page_chunk(va, len, off);

			if ((faulted & ~holes) & (1ul << i)) {
				int rc = reload_piece(s, va + off, dst + off, chunk);

				if (!rc) {
					retry |= 1ul << i;
					s->reloads++;
				} else if (rc == -ENOENT) {
					holes |= 1ul << i;
				}
			}
			off += chunk;
			i++;
		}
		set_active_memcg(old_memcg);
		if (retry)
			faulted = (faulted & ~retry) | run_window(s, va, dst, len, retry, to_hat);
		if (hold)
			htable_steal_hold(0);
	}
	return faulted;
}

static void account(struct slice *s, u64 va, size_t len, unsigned long faulted, u64 joff)
{
	const struct htable_job *job = s->job;
	size_t off = 0;
	int i = 0;

	while (off < len) {
		size_t chunk = page_chunk(va, len, off);

		if (faulted & (1ul << i)) {
			s->faults++;
		} else {
			s->bytes += chunk;
			if (job->op == HTABLE_JOB_CHECKSUM) {
				s->hash = fnv1a(s->hash, s->buf + off, chunk);
			} else if (job->op == HTABLE_JOB_VERIFY) {
				size_t k;

				for (k = 0; k < chunk; k++) {
					u64 o = joff + off + k;

					if (s->buf[off + k] != htable_pattern_byte(job->seed, o)) {
						if (!s->result)
							s->first_bad = o;
						s->result++;
					}
				}
			}
		}
		off += chunk;
		i++;
	}
}

/* FILL, VERIFY, CHECKSUM, COPY: the slice in windows of up to 16 KiB (COPY: 8). */
static void run_stream(struct slice *s)
{
	const struct htable_job *job = s->job;
	u64 done = 0;
	size_t max = job->op == HTABLE_JOB_COPY ? HTABLE_WINDOW_BYTES / 2 : HTABLE_WINDOW_BYTES;

	while (done < s->len && !atomic_read(s->cancel)) {
		u64 joff = s->off + done;
		u64 va = job->va + joff;
		u64 dst = job->op == HTABLE_JOB_COPY ? job->dst_va + joff : 0;
		/*
		 * Windows end on page boundaries: a piece is a page's part of
		 * the slice, and a fault counts one page (docs/ABI.md), not
		 * the two halves a window boundary would cut it in.
		 */
		size_t len = min_t(u64, s->len - done, max - (va & ~PAGE_MASK));
		bool fill = job->op == HTABLE_JOB_FILL;
		unsigned long faulted;

		if (fill) {
			size_t k;

			for (k = 0; k < len; k++)
				s->buf[k] = htable_pattern_byte(job->seed, joff + k);
		}
		faulted = run_window_with_reload(s, va, dst, len, fill);
		account(s, va, len, faulted, joff);
		done += len;
		cond_resched();
	}
}

/* TOUCH: 8 bytes at the start of each page (or of the slice). */
static void run_touch(struct slice *s)
{
	const struct htable_job *job = s->job;
	u64 off = s->off;

	while (off < s->off + s->len && !atomic_read(s->cancel)) {
		u64 va = job->va + off;
		u64 next = min(s->off + s->len, off + (PAGE_SIZE - (va & ~PAGE_MASK)));

		if (run_window_with_reload(s, va, 0, 8, false)) {
			s->faults++;
		} else {
			s->bytes += 8;
			s->result++;
		}
		off = next;
		cond_resched();
	}
}

/* RANDOM_RW: see the uapi header; one 8-byte read and write per window. */
static void run_random(struct slice *s)
{
	const struct htable_job *job = s->job;
	u64 words = s->len / 8, n = max_t(u64, 1, s->len / 64), k;
	u64 state = htable_random_rw_seed(job->seed, s->off);

	for (k = 0; k < n && words && !atomic_read(s->cancel); k++) {
		u64 off = s->off + 8 * (htable_xorshift64(&state) % words);
		u64 va = job->va + off;
		int b;

		if (run_window_with_reload(s, va, 0, 8, false)) {
			s->faults++;
			continue;
		}
		for (b = 0; b < 8; b++)
			s->buf[b] = htable_pattern_byte(job->seed, off + b);
		if (run_window_with_reload(s, va, 0, 8, true)) {
			s->faults++;
			continue;
		}
		s->bytes += 16;
		s->result++;
		if (!(k & 63))
			cond_resched();
	}
}

static void slice_fn(struct kthread_work *work)
{
	struct slice *s = container_of(work, struct slice, work);

	u64 rx;

	s->cpu = raw_smp_processor_id();
	rx = htable_arch_shootdowns_received(s->cpu);
	s->hash = 0xcbf29ce484222325ull;
	switch (s->job->op) {
	case HTABLE_JOB_TOUCH:
		run_touch(s);
		break;
	case HTABLE_JOB_RANDOM_RW:
		run_random(s);
		break;
	default:
		run_stream(s);
		break;
	}
	if (s->job->op == HTABLE_JOB_CHECKSUM)
		s->result = s->hash;
	s->shootdowns = htable_arch_shootdowns_received(s->cpu) - rx;
	complete(&s->done);
}

/**
 * htable_run_job() - run @job on @hat and wait for every slice.
 *
 * The caller holds a reference on the hat and validated the range.
 * Returns 0 (the job's own outcome is in @job), -EINVAL (a CPU is offline
 * or out of range; CHECKSUM on several CPUs; COPY ranges overlap), -ENOMEM,
 * -EINTR (the caller got a fatal signal: the slices stopped at their next
 * window).  A job over a huge range of holes may run for hours; its caller
 * stays killable, and so is never stuck in D state for more than a window.
 */
int htable_run_job(struct htable_hat *hat, struct htable_job *job)
{
	u64 mask = job->cpu_mask;
	unsigned int cpus[HTABLE_MAX_SLICES], n = 0, i;
	atomic_t cancel = ATOMIC_INIT(0);
	struct mem_cgroup *memcg;
	struct slice *slices;
	int err = 0;

	job->bytes = job->faults = job->result = job->reloads = 0;
	job->first_bad = ~0ull;
	job->windows = 0;
	job->max_window_ns = 0;
	job->cpus_ran = 0;
	job->ran_on_cpu = 0;
	job->shootdowns = 0;

	if (job->op == HTABLE_JOB_COPY &&
	    job->va < job->dst_va + job->length && job->dst_va < job->va + job->length)
		return -EINVAL;
	if (mask) {
		for (i = 0; i < HTABLE_MAX_SLICES; i++)
			if (mask & (1ull << i))
				cpus[n++] = i;
		if (job->op == HTABLE_JOB_CHECKSUM && n > 1)
			return -EINVAL;	/* FNV-1a is sequential */
	} else {
		cpus[n++] = job->cpu == HTABLE_JOB_ANY_CPU ? raw_smp_processor_id() : job->cpu;
	}

	slices = kcalloc(n, sizeof(*slices), GFP_KERNEL);
	if (!slices)
		return -ENOMEM;
	/* NULL without memory cgroups; the root one for a kthread caller. */
	memcg = get_mem_cgroup_from_mm(current->mm);
	for (i = 0; i < n; i++) {
		struct slice *s = &slices[i];

		s->hat = hat;
		s->job = job;
		s->memcg = memcg;
		s->cancel = &cancel;
		s->off = htable_job_slice(job->length, n, i);
		s->len = htable_job_slice(job->length, n, i + 1) - s->off;
		s->first_bad = ~0ull;
		s->buf = kmalloc(HTABLE_WINDOW_BYTES, GFP_KERNEL);
		if (!s->buf)
			err = -ENOMEM;
		kthread_init_work(&s->work, slice_fn);
		init_completion(&s->done);
	}
	if (err)
		goto out;

	/* Queue all or none: a CPU going offline meanwhile flushes its slice. */
	mutex_lock(&runners_lock);
	for (i = 0; i < n; i++)
		if (cpus[i] >= nr_cpu_ids || !runners[cpus[i]])
			err = -EINVAL;
	for (i = 0; i < n && !err; i++)
		kthread_queue_work(runners[cpus[i]], &slices[i].work);
	mutex_unlock(&runners_lock);
	if (err)
		goto out;
	/*
	 * Each window is short, but a slice is as long as its range.  A fatal
	 * signal stops them all at their next window; they must still finish
	 * before the slices are freed.
	 */
	for (i = 0; i < n; i++) {
		if (wait_for_completion_killable(&slices[i].done)) {
			atomic_set(&cancel, 1);
			err = -EINTR;
			wait_for_completion(&slices[i].done);
		}
	}
	if (err)
		goto out;

	job->ran_on_cpu = slices[0].cpu;
	for (i = 0; i < n; i++) {
		struct slice *s = &slices[i];

		job->bytes += s->bytes;
		job->faults += s->faults;
		job->reloads += s->reloads;
		job->shootdowns += s->shootdowns;
		job->windows += s->windows;
		job->max_window_ns = max(job->max_window_ns, s->max_window_ns);
		job->cpus_ran |= s->cpu < 64 ? 1ull << s->cpu : 0;
		if (job->op == HTABLE_JOB_CHECKSUM)
			job->result = s->result;
		else
			job->result += s->result;
		if (s->first_bad < job->first_bad)
			job->first_bad = s->first_bad;
	}
	htable_stat_add(HTABLE_STAT_JOBS, 1);
	htable_stat_add(HTABLE_STAT_JOB_FAULTS, job->faults);
	htable_stat_add(HTABLE_STAT_WINDOWS, job->windows);
	htable_stat_add(HTABLE_STAT_MAX_WINDOW_NS, job->max_window_ns);
out:
	for (i = 0; i < n; i++)
		kfree(slices[i].buf);
	kfree(slices);
	mem_cgroup_put(memcg);
	return err;
}
