"""Capture redaction: values named like secrets are replaced by a marker before a record leaves the process.

Runs on the processor thread (:meth:`BatchProcessor._prepare`, after values are sanitized), so the
caller's thread pays nothing. What it looks at, in ``used``, ``generated`` and ``custom_metadata`` of
every record:

- **names**: a parameter, output or metadata key, or a key of a nested dict (a config dict, an
  environment-like dict such as ``os.environ`` passed as an argument), whose name matches one of the
  patterns: its value becomes :data:`MARKER`. Numbers, booleans and None are kept (a secret is never
  ``max_tokens=512`` or ``use_token=True``);
- **URIs with credentials** in any string (``postgresql://bob:pw@db/x`` -> ``postgresql://bob:<redacted>@db/x``);
- **``name=value`` / ``name: value`` inside text**: strings holding ``=`` or ``:`` after such a name (a
  command line ``--password=pw``, the ``repr`` of an object summarized because it is not JSON, such as a
  dataclass ``Config(api_key='...')``).

Patterns (``capture.redact_patterns``, comma-separated; default :data:`DEFAULT_PATTERNS`; empty: off;
a leading ``+`` adds to the defaults) match names word by word, whatever the case or separator:
``api_key`` matches ``api_key``, ``apiKey``, ``X-API-KEY``, ``openai_api_key`` and ``apikey``; ``token``
matches ``token``, ``auth_token``, ``GITHUB_TOKEN``, ``authtoken`` and ``tokens``, not ``tokenizer``. A
pattern with ``*`` is a glob on the whole lower-cased name instead (``*pass*``).

It is a safety net for names that say "secret", not a guarantee: a password passed positionally to a
function whose parameter is called ``x`` is recorded as ``x``. docs/security.md says how to extend it.
"""

from __future__ import annotations

import fnmatch
import re

MARKER = "<redacted>"
DEFAULT_PATTERNS = "password,passwd,secret,token,api_key,credential,private_key"
FIELDS = ("used", "generated", "custom_metadata")
_MAX_DEPTH = 12
_MEMO_MAX = 50_000

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URI_CREDS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)([^\s@/]+)(@)")
_NUMBERS = frozenset({int, float, bool, type(None)})
_CONTAINERS = frozenset({str, dict, list})


def words(name: str) -> list[str]:
    """``"openaiAPI_key"`` -> ``["openai", "api", "key"]``: words split at separators and camelCase, lower-cased."""
    return [w.lower() for w in _WORDS.findall(name)]


def parse_patterns(text: str | None) -> list[str]:
    """The setting's comma-separated patterns; ``+a,b`` means the defaults plus ``a`` and ``b``."""
    text = (text or "").strip()
    if text.startswith("+"):
        text = DEFAULT_PATTERNS + "," + text[1:]
    return [p.strip() for p in text.split(",") if p.strip()]


