"""Hosted mode caps: generous locally, strict with POLYGLOT_HOSTED=1, clear messages."""

from __future__ import annotations

import pytest

from core.config import preset
from core.limits import HOSTED, LOCAL, check_search, check_text, check_training, check_upload_size, current_limits


def test_hosted_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYGLOT_HOSTED", raising=False)
    assert current_limits() is LOCAL
    monkeypatch.setenv("POLYGLOT_HOSTED", "1")
    assert current_limits() is HOSTED
    caps = current_limits().describe()
    assert "Hosted mode" in caps and "≤ 4 layers" in caps and "≤ 8000 tokens per batch" in caps
    assert "≤ 12 layers" in LOCAL.describe() and "≤ 64000 tokens per batch" in LOCAL.describe()


def test_hosted_caps_refuse_big_requests() -> None:
    big = preset("base")
    with pytest.raises(ValueError, match="Too large for this hosted app: at most 2000 training steps"):
        check_training(big, HOSTED)
    check_training(big, LOCAL)
    check_training(preset("tiny"), HOSTED)
    deep = preset("tiny")
    deep.model.n_decoder_layers = HOSTED.max_layers + 1  # either stack counts
    with pytest.raises(ValueError, match="Too large for this hosted app: at most 4 layers"):
        check_training(deep, HOSTED)
    check_training(deep, LOCAL)
    deep.model.n_decoder_layers = HOSTED.max_layers
    check_training(deep, HOSTED)  # the cap itself is allowed
    wide = preset("tiny")
    wide.train.tokens_per_batch = HOSTED.max_tokens_per_batch + 1
    with pytest.raises(ValueError, match="Too large for this hosted app: at most 8000 tokens per batch"):
        check_training(wide, HOSTED)
    check_training(wide, LOCAL)
    wide.train.tokens_per_batch = HOSTED.max_tokens_per_batch
    check_training(wide, HOSTED)
    with pytest.raises(ValueError, match="at most 2000 characters"):
        check_text("x" * 2001, HOSTED)
    with pytest.raises(ValueError, match="at most 50 lines"):
        check_text("a\n" * 60, HOSTED)
    with pytest.raises(ValueError, match="a beam of at most 6"):
        check_search(beam_size=8, limits=HOSTED)
    with pytest.raises(ValueError, match="at most 10 candidates"):
        check_search(candidates=11, limits=HOSTED)
    with pytest.raises(ValueError, match="data.tsv: 6.0 MB is over the 5 MB upload limit"):
        check_upload_size(6_000_000, "data.tsv", HOSTED)
