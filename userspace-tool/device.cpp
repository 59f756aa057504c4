// SPDX-License-Identifier: GPL-2.0
//
// Device and Hat: RAII wrappers around /dev/htable and its ioctls.
#include "htablectl.hpp"

#include <cerrno>
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

Result<Hat> Hat::create(const Device& dev)
{
	htable_hat_create c{};
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
