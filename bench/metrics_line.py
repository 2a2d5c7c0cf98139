#!/usr/bin/env python3
"""What the metrics line costs each invocation (examples/metrics-line.rs, release build), as a
section of bench/RESULTS.md with `--results`. Run by scripts/bench.

usage: metrics_line.py METRICS_LINE_BIN [--results]"""
import datetime
import json
import subprocess
import sys

from run import report

GOAL_US = 100  # issue 22: under 0.1 ms per invocation


def main():
    measured = json.loads(subprocess.run([sys.argv[1]], check=True, capture_output=True, text=True).stdout)
    us = measured["ns_per_line"] / 1000
    report(["## The metrics line", "",
            f"On {datetime.date.today()}: building one invocation's Embedded Metric Format line "
            f"(an SQS batch's, with a failed message: {measured['bytes']} bytes) and writing it "
            f"line-buffered to a file takes {us:.1f} µs (median of 5 rounds of {measured['lines']:,} "
            f"lines, release build); the goal is under {GOAL_US} µs: "
            f"{'met' if us < GOAL_US else '**not met**'}. It makes no network call: CloudWatch Logs "
            f"extracts the metrics from the log line.", ""])


if __name__ == "__main__":
    main()
