"""Intake formats through `datasets`: JSON arrays, Parquet, CSV, save_to_disk directories and
ShareGPT files import with the same report as their JSONL equivalent, and JSONL read through
`datasets` gives the report of the file read directly; every format names the line or row of
a bad record; nothing is cached on disk (HF_DATASETS_CACHE and the home are scanned for a
canary after a real import, and the scan is shown to fail with the in-memory path off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import DatasetFormatError
from appliance.intake import formats, sharegpt
from appliance.intake.validate import check, validate
from appliance.policy import Policy, load_policy
from appliance.service.scrub import build_analyzer, prepare_dataset

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "appliance" / "data" / "demo" / "dataset.jsonl"
CANARY = "QUOKKA-CANARY-5521"
TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}
VOLATILE = ("name",)


def _policy() -> Policy:
    data = load_policy(REPO / "policy" / "demo.toml").model_dump(mode="json")
    data["intake"]["on_invalid"] = "drop"
    return Policy.model_validate(data)


@pytest.fixture(scope="module")
def analyzer() -> Any:
    """The real analyzer (one per module: building it loads spaCy)."""
    return build_analyzer(_policy())


def _records(n: int = 24) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in DEMO.read_text().splitlines()[:n]]
    rows[3]["messages"].insert(2, {"role": "tool", "content": "order 5531: shipped"})
    return rows


def _write_all(tmp_path: Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """The same records as JSONL, Parquet, CSV, a save_to_disk directory and ShareGPT."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {"jsonl": tmp_path / "d.jsonl", "json": tmp_path / "d.json",
           "parquet": tmp_path / "d.parquet",
           "csv": tmp_path / "d.csv", "datasets": tmp_path / "saved",
           "sharegpt": tmp_path / "share.jsonl"}
    out["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    out["json"].write_text(json.dumps(rows, indent=1))
    pq.write_table(pa.Table.from_pylist(rows), out["parquet"])
    import csv

    with open(out["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["messages"])
        writer.writerows([[json.dumps(r["messages"])] for r in rows])
    datasets.Dataset.from_list(rows).save_to_disk(str(out["datasets"]))
    share = [{"conversations": [{"from": TO_SHAREGPT[m["role"]], "value": m["content"]}
                                for m in r["messages"]]} for r in rows]
    out["sharegpt"].write_text("".join(json.dumps(r) + "\n" for r in share))
    return out


def _report(path: Path, analyzer: Any) -> dict[str, Any]:
    prepared = prepare_dataset(path, _policy(), name="d", analyzer=analyzer, workers=1)
    return {k: v for k, v in prepared.report.items() if k not in VOLATILE}


def test_every_format_imports_with_the_jsonl_report(tmp_path: Path, analyzer: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON array, Parquet, CSV, a datasets directory and ShareGPT give the JSONL file's
    report: counts,
    PII found, residual, and the digest of the scrubbed records (the per-dataset pseudonym
    key, random in use, is fixed here so that digests of the same records compare)."""
    monkeypatch.setattr("appliance.scrub.operators.new_key", lambda: b"k" * 32)
    paths = _write_all(tmp_path, _records())
    expected = _report(paths["jsonl"], analyzer)
    assert expected["records_out"] == 24 and expected["pii"]
    for kind in ("json", "parquet", "csv", "datasets", "sharegpt"):
        assert _report(paths[kind], analyzer) == expected, kind


ODD_LINES = [
    {"instruction": "Say hi", "input": 5, "output": "Hi"},  # the type of input varies
    {"instruction": "Say yo", "input": "", "output": "Yo", "id": 7, "meta": None},
    {"instruction": "Say ok", "output": "OK", "id": "a7", "tags": ["x", 1, None]},
    b"{not json", [1, 2], {}, "text", {"instruction": "", "output": "x"},
    {"instruction": "Big", "output": "int", "id": 2**70},  # beyond any Arrow integer
    {"instruction": "Nested", "output": "n", "extra": {"a": {"b": [1.5, 2]}, "c": None}},
]


def _odd_file(tmp_path: Path) -> Path:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n\n".join(x if isinstance(x, bytes) else json.dumps(x).encode()
                                  for x in ODD_LINES) + b"\n")
    return path


def test_json_lines_through_datasets_keep_the_direct_report(tmp_path: Path) -> None:
    """JSONL read through an in-memory `datasets.Dataset` (columns of varying type, nulls,
    absent keys, non-objects, bad JSON, blank lines) gives the records, rejections with
    their line numbers and ignored keys of the file's lines read directly; the one record
    Arrow cannot hold (an integer beyond 64 bits) is rejected naming its line."""
    from appliance.intake.reader import read_items

    path = _odd_file(tmp_path)
    kind, items = formats.read_any(path, 10_000)
    _, direct = read_items(path, 10_000)
    assert kind == "jsonl" and [i.line for i in items] == [i.line for i in direct]
    got, want = validate(items, where="x"), validate(direct, where="x")
    assert [(r.line, r.data) for r in got.records] == \
        [(r.line, r.data) for r in want.records if r.line != 17]
    assert got.ignored_keys == want.ignored_keys == {"id", "meta", "tags", "extra"}
    unheld = (17, "unsupported value: datasets cannot hold this record (OverflowError: "
              "Python int too large to convert to C long)")
    assert got.rejected == sorted([*want.rejected, unheld])
    assert [line for line, _ in got.rejected] == [1, 7, 9, 11, 13, 15, 17]
    assert [i.value for i in items if i.line == 19] == [ODD_LINES[9]]


def test_alpaca_csv_cells_stay_strings(tmp_path: Path) -> None:
    """A CSV of Alpaca records reads every cell as text ("007" stays "007", empty input is
    empty), so it validates like the JSONL file."""
    path = tmp_path / "a.csv"
    path.write_text("instruction,input,output\nRepeat the code,007,007\nSay hi,,Hi\n")
    kind, items = formats.read_any(path, 10_000)
    assert kind == "csv" and [i.line for i in items] == [1, 2]
    checked = validate(items, where=str(path))
    assert [r.data for r in checked.records] == [
        {"instruction": "Repeat the code", "input": "007", "output": "007"},
        {"instruction": "Say hi", "input": "", "output": "Hi"}]


def test_bad_rows_are_named_by_number_in_every_format(tmp_path: Path) -> None:
    """A bad record in Parquet, CSV or a datasets directory is rejected naming its row; with
    on_invalid = abort the import stops with `row N` in the one line."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": ""},
            {"instruction": "d", "output": "e"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "bad.csv").write_text('messages\n"[]"\n"[{""role"": ""user""}"\n')
    for name in ("bad.parquet", "saved"):
        _, items = formats.read_any(tmp_path / name, 10_000)
        assert validate(items, where=name).rejected == [(2, "empty content: output is empty")]
    _, items = formats.read_any(tmp_path / "bad.csv", 10_000)
    assert items[1].line == 2 and "bad JSON in column messages" in str(items[1].problem)
    data = load_policy(REPO / "policy" / "demo.toml").model_dump(mode="json")
    data["intake"]["on_invalid"] = "abort"
    with pytest.raises(DatasetFormatError, match="row 2: empty content"):
        prepare_dataset(tmp_path / "bad.parquet", Policy.model_validate(data), name="x",
                        analyzer=object())


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("x.parquet", b"PAR1 not really parquet", "cannot read as parquet"),
    ("x.csv", b"a,b\n1,2\n1,2,3\n", "line 3"),
    ("x.csv", b"\xff\xfe\x00", "cannot read as csv"),
])
def test_unreadable_files_are_one_clear_error(tmp_path: Path, name: str, content: bytes,
                                              needle: str) -> None:
    """A corrupt Parquet file or a ragged CSV is one DatasetFormatError naming the file."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=needle) as caught:
        formats.read_any(path, 10_000)
    assert str(path) in caught.value.line()


def test_a_plain_directory_is_refused(tmp_path: Path) -> None:
    """A directory without datasets' metadata is not read."""
    with pytest.raises(DatasetFormatError, match="save_to_disk"):
        formats.read_any(tmp_path, 10_000)


def test_sharegpt_column_mapping_and_tool_role() -> None:
    """ShareGPT turns map to chat roles (tool included); a mapping reads other column and
    speaker names; an unknown speaker is named with its turn."""
    shape, record, ignored = check({"conversations": [
        {"from": "human", "value": "Where is order 12?"},
        {"from": "function_call", "value": '{"name": "track", "id": 12}'},
        {"from": "observation", "value": "shipped"},
        {"from": "gpt", "value": "It shipped."}], "id": "a1"})
    assert shape == "chat" and ignored == {"id"}
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "tool",
                                                      "assistant"]
    columns = sharegpt.parse_columns("turns=dialog,from=speaker,value=text,bot=assistant")
    _, mapped, _ = check({"dialog": [{"speaker": "human", "text": "hi"},
                                     {"speaker": "bot", "text": "hello"}]}, columns)
    assert mapped == {"messages": [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "hello"}]}
    with pytest.raises(ValueError, match=r"conversations\[1\]\.from must be one of"):
        check({"conversations": [{"from": "human", "value": "a"},
                                 {"from": "robot", "value": "b"}]})
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        sharegpt.parse_columns("turns")


