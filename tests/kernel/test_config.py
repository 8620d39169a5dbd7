"""Configuration: TOML + environment, and one-line errors naming the file, the key and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.app import SceneOS
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from core.settings import load_settings
from core.testing.harness import make_catalog

GOOD = """
[database]
url = "sqlite://"

[tenants.bank_a]
name = "Bank A"
currency = "CNY"
plugins = ["example_bank"]

[tenants.bank_a.modules.party]
max_age_years = 65

[tenants.bank_b]
name = "Bank B"
[tenants.bank_b.modules.party]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sceneos.toml"
    path.write_text(text, encoding="utf-8")
    return path


class LoanModule:
    """A module that needs the party module, to test dependency checks."""

    @hookimpl
    def sceneos_register_modules(self):
        return [ModuleSpec(name="loans", layer="product", description="test", depends_on=("party",))]


def build(path: Path) -> SceneOS:
    return SceneOS.from_file(path, catalog=make_catalog({"loans": LoanModule()}), migrate=False)


def test_a_good_file_builds_every_tenant_with_typed_module_settings(tmp_path: Path) -> None:
    app = build(write(tmp_path, GOOD))
    assert sorted(app.tenants) == ["bank_a", "bank_b"]
    assert app.tenant("bank_a").module("party").settings.max_age_years == 65
    assert app.tenant("bank_a").module("party").settings.min_age_years == 22  # example_bank's adjustment
    assert app.tenant("bank_b").module("party").settings.min_age_years == 18


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENEOS__TENANTS__BANK_A__MODULES__PARTY__MAX_AGE_YEARS", "70")
    monkeypatch.setenv("SCENEOS__LOGGING__MODE", "json")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.logging.mode == "json"
    assert settings.tenants["bank_a"].modules["party"]["max_age_years"] == "70"
    app = SceneOS.build(settings, migrate=False)
    assert app.tenant("bank_a").module("party").settings.max_age_years == 70


BAD_FILES = {
    "unknown key": (
        GOOD.replace('currency = "CNY"', 'curency = "CNY"'),
        "sceneos.toml: tenants.bank_a.curency: unknown key",
    ),
    "wrong type": (
        GOOD.replace("max_age_years = 65", 'max_age_years = "sixty"'),
        "sceneos.toml: tenants.bank_a.modules.party.max_age_years: Input should be a valid integer, "
        "unable to parse string as an integer (got 'sixty')",
    ),
    "unknown module key": (
        GOOD.replace("max_age_years = 65", "max_age = 65"),
        "sceneos.toml: tenants.bank_a.modules.party.max_age: unknown key",
    ),
    "missing dependency": (
        GOOD.replace("[tenants.bank_b.modules.party]", "[tenants.bank_b.modules.loans]"),
        "sceneos.toml: tenants.bank_b.modules.loans: module 'loans' needs module 'party', "
        "which tenant 'bank_b' does not enable",
    ),
    "unknown plugin": (
        GOOD.replace('plugins = ["example_bank"]', 'plugins = ["exampel_bank"]'),
        "sceneos.toml: tenants.bank_a.plugins[0]: unknown plugin 'exampel_bank' (available: ",
    ),
    "unknown module": (
        GOOD.replace("[tenants.bank_b.modules.party]", "[tenants.bank_b.modules.wealth]"),
        "sceneos.toml: tenants.bank_b.modules.wealth: unknown module 'wealth' (available: ",
    ),
    "bad currency": (
        GOOD.replace('currency = "CNY"', 'currency = "RMB"'),
        "sceneos.toml: tenants.bank_a.currency: unknown ISO 4217 currency code 'RMB'",
    ),
    "missing name": (
        GOOD.replace('name = "Bank B"', ""),
        "sceneos.toml: tenants.bank_b.name: required key is missing",
    ),
    "not toml": ("[tenants\nname=", "sceneos.toml: not valid TOML: "),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_fail_with_one_line_naming_file_key_and_problem(tmp_path: Path, case: str) -> None:
    text, expected = BAD_FILES[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        build(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") or message.startswith("sceneos.toml: ")
    assert message.replace(str(path), "sceneos.toml").startswith(expected)


def test_the_environment_is_named_when_it_holds_the_bad_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENEOS__DATABASE__POOL_SIZE", "zero")
    with pytest.raises(ConfigError, match=r"^environment SCENEOS__DATABASE__POOL_SIZE: database.pool_size: "):
        load_settings(write(tmp_path, GOOD))


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_config_check_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[tenants.bank_a.partners.travel]\nname = "Travel"\nsecret = "s3cr3t-value"\n')
    result = run_cli("config", "check", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout
    assert '"secret": "**********"' in result.stdout
    assert '"min_age_years": 22' in result.stdout  # the effective value, after plugins


def test_config_check_on_a_bad_file_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_FILES["unknown key"][0])
    result = run_cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {path}: tenants.bank_a.curency: unknown key"


def test_config_check_masks_plugin_config_values_whose_key_names_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[tenants.bank_a.plugin_config.example_bank]\napi_key = "k-123456"\nmin_age_years = 23\n')
    result = run_cli("config", "check", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "k-123456" not in result.stdout and '"api_key": "**********"' in result.stdout
    assert '"min_age_years": 23' in result.stdout


def test_a_partner_rate_limit_that_does_not_parse_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[tenants.bank_a.partners.travel]\nname = "Travel"\nrate_limit = "lots"\n')
    with pytest.raises(ConfigError, match=r"tenants\.bank_a\.partners\.travel\.rate_limit: rate_limit 'lots' is not a rate"):
        build(path)


def test_config_check_masks_passwords_in_connection_urls(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[entry]\nredis_url = "redis://:hunter2@127.0.0.1:6379/0"\n')
    result = run_cli("config", "check", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "redis://:***@127.0.0.1:6379/0" in result.stdout


def test_a_modules_own_configuration_error_at_start_names_the_file_too(tmp_path: Path) -> None:
    """Modules raise ConfigError with the key they check (here the entry's master key, checked when
    the application is built); the kernel adds the file, so the line reads ``file: key: problem``."""
    path = write(tmp_path, '[entry]\nmaster_key = "short"\n[tenants.bank]\nname = "B"\n[tenants.bank.modules.entry]\n')
    with pytest.raises(ConfigError) as failed:
        app = SceneOS.from_file(path, migrate=False)
        app.start()
        app.http()
    assert str(failed.value).startswith(f"{path}: entry.master_key: ")
