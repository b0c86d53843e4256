"""The ward's [federation] section: optional, and every mistake named."""
from __future__ import annotations

import pytest

from wardcall.config import ConfigError, load_config


def test_a_ward_without_the_section_needs_no_broker(make_ward):
    assert load_config(make_ward(terminals=1).config_path).federation is None


def test_the_section_is_read(make_ward):
    ward = make_ward(terminals=1, extra_toml='\n[federation]\nward = "icu-2"\nleaf_url = "nats://10.0.0.5:4222"\n')
    settings = load_config(ward.config_path).federation
    assert settings.ward_id == "icu-2" and settings.leaf_url == "nats://10.0.0.5:4222"


@pytest.mark.parametrize("body, place, words", [
    ('leaf_url = "nats://x:1"', "[federation] ward", "ward's id"),
    ('ward = "Ward A"', "[federation] ward", "lower-case"),
    ('ward = "a"\nleaf_url = "http://x"', "[federation] leaf_url", "nats://"),
    ('ward = "a"\nqueue_max = 0', "[federation] queue_max", "more than 0"),
    ('ward = "a"\nqueue = 5', "[federation]", "unknown key 'queue'"),
    ('ward = "a"\nstandby_terminal = "10.0.0.6"', "[federation] standby_terminal", "the standby's terminal address host:port"),
    ('ward = "a"\nprimary_terminal = "x:99999"', "[federation] primary_terminal", "the primary's terminal address"),
])
def test_mistakes_are_named(make_ward, body, place, words):
    ward = make_ward(terminals=0, extra_toml=f"\n[federation]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(ward.config_path)
    assert err.value.place == place and words in err.value.problem