CACHE_OFF = ("import sys; import appliance.intake.formats as f; f.IN_MEMORY = False; "
             "from appliance.cli.main import main; sys.exit(main(sys.argv[1:]))")


def _canary_files(roots: list[Path]) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes()]


def _canary_sources(src: Path) -> None:
    """The same canary records as Parquet, a datasets directory, JSONL and a JSON array."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Which box is on shelf {i}?",
             "output": f"Shelf {i} holds box {CANARY}{i}."}
            for i in range(12)]
    src.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), src / "c.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(src / "saved"))
    (src / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "c.json").write_text(json.dumps(rows))


def _importer(tmp_path: Path, home: Path, pass_file: Path) -> tuple[Any, list[Path], Path]:
    """run(prefix, source, name) for a real `dataset import` in a child with its own
    datasets cache; the directories to scan; the cache."""
    cache, hf_home = tmp_path / "hf-datasets", tmp_path / "hf-home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_CACHE": str(cache),
           "HF_HOME": str(hf_home), "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def run(prefix: list[str], source: Path, name: str) -> None:
        done = subprocess.run([*prefix, "dataset", "import", str(source), "--name", name,
                               "--home", str(home), "--passphrase-file", str(pass_file)],
                              env=env, capture_output=True, text=True, timeout=900,
                              check=False)
        assert done.returncode == 0, done.stderr

    return run, [cache, hf_home, tmp_path / "xdg", home], cache


def test_imports_leave_no_plaintext_in_the_datasets_cache_or_the_home(
        tmp_path: Path, pass_file_home: tuple[Path, Path]) -> None:
    """After real `dataset import`s of a Parquet file, a datasets directory and a JSONL
    file, neither HF_DATASETS_CACHE, HF_HOME nor the home holds the canary; through
    datasets' caching loader (the test-only switch) the same scan finds it."""
    _canary_sources(tmp_path / "src")
    run, scanned, cache = _importer(tmp_path, *pass_file_home)
    for source, name in (("c.parquet", "p"), ("saved", "s"), ("c.jsonl", "j")):
        run([sys.executable, "-m", "appliance"], tmp_path / "src" / source, name)
    assert _canary_files(scanned) == []
    run([sys.executable, "-c", CACHE_OFF], tmp_path / "src" / "c.parquet", "unsafe")
    found = _canary_files(scanned)
    assert found and all(p.is_relative_to(cache) for p in found)


