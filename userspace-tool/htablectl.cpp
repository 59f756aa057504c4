// SPDX-License-Identifier: GPL-2.0
//
// htablectl: command-line front end for /dev/htable.
//
//   htablectl info            what the module reports about this machine
//   htablectl stats [--json]  debugfs counters
//   htablectl demo            narrated walkthrough
//   htablectl selftest        TAP test suite
//   htablectl reap [N]        give page tables back, as the shrinker would
//   htablectl shell           one ioctl per line, interactive or scripted
//   htablectl pressure        memory-pressure test (TAP)
//   htablectl fuzz            random ioctls checked against a model (TAP)
//   htablectl stress          concurrency stress test (TAP)
//   htablectl lifetime        objects against owners that die at the worst moment (TAP)
//
// Exit status: 0 success, 1 failure, 2 usage error.
#include "htablectl.hpp"

#include <cstdio>
#include <cstring>

namespace htable {

int parse_simple_args(std::span<char*> args, const char* help,
		      std::vector<std::pair<const char*, bool*>> flags)
{
	for (size_t i = 1; i < args.size(); i++) {
		const char* a = args[i];
		if (!std::strcmp(a, "--help") || !std::strcmp(a, "-h")) {
			std::fputs(help, stdout);
			return 0;
		}
		bool matched = false;
		for (auto& [name, ptr] : flags) {
			if (!std::strcmp(a, name)) {
				*ptr = true;
				matched = true;
			}
		}
		if (!matched) {
			std::fprintf(stderr, "htablectl %s: unexpected argument '%s'\n"
					     "Try 'htablectl %s --help'.\n", args[0], a, args[0]);
			return 2;
		}
	}
	return -1;
}

// ---------------------------------------------------------------- info

static const char kInfoHelp[] =
	"Usage: htablectl info\n"
	"\n"
	"Open /dev/htable and print what HTABLE_IOC_VERSION reports: ABI version,\n"
	"the paging mode the CPUs run in, CPU features relevant to page tables,\n"
	"online CPUs, the end of the mappable (user) VA range and the supported\n"
	"leaf page sizes.\n";

int cmd_info(std::span<char*> args)
{
	if (int rc = parse_simple_args(args, kInfoHelp, {}); rc >= 0)
		return rc;

	auto dev = Device::open();
	if (!dev) {
		print_error(std::string("cannot open ") + kDevicePath, dev.error());
		return 1;
	}
	htable_version v{};
	if (int err = dev->version(v)) {
		print_error("HTABLE_IOC_VERSION", err);
		return 1;
	}

	std::printf("device:        %s\n", kDevicePath);
	std::printf("ABI version:   %u%s\n", v.abi_version,
		    v.abi_version == HTABLE_ABI_VERSION ? "" : "  (this tool was built for a different one)");
	std::printf("paging:        %u-level%s\n", v.paging_levels,
		    v.paging_levels == 5 ? " (LA57, 57-bit virtual addresses)"
		    : v.paging_levels == 4 ? " (48-bit virtual addresses)" : "  (unexpected)");
	std::printf("user VA end:   0x%016llx  (%s of mappable private VA per hat)\n",
		    v.user_va_end, human_size(v.user_va_end).c_str());
	std::printf("features:      %s  [0x%x]\n", feature_string(v.features).c_str(), v.features);

	auto cpus = online_cpus();
	std::printf("online CPUs:   %u  (sysfs: %s)\n", v.nr_cpus, format_cpu_list(cpus).c_str());

	std::string sizes;
	for (unsigned bit = 0; bit < 64; bit++) {
		if (v.page_sizes & (1ull << bit)) {
			if (!sizes.empty())
				sizes += ", ";
			sizes += human_size(1ull << bit);
		}
	}
	std::printf("page sizes:    %s  [0x%llx]\n", sizes.empty() ? "none" : sizes.c_str(),
		    v.page_sizes);
	return 0;
}

// ---------------------------------------------------------------- stats

static const char kStatsHelp[] =
	"Usage: htablectl stats [--json] [--ioctl]\n"
	"\n"
	"Print the module's counters from /sys/kernel/debug/htable/stats (needs\n"
	"root and a mounted debugfs).  Every line of the file is printed, as\n"
	"'name value'; with --json, as one JSON object {\"name\": value, ...}\n"
	"(decimal values become numbers, anything else a string).  With --ioctl\n"
	"the counters come from HTABLE_IOC_STATS instead (no debugfs needed; the\n"
	"shrinker_* and shootdowns_received lines exist in debugfs only).\n"
	"\n"
	"Counters include hats_live, tables_live, ptable_allocs, ptable_frees,\n"
	"pinned_pages, maps, unmaps, jobs, job_faults, windows, shootdowns,\n"
	"stealable, steals, reaps, reloads, reserve, reserve_target and the\n"
	"shrinker's shrinker_calls / shrinker_asked / shrinker_freed.\n";

static void json_string(const std::string& s)
{
	std::putchar('"');
	for (unsigned char c : s) {
		if (c == '"' || c == '\\')
			std::printf("\\%c", c);
		else if (c < 0x20)
			std::printf("\\u%04x", c);
		else
			std::putchar(c);
	}
	std::putchar('"');
}

static bool is_json_number(const std::string& s)
{
	if (s.empty() || (s.size() > 1 && s[0] == '0'))
		return false;
	for (char c : s)
		if (c < '0' || c > '9')
			return false;
	return true;
}

int cmd_stats(std::span<char*> args)
{
	bool json = false, via_ioctl = false;
	if (int rc = parse_simple_args(args, kStatsHelp, {{"--json", &json}, {"--ioctl", &via_ioctl}});
	    rc >= 0)
		return rc;

	std::vector<Stat> stats;
	if (via_ioctl) {
		auto dev = Device::open();
		if (!dev) {
			print_error(std::string("cannot open ") + kDevicePath, dev.error());
			return 1;
		}
		std::vector<std::pair<std::string, u64>> all;
		if (int err = dev->stats_all(all)) {
			print_error("HTABLE_IOC_STATS", err);
			return 1;
		}
		for (auto& [name, value] : all)
			stats.push_back(Stat{name, std::to_string(value)});
	} else if (int err = read_stats(stats)) {
		print_error(std::string("cannot read ") + kStatsPath, err);
		return 1;
	}
	if (json) {
		std::putchar('{');
		for (size_t i = 0; i < stats.size(); i++) {
			if (i)
				std::fputs(", ", stdout);
			json_string(stats[i].name);
			std::fputs(": ", stdout);
			if (is_json_number(stats[i].value))
				std::fputs(stats[i].value.c_str(), stdout);
			else
				json_string(stats[i].value);
		}
		std::puts("}");
	} else {
		size_t w = 0;
		for (const auto& s : stats)
			w = std::max(w, s.name.size());
		for (const auto& s : stats)
			std::printf("%-*s %s\n", int(w), s.name.c_str(), s.value.c_str());
	}
	return 0;
}

// ---------------------------------------------------------------- reap

static const char kReapHelp[] =
	"Usage: htablectl reap [N]\n"
	"\n"
	"HTABLE_IOC_REAP: ask the module to give up to N page tables back now, as\n"
	"its shrinker does under memory pressure (default: as many as it can).\n"
	"Tables are taken from every hat in the system, coldest first; locked and\n"
	"shared tables stay.  What they mapped stays in each hat's record and is\n"
	"reloaded on the next access.  Prints how many were freed and the\n"
	"counters that tell the story, before and after.\n";

int cmd_reap(std::span<char*> args)
{
	u64 n = ~0ull;
	for (size_t i = 1; i < args.size(); i++) {
		if (!std::strcmp(args[i], "--help") || !std::strcmp(args[i], "-h")) {
			std::fputs(kReapHelp, stdout);
			return 0;
		}
		if (i != 1 || !parse_u64(args[i], n)) {
			std::fprintf(stderr, "htablectl reap: unexpected argument '%s'\n"
					     "Try 'htablectl reap --help'.\n", args[i]);
			return 2;
		}
	}
	auto dev = Device::open();
	if (!dev) {
		print_error(std::string("cannot open ") + kDevicePath, dev.error());
		return 1;
	}
	static const char* const shown[] = {"tables_live", "stealable", "steals", "reaps",
					    "reserve",     "reserve_target", "reloads"};
	std::vector<Stat> before, after;
	const int serr = read_stats(before);
	u64 freed = 0;
	if (int err = dev->reap(n, &freed)) {
		print_error("HTABLE_IOC_REAP", err);
		return 1;
	}
	if (n == ~0ull)
		std::printf("reap: freed %llu page tables (asked for all)\n", freed);
	else
		std::printf("reap: freed %llu of at most %llu page tables\n", freed, n);
	if (serr || read_stats(after)) {
		std::printf("(no counters: %s is not readable)\n", kStatsPath);
		return 0;
	}
	std::printf("%-16s %12s %12s\n", "counter", "before", "after");
	for (const char* name : shown) {
		auto b = stat_u64(before, name), a = stat_u64(after, name);
		if (b && a)
			std::printf("%-16s %12llu %12llu\n", name, *b, *a);
	}
	return 0;
}

}  // namespace htable

