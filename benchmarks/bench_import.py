"""Start-up cost of the light core: wall time and peak RSS of fresh interpreters, two source trees side by side.

Each measured command runs in a new ``python`` process (as a user's script or
``gsi`` would), in alternating order between the trees, ``--rounds`` times
after one unmeasured warm-up each (which fills the numba and bytecode caches);
the table gives the median and the minimum wall time, the median CPU time
(user + system of the child: start-up is one thread, so on an idle machine
it is about the wall time, and on a shared one it is less inflated by waiting
for a core), the median peak RSS (``ru_maxrss``; both from ``os.wait4``) and
whether torch was imported.
The baseline tree is ``git archive REF`` of this repository (default ``main``),
the other the working tree; each gets its own ``gscodec_cli`` (its ``cli/``)
and runs with this interpreter and its packages (torch installed). With
``--core-venv``, the working tree is also measured installed alone
(``pip install .``: the core dependencies, no torch, no scipy) in a fresh venv,
as a user of the light core has it: numba imports scipy.linalg for BLAS on its
first compiled call when scipy is installed, which the dev environment pays.

Commands: ``python -c pass`` (the interpreter alone), ``import gscodec``,
``import gscodec; gscodec.read(f)`` (the issue's target), the same plus
``gscodec.render``, ``Image.open(f).load()`` through the Pillow plugin, and
``gsi info f`` (the console script's ``main``). ``f`` is ``--file``, else
``tests/data/coffee.png`` encoded by the working tree with ``--points`` Gaussians.

Usage::

    python benchmarks/bench_import.py --baseline d2bcf06 --rounds 7 --core-venv [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REPORT = ("import atexit, sys\n"
          "atexit.register(lambda: sys.stderr.write('\\nBENCH_TORCH=%d\\n' % ('torch' in sys.modules)))\n")

COMMANDS = {
    "python -c pass": "pass",
    "import gscodec": "import gscodec",
    "import gscodec; gscodec.read(f)": "import gscodec; gscodec.read(F)",
    "... + gscodec.render(g)": "import gscodec; gscodec.render(gscodec.read(F).gaussians)",
    "Image.open(f).load() (plugin)": ("import gscodec; gscodec.register_pillow(); from PIL import Image; "
                                      "Image.open(F).load()"),
    "gsi info f": "from gscodec_cli.main import main; sys.argv = ['gsi', 'info', F]; main()",
}


def prepare_tree(ref: str | None, workdir: Path) -> Path:
    """The source root to put on ``PYTHONPATH``: the working tree (``ref`` None) or ``git archive ref``."""
    if ref is None:
        return ROOT
    dest = workdir / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryFile() as fh:
        fh.write(archive)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(dest, filter="data")
    return dest


def pythonpath(tree: Path, workdir: Path, name: str) -> str:
    """``tree`` plus a folder whose ``gscodec_cli`` is ``tree/cli`` (the package-dir mapping of pyproject)."""
    shim = workdir / f"shim-{name}"
    shim.mkdir(exist_ok=True)
    link = shim / "gscodec_cli"
    if not link.exists():
        link.symlink_to(tree / "cli")
    return os.pathsep.join([str(tree), str(shim)])


def core_venv(workdir: Path) -> tuple[str, None]:
    """A fresh venv with the working tree installed alone (its core dependencies from pyproject.toml)."""
    source = workdir / "core-src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("gscodec", "cli"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.nb[ci]"))
    env_dir = workdir / "core-venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(source)], check=True, env=_clean_env())
    found = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('torch', 'scipy') "
                            "if u.find_spec(m)])"], check=True, capture_output=True, text=True, env=_clean_env())
    print(f"core venv: {env_dir}; torch/scipy installed there: {found.stdout.strip()}", flush=True)
    return python, None


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run_once(code: str, where: tuple[str, str | None], file: Path) -> tuple[float, float, bool, float]:
    """Wall seconds, peak RSS (MB), whether torch was imported and CPU seconds, for one fresh interpreter running
    ``code`` (``where``: the interpreter and the ``PYTHONPATH``, ``None`` for an installed package)."""
    python, path = where
    env = _clean_env() if path is None else {**os.environ, "PYTHONPATH": path}
    script = REPORT + f"F = {str(file)!r}\n" + code
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=tempfile.gettempdir())
    stderr = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}) under PYTHONPATH={path}:\n{code}\n{stderr}")
    torch_loaded = "BENCH_TORCH=1" in stderr
    return seconds, usage.ru_maxrss / 1024.0, torch_loaded, usage.ru_utime + usage.ru_stime


def encode_sample(path: str, points: int, out: Path) -> Path:
    """``tests/data/coffee.png`` encoded by the tree on ``path`` (effort 1), as ``out``."""
    code = ("import gscodec, pathlib; pathlib.Path(OUT).write_bytes(gscodec.encode_image(SRC, points=POINTS, "
            "effort=1))")
    script = f"OUT = {str(out)!r}; SRC = {str(ROOT / 'tests' / 'data' / 'coffee.png')!r}; POINTS = {points}\n" + code
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": path}, check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git ref of the tree to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=5, help="measured runs per command and tree (default 5)")
    parser.add_argument("--file", type=Path, help="the .gsi file to read (default: coffee.png encoded here)")
    parser.add_argument("--points", type=int, default=900, help="Gaussians of the default file (default 900)")
    parser.add_argument("--core-venv", action="store_true",
                        help="also measure the working tree installed alone in a fresh venv (no torch)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                                capture_output=True, text=True).stdout.strip()
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        label = f"{head}{'+changes' if dirty else ''}"
        trees = {f"baseline {commit}": (sys.executable, pythonpath(prepare_tree(args.baseline, work), work, "baseline")),
                 f"this tree {label}": (sys.executable, pythonpath(ROOT, work, "current"))}
        current_path = list(trees.values())[1][1]
        if args.core_venv:
            trees[f"this tree {label}, core-only venv"] = core_venv(work)
        file = args.file.resolve() if args.file else encode_sample(current_path, args.points, work / "sample.gsi")
        print(f"file: {file} ({file.stat().st_size} bytes); python {sys.version.split()[0]}; "
              f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)

        results: dict[str, dict[str, list]] = {c: {t: [] for t in trees} for c in COMMANDS}
        for command, code in COMMANDS.items():
            for where in trees.values():
                run_once(code, where, file)  # warm-up: bytecode and numba caches
            for _ in range(args.rounds):
                for tree, where in trees.items():
                    results[command][tree].append(run_once(code, where, file))
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")

        header = "| command | tree | wall s, median | wall s, min | CPU s, median | peak RSS MB, median | torch imported |"
        print(header + "\n|" + " --- |" * 7)
        summary = []
        for command in COMMANDS:
            for tree in trees:
                runs = results[command][tree]
                secs = [r[0] for r in runs]
                rss = [r[1] for r in runs]
                cpu = [r[3] for r in runs]
                row = {"command": command, "tree": tree, "median_s": statistics.median(secs), "min_s": min(secs),
                       "cpu_s": statistics.median(cpu), "peak_rss_mb": statistics.median(rss),
                       "torch": any(r[2] for r in runs), "seconds": secs, "cpu_seconds": cpu, "rss_mb": rss}
                summary.append(row)
                print(f"| {command} | {tree} | {row['median_s']:.3f} | {row['min_s']:.3f} | {row['cpu_s']:.3f} | "
                      f"{row['peak_rss_mb']:.0f} | {'yes' if row['torch'] else 'no'} |")
        print()
        base, *others = list(trees)
        for cur in others:
            print(f"{cur} against {base}:")
            for command in COMMANDS:
                b = next(r for r in summary if r["command"] == command and r["tree"] == base)
                c = next(r for r in summary if r["command"] == command and r["tree"] == cur)
                print(f"  {command}: {b['median_s'] / c['median_s']:.1f}x less wall time, "
                      f"{b['cpu_s'] / c['cpu_s']:.1f}x less CPU time, "
                      f"{b['peak_rss_mb'] / c['peak_rss_mb']:.1f}x less peak memory (medians)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"file": str(file), "file_bytes": file.stat().st_size,
                                             "baseline": commit, "tree": label, "rounds": args.rounds,
                                             "cpus": os.cpu_count(), "rows": summary}, indent=1))


if __name__ == "__main__":
    main()
