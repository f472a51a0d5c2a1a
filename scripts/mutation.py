"""`make mutation`: mutmut over the sync's decision code, with only its unit tests (docs/mutation.md).

The modules (plan.py, safety.py, normalize.py) and the tests that hold them are set in
``[tool.mutmut]`` of pyproject.toml. A run is reproducible: it starts from a fresh ``mutants/``
copy (mutmut would otherwise reuse cached verdicts), runs hypothesis under the ``mutation``
profile of conftest.py (derandomized, no example database, no shrinking), with a fixed
PYTHONHASHSEED and one worker. All mutants do not fit a session on a 2-core machine, so a file
with more than ``WHOLE_FILE_MAX`` mutants is sampled: ``SAMPLE_SHARE`` of its mutants, drawn by
``random.Random(f"{SEED}:{path}")`` from their sorted names. Then, per file: killed / (run −
equivalent), where equivalent mutants are the ones docs/mutation.md lists by name.

Exit status 1 when a file scores under ``TARGET`` or mutmut fails. ``--full`` runs every mutant;
``--report`` only reports the verdicts of the last run (after editing docs/mutation.md, say).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 14
SAMPLE_SHARE = 0.3
WHOLE_FILE_MAX = 150
TARGET = 0.9
EQUIVALENTS = REPO / "docs" / "mutation.md"
LOG = REPO / "mutants" / "mutmut-run.log"
_NAME = re.compile(r"`(entrasync_pipeline\.\w+\.x\w*__mutmut_\d+)`")
# mutmut's verdicts: a timeout or a crash of the tests is a detection too.
DETECTED = {"killed", "timeout", "segfault", "suspicious"}


def mutants_by_file() -> dict[str, list[str]]:
    """Every mutant mutmut generates for the configured files, by file, named as mutmut names them."""
    from mutmut.configuration import config
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    paths = config().only_mutate
    return {
        path: sorted(
            get_mutant_name(Path(path), name)
            for name in mutate_file_contents(path, (REPO / path).read_text()).mutant_names
        )
        for path in paths
    }


def sample(names: list[str], path: str) -> list[str]:
    if len(names) <= WHOLE_FILE_MAX:
        return names
    return sorted(random.Random(f"{SEED}:{path}").sample(names, math.ceil(SAMPLE_SHARE * len(names))))


def run_mutmut(names: list[str]) -> None:
    env = {**os.environ, "ENTRASYNC_HYPOTHESIS_PROFILE": "mutation", "PYTHONHASHSEED": "0"}
    mutmut = str(Path(sys.executable).parent / "mutmut")
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("w") as log:
        done = subprocess.run(
            [mutmut, "run", "--max-children", "1", *names], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode:
        sys.exit(f"mutmut failed (exit {done.returncode}); see {LOG}")


def verdicts() -> dict[str, str]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.strip().split(": ", 1) for line in out.splitlines() if "__mutmut_" in line)


def changed_lines(name: str) -> str:
    diff = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "show", name], cwd=REPO, capture_output=True, text=True
    ).stdout
    return " | ".join(
        line.strip() for line in diff.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++"))
    )


def report(selected: dict[str, list[str]], status: dict[str, str]) -> bool:
    equivalent = set(_NAME.findall(EQUIVALENTS.read_text())) if EQUIVALENTS.exists() else set()
    ok = True
    print(f"\n{'file':34} {'run':>5} {'killed':>7} {'equiv.':>7} {'other':>6} {'score':>7}")
    unexplained: list[str] = []
    for path, names in selected.items():
        counts = Counter(status.get(n, "not checked") for n in names)
        killed = sum(counts[s] for s in DETECTED)
        survivors = [n for n in names if status.get(n) not in DETECTED]
        listed = [n for n in survivors if n in equivalent]
        unexplained += [n for n in survivors if n not in equivalent]
        relevant = len(names) - len(listed)
        score = killed / relevant if relevant else 1.0
        ok &= score >= TARGET
        print(f"{path:34} {len(names):5} {killed:7} {len(listed):7} {len(survivors) - len(listed):6} {score:7.1%}")
        others = {s: c for s, c in counts.items() if s not in ("killed", "survived")}
        if others:
            print(f"{'':34} {others}")
    stale = sorted(n for n in equivalent if n in status and status[n] in DETECTED)
    if unexplained:
        print("\nSurvivors not listed as equivalent in docs/mutation.md (`mutmut show NAME`):")
        for name in unexplained:
            print(f"  {name} [{status.get(name, 'not checked')}]: {changed_lines(name)}")
    if stale:
        print("\nListed as equivalent in docs/mutation.md but killed now:", ", ".join(stale))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run every mutant instead of the seeded sample")
    parser.add_argument("--report", action="store_true", help="report the last run's verdicts, run nothing")
    args = parser.parse_args()
    os.chdir(REPO)
    every = mutants_by_file()
    selected = {path: names if args.full else sample(names, path) for path, names in every.items()}
    names = [n for ns in selected.values() for n in ns]
    how = "(all)" if args.full else f"(seed {SEED}: files over {WHOLE_FILE_MAX} mutants sampled at {SAMPLE_SHARE:.0%})"
    print(f"{len(names)} of {sum(map(len, every.values()))} mutants {how}", flush=True)
    if not args.report:
        print(f"one worker; progress: tail -f {LOG.relative_to(REPO)}", flush=True)
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
        started = time.monotonic()
        run_mutmut(names)
        print(f"mutmut ran {len(names)} mutants in {(time.monotonic() - started) / 60:.1f} min")
    if not report(selected, verdicts()):
        sys.exit(f"\nunder {TARGET:.0%} of the non-equivalent mutants killed in at least one file")


if __name__ == "__main__":
    main()
