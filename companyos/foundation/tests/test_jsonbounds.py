"""load_bounded_json: what it refuses, and that refusing costs no recursion and little time."""

import json
import time

import pytest

from companyos.foundation.jsonbounds import JSONRefused, load_bounded_json


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, {"b": []}]}',
        '{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        '[{"a": 1}, [[{"b": [true]}]]]',
    ],
)
def test_brackets_inside_strings_do_not_count_and_siblings_do_not_add_up(settings, text):
    settings.JSON_MAX_DEPTH = 5
    assert load_bounded_json(text) == json.loads(text)


def test_the_depth_bound_is_inclusive(settings):
    at_bound = "[" * settings.JSON_MAX_DEPTH + "]" * settings.JSON_MAX_DEPTH
    assert json.dumps(load_bounded_json(at_bound)) == at_bound.replace("][", "], [")

    with pytest.raises(JSONRefused, match="deeper than"):
        load_bounded_json("[" + at_bound + "]")


@pytest.mark.parametrize("depth", [65, 900, 500_000], ids=["just over", "under the recursion limit", "1 MB"])
def test_deeper_json_is_refused_quickly_whatever_its_depth(depth):
    started = time.perf_counter()
    with pytest.raises(JSONRefused, match="deeper than 64 levels"):
        load_bounded_json("[" * depth + "]" * depth, max_bytes=1024 * 1024)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": 1e400}', "out of range"),
        ('{"a": -1e400}', "out of range"),
        ('{"a": ' + "9" * 101 + "}", "limited to 100 characters"),
        ('{"a": -' + "9" * 100 + "}", "limited to 100 characters"),
        ("[" + "9" * 5000 + "]", "limited to 100 characters"),  # past Python's own limit on integers
        ('{"a": 1.' + "0" * 99 + "}", "limited to 100 characters"),
        ('{"a": "\\u0000"}', "cannot be stored"),
        ('{"\\ud800": 1}', "cannot be stored"),
        ('{"a": }', "not valid"),
    ],
)
def test_what_jsonb_cannot_take_back_is_refused_with_a_reason(text, message):
    with pytest.raises(JSONRefused, match=message):
        load_bounded_json(text)


@pytest.mark.parametrize("literal", ["9" * 100, "-" + "9" * 99, "-0", "1." + "0" * 98])
def test_numbers_of_up_to_100_characters_are_taken(literal):
    assert load_bounded_json(f'{{"a": [{literal}]}}') == {"a": [json.loads(literal)]}


def test_size_is_counted_in_utf8_bytes(settings):
    settings.JSON_MAX_BYTES = 10
    assert load_bounded_json('"éééé"') == "éééé"  # 10 bytes
    with pytest.raises(JSONRefused, match="larger than 10 bytes"):
        load_bounded_json('"ééééé"')
