"""Helpers shared by the benchmark scripts: run a job in a child process, measure it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def measure(code: str, timeout: float | None = None) -> dict:
    """Run ``code`` in a fresh Python process; return its JSON result plus peak RSS (MiB).

    ``code`` must print one JSON object on its last stdout line (with the wall time of the
    measured step under ``"seconds"``). Peak memory is the child's maximum resident set
    size, so imports and data generation are included for every contender alike.
    """
    wrapper = textwrap.dedent(
        """
        import json, resource, sys
        ns = {}
        exec(compile(sys.stdin.read(), "<bench>", "exec"), ns)
        res = ns["RESULT"]
        res["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper],
        input=textwrap.dedent(code),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])
