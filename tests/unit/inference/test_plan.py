"""The block plan: grid, regions, halos and input windows."""

from __future__ import annotations

import pytest

from selfnet.errors import ConfigError
from selfnet.inference.plan import MARGIN, BlockPlan, axis_window, parse_block


def test_grid_and_regions_tile_the_output_exactly():
    plan = BlockPlan((12, 100, 70), 2.5, (16, 32, 32), 24, 2)
    nz, ny, nx = plan.out_shape
    assert plan.grid == (-(-nz // 16), 4, 3)
    covered = sum((r[0].stop - r[0].start) * (r[1].stop - r[1].start) * (r[2].stop - r[2].start)
                  for r in map(plan.region, plan.indices()))
    assert covered == nz * ny * nx
    assert plan.to_dict()["block"] == [16, 32, 32]


def test_axis_window_reflects_only_at_true_borders():
    first = axis_window(0, 32, 100, 16, 2)
    assert first.start == 0 and first.reflect[0] == MARGIN and first.reflect[1] == 0
    inner = axis_window(32, 64, 100, 16, 2)
    assert inner.start == 16 and inner.stop == 80 and inner.reflect == (0, 0)
    assert (inner.stop - inner.start + inner.extra) % 2 == 0
    last = axis_window(64, 100, 100, 16, 2)
    assert last.stop == 100 and last.reflect[1] >= MARGIN
    assert last.keep.stop - last.keep.start == 36


def test_parse_block():
    assert parse_block("64") == (64, 64, 64) and parse_block("32,128,128") == (32, 128, 128)
    assert parse_block(None) == (256, 256, 256)
    for bad in ("12", "a,b", "16,16", "20"):
        with pytest.raises(ConfigError):
            parse_block(bad)
