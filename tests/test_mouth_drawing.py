"""lipdub.mouth_drawing: renderer sequences along the template walk, batch spans."""

from __future__ import annotations

import numpy as np

from lipdub.mouth_drawing import sequences, spans


def test_a_walk_at_half_the_template_rate_is_one_sequence():
    idx = np.array([0, 2, 4, 6, 8])  # a 25 fps template walked at 12.5 fps
    runs = sequences(idx, np.arange(5), None, None, walk_step=2.0)
    assert runs == [[None, 0, 1, 2, 3, 4]]  # one reset at the start, then continuous
    # at the template's own rate a gap of 2 is a skipped stretch: the renderer restarts there
    assert [r[0] for r in sequences(np.array([0, 1, 3, 4]), np.arange(4), None, None)] == [None, None]


def test_spans_cover_once_with_a_short_first_run():
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(10, 4, first=1) == [(0, 1), (1, 5), (5, 9), (9, 10)]
    assert spans(3, 4, first=5) == [(0, 3)]
    assert spans(0, 4, first=2) == []