class Redactor:
    """Replaces secret-named values of records in place. Built from settings; used by one processor thread."""

    def __init__(self, patterns, marker: str = MARKER) -> None:
        self.patterns = [p for p in patterns if p]
        if not self.patterns:
            raise ValueError("Redactor needs at least one pattern")
        self.marker = marker
        self._globs = [p.lower() for p in self.patterns if "*" in p or "?" in p]
        self._words = [words(p) for p in self.patterns if p.lower() not in self._globs]
        self._words = [w for w in self._words if w]
        self._joined = ["".join(w) for w in self._words]
        self._memo: dict[str, bool] = {}
        # 'name=value', 'name: value', "'name': 'value'" inside text, from a pattern's words up to the value
        # (starting at the pattern keeps the search linear: no backtracking over a name's prefix)
        alts = "|".join(r"[_\-]?".join(map(re.escape, w)) for w in self._words) or "(?!)"
        self._in_text = re.compile(
            r"(?i)((?:" + alts + r")[\w.\-]*['\"]?\s*[=:]\s*)"
            r"('[^']*'|\"[^\"]*\"|[^\s,;)}\]'\"]+)")

    @classmethod
    def from_settings(cls, settings) -> "Redactor | None":
        """None when ``capture.redact_patterns`` is empty (redaction off)."""
        patterns = parse_patterns(getattr(settings.capture, "redact_patterns", DEFAULT_PATTERNS))
        return cls(patterns) if patterns else None

    # -- names --------------------------------------------------------------------------------------
    def secret_name(self, name) -> bool:
        """Does ``name`` match a pattern? Memoized: parameter names repeat from record to record."""
        hit = self._memo.get(name)
        if hit is None:
            hit = self._match(str(name))
            if len(self._memo) < _MEMO_MAX:
                self._memo[name] = hit
        return hit

    def _match(self, name: str) -> bool:
        low = name.lower()
        if any(fnmatch.fnmatchcase(low, g) for g in self._globs):
            return True
        ws = words(name)
        for pat, joined in zip(self._words, self._joined):
            n = len(pat)
            for i in range(len(ws) - n + 1):
                if ws[i:i + n - 1] == pat[:-1] and ws[i + n - 1] in (pat[-1], pat[-1] + "s"):
                    return True
            if any(w.endswith(joined) or w.endswith(joined + "s") for w in ws):
                return True  # written as one word: apikey, authtoken, dbpassword
        return False

    # -- values -------------------------------------------------------------------------------------
    def text(self, s: str) -> str:
        """Credentials inside a string: a URI's password, ``name=value`` after a secret name. ``s`` itself if none."""
        out = s
        if "@" in out and "://" in out:
            out = _URI_CREDS.sub(lambda m: m.group(1) + self.marker + m.group(3), out)
        if "=" in out or ":" in out:
            out = self._in_text.sub(lambda m: m.group(1) + self.marker, out)
        return s if out == s else out

    def value(self, v, depth: int = 0):
        """``v`` with secret-named entries of nested dicts (and lists) and secrets in text replaced.

        Returns ``v`` itself when nothing changed (no copy on the common path).
        """
        t = type(v)
        if t is str:
            return self.text(v)
        if depth >= _MAX_DEPTH:
            return v
        if t is dict:
            out = None
            for k, x in v.items():
                tx = type(x)
                if tx in _NUMBERS:
                    continue
                new = self.marker if self.secret_name(k) else (self.value(x, depth + 1) if tx in _CONTAINERS else x)
                if new is not x:
                    if out is None:
                        out = dict(v)
                    out[k] = new
            return v if out is None else out
        if t is list:
            lst = None
            for i, x in enumerate(v):
                if type(x) in _CONTAINERS:
                    new = self.value(x, depth + 1)
                    if new is not x:
                        if lst is None:
                            lst = list(v)
                        lst[i] = new
            return v if lst is None else lst
        return v

    def record(self, rec: dict) -> None:
        """Redact ``rec``'s value fields in place. The top level is :meth:`value` unrolled: most values are
        numbers or short strings, and this runs for every record."""
        memo, marker = self._memo, self.marker
        for field in FIELDS:
            values = rec.get(field)
            if type(values) is not dict:
                continue
            out = None
            for k, x in values.items():
                tx = type(x)
                if tx in _NUMBERS:
                    continue
                hit = memo.get(k)
                if hit is None:
                    hit = self.secret_name(k)
                if hit:
                    new = marker
                elif tx is str:
                    if "=" not in x and ":" not in x and "@" not in x:
                        continue
                    new = self.text(x)
                elif tx is dict or tx is list:
                    new = self.value(x, 1)
                else:
                    continue
                if new is not x:
                    if out is None:
                        out = dict(values)
                    out[k] = new
            if out is not None:
                rec[field] = out

    def batch(self, records: list) -> None:
        """Redact every record of a batch in place (the processor thread, before export)."""
        for rec in records:
            if type(rec) is dict:
                self.record(rec)
