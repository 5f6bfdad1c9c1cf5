import pytest


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Generated MQAR data goes to a per-session folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REBASED_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
