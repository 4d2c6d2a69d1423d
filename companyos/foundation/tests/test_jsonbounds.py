"""load_bounded_json: what it refuses, and that refusing costs no recursion and little time."""

import json
import time

import pytest

from companyos.foundation.jsonbounds import JSONRefused, json_depth, load_bounded_json


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[[[[["}', 1),
        ('["\\"[[[", [[]]]', 3),
        ("[" * 10_000 + "]" * 10_000, 10_000),
    ],
)
def test_depth_is_measured_without_parsing_and_ignores_brackets_in_strings(text, depth):
    assert json_depth(text) == depth


def test_the_depth_bound_is_inclusive(settings):
    at_bound = "[" * settings.JSON_MAX_DEPTH + "]" * settings.JSON_MAX_DEPTH
    assert json.dumps(load_bounded_json(at_bound)) == at_bound.replace("][", "], [")

    with pytest.raises(JSONRefused, match="deeper than"):
        load_bounded_json("[" + at_bound + "]")


def test_a_megabyte_of_brackets_is_refused_quickly(settings):
    started = time.perf_counter()
    with pytest.raises(JSONRefused, match="deeper than"):
        load_bounded_json("[" * 500_000 + "]" * 500_000, max_bytes=1024 * 1024)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": 1e400}', "out of range"),
        ('{"a": -1e400}', "out of range"),
        ('{"a": ' + "9" * 101 + "}", "limited to 100 characters"),
        ('{"a": "\\u0000"}', "cannot be stored"),
        ('{"\\ud800": 1}', "cannot be stored"),
        ('{"a": }', "not valid"),
    ],
)
def test_what_jsonb_cannot_take_back_is_refused_with_a_reason(text, message):
    with pytest.raises(JSONRefused, match=message):
        load_bounded_json(text)


def test_size_is_counted_in_utf8_bytes(settings):
    settings.JSON_MAX_BYTES = 10
    assert load_bounded_json('"éééé"') == "éééé"  # 10 bytes
    with pytest.raises(JSONRefused, match="larger than 10 bytes"):
        load_bounded_json('"ééééé"')
