// SPDX-License-Identifier: GPL-2.0
//
// htablectl: command-line front end for /dev/htable.
//
//   htablectl info            what the module reports about this machine
//   htablectl stats [--json]  debugfs counters
//   htablectl demo            narrated walkthrough
//   htablectl selftest        TAP test suite
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
	"Usage: htablectl stats [--json]\n"
	"\n"
	"Print the module's counters from /sys/kernel/debug/htable/stats (needs\n"
	"root and a mounted debugfs).  Every line of the file is printed, as\n"
	"'name value'; with --json, as one JSON object {\"name\": value, ...}\n"
	"(decimal values become numbers, anything else a string).\n"
	"\n"
	"Counters include hats_live, tables_live, ptable_allocs, ptable_frees,\n"
	"pinned_pages, maps, unmaps, jobs, job_faults, windows, shootdowns.\n";

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
	bool json = false;
	if (int rc = parse_simple_args(args, kStatsHelp, {{"--json", &json}}); rc >= 0)
		return rc;

	std::vector<Stat> stats;
	if (int err = read_stats(stats)) {
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
	"  stats [--json]    print the module's debugfs counters\n"
	"  demo              narrated walkthrough of every ioctl\n"
	"  selftest          run the TAP test suite against the module\n"
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
