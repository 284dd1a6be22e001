#!/usr/bin/env python3
"""Sums PostgreSQL's logged statement durations per statement and phase
(parse / bind / execute), heaviest first (BENCHMARKS.md, "Where a
PostgreSQL flow's CPU goes"). Input: the part of the server log written
while the database had `log_min_duration_statement = 0`:

    start=$(wc -l < /var/log/postgresql/postgresql-15-main.log)
    PGEXTRA="ALTER DATABASE bench SET log_min_duration_statement = 0" benches/flow_cpu.sh ...
    tail -n +$start /var/log/postgresql/postgresql-15-main.log | benches/pg_statement_costs.py

Durations include lock waits (not CPU alone).
"""
import collections
import re
import sys

LINE = re.compile(r"duration: ([0-9.]+) ms\s+(parse|bind|execute|statement)[^:]*: (.*)")
totals = collections.defaultdict(lambda: [0, 0.0])
for line in sys.stdin:
    m = LINE.search(line)
    if m:
        key = (m.group(2), m.group(3)[:100])
        totals[key][0] += 1
        totals[key][1] += float(m.group(1))
print(f"total {sum(v[1] for v in totals.values()):.0f} ms")
for (phase, sql), (n, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:20]:
    print(f"{ms:9.0f} ms {n:6d} x {ms / n:6.3f} ms  {phase:8s} {sql}")