@pytest.mark.slow  # two more real imports (each loads spaCy and scrubs): over a minute
def test_json_imports_leave_no_plaintext_in_the_datasets_cache(
        tmp_path: Path, pass_file_home: tuple[Path, Path]) -> None:
    """A JSON array imports leaving no canary in the cache or the home; JSONL through
    datasets' caching JSON loader (the test-only switch) leaves it in the cache."""
    _canary_sources(tmp_path / "src")
    run, scanned, cache = _importer(tmp_path, *pass_file_home)
    run([sys.executable, "-m", "appliance"], tmp_path / "src" / "c.json", "a")
    assert _canary_files(scanned) == []
    run([sys.executable, "-c", CACHE_OFF], tmp_path / "src" / "c.jsonl", "unsafe")
    found = _canary_files(scanned)
    assert found and all(p.is_relative_to(cache) for p in found)


@pytest.fixture
def pass_file_home(tmp_path: Path) -> tuple[Path, Path]:
    """An initialised home (demo policy) and its passphrase file."""
    from tests.train.conftest import PASSPHRASE, make_home

    home = make_home(tmp_path / "home")
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE)
    return home.root, pass_file


def test_columns_option_maps_a_sharegpt_variant_and_refuses_a_bad_map(
        tmp_path: Path, analyzer: Any, run_cli: Any) -> None:
    """`--columns` reads a variant's turn and speaker names (same report as the JSONL
    chat file); a malformed mapping is bad usage (exit 2, one line)."""
    from appliance.service.scrub import column_mapping

    rows = _records(6)
    variant = tmp_path / "variant.jsonl"
    variant.write_text("".join(json.dumps({"dialog": [
        {"speaker": {"user": "human", "assistant": "bot"}.get(m["role"], m["role"]),
         "text": m["content"]} for m in r["messages"]]}) + "\n" for r in rows))
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = column_mapping("turns=dialog,from=speaker,value=text,bot=assistant")
    policy = _policy()
    got = prepare_dataset(variant, policy, name="v", analyzer=analyzer, columns=columns)
    want = prepare_dataset(plain, policy, name="v", analyzer=analyzer)
    assert got.report["records_out"] == want.report["records_out"] == 6
    assert got.report["pii"] == want.report["pii"]
    done = run_cli("dataset", "import", str(variant), "--name", "v", "--columns", "dialog",
                   "--home", str(tmp_path / "nohome"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
