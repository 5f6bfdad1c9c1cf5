import pytest

from rebased_bench.errors import BenchError
from rebased_bench.ranges import parse_floats, parse_ints, parse_names


@pytest.mark.parametrize("text, expected", [
    ("128..2048", [128, 256, 512, 1024, 2048]),
    ("128..2000", [128, 256, 512, 1024]),
    ("128..512:+128", [128, 256, 384, 512]),
    ("64,128,512", [64, 128, 512]),
    ("64", [64]),
    ("16,64..256", [16, 64, 128, 256]),
])
def test_int_ranges(text, expected):
    assert parse_ints(text) == expected


def test_float_lists_and_ranges():
    assert parse_floats("3e-4,1e-3") == [3e-4, 1e-3]
    assert parse_floats("1e-3..4e-3") == pytest.approx([1e-3, 2e-3, 4e-3])


@pytest.mark.parametrize("text", ["", "5..1", "a", "1,,2", "0..8", "1..8:128", "1..8:+0", "1..", "1.5"])
def test_bad_ranges_name_the_option(text):
    with pytest.raises(BenchError, match="--seq-lens"):
        parse_ints(text, "--seq-lens")


def test_names():
    assert parse_names("attention, rebased") == ["attention", "rebased"]
    with pytest.raises(BenchError):
        parse_names("attention,,rebased")
