#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run the host tests and print one summary line: "N passed, N failed".

Every GoogleTest case counts once (from its JSON report), every model run
counts once.  A binary that dies before writing its report counts as one
failure.  Exits 1 when anything failed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

# (seed, ops) of the model runs done by `make run`.
MODEL_RUNS = [(1, 200000)]


def run_gtest(build):
    binary = os.path.join(build, "htable_test")
    report = os.path.join(build, "htable_test.json")
    if os.path.exists(report):
        os.remove(report)
    rc = subprocess.call([binary, "--gtest_output=json:" + report])
    passed = failed = 0
    try:
        with open(report) as f:
            data = json.load(f)
        for suite in data.get("testsuites", []):
            for case in suite.get("testsuite", []):
                if case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                    passed += 1  # a skip is not a failure; it is still counted
                elif case.get("failures"):
                    failed += 1
                else:
                    passed += 1
    except (OSError, ValueError) as e:
        print(f"run_tests: no usable report from {binary}: {e}", file=sys.stderr)
        failed += 1
    if rc != 0 and failed == 0:
        print(f"run_tests: {binary} exited {rc} with no failed case", file=sys.stderr)
        failed += 1
    return passed, failed


def run_model(build, seed, ops):
    binary = os.path.join(build, "model_test")
    rc = subprocess.call([binary, "--seed", str(seed), "--ops", str(ops)])
    if rc != 0:
        print(f"run_tests: model run seed {seed} ops {ops} FAILED (exit {rc})", file=sys.stderr)
        return 0, 1
    return 1, 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    sys.stdout.flush()
    start = time.monotonic()
    passed = failed = 0
    p, f = run_gtest(args.build)
    passed, failed = passed + p, failed + f
    for seed, ops in MODEL_RUNS:
        p, f = run_model(args.build, seed, ops)
        passed, failed = passed + p, failed + f
    sys.stdout.flush()
    print(f"host tests took {time.monotonic() - start:.1f} s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
