import pytest
import torch

from rebased_bench.data.mqar import (IGNORE_INDEX, cached_generate, check_config, generate, paper_num_kv_pairs,
                                     query_index)
from rebased_bench.errors import BenchError


@pytest.mark.parametrize("seq_len, kv", [(64, 16), (128, 16), (256, 64), (30, 7)])
def test_generator_matches_the_spec(seq_len, kv):
    vocab = 8192
    inputs, labels = generate(200, seq_len, kv, vocab_size=vocab, seed=3)
    assert inputs.shape == labels.shape == (200, seq_len)
    assert inputs.dtype == labels.dtype == torch.int64
    context = 2 * kv
    keys, values = inputs[:, 0:context:2], inputs[:, 1:context:2]
    assert ((keys >= 1) & (keys < vocab // 2)).all()
    assert ((values >= vocab // 2) & (values < vocab)).all()
    for row in range(len(inputs)):
        assert len(set(keys[row].tolist())) == kv and len(set(values[row].tolist())) == kv
        query = inputs[row, context:]
        queried = query[query != 0]
        # every key is queried exactly once, at an even offset of the query region
        assert sorted(queried.tolist()) == sorted(keys[row].tolist())
        assert (torch.nonzero(query).flatten() % 2 == 0).all()
        labelled = torch.nonzero(labels[row] != IGNORE_INDEX).flatten()
        # labels sit exactly on the query positions, and give the queried key's value
        assert labelled.tolist() == (torch.nonzero(query).flatten() + context).tolist()
        lookup = dict(zip(keys[row].tolist(), values[row].tolist()))
        for pos in labelled.tolist():
            assert labels[row, pos].item() == lookup[inputs[row, pos].item()]
    assert (labels[:, :context] == IGNORE_INDEX).all()


def test_gaps_favour_early_positions():
    inputs, _ = generate(500, 256, 16, seed=0)
    positions = torch.nonzero(inputs[:, 32:]).float()[:, 1]
    space = (256 - 32)
    assert positions.mean() < space / 2  # p_i ~ 1/i puts more queries near the context


def test_seeded_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("REBASED_BENCH_CACHE", str(tmp_path))
    a = generate(50, 64, 16, seed=1)
    b = generate(50, 64, 16, seed=1)
    c = generate(50, 64, 16, seed=2)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    first = cached_generate(50, 64, 16, seed=1)
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    assert torch.equal(cached_generate(50, 64, 16, seed=1)[0], first[0])
    assert torch.equal(first[0], a[0])


def test_paper_rule_and_config_errors():
    assert paper_num_kv_pairs(128) == 16 and paper_num_kv_pairs(512) == 128
    with pytest.raises(BenchError, match="4 \\* num_kv_pairs"):
        check_config(60, 16)
    with pytest.raises(BenchError):
        check_config(64, 0)


def test_query_index_names_every_labelled_position_in_order():
    _, labels = generate(16, 64, 16, vocab_size=512, seed=3)
    index = query_index(labels)  # (16, 16)
    assert index.shape == (16, 16)
    assert (index.diff(dim=1) > 0).all()
    mask = torch.zeros_like(labels, dtype=torch.bool).scatter_(1, index, True)
    assert torch.equal(mask, labels != IGNORE_INDEX)
    labels[0, index[0, 0]] = IGNORE_INDEX
    with pytest.raises(ValueError, match="different numbers"):
        query_index(labels)
