"""Plugins: discovery through entry points, per-tenant activation, and isolation between banks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.errors import ConfigError, Rejected
from core.hookspecs import hookimpl
from core.plugins import PluginCatalog
from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from middle.party.service import CustomerDraft

STRICT_BANK_DIR = Path(__file__).parents[1] / "fixtures" / "strict_bank_pkg"


@pytest.fixture
def strict_bank_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the tiny plugin distribution on sys.path, as `pip install` would."""
    monkeypatch.syspath_prepend(str(STRICT_BANK_DIR))


def register(app, tenant_id: str, draft: CustomerDraft):
    runtime = app.tenant(tenant_id).module("party")
    with runtime.tenant.unit_of_work() as uow:
        return runtime.container.service(uow=uow).register(draft)


def test_builtin_and_third_party_plugins_are_found_through_entry_points(strict_bank_installed: None) -> None:
    catalog = PluginCatalog.discover()
    assert {"party", "example_bank", "strict_bank"} <= set(catalog.names())
    strict = catalog.get("strict_bank")
    assert strict.origin.startswith("entry point sceneos_strict_bank")
    assert "sceneos-strict-bank 1.0" in strict.origin
    assert strict.hooks == ["sceneos_adjust_module_settings", "sceneos_party_validate_customer"]
    assert [m.name for m in catalog.get("party").modules] == ["party"]


def test_a_banks_plugin_changes_behaviour_for_that_bank_only(strict_bank_installed: None, make_sceneos) -> None:
    app = make_sceneos({"tenants": {
        "bank_a": tenant_config("Bank A", plugins=["strict_bank"]),
        "bank_b": tenant_config("Bank B"),
    }})
    virtual_phone = CustomerDraft(name="Han Meimei", id_number=resident_id(date(1990, 5, 1)), phone="17012345678")

    with pytest.raises(Rejected) as refused:
        register(app, "bank_a", virtual_phone)
    assert refused.value.details == [{"code": "virtual_operator_phone",
                                      "message": "virtual-operator mobile numbers are not accepted"}]
    assert register(app, "bank_b", virtual_phone).created

    # Settings adjusted by the plugin for bank A only.
    assert app.tenant("bank_a").module("party").settings.max_age_years == 60
    assert app.tenant("bank_b").module("party").settings.max_age_years == 100
    assert "strict_bank" in app.tenant("bank_a").hooks.plugin_names()
    assert "strict_bank" not in app.tenant("bank_b").hooks.plugin_names()


def test_a_globally_enabled_plugin_is_called_for_every_bank(strict_bank_installed: None, make_sceneos) -> None:
    app = make_sceneos({"plugins": ["strict_bank"], "tenants": {
        "bank_a": tenant_config("Bank A"), "bank_b": tenant_config("Bank B"),
    }})
    for index, tenant_id in enumerate(("bank_a", "bank_b")):
        with pytest.raises(Rejected):
            register(app, tenant_id, CustomerDraft(name="X", id_number=resident_id(date(1990, 1, index + 1)),
                                                   phone="17112345678"))


