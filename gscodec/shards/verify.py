"""Checking a set of output shards: every `.gsi` decodes, the manifests agree, every input is accounted for once."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..format import GsiError, decode
from .manifest import InputFile, Manifest, ManifestError, digest, read_manifest
from .plan import list_key
from .tar import ShardError, iter_samples

_SHOWN = 5


def _some(items: Iterable[str]) -> str:
    """``a, b, c, ... (12 in all)``: the first few of ``items``."""
    items = sorted(items)
    head = ", ".join(items[:_SHOWN])
    return head if len(items) <= _SHOWN else f"{head}, ... ({len(items)} in all)"


@dataclass
class ShardCheck:
    """The result for one output shard."""

    shard: str
    samples: int = 0
    failures: int = 0
    bytes: int = 0
    gsi_bytes: int = 0
    inputs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    """All shard results, the problems across shards or against the inputs, and how many input keys were compared."""

    shards: list[ShardCheck]
    problems: list[str] = field(default_factory=list)
    input_keys: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.shards)

    def all_problems(self) -> list[str]:
        """Every problem as one line, per-shard ones prefixed with the shard."""
        return [f"{s.shard}: {p}" for s in self.shards for p in s.problems] + list(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "shards": [{**asdict(s), "ok": s.ok} for s in self.shards],
                "problems": self.all_problems(), "input_keys": self.input_keys,
                "totals": {"shards": len(self.shards), "samples": sum(s.samples for s in self.shards),
                           "failures": sum(s.failures for s in self.shards),
                           "bytes": sum(s.bytes for s in self.shards)}}


def _check_shard(path: Path) -> tuple[ShardCheck, Manifest | None]:
    check = ShardCheck(str(path))
    manifest: Manifest | None = None
    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        check.problems.append(f"no valid manifest ({exc}); the shard is incomplete: run gsi encode again")
    keys: list[str] = []
    members: dict[str, list[str]] = {}
    entries = {e.key: e for e in manifest.samples} if manifest is not None else {}
    altered: list[str] = []
    if not path.is_file():
        check.problems.append("shard file is missing")
    else:
        check.bytes = path.stat().st_size
        try:
            for sample in iter_samples(path):
                keys.append(sample.key)
                members[sample.key] = [info.name for info, _ in sample.members]
                check.problems += [f"sample {sample.key}: {reason}" for _, reason in sample.rejected]
                entry = entries.get(sample.key)
                if entry is not None and members[sample.key] == entry.members:
                    got = [digest(data) for _, data in sample.members]
                    if got != entry.sha256:
                        names = [n for n, a, b in zip(entry.members, got, entry.sha256) if a != b] or entry.members
                        altered.append(f"{sample.key} ({', '.join(names)})")
                gsi = [(info, data) for info, data in sample.members if sample.extension(info) == "gsi"]
                if not gsi:
                    check.problems.append(f"sample {sample.key} has no .gsi member")
                for info, data in gsi:
                    check.gsi_bytes += len(data)
                    try:
                        decode(data)
                    except GsiError as exc:
                        check.problems.append(f"{info.name} does not decode: {exc}")
        except ShardError as exc:
            check.problems.append(str(exc))
    check.samples = len(keys)
    repeated = [k for k, n in Counter(keys).items() if n > 1]
    if repeated:
        check.problems.append(f"key(s) repeated inside the shard: {_some(repeated)}")
    if manifest is None:
        return check, None
    check.failures = len(manifest.failures)
    check.inputs = [i.path for i in manifest.inputs]
    if path.is_file() and manifest.bytes != check.bytes:
        check.problems.append(f"size {check.bytes} differs from the manifest's {manifest.bytes}")
    listed = [s.key for s in manifest.samples]
    if len(listed) != len(keys):
        check.problems.append(f"{len(keys)} sample(s) in the shard, {len(listed)} in the manifest")
    if missing := set(listed) - set(keys):
        check.problems.append(f"in the manifest but not in the shard: {_some(missing)}")
    if extra := set(keys) - set(listed):
        check.problems.append(f"in the shard but not in the manifest: {_some(extra)}")
    wrong = [s.key for s in manifest.samples if s.key in members and members[s.key] != s.members]
    if wrong:
        check.problems.append(f"members differ from the manifest for: {_some(wrong)}")
    if altered:
        check.problems.append(f"contents differ from the manifest's SHA-256 for: {_some(altered)}")
    if both := set(listed) & {f.key for f in manifest.failures}:
        check.problems.append(f"both encoded and listed as failed: {_some(both)}")
    check.problems += [f"input problem recorded while encoding: {e}" for e in manifest.errors]
    return check, manifest


def verify_shards(shards: Sequence[str | os.PathLike], input_shards: Sequence[str | os.PathLike] | None = None,
                  input_list: Sequence[str | os.PathLike] | None = None) -> VerifyReport:
    """Check output ``shards`` (paths; a shard may be missing when only its manifest exists).

    Per shard: it reads, every ``.gsi`` member decodes, keys are unique, no
    member is unsafe to extract (:func:`~gscodec.shards.tar.member_problem`),
    and its samples, members, size and every member's SHA-256 match its manifest. Across shards: no key is
    accounted for (encoded or failed) twice. With ``input_shards`` (tar) or
    ``input_list`` (image paths, one per list line): every input key is
    encoded or listed as a failure exactly once, no output comes from another
    input, and the inputs did not change since they were encoded.
    """
    report = VerifyReport([])
    manifests: list[tuple[str, Manifest]] = []
    for s in shards:
        check, manifest = _check_shard(Path(s))
        report.shards.append(check)
        if manifest is not None:
            manifests.append((str(s), manifest))

    where: dict[str, list[str]] = {}
    for shard, m in manifests:
        for key in [e.key for e in m.samples] + [f.key for f in m.failures]:
            where.setdefault(key, []).append(shard)
    repeated = {k: v for k, v in where.items() if len(v) > 1}
    if repeated:
        k, v = next(iter(sorted(repeated.items())))
        report.problems.append(f"{len(repeated)} key(s) accounted for more than once (encoded or failed), e.g. "
                               f"{k} in {', '.join(sorted(set(v)))}: {_some(repeated)}")

    if input_shards is not None:
        _against_tars(report, manifests, [Path(p) for p in input_shards])
    if input_list is not None:
        _against_list(report, manifests, [Path(p) for p in input_list])
    if input_shards is not None or input_list is not None:
        for shard, m in manifests:
            changed = [i.path for i in m.inputs if InputFile.of(i.path) != i]
            if changed:
                report.problems.append(f"{shard}: input(s) changed or removed since encoding: {_some(changed)}")
    return report


def _accounted(m: Manifest) -> Counter:
    return Counter([e.key for e in m.samples] + [f.key for f in m.failures])


def _against_tars(report: VerifyReport, manifests: list[tuple[str, Manifest]], inputs: list[Path]) -> None:
    owners: dict[str, list[tuple[str, Manifest]]] = {}
    for shard, m in manifests:
        for i in m.inputs:
            owners.setdefault(i.path, []).append((shard, m))
    given = {os.path.realpath(p) for p in inputs}
    for shard, m in manifests:
        if not any(i.path in given for i in m.inputs):
            report.problems.append(f"{shard} comes from {_some(i.path for i in m.inputs)}, not one of the inputs")
    total = 0
    for path in inputs:
        mine = owners.get(os.path.realpath(path), [])
        if not mine:
            report.problems.append(f"input {path} has no output shard (not encoded yet?)")
            continue
        if len(mine) > 1:
            report.problems.append(f"input {path} was encoded into {len(mine)} shards: "
                                   f"{', '.join(s for s, _ in mine)}")
        shard, m = mine[0]
        keys: list[str] = []
        try:
            keys = [s.key for s in iter_samples(path)]
        except ShardError as exc:
            if not m.errors:
                report.problems.append(f"input {path}: {exc}")
        total += len(keys)
        expected, accounted = Counter(keys), _accounted(m)
        if missing := expected - accounted:
            report.problems.append(f"input {path}: {sum(missing.values())} key(s) neither in {shard} nor listed "
                                   f"as failures: {_some(missing)}")
        if extra := accounted - expected:
            report.problems.append(f"{shard}: {sum(extra.values())} key(s) not in its input {path}: {_some(extra)}")
    report.input_keys = (report.input_keys or 0) + total


def _against_list(report: VerifyReport, manifests: list[tuple[str, Manifest]], paths: list[Path]) -> None:
    expected = {list_key(i): os.path.realpath(p) for i, p in enumerate(paths)}
    seen: set[str] = set()
    unknown: list[str] = []
    moved: list[str] = []
    for shard, m in manifests:
        for key, source in [(e.key, e.source) for e in m.samples] + [(f.key, f.source) for f in m.failures]:
            seen.add(key)
            if key not in expected:
                unknown.append(f"{key} ({shard})")
            elif source != expected[key]:
                moved.append(f"{key} ({source} in {shard}, {expected[key]} in the list)")
    if unknown:
        report.problems.append(f"{len(unknown)} key(s) are not lines of the input list: {_some(unknown)}")
    if moved:
        report.problems.append(f"{len(moved)} key(s) came from another file than their list line: {_some(moved)}")
    if missing := set(expected) - seen:
        report.problems.append(f"{len(missing)} input list line(s) neither encoded nor listed as failures: "
                               f"{_some(missing)}")
    report.input_keys = (report.input_keys or 0) + len(expected)


__all__ = ["ShardCheck", "VerifyReport", "verify_shards"]
