"""Regenerate appliance/data/general/paragraphs.jsonl: the general-text set the regression
guard scores perplexity on (before and after training).

Source: the docstrings of the CPython standard library of the interpreter running this
script (documentation shipped inside the installed Python), licence PSF-2.0. Only prose
paragraphs are kept (no code, no lists, no doctest lines), deduplicated, in a fixed module
order, so the file is reproducible on the same Python version. Run:
    .venv/bin/python scripts/make_general_text.py
"""

from __future__ import annotations

import importlib
import inspect
import json
import platform
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "appliance" / "data" / "general" / "paragraphs.jsonl"
MODULE_LIST = (
    "argparse collections json logging pathlib subprocess threading asyncio email http.client "
    "unittest typing datetime decimal fractions statistics random heapq bisect functools "
    "itertools contextlib dataclasses enum string textwrap difflib csv sqlite3 zipfile tarfile "
    "shutil tempfile socket ssl urllib.request xml.etree.ElementTree html.parser calendar "
    "locale gettext pickle copy pprint weakref abc numbers math cmath operator inspect dis ast "
    "tokenize codecs unicodedata re struct queue sched selectors signal mmap hashlib hmac "
    "secrets base64 binascii gzip bz2 lzma zlib configparser tomllib plistlib optparse getopt "
    "shlex cmd pdb timeit trace tracemalloc gc warnings traceback doctest pydoc venv zipimport "
    "importlib pkgutil runpy sysconfig platform errno io os time uuid ipaddress mailbox "
    "mimetypes smtplib imaplib ftplib poplib wave colorsys turtle graphlib concurrent.futures "
    "multiprocessing asyncio.tasks asyncio.streams")
MODULES = MODULE_LIST.split()
CODE_STARTS = (" ", "\t", ">>>", "-", "*", "|", "=")


def _documented(name: str) -> list[object]:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return []
    members = [getattr(module, n) for n in sorted(dir(module)) if not n.startswith("_")]
    return [module] + [m for m in members if (inspect.isclass(m) or inspect.isfunction(m))
                       and getattr(m, "__module__", None) == name]


def _prose(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", doc):
        if any(line.startswith(CODE_STARTS) for line in para.splitlines()):
            continue
        text = " ".join(para.split())
        letters = sum(c.isalpha() or c == " " for c in text) / max(1, len(text))
        if (200 <= len(text) <= 900 and letters >= 0.9 and text.count("(") <= 4
                and "::" not in text and text.count("`") <= 2):
            out.append(text)
    return out


def main() -> None:
    """Write the paragraphs, one JSON object per line."""
    seen: set[str] = set()
    lines = []
    for name in MODULES:
        for obj in _documented(name):
            for text in _prose(inspect.getdoc(obj) or ""):
                if text not in seen:
                    seen.add(text)
                    lines.append(json.dumps({"source": f"python-{platform.python_version()}"
                                             f"/{name}", "text": text}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", "utf-8")
    print(f"{len(lines)} paragraphs -> {OUT}")


if __name__ == "__main__":
    main()
