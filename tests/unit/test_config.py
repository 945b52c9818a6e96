"""Typed configuration: defaults, overlay file, environment, explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError


def test_defaults_are_secure_and_documented() -> None:
    config = load_config(environ={})
    assert config.transform.ip.anonymize is True
    assert (config.transform.ip.ipv4_prefix, config.transform.ip.ipv6_prefix) == (24, 48)
    assert config.transform.non_tracker_policy == "skip"
    assert config.transform.pseudonymize.enabled is False
    assert config.transform.tracker_paths == ("/i", "/ice.png")


def test_precedence_is_override_then_environment_then_file(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.toml"
    overlay.write_text('[transform]\nnon_tracker_policy = "page_view"\ninternal_domains = ["example.com"]\n')
    config = load_config(overlay, environ={})
    assert config.transform.non_tracker_policy == "page_view"
    assert config.transform.internal_domains == ("example.com",)
    env = {
        "CLICKSTREAM_ETL__TRANSFORM__NON_TRACKER_POLICY": "skip",
        "CLICKSTREAM_ETL__LOAD__ROW_GROUP_SIZE": "1000",
    }
    config = load_config(overlay, environ=env)
    assert config.transform.non_tracker_policy == "skip"
    assert config.load.row_group_size == 1000
    config = load_config(overlay, environ=env, overrides={"transform.non_tracker_policy": "page_view"})
    assert config.transform.non_tracker_policy == "page_view"


def test_overlay_file_can_come_from_the_environment(tmp_path: Path) -> None:
    overlay = tmp_path / "o.toml"
    overlay.write_text("[transform.ip]\nanonymize = false\n")
    assert load_config(environ={"CLICKSTREAM_ETL_CONFIG": str(overlay)}).transform.ip.anonymize is False


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[transform]\nnon_tracker_policy = 'everything'\n", "must be one of skip, page_view"),
        ("[transform]\nno_such_key = 1\n", "unknown configuration key"),
        ("[load]\nrow_group_size = 'big'\n", "must be an integer"),
        ("[transform.ip]\nanonymize = 'yes'\n", "must be true or false"),
        ("not toml ===", "not valid TOML"),
    ],
)
def test_invalid_overlay_names_the_key_and_problem(tmp_path: Path, content: str, message: str) -> None:
    overlay = tmp_path / "bad.toml"
    overlay.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(overlay, environ={})


def test_missing_overlay_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_pseudonymize_config_repr_hides_the_key() -> None:
    """Reliability catalogue S07: the key never shows in the configuration's repr."""
    config = load_config(environ={}, overrides={"transform.pseudonymize.key": "super-secret-key-123456"})
    assert "super-secret" not in repr(config)


def test_code_defaults_that_restate_the_shipped_config_are_pinned_to_it() -> None:
    """One source of defaults: where code keeps a default (for direct callers), it equals config/default.toml."""
    import inspect

    from pipeline.formats import read_limits
    from pipeline.formats.base import ReadLimits
    from transform.enrichments.campaign import CampaignRules
    from transform.enrichments.ip import IpAnonymizer

    shipped = load_config(environ={})
    assert ReadLimits() == read_limits(shipped.extract)
    c = shipped.transform.campaign
    assert CampaignRules() == CampaignRules(c.medium, c.source, c.term, c.content, c.campaign, c.click_ids)
    defaults = inspect.signature(IpAnonymizer).parameters
    ip = shipped.transform.ip
    assert (defaults["ipv4_prefix"].default, defaults["ipv6_prefix"].default) == (ip.ipv4_prefix, ip.ipv6_prefix)