class Recorder:
    """A plugin registered in code that records the events it sees."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.started: list[str] = []
        self.stopped: list[str] = []

    @hookimpl
    def sceneos_on_event(self, event, tenant) -> None:
        self.events.append((tenant.id, event.type))

    @hookimpl
    def sceneos_startup(self, tenant) -> None:
        self.started.append(tenant.id)

    @hookimpl
    def sceneos_shutdown(self, tenant) -> None:
        self.stopped.append(tenant.id)


def test_plugins_registered_in_code_get_lifecycle_and_events_of_their_tenant_only(make_sceneos) -> None:
    recorder = Recorder()
    app = make_sceneos(
        {"tenants": {"bank_a": tenant_config("A", plugins=["recorder"]), "bank_b": tenant_config("B")}},
        plugins={"recorder": recorder},
    )
    assert recorder.started == ["bank_a"]
    register(app, "bank_a", CustomerDraft(name="A", id_number=resident_id(date(1990, 1, 1)), phone=mobile(1)))
    register(app, "bank_b", CustomerDraft(name="B", id_number=resident_id(date(1990, 1, 2)), phone=mobile(2)))
    assert recorder.events == [("bank_a", "party.customer.registered")]
    app.close()
    assert recorder.stopped == ["bank_a"]


def test_events_are_not_delivered_when_the_unit_of_work_rolls_back(make_sceneos) -> None:
    recorder = Recorder()
    app = make_sceneos({"tenants": {"bank": tenant_config(plugins=["recorder"])}}, plugins={"recorder": recorder})
    tenant = app.tenant("bank")
    with pytest.raises(RuntimeError), tenant.unit_of_work() as uow:
        uow.publish("test.happened", {"n": 1})
        raise RuntimeError("boom")
    assert recorder.events == []
    with tenant.unit_of_work() as uow:
        uow.publish("test.happened", {"n": 2})
    assert recorder.events == [("bank", "test.happened")]


def test_a_failing_event_subscriber_does_not_stop_the_others(make_sceneos) -> None:
    class Broken:
        @hookimpl
        def sceneos_on_event(self, event) -> None:
            raise ValueError("subscriber bug")

    recorder = Recorder()
    app = make_sceneos({"tenants": {"bank": tenant_config(plugins=["broken", "recorder"])}},
                       plugins={"broken": Broken(), "recorder": recorder})
    with app.tenant("bank").unit_of_work() as uow:
        uow.publish("test.happened", {})
    assert recorder.events == [("bank", "test.happened")]


def test_a_misspelled_hook_fails_startup_naming_the_plugin(make_sceneos) -> None:
    class Typo:
        @hookimpl
        def sceneos_on_evnt(self, event) -> None: ...

    with pytest.raises(ConfigError, match=r"tenants\.bank\.plugins: plugin 'typo'"):
        make_sceneos({"tenants": {"bank": tenant_config(plugins=["typo"])}}, plugins={"typo": Typo()})


def test_adjusted_settings_of_the_wrong_type_fail_startup_naming_plugin_and_key(make_sceneos) -> None:
    class Bad:
        @hookimpl
        def sceneos_adjust_module_settings(self, module):
            return {"min_age_years": "old enough"} if module == "party" else None

    with pytest.raises(ConfigError) as error:
        make_sceneos({"tenants": {"bank": tenant_config(plugins=["bad"])}}, plugins={"bad": Bad()})
    assert str(error.value).startswith("plugin bad: tenants.bank.modules.party.min_age_years: ")


def test_hook_order_follows_tryfirst_and_trylast(make_sceneos) -> None:
    calls: list[str] = []

    class Early:
        @hookimpl(tryfirst=True)
        def sceneos_adjust_module_settings(self, module):
            if module != "party":
                return None
            calls.append("early")
            return {"min_age_years": 30}

    class Late:
        @hookimpl(trylast=True)
        def sceneos_adjust_module_settings(self, module):
            if module != "party":
                return None
            calls.append("late")
            return {"min_age_years": 25}

    app = make_sceneos({"tenants": {"bank": tenant_config(plugins=["late", "early"])}},
                       plugins={"early": Early(), "late": Late()})
    assert calls == ["early", "late"]
    assert app.tenant("bank").module("party").settings.min_age_years == 25  # the last applied wins


def test_two_apps_in_one_process_do_not_share_plugins(make_sceneos) -> None:
    first, second = Recorder(), Recorder()
    app1 = make_sceneos({"tenants": {"bank": tenant_config(plugins=["rec"])}}, plugins={"rec": first})
    app2 = make_sceneos({"tenants": {"bank": tenant_config(plugins=["rec"])}}, plugins={"rec": second})
    with app1.tenant("bank").unit_of_work() as uow:
        uow.publish("only.first", {})
    assert first.events == [("bank", "only.first")] and second.events == []
    assert app2.tenant("bank").hooks.pm is not app1.tenant("bank").hooks.pm
