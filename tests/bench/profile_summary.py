"""What a py-spy profile's samples went to, as a table for performance.md.

A profile of `BENCH_PROFILE=1` (support.start_profile: py-spy's raw format, one collapsed stack a line,
`frame;frame;...;frame count`, a frame `function (path:line)`) is summed per function, its line dropped:
- self: the samples whose innermost frame is the function (where the CPU was when sampled);
- total: the samples with the function anywhere on the stack (what it and its callees cost), each
  stack counted once per function however deep it recurses.
Shares are of the profile's samples without those `--exclude` names in the innermost frame (e.g. the
gevent hub's own wait, `--exclude wait`), so a share is of the work sampled, not of idle time.

    python -m tests.bench.profile_summary bench-results/profile-answer-route.txt [--top 15]
        [--exclude wait --exclude select] [--match app/ --match gunicorn/]

`--match` keeps in the total table only functions whose path holds one of the strings. `--group
NAME=TEXT` (repeated, in order) also puts each sample in the first group with a frame holding TEXT
(`--group "group commit=GroupCommit._commit_forever" --group "rooms=app/web/rooms/"`), the rest in
"other": one row per part of the process.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")
# Paths are shown from the package down: what follows the last of these, or the path as given.
_ROOTS = ("site-packages/", "lib/python3.11/", "/wt-", "/work/main/")


def short_path(path: str) -> str:
    for root in _ROOTS:
        at = path.rfind(root)
        if at >= 0:
            rest = path[at + len(root):]
            return rest.split("/", 1)[1] if root == "/wt-" and "/" in rest else rest
    return path


def frame_name(frame: str) -> str:
    """`function (path:line)` -> `function (short path)`; a frame py-spy did not resolve stays as is."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['function']} ({short_path(match['path'])})"


@dataclass
class Summary:
    samples: int = 0
    excluded: int = 0
    own: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    groups: Counter = field(default_factory=Counter)

    def share(self, count: int) -> float:
        return 100.0 * count / max(self.samples, 1)


def summarize(lines: Iterable[str], exclude: tuple[str, ...] = (),
              groups: tuple[tuple[str, str], ...] = ()) -> Summary:
    summary = Summary()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        if any(name in frames[-1] for name in exclude):
            summary.excluded += n
            continue
        summary.samples += n
        summary.own[frames[-1]] += n
        for name in set(frames):
            summary.total[name] += n
        if groups:
            whole = ";".join(frames)
            summary.groups[next((g for g, text in groups if text in whole), "other")] += n
    return summary


def table(summary: Summary, top: int, match: tuple[str, ...] = ()) -> str:
    rows = ["| function | self | total |", "| --- | --- | --- |"]
    ranked = sorted(summary.total.items(), key=lambda kv: (-kv[1], kv[0]))
    if match:
        ranked = [(name, n) for name, n in ranked if any(m in name for m in match)]
    for name, n in ranked[:top]:
        rows.append(f"| `{name}` | {summary.share(summary.own[name]):.1f} % | {summary.share(n):.1f} % |")
    own = ["| innermost frame | self |", "| --- | --- |"]
    for name, n in summary.own.most_common(top):
        own.append(f"| `{name}` | {summary.share(n):.1f} % |")
    head = f"{summary.samples:,} samples ({summary.excluded:,} excluded)"
    parts = ["| part | samples |", "| --- | --- |"]
    parts += [f"| {name} | {summary.share(n):.1f} % |" for name, n in summary.groups.most_common()]
    return "\n".join([head, "", *(parts + [""] if summary.groups else []), *rows, "", *own])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw profiles, summed together")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--exclude", action="append", default=[],
                        help="drop samples whose innermost frame holds this")
    parser.add_argument("--match", action="append", default=[],
                        help="list in the total table only functions whose name or path holds this")
    parser.add_argument("--group", action="append", default=[],
                        help="NAME=TEXT: samples with a frame holding TEXT count to NAME (first match wins)")
    args = parser.parse_args(argv)
    groups = tuple(tuple(g.split("=", 1)) for g in args.group)
    lines: list[str] = []
    for path in args.profiles:
        lines.extend(path.read_text().splitlines())
    print(table(summarize(lines, tuple(args.exclude), groups), args.top, tuple(args.match)))


if __name__ == "__main__":
    main()
