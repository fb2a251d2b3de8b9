"""A flow may ask the chunk reader for larger chunks than its default (the bank batch asks
for :data:`batch_rows.ROWS_PER_CHUNK`): the same records in the same order, chunks ramping up
from the first size to the one asked and no further."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import synth
from gateway.flows import batch_rows
from gateway.validation import chunks

DATA = synth.to_csv(list(synth.cases(3000, ["AG001", "AG002"], seed=5)))


def _read(per_chunk: int | None) -> tuple[list[int], list[list[str]]]:
    reader = chunks.ChunkReader(io.BytesIO(DATA), encoding="utf-8", delimiter=",",
                                rows_per_chunk=64)
    header = reader.header()
    assert header is not None
    sizes, rows = [], []
    for chunk in reader.chunks(len(header), rows_per_chunk=per_chunk):
        sizes.append(chunk.records)
        rows += [list(r.values()) for r in chunk.table.to_pylist()]
    return sizes, rows


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([None, 1, 64, 700, 2048, 5000]))
def test_the_records_do_not_depend_on_the_chunk_size(per_chunk):
    sizes, rows = _read(per_chunk)
    assert rows == _read(None)[1]
    limit = per_chunk or 64
    ramp = [min(min(limit, 64) * 2 ** i, limit) for i in range(len(sizes))]
    assert sizes[:-1] == ramp[:-1]  # doubling from the first size up to the one asked
    assert 0 < sizes[-1] <= ramp[-1]


def test_the_batch_flow_asks_for_larger_chunks_than_the_default():
    from gateway.flows import result_rows

    assert batch_rows.ROWS_PER_CHUNK > chunks.ROWS_PER_CHUNK
    assert result_rows.ROWS_PER_CHUNK > chunks.ROWS_PER_CHUNK
    sizes, _ = _read(2048)
    assert sizes == [64, 128, 256, 512, 1024, 3000 - 1984]
