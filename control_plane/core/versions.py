"""Version filters for Lookup and task routing: an exact version or a PEP 440 range like `>=2.0,<3`."""

from __future__ import annotations

from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

_OPERATORS = ("<", ">", "=", "!", "~")


class VersionFilter:
    """A parsed filter; `matches` is cheap so Lookup can apply it to every instance."""

    __slots__ = ("_exact", "_spec", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self._exact: str | None = None
        self._spec: SpecifierSet | None = None
        if not self.text:
            return
        if self.text.startswith(_OPERATORS):
            # Raises InvalidSpecifier, which parse_version_filter turns into a message.
            self._spec = SpecifierSet(self.text)
        else:
            self._exact = self.text

    def matches(self, version: str) -> bool:
        """Whether an instance running `version` passes the filter."""
        if self._spec is not None:
            parsed = _parse(version)
            return parsed is not None and self._spec.contains(parsed, prereleases=True)
        return self._exact is None or version == self._exact


@lru_cache(maxsize=1024)
def _parse(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


@lru_cache(maxsize=256)
def parse_version_filter(text: str) -> VersionFilter:
    """Parse (and cache) a filter; raises ValueError with the reason when it is not one."""
    try:
        return VersionFilter(text)
    except InvalidSpecifier as exc:
        raise ValueError(f"not a version or a version range: {text!r} ({exc})") from None
