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

// The conveniences below build the argument with designated initializers:
// every field not named is zero, which is what the must-be-zero ones need.
namespace {
template <class Arg>
int call(const Device& dev, unsigned long cmd, Arg arg)
{
	return dev.ioctl_raw(cmd, &arg);
}
}  // namespace

int Device::hat_destroy(u32 hat_id) const
{
	return call(*this, HTABLE_IOC_HAT_DESTROY, htable_hat_destroy{.hat_id = hat_id});
}

int Device::map(u32 hat_id, u64 va, const void* uaddr, u64 length, u32 prot,
		u64 page_size) const
{
	return call(*this, HTABLE_IOC_MAP,
		    htable_map{.hat_id = hat_id, .prot = prot, .va = va,
			       .uaddr = reinterpret_cast<uintptr_t>(uaddr), .length = length,
			       .page_size = page_size});
}

int Device::map_owned(u32 hat_id, u64 va, u64 length, u32 prot, u64 page_size) const
{
	return call(*this, HTABLE_IOC_MAP,
		    htable_map{.hat_id = hat_id, .prot = prot, .va = va, .length = length,
			       .page_size = page_size, .flags = HTABLE_MAP_OWNED});
}

int Device::unmap(u32 hat_id, u64 va, u64 length) const
{
	return call(*this, HTABLE_IOC_UNMAP, htable_unmap{.hat_id = hat_id, .va = va, .length = length});
}

int Device::translate(u32 hat_id, u64 va, htable_translate& out) const
{
	out = htable_translate{.hat_id = hat_id, .va = va};
	return translate(out);
}

int Device::job(u32 hat_id, u32 op, u64 va, u64 length, u64 seed, u32 cpu,
		htable_job& out) const
{
	out = htable_job{.hat_id = hat_id, .op = op, .cpu = cpu, .va = va, .length = length,
			 .seed = seed};
	return job(out);
}

int Device::protect(u32 hat_id, u64 va, u64 length, u32 prot) const
{
	return call(*this, HTABLE_IOC_PROTECT,
		    htable_protect{.hat_id = hat_id, .prot = prot, .va = va, .length = length});
}

int Device::lock(u32 hat_id, u64 va, u64 length, bool lock_it) const
{
	return call(*this, HTABLE_IOC_LOCK,
		    htable_lock{.hat_id = hat_id, .lock = lock_it ? 1u : 0u, .va = va, .length = length});
}

int Device::share(u32 dst_hat_id, u32 src_hat_id, u64 va, u32 level) const
{
	return call(*this, HTABLE_IOC_SHARE,
		    htable_share{.dst_hat_id = dst_hat_id, .src_hat_id = src_hat_id, .va = va,
				 .level = level});
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
	out = htable_job{.hat_id = hat_id, .op = op, .cpu = HTABLE_JOB_ANY_CPU, .va = va,
			 .length = length, .seed = seed, .cpu_mask = cpu_mask, .dst_va = dst_va};
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
