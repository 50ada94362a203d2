"""Parse import file names of the BSPK, Kore and patterns conventions strictly (SPEC section 3)."""

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import NoReturn

from impex.exceptions import FileNameError

BSPK = "bspk"
KORE = "kore"
PATTERNS = "patterns"
CONVENTIONS = (BSPK, KORE, PATTERNS)

BSPK_VERSION = "V2"
BSPK_EXTENSION = ".csv"
BSPK_MODE = "DELTA"
BSPK_SHAPE = "TYPE_VERSION_CompanyName_YYYYMMDDHHMM.csv"
KORE_MODES = ("FULL", "NET")
KORE_SHAPE = "{source}_{sequence}_{integration}_{API}.{mode}"
# A third-party export carries no mode: its rows are upserted, like a BSPK delta.
PATTERNS_MODE = "DELTA"

_VERSION = re.compile(r"V[0-9]+")
_COMPANY = re.compile(r"[A-Z][A-Za-z0-9]*")
_TIMESTAMP = re.compile(r"[0-9]{12}")
_SOURCE = re.compile(r"[A-Za-z0-9]+")
_SEQUENCE = re.compile(r"[0-9]{6,7}")
_INTEGRATION = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
_BSPK_LOOK = re.compile(r"[^_]+_V[0-9]+_[^_]+_[0-9]{12}\.[cC][sS][vV]")


@dataclass(frozen=True)
class ParsedName:
    """What a valid file name says: its type, its place in the processing order and its sender."""

    name: str
    convention: str
    type_code: str
    order_key: str
    mode: str
    sequence: int | None = None
    company: str | None = None
    integration: str | None = None
    source: str | None = None
    version: str | None = None
    made_at: datetime | None = None


def base_name(name: str) -> str:
    """Return the last component of a POSIX or Windows path."""
    return PurePosixPath(name.replace("\\", "/")).name


def parse_bspk(name: str, *, known_types: Collection[str], company: str | None = None) -> ParsedName:
    """Parse a BSPK name `TYPE_VERSION_CompanyName_YYYYMMDDHHMM.csv`, checking the company if given."""
    name = base_name(name)
    stem, dot, extension = name.rpartition(".")
    if not dot:
        _fail(name, f"no extension (expected {BSPK_EXTENSION})")
    if f".{extension}" != BSPK_EXTENSION:
        if f".{extension}".lower() == BSPK_EXTENSION:
            _fail(name, f"extension '.{extension}' must be lower case '{BSPK_EXTENSION}'")
        _fail(name, f"extension '.{extension}' is not {BSPK_EXTENSION}")
    parts = stem.split("_")
    if len(parts) != 4:
        _fail(name, f"has {len(parts)} underscore-separated parts, expected 4: {BSPK_SHAPE}")
    type_code, version, company_part, timestamp = parts
    if type_code not in known_types:
        _fail(name, f"unknown type '{type_code}' (known: {_known(known_types)})")
    if not _VERSION.fullmatch(version):
        _fail(name, f"'{version}' is not a version (expected {BSPK_VERSION})")
    if version != BSPK_VERSION:
        _fail(name, f"version '{version}' is not supported (expected {BSPK_VERSION})")
    if not _COMPANY.fullmatch(company_part):
        _fail(name, f"company '{company_part}' is not a CamelCase name of letters and digits")
    if company is not None and company_part != company:
        _fail(name, f"company '{company_part}' does not match the connection's company '{company}'")
    made_at = _timestamp(name, timestamp)
    return ParsedName(
        name=name,
        convention=BSPK,
        type_code=type_code,
        order_key=timestamp,
        mode=BSPK_MODE,
        company=company_part,
        version=version,
        made_at=made_at,
    )


def parse_kore(name: str, *, known_types: Collection[str], integration: str | None = None) -> ParsedName:
    """Parse a Kore name `{source}_{sequence}_{integration}_{API}.{mode}`, checking the integration if given."""
    name = base_name(name)
    stem, dot, mode = name.rpartition(".")
    if not dot:
        _fail(name, f"no mode extension (expected .{' or .'.join(KORE_MODES)})")
    if mode not in KORE_MODES:
        _fail(name, f"mode '{mode}' is not {' or '.join(KORE_MODES)}")
    parts = stem.split("_")
    if len(parts) < 3:
        _fail(name, f"has {len(parts)} underscore-separated parts, expected at least 3: {KORE_SHAPE}")
    source, sequence_part, *rest_parts = parts
    if not _SOURCE.fullmatch(source):
        _fail(name, f"source '{source}' is not letters and digits")
    if not _SEQUENCE.fullmatch(sequence_part):
        _fail(name, f"sequence '{sequence_part}' is not a 6 or 7 digit number")
    rest = "_".join(rest_parts)
    name_integration, api = _split_kore_rest(rest, known_types)
    if api is None:
        _fail(name, f"unknown API in '{rest}' (known: {_known(known_types)})")
    if name_integration is not None:
        if not _INTEGRATION.fullmatch(name_integration):
            _fail(name, f"integration '{name_integration}' is not letters and digits (single - or _ between)")
        if integration is not None and name_integration != integration:
            _fail(name, f"integration '{name_integration}' does not match the connection's integration '{integration}'")
    sequence = int(sequence_part)
    return ParsedName(
        name=name,
        convention=KORE,
        type_code=api,
        order_key=f"{sequence:012d}",
        mode=mode,
        sequence=sequence,
        integration=name_integration,
        source=source,
    )


