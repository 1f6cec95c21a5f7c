import json

import pytest

from app.core.json_input import MAX_DEPTH, JsonInputError, decode_json, nesting_depth


def test_decodes_documents_within_the_bound():
    assert decode_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert decode_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert nesting_depth(3) == 0 and nesting_depth({"a": [[]]}) == 3


@pytest.mark.parametrize("raw, reason", [
    (None, "empty"), (b"", "empty"), (b"\xff\xfe{", "invalid"), (b"{", "invalid_json"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "too_deep"),
    ("[" * 100_000 + "]" * 100_000, "too_deep"),
    (json.dumps({"a": [{"b": [[[[]]]]}]}).replace("[]", "[" * MAX_DEPTH + "]" * MAX_DEPTH), "too_deep"),
])
def test_refuses_what_no_client_should_send_with_a_reason(raw, reason):
    with pytest.raises(JsonInputError, match=reason):
        decode_json(raw)
