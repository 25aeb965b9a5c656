"""Tests for common.features: hand-computed encodings, truncation, unknown characters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.features import MAX_DOMAIN_CHARS, PAD_ID, UNKNOWN_ID, VOCAB_SIZE, encode_domains

# Ids by hand: a=2 .. z=27, 0=28 .. 9=37, '-'=38, '.'=39, '_'=40.
A, B, C, Z, ZERO, NINE, DASH, DOT, UNDERSCORE = 2, 3, 4, 27, 28, 37, 38, 39, 40


def test_vocabulary_size_is_alphabet_plus_pad_and_unknown() -> None:
    assert VOCAB_SIZE == 26 + 10 + 3 + 2
    assert (PAD_ID, UNKNOWN_ID) == (0, 1)


def test_short_name_is_left_padded() -> None:
    encoded = encode_domains(["ab.c"], max_chars=6)
    assert encoded.dtype == np.uint8
    assert encoded.tolist() == [[0, 0, A, B, DOT, C]]


def test_every_allowed_character_has_its_own_id() -> None:
    encoded = encode_domains(["z0-9_"], max_chars=5)
    assert encoded.tolist() == [[Z, ZERO, DASH, NINE, UNDERSCORE]]


def test_long_name_keeps_the_right_end() -> None:
    encoded = encode_domains(["abcabc.zz"], max_chars=4)
    assert encoded.tolist() == [[C, DOT, Z, Z]]


def test_case_whitespace_and_root_dot_are_normalised() -> None:
    assert (
        encode_domains(["  AB.C. \n"], max_chars=5).tolist()
        == encode_domains(["ab.c"], max_chars=5).tolist()
    )


def test_unknown_and_non_ascii_characters_map_to_unknown_id() -> None:
    # 'é' and the emoji are one character each, so they take exactly one position.
    encoded = encode_domains(["é*a😀"], max_chars=5)
    assert encoded.tolist() == [[0, UNKNOWN_ID, UNKNOWN_ID, A, UNKNOWN_ID]]


def test_empty_name_and_empty_input() -> None:
    assert encode_domains(["", "."], max_chars=3).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert encode_domains([], max_chars=3).shape == (0, 3)


def test_default_width_and_rows_are_independent() -> None:
    encoded = encode_domains(["a.com", "x" * 100, "b.net"])
    assert encoded.shape == (3, MAX_DOMAIN_CHARS)
    assert encoded[0].tolist() == encode_domains(["a.com"])[0].tolist()
    assert encoded[2].tolist() == encode_domains(["b.net"])[0].tolist()
    assert (encoded[1] == encode_domains(["x"])[0, -1]).all()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(TypeError, match="sequence of names"):
        encode_domains("example.com")
    with pytest.raises(ValueError, match="max_chars"):
        encode_domains(["a"], max_chars=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=20), st.integers(min_value=1, max_value=70))
def test_property_shape_range_and_padding_count(names: list[str], max_chars: int) -> None:
    encoded = encode_domains(names, max_chars=max_chars)
    assert encoded.shape == (len(names), max_chars)
    assert ((encoded >= 0) & (encoded < VOCAB_SIZE)).all()
    for name, row in zip(names, encoded, strict=True):
        kept = min(len(name.strip().rstrip(".")), max_chars)
        # NUL is the only character that encodes as padding; ignore such names here.
        if "\0" not in name:
            assert int((row == PAD_ID).sum()) == max_chars - kept


def test_the_model_reads_the_registered_domain_under_the_full_public_suffix_list():
    from common.features import model_view

    view = model_view(
        ["www.Example.co.uk.", "mail.example.co.uk", "abc.ddns.net", "d1.cloudfront.net", "com"],
        reads="registered-psl",
    )
    assert view == ["example.co.uk", "example.co.uk", "abc.ddns.net", "d1.cloudfront.net", "com"]
    assert model_view(["WWW.a.com"], reads="name") == ["www.a.com"]


def test_a_subdomain_prefix_cannot_change_what_the_model_reads():
    """The shortcut a whole-name model learned: 'www.' in front of a DGA name looked benign."""
    from common.features import encode_names

    plain = encode_names(["qwkzjxv.biz"], reads="registered-psl", max_chars=32)
    prefixed = encode_names(["www.qwkzjxv.biz"], reads="registered-psl", max_chars=32)
    assert plain.tolist() == prefixed.tolist()
    with pytest.raises(ValueError, match="reads must be one of"):
        encode_names(["a.com"], reads="url", max_chars=8)
