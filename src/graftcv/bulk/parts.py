"""The parts folder of a bulk prediction: the plan a rerun must match, one Parquet file per part (written
atomically, so one that exists is whole), and their merge into the output file."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from graftcv.atomic import replacing, write_json
from graftcv.bulk.sources import Part
from graftcv.errors import GraftcvError

log = logging.getLogger("graftcv")
PLAN_FILE = "plan.json"
PART_KEY = b"graftcv.part"  # a part file's schema metadata: which images it holds (their digest) and how many
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("class", pa.string()),
        ("probability", pa.float32()),
        ("top_classes", pa.list_(pa.string())),
        ("top_probabilities", pa.list_(pa.float32())),
        ("error", pa.string()),
    ]
)


def parts_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.parts")


def part_file(parts: Path, index: int) -> Path:
    return parts / f"part-{index:06d}.parquet"


def part_index(path: Path) -> int | None:
    """The number of a part file's name, None for anything else in the folder."""
    stem = path.name.removeprefix("part-").removesuffix(".parquet")
    return int(stem) if path.name.startswith("part-") and path.suffix == ".parquet" and stem.isdigit() else None


def check_plan(parts: Path, plan: dict, out: Path, write: bool = True) -> None:
    """A parts folder belongs to one plan: the same source, model, part size and topk, or the part numbers would
    mean other images. Written on the first run (by rank 0 alone); a later run with another plan is refused."""
    file = parts / PLAN_FILE
    if file.is_file():
        try:
            found = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            found = {}
        if found == plan:
            return
        differ = [key for key in plan if found.get(key) != plan[key]] or ["format"]
        raise GraftcvError(
            f"{parts} holds the parts of another prediction (its {', '.join(differ)} differ): delete that folder, "
            f"choose another --out than {out}, or pass --overwrite."
        )
    if write:
        write_json(file, plan)


def part_done(parts: Path, part: Part) -> bool:
    """Whether this part's file exists; one written for other images (the source changed) is an error."""
    path = part_file(parts, part.index)
    if not path.is_file():
        return False
    try:
        recorded = json.loads((pq.read_schema(path).metadata or {}).get(PART_KEY, b"{}"))
    except (OSError, pa.ArrowInvalid, json.JSONDecodeError):
        recorded = {}
    if recorded.get("digest") != part.digest():
        raise GraftcvError(
            f"{path} holds other images than part {part.index} of the source now (the source changed since it was "
            f"written): delete {parts} or pass --overwrite."
        )
    return True


def part_table(names: list[str], probs: np.ndarray, errors: list[str | None], classes: list[str], k: int) -> pa.Table:
    """One row per image in SCHEMA: the top-k classes of `probs` (n, C), nulls and the reason where it failed."""
    failed = np.array([error is not None for error in errors], dtype=bool)
    order = np.argsort(-probs, axis=1)[:, :k]  # as Model.predict orders each row
    top = np.take_along_axis(probs, order, axis=1).astype(np.float32)
    top_names = np.asarray(classes, dtype=object)[order]
    kept = ~failed
    offsets = pa.array(np.concatenate([[0], np.cumsum(kept * k)]).astype(np.int32))
    mask = pa.array(failed)
    return pa.Table.from_arrays(
        [
            pa.array(names, pa.string()),
            pa.array(np.where(failed, None, top_names[:, 0]), pa.string()),
            pa.array(top[:, 0], pa.float32(), mask=failed),
            pa.ListArray.from_arrays(offsets, pa.array(top_names[kept].ravel(), pa.string()), mask=mask),
            pa.ListArray.from_arrays(offsets, pa.array(top[kept].ravel(), pa.float32()), mask=mask),
            pa.array(errors, pa.string()),
        ],
        schema=SCHEMA,
    )


def write_part(parts: Path, part: Part, tables: list[pa.Table]) -> Path:
    """The part's rows, atomically: a part file that exists is whole."""
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    record = {"digest": part.digest(), "rows": table.num_rows}
    table = table.replace_schema_metadata({PART_KEY: json.dumps(record).encode()})
    path = part_file(parts, part.index)
    with replacing(path) as staging:
        pq.write_table(table, str(staging))
    return path


def wait_for_parts(parts: Path, count: int, timeout: float, poll: float = 2.0) -> None:
    """Until parts 0..count-1 all exist (other ranks write theirs to the same, shared, folder). Gives up after
    `timeout` seconds without a new part."""
    missing = [i for i in range(count) if not part_file(parts, i).is_file()]
    changed = said = time.monotonic()
    while missing:
        time.sleep(poll)
        still = [i for i in missing if not part_file(parts, i).is_file()]
        now = time.monotonic()
        if len(still) < len(missing):
            changed = now
        missing = still
        if missing and now - changed > timeout:
            raise GraftcvError(
                f"{len(missing)} part(s) never appeared in {parts} (first: {part_file(parts, missing[0]).name}) "
                f"within {timeout:.0f} s: a rank failed or does not share this folder; run every rank again "
                "(finished parts are kept)."
            )
        if missing and now - said > 60:
            log.info("Waiting for %d part(s) from other ranks in %s.", len(missing), parts)
            said = now


def merge(parts: Path, count: int, out: Path, metadata: dict) -> int:
    """Parts 0..count-1 into `out`, one part in memory at a time, atomically; then the parts folder goes."""
    rows = 0
    schema = SCHEMA.with_metadata({b"graftcv": json.dumps(metadata).encode()})
    with replacing(out) as staging, pq.ParquetWriter(str(staging), schema) as writer:
        for index in range(count):
            table = pq.read_table(part_file(parts, index)).replace_schema_metadata(schema.metadata)
            writer.write_table(table)
            rows += table.num_rows
    shutil.rmtree(parts, ignore_errors=True)
    return rows
