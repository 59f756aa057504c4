// SPDX-License-Identifier: GPL-2.0
/*
 * Jobs: a kthread bound to one CPU switches CR3 onto a hat's top table and
 * touches a range of the hat through the real MMU.
 *
 * The window.  Between loading the hat's CR3 and restoring the original
 * one, nothing else may run on this CPU: the hat maps only its user half
 * plus a copy of the kernel half, so a task switched in would run on the
 * wrong tables.  Interrupts are off for the whole window, which also keeps
 * away the two ways Linux rewrites CR3 behind a lazy-TLB kthread: a TLB
 * flush IPI for the mm we borrowed (flush_tlb_func may switch to init_mm)
 * and a context switch.  Page faults are disabled, so a fault on an
 * unmapped VA of the hat is resolved by the exception fixup of
 * copy_{to,from}_user (it returns the bytes not copied) instead of by
 * handle_mm_fault.  We never take a lock inside a window: a CPU shooting
 * down this hat holds the hat lock while it waits for us.
 *
 * Bound: a window copies at most HTABLE_WINDOW_BYTES (16 KiB, four pages)
 * between a kernel buffer and the hat; the longest window is measured and
 * reported per job and in debugfs (max_window_ns).
 */
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "internal.h"
#include "../arch/x86/arch.h"

#define HTABLE_WINDOW_BYTES	(4 * PAGE_SIZE)

struct job_ctx {
	struct fd_hat *fh;
	struct htable_job *job;
	u8 *buf;			/* HTABLE_WINDOW_BYTES */
	struct completion done;
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

/*
 * One window over [va, va + len), len <= HTABLE_WINDOW_BYTES: copy between
 * ctx->buf and the hat, page by page so that a hole costs only its page.
 * Returns a bitmap of the pages (of this window) that faulted.
 */
static unsigned long run_window(struct job_ctx *ctx, u64 va, size_t len)
{
	struct htable_job *job = ctx->job;
	unsigned int cpu = smp_processor_id();
	unsigned long flags, saved, faulted = 0;
	size_t off = 0;
	int i = 0;
	u64 t0, dt;

	local_irq_save(flags);
	pagefault_disable();
	htable_hat_cpu_enter(ctx->fh->hat, cpu);
	t0 = local_clock();
	saved = htable_arch_cr3_switch(htable_hat_top_pa(ctx->fh->hat));

	while (off < len) {
		size_t chunk = min_t(size_t, len - off, PAGE_SIZE - ((va + off) & ~PAGE_MASK));
		void __user *u = (void __user *)(unsigned long)(va + off);
		unsigned long left;

		if (job->op == HTABLE_JOB_FILL)
			left = copy_to_user(u, ctx->buf + off, chunk);
		else
			left = copy_from_user(ctx->buf + off, u, chunk);
		if (left)
			faulted |= 1ul << i;
		off += chunk;
		i++;
	}

	htable_arch_cr3_restore(saved);
	dt = local_clock() - t0;
	htable_hat_cpu_leave(ctx->fh->hat, cpu);
	pagefault_enable();
	local_irq_restore(flags);

	job->windows++;
	if (dt > job->max_window_ns)
		job->max_window_ns = dt;
	return faulted;
}

static int job_thread(void *data)
{
	struct job_ctx *ctx = data;
	struct htable_job *job = ctx->job;
	u64 hash = 0xcbf29ce484222325ull;
	u64 done = 0;

	job->ran_on_cpu = raw_smp_processor_id();
	while (done < job->length) {
		u64 va = job->va + done;
		size_t len = min_t(u64, job->length - done, HTABLE_WINDOW_BYTES);
		unsigned long faulted;
		size_t off = 0;
		int i = 0;

		if (job->op == HTABLE_JOB_FILL) {
			size_t k;

			for (k = 0; k < len; k++)
				ctx->buf[k] = htable_pattern_byte(job->seed, done + k);
		}
		faulted = run_window(ctx, va, len);

		/* Account page by page, skipping the pages that faulted. */
		while (off < len) {
			size_t chunk = min_t(size_t, len - off,
					     PAGE_SIZE - ((va + off) & ~PAGE_MASK));

			if (faulted & (1ul << i)) {
				job->faults++;
			} else {
				job->bytes += chunk;
				if (job->op == HTABLE_JOB_CHECKSUM) {
					hash = fnv1a(hash, ctx->buf + off, chunk);
				} else if (job->op == HTABLE_JOB_VERIFY) {
					size_t k;

					for (k = 0; k < chunk; k++) {
						u64 o = done + off + k;

						if (ctx->buf[off + k] !=
						    htable_pattern_byte(job->seed, o)) {
							if (!job->result)
								job->first_bad = o;
							job->result++;
						}
					}
				}
			}
			off += chunk;
			i++;
		}
		done += len;
		cond_resched();
	}
	if (job->op == HTABLE_JOB_CHECKSUM)
		job->result = hash;
	complete(&ctx->done);
	return 0;
}

int htable_run_job(struct fd_hat *fh, struct htable_job *job)
{
	struct job_ctx ctx = { .fh = fh, .job = job };
	struct task_struct *t;
	unsigned int cpu;

	job->bytes = 0;
	job->faults = 0;
	job->result = 0;
	job->first_bad = ~0ull;
	job->windows = 0;
	job->max_window_ns = 0;

	ctx.buf = kmalloc(HTABLE_WINDOW_BYTES, GFP_KERNEL);
	if (!ctx.buf)
		return -ENOMEM;
	init_completion(&ctx.done);

	/* Hold off CPU hotplug from the online check until the job is done. */
	cpus_read_lock();
	cpu = job->cpu == HTABLE_JOB_ANY_CPU ? raw_smp_processor_id() : job->cpu;
	if (!cpu_online(cpu)) {
		ctx.err = -EINVAL;
		goto out;
	}
	t = kthread_create_on_node(job_thread, &ctx, cpu_to_node(cpu), "htable_job/%u", cpu);
	if (IS_ERR(t)) {
		ctx.err = PTR_ERR(t);
		goto out;
	}
	kthread_bind(t, cpu);
	wake_up_process(t);
	/*
	 * The thread exits by itself after complete(); ctx lives on this
	 * stack, so wait even if a signal arrives: a job is bounded by its
	 * length and each window is short.
	 */
	wait_for_completion(&ctx.done);

	htable_stat_add(HTABLE_STAT_JOBS, 1);
	htable_stat_add(HTABLE_STAT_JOB_FAULTS, job->faults);
	htable_stat_add(HTABLE_STAT_WINDOWS, job->windows);
	htable_stat_add(HTABLE_STAT_MAX_WINDOW_NS, job->max_window_ns);
out:
	cpus_read_unlock();
	kfree(ctx.buf);
	return ctx.err;
}
