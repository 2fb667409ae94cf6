"""The policies a running service decides with, reloaded when their files change.

A reload reads and validates every file; a set with any problem is rejected (logged with
file, path and problem) and the previous set stays active. A layer whose rules changed must
say so with a higher `version`: a return records the versions it was decided under, and two
different policies must never be recorded under one name. A return keeps the effective
policy it was accepted under (named by ReturnAccepted.policy_digest, published once to
boomerang.policy.snapshots), so a reload only affects returns requested after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.policy_files.loader import (
    PolicyError,
    PolicyLayer,
    PolicySet,
    build_policy_set,
    load_policy_set,
    policy_files,
)


@dataclass(frozen=True)
class Reload:
    changed: bool
    digest: str  # the active set's digest after the attempt
    problems: tuple[str, ...] = ()  # why a changed set was rejected


class PolicyBook:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # layers made by the service, not read from files (sellers' standings: risk)
        self.generated: tuple[tuple[str, str], ...] = ()
        self._stamp = self._files_stamp()
        self.files: PolicySet = load_policy_set(directory)  # a bad set at start is fatal
        self.current: PolicySet = self.files

    def set_generated(self, texts: list[tuple[str, str]]) -> None:
        """The generated layers the next reload loads with the files."""
        self.generated = tuple(texts)

    def _load(self) -> PolicySet:
        files = policy_files(self.directory)
        self.files = build_policy_set(
            (str(path.relative_to(self.directory)), path.read_text(errors="replace"))
            for path in files
        )
        return build_policy_set(
            [
                (str(path.relative_to(self.directory)), path.read_text(errors="replace"))
                for path in files
            ]
            + list(self.generated)
        )

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        stamp = []
        for path in policy_files(self.directory) if self.directory.is_dir() else []:
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # removed while listing: the next look sees it gone
            stamp.append((str(path), info.st_mtime_ns, info.st_size))
        stamp += [(name, hash(text), len(text)) for name, text in self.generated]
        return tuple(stamp)

    def reload_if_changed(self) -> Reload:
        """Cheap when nothing changed (file names, sizes and mtimes only)."""
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return Reload(False, self.current.digest)
        self._stamp = stamp
        try:
            if not self.directory.is_dir():
                candidate = load_policy_set(self.directory)  # says why
            candidate = self._load()
        except PolicyError as exc:
            return Reload(False, self.current.digest, tuple(str(p) for p in exc.problems))
        if candidate.digest == self.current.digest:
            return Reload(False, self.current.digest)
        problems = version_problems(self.current, candidate)
        if problems:
            return Reload(False, self.current.digest, problems)
        self.current = candidate
        return Reload(True, candidate.digest)


def _content(layer: PolicyLayer) -> tuple[object, ...]:
    return (layer.rules, layer.currency)


def version_problems(active: PolicySet, candidate: PolicySet) -> tuple[str, ...]:
    """Layers of the candidate that changed without a higher version than the active one's."""
    by_key = {layer.key: layer for layer in active.layers}
    problems = []
    for layer in candidate.layers:
        before = by_key.get(layer.key)
        changed = before is not None and _content(layer) != _content(before)
        if changed and layer.version <= before.version:
            problems.append(
                f"{layer.file}: version: the rules changed but the version is "
                f"{layer.version} (active: {before.version}); raise it so returns can say "
                "which rules decided them"
            )
    return tuple(problems)
