// SPDX-License-Identifier: GPL-2.0
//
// Device and Hat: RAII wrappers around /dev/htable and its ioctls.
#include "htablectl.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace htable {

Result<Device> Device::open(const char* path)
{
	int fd = ::open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return Err{errno};
	return Device(fd);
}

Device& Device::operator=(Device&& o) noexcept
{
	if (this != &o) {
		close();
		fd_ = std::exchange(o.fd_, -1);
	}
	return *this;
}

void Device::close()
{
	if (fd_ >= 0)
		::close(fd_);
	fd_ = -1;
}

int Device::ioctl_raw(unsigned long cmd, void* arg) const
{
	return ::ioctl(fd_, cmd, arg) < 0 ? errno : 0;
}

int Device::hat_destroy(u32 hat_id) const
{
	htable_hat_destroy d{};
	d.hat_id = hat_id;
	return hat_destroy(d);
}

int Device::map(u32 hat_id, u64 va, const void* uaddr, u64 length, u32 prot,
		u64 page_size) const
{
	htable_map m{};
	m.hat_id = hat_id;
	m.prot = prot;
	m.va = va;
	m.uaddr = reinterpret_cast<uintptr_t>(uaddr);
	m.length = length;
	m.page_size = page_size;
	return map(m);
}

int Device::map_owned(u32 hat_id, u64 va, u64 length, u32 prot, u64 page_size) const
{
	htable_map m{};
	m.hat_id = hat_id;
	m.prot = prot;
	m.va = va;
	m.length = length;
	m.page_size = page_size;
	m.flags = HTABLE_MAP_OWNED;
	return map(m);
}

int Device::unmap(u32 hat_id, u64 va, u64 length) const
{
	htable_unmap u{};
	u.hat_id = hat_id;
	u.va = va;
	u.length = length;
	return unmap(u);
}

int Device::translate(u32 hat_id, u64 va, htable_translate& out) const
{
	out = htable_translate{};
	out.hat_id = hat_id;
	out.va = va;
	return translate(out);
}

int Device::job(u32 hat_id, u32 op, u64 va, u64 length, u64 seed, u32 cpu,
		htable_job& out) const
{
	out = htable_job{};
	out.hat_id = hat_id;
	out.op = op;
	out.cpu = cpu;
	out.va = va;
	out.length = length;
	out.seed = seed;
	return job(out);
}

int Device::protect(u32 hat_id, u64 va, u64 length, u32 prot) const
{
	htable_protect p{};
	p.hat_id = hat_id;
	p.prot = prot;
	p.va = va;
	p.length = length;
	return protect(p);
}

int Device::lock(u32 hat_id, u64 va, u64 length, bool lock_it) const
{
	htable_lock l{};
	l.hat_id = hat_id;
	l.lock = lock_it ? 1 : 0;
	l.va = va;
	l.length = length;
	return lock(l);
}

int Device::share(u32 dst_hat_id, u32 src_hat_id, u64 va, u32 level) const
{
	htable_share s{};
	s.dst_hat_id = dst_hat_id;
	s.src_hat_id = src_hat_id;
	s.va = va;
	s.level = level;
	return share(s);
}

int Device::reap(u64 nr, u64* freed) const
{
	htable_reap r{};
	r.nr = nr;
	int err = reap(r);
	if (freed)
		*freed = err ? 0 : r.freed;
	return err;
}

int Device::stats_all(std::vector<std::pair<std::string, u64>>& out) const
{
	out.clear();
	htable_stats st{};
	if (int err = stats(st))  // max_entries 0: how many are there?
		return err;
	std::vector<htable_stat_entry> buf(st.count);
	st.entries = reinterpret_cast<uintptr_t>(buf.data());
	st.max_entries = u32(buf.size());
	if (int err = stats(st))
		return err;
	for (u32 i = 0; i < std::min<u32>(st.count, u32(buf.size())); i++)
		out.emplace_back(std::string(buf[i].name, strnlen(buf[i].name, sizeof(buf[i].name))),
				 buf[i].value);
	return 0;
}

int Device::walk_all(u32 hat_id, u64 va, u64 end, std::vector<htable_walk_entry>& out,
		     u32 batch, unsigned* calls) const
{
	out.clear();
	std::vector<htable_walk_entry> buf(batch);
	unsigned n = 0;
	while (va < end) {
		htable_walk w{};
		w.hat_id = hat_id;
		w.max_entries = batch;
		w.va = va;
		w.end = end;
		w.entries = reinterpret_cast<uintptr_t>(buf.data());
		n++;
		if (int err = walk(w)) {
			if (calls)
				*calls = n;
			return err;
		}
		out.insert(out.end(), buf.begin(), buf.begin() + std::min<u32>(w.count, batch));
		if (w.next <= va)  // no progress: a module bug, not a reason to spin
			return EPROTO;
		va = w.next;
	}
	if (calls)
		*calls = n;
	return 0;
}

int Device::job_mask(u32 hat_id, u32 op, u64 va, u64 length, u64 seed, u64 cpu_mask,
		     htable_job& out, u64 dst_va) const
{
	out = htable_job{};
	out.hat_id = hat_id;
	out.op = op;
	out.cpu = HTABLE_JOB_ANY_CPU;
	out.va = va;
	out.length = length;
	out.seed = seed;
	out.cpu_mask = cpu_mask;
	out.dst_va = dst_va;
	return job(out);
}

Result<Hat> Hat::create(const Device& dev, u32 flags)
{
	htable_hat_create c{};
	c.flags = flags;
	if (int err = dev.hat_create(c))
		return Err{err};
	return Hat(dev, c.hat_id, c.levels);
}

Hat& Hat::operator=(Hat&& o) noexcept
{
	if (this != &o) {
		reset();
		dev_ = o.dev_;
		id_ = std::exchange(o.id_, 0);
		levels_ = o.levels_;
	}
	return *this;
}

int Hat::reset()
{
	int err = 0;
	if (dev_ && id_)
		err = dev_->hat_destroy(id_);
	id_ = 0;
	return err;
}

}  // namespace htable
