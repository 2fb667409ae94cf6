"""A table value's changelog form (engine/stored_value.py): plain JSON while small, deflated
when large, and either form reads back as the value written."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.saga import stored
from services.engine.state_store import Handling, StateStore, handling
from services.engine.stored_value import COMPRESS_FROM, DEFLATED, stored_value, value_of
from tests.unit.test_stored_saga import completed_saga

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=200,
)


@given(json_values)
def test_every_json_value_reads_back_as_written_in_the_form_its_size_gives(value):
    written = stored_value(value)
    assert value_of(written) == value
    plain = orjson.dumps(value)
    assert (written == plain) == (len(plain) < COMPRESS_FROM)
    assert written.startswith(DEFLATED) == (len(plain) >= COMPRESS_FROM)


def test_a_completed_saga_is_stored_deflated_in_less_than_half_its_json():
    state, explanation = completed_saga()
    record = stored.stored_record(state, explanation)
    plain = orjson.dumps(record)
    written = stored_value(record)
    assert written.startswith(DEFLATED) and len(written) < len(plain) / 2
    assert value_of(written) == orjson.loads(plain)


def test_a_changelog_record_written_before_deflating_still_restores():
    """Records already on a changelog are plain JSON of any size: they read as they are."""
    big = {"items": [{"sku": f"SKU-{n}", "quantity": n} for n in range(100)]}
    store = StateStore()
    table = store.table("sagas", "boomerang-x-sagas-changelog")
    store.restore("sagas", 0, b'"K"', orjson.dumps(big), [])
    assert table["K"] == big
    with handling(Handling("K", "in", 0, 5)):
        table["K"] = big
    (write,) = store.checkpoint_writes()
    assert write.value.startswith(DEFLATED)
    again = StateStore()
    again.table("sagas", "boomerang-x-sagas-changelog")
    again.restore("sagas", 0, write.key, write.value, write.headers)
    assert again.tables["sagas"]["K"] == big