// ---------------------------------------------------------------- main

static const char kUsage[] =
	"Usage: htablectl <command> [options]\n"
	"\n"
	"Control and test the htable kernel module (/dev/htable): private x86\n"
	"page tables (\"hats\") into which a process maps its own memory, and\n"
	"kernel threads that switch CR3 onto them to touch that memory.\n"
	"\n"
	"Commands:\n"
	"  info              print paging mode, features, CPUs and limits\n"
	"  stats [--json]    print the module's counters (debugfs, or --ioctl)\n"
	"  demo              narrated walkthrough of every ioctl\n"
	"  selftest          run the TAP test suite against the module\n"
	"  reap [N]          give up to N page tables back (as the shrinker would)\n"
	"  shell             run ioctls from a prompt or a script on stdin\n"
	"  pressure          memory-pressure test for a small machine (TAP)\n"
	"  fuzz              random ioctls checked against a model of the ABI (TAP)\n"
	"  stress            processes on every CPU against reaping and the shrinker (TAP)\n"
	"  lifetime          closes, kills and cgroups at the worst moment (TAP)\n"
	"  help [command]    show this text or a command's help\n"
	"\n"
	"Every command accepts --help.  /dev/htable needs root (CAP_SYS_ADMIN).\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

namespace {
struct Command {
	const char* name;
	int (*fn)(std::span<char*>);
};
const Command kCommands[] = {
	{"info", htable::cmd_info},
	{"stats", htable::cmd_stats},
	{"demo", htable::cmd_demo},
	{"selftest", htable::cmd_selftest},
	{"reap", htable::cmd_reap},
	{"shell", htable::cmd_shell},
	{"pressure", htable::cmd_pressure},
	{"fuzz", htable::cmd_fuzz},
	{"stress", htable::cmd_stress},
	{"lifetime", htable::cmd_lifetime},
};

const Command* find_command(const char* name)
{
	for (const auto& c : kCommands)
		if (!std::strcmp(c.name, name))
			return &c;
	return nullptr;
}
}  // namespace

int main(int argc, char** argv)
{
	if (argc < 2) {
		std::fputs(kUsage, stderr);
		return 2;
	}
	const char* cmd = argv[1];
	if (!std::strcmp(cmd, "--help") || !std::strcmp(cmd, "-h") || !std::strcmp(cmd, "help")) {
		if (argc == 2) {
			std::fputs(kUsage, stdout);
			return 0;
		}
		// "help <command>" is "<command> --help"
		const Command* c = std::strcmp(cmd, "help") ? nullptr : find_command(argv[2]);
		if (!c || argc > 3) {
			std::fprintf(stderr, "htablectl: unexpected argument '%s'\n"
					     "Try 'htablectl --help'.\n", argv[2]);
			return 2;
		}
		char help[] = "--help";
		char* sub[] = {argv[2], help};
		return c->fn(std::span<char*>(sub));
	}
	if (const Command* c = find_command(cmd))
		return c->fn(std::span<char*>(argv + 1, size_t(argc - 1)));

	std::fprintf(stderr, "htablectl: unknown command '%s'\nTry 'htablectl --help'.\n", cmd);
	return 2;
}