def parse_patterns(name: str, *, patterns: Mapping[str, str]) -> ParsedName:
    """Parse a third-party name by file patterns (descriptor code -> glob): exactly one pattern must match it.

    The name carries no company, timestamp or sequence: its order key is empty, and files of this convention go in
    by arrival, then precedence (SPEC sections 3 and 4). Two patterns matching one name is refused, never guessed.
    """
    name = base_name(name)
    globs = {code: pattern for code, pattern in patterns.items() if pattern}
    matching = sorted(code for code, pattern in globs.items() if fnmatch.fnmatchcase(name, pattern))
    if not matching:
        if not globs:
            _fail(name, "no descriptor of the connection's import groups has a file pattern to match it")
        _fail(name, f"matches none of the expected file patterns: {describe_patterns(globs)}")
    if len(matching) > 1:
        both = describe_patterns({code: globs[code] for code in matching})
        _fail(name, f"matches the file patterns of several descriptors ({both}): make the patterns tell them apart")
    return ParsedName(name=name, convention=PATTERNS, type_code=matching[0], order_key="", mode=PATTERNS_MODE)


def describe_patterns(patterns: Mapping[str, str]) -> str:
    """List file patterns for a message: `customers_export*.csv (SHOP_CUSTOMERS), ...`."""
    return ", ".join(f"{pattern} ({code})" for code, pattern in sorted(patterns.items()))


def parse_file_name(
    name: str,
    *,
    convention: str,
    known_types: Collection[str],
    company: str | None = None,
    integration: str | None = None,
    patterns: Mapping[str, str] | None = None,
) -> ParsedName:
    """Parse a file name by the connection's naming convention (patterns: descriptor code -> glob, for PATTERNS)."""
    if convention == BSPK:
        return parse_bspk(name, known_types=known_types, company=company)
    if convention == KORE:
        return parse_kore(name, known_types=known_types, integration=integration)
    if convention == PATTERNS:
        known = {code: pattern for code, pattern in (patterns or {}).items() if code in known_types}
        return parse_patterns(name, patterns=known)
    raise FileNameError(
        f"{base_name(name)}: unknown naming convention '{convention}' (known: {', '.join(CONVENTIONS)})"
    )


def guess_convention(name: str) -> str | None:
    """Return the convention a name looks like it follows, without validating it."""
    name = base_name(name)
    if _BSPK_LOOK.fullmatch(name):
        return BSPK
    if name.endswith(tuple(f".{mode}" for mode in KORE_MODES)):
        return KORE
    return None


def company_of(name: str) -> str | None:
    """Return the company part of a BSPK-shaped name, without validating it."""
    name = base_name(name)
    if guess_convention(name) == KORE:
        return None
    parts = name.rpartition(".")[0].split("_")
    if len(parts) != 4 or not parts[2]:
        return None
    return parts[2]


def integration_of(name: str, *, known_types: Collection[str]) -> str | None:
    """Return the integration part of a Kore-shaped name, None for the short form, without validating it."""
    stem = base_name(name).rpartition(".")[0]
    parts = stem.split("_")
    if len(parts) < 3:
        return None
    integration, api = _split_kore_rest("_".join(parts[2:]), known_types)
    if api is not None:
        return integration or None
    if len(parts) < 4:
        return None
    # No known API: the third part is still the likeliest integration id, enough to find whom to report to.
    return parts[2] or None


def is_company_name(value: str) -> bool:
    """Return whether value can be the CamelCase company part of a BSPK name."""
    return _COMPANY.fullmatch(value) is not None


def is_integration_id(value: str) -> bool:
    """Return whether value can be the integration part of a Kore name."""
    return _INTEGRATION.fullmatch(value) is not None


def _split_kore_rest(rest: str, known_types: Collection[str]) -> tuple[str | None, str | None]:
    """Split `integration_API` (or the short form `API`) on the longest known API suffix."""
    if rest in known_types:
        return None, rest
    parts = rest.split("_")
    for start in range(1, len(parts)):
        api = "_".join(parts[start:])
        if api in known_types:
            return "_".join(parts[:start]), api
    return None, None


def _timestamp(name: str, timestamp: str) -> datetime:
    """Read a YYYYMMDDHHMM timestamp as a naive datetime."""
    if _TIMESTAMP.fullmatch(timestamp):
        try:
            return datetime(
                int(timestamp[0:4]),
                int(timestamp[4:6]),
                int(timestamp[6:8]),
                int(timestamp[8:10]),
                int(timestamp[10:12]),
            )
        except ValueError:
            pass
    _fail(name, f"timestamp '{timestamp}' is not YYYYMMDDHHMM")


def _known(known_types: Collection[str]) -> str:
    """List the known types for a message."""
    return ", ".join(sorted(known_types)) or "none"


def _fail(name: str, problem: str) -> NoReturn:
    """Raise the error for one bad part of a name."""
    raise FileNameError(f"{name}: {problem}")
