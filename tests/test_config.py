import pytest

from bot.config import load_settings
from bot.errors import ConfigError


def test_defaults_enable_only_the_sandbox():
    s = load_settings({})
    assert s.enabled_providers == ("sandbox",) and s.sandbox_only
    assert s.db_path == "./data/kontext.db"
    assert s.providers["modelverse"].base_url == "https://api.umodelverse.ai"
    assert s.providers["vtrix"].base_url == "https://cloud.vtrix.ai"
    assert s.providers["wavespeed"].base_url == "https://api.wavespeed.ai"


def test_a_provider_is_enabled_by_its_key_and_base_urls_are_settable():
    s = load_settings(
        {"VTRIX_API_KEY": "vt-secret-123", "VTRIX_BASE_URL": "http://127.0.0.1:9/", "KONTEXT_DB": "/tmp/x.db"}
    )
    assert s.enabled_providers == ("vtrix",)
    assert s.providers["vtrix"].base_url == "http://127.0.0.1:9"
    assert s.db_path == "/tmp/x.db"
    assert "vt-secret-123" not in repr(s)  # keys never appear in a repr
    assert "vt-secret-123" in s.secrets()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MODELVERSE_BASE_URL": "api.umodelverse.ai"}, "MODELVERSE_BASE_URL"),
        ({"DISCORD_GATEWAY_URL": "http://x"}, "DISCORD_GATEWAY_URL"),
        ({"KONTEXT_CONFIG": "/nonexistent/k.toml"}, "KONTEXT_CONFIG"),
    ],
)
def test_bad_values_name_the_setting(env, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in info.value.user_message


def test_toml_file_overrides_limits_providers_and_catalog(tmp_path):
    f = tmp_path / "k.toml"
    f.write_text(
        "[limits]\njob_deadline = 30\nuser_jobs_in_flight = 1\n"
        "[providers.wavespeed]\nsync_mode = true\nmax_concurrency = 2\n"
        '[models."black-forest-labs/flux-kontext-pro"]\nfree_quota = 1\nprices = { wavespeed = 0.05 }\n'
    )
    s = load_settings({"KONTEXT_CONFIG": str(f)})
    assert s.limits.job_deadline == 30.0 and s.limits.user_jobs_in_flight == 1
    assert s.providers["wavespeed"].sync_mode is True and s.providers["wavespeed"].max_concurrency == 2
    pro = s.catalog.get("black-forest-labs/flux-kontext-pro")
    assert pro.free_quota == 1 and pro.route("wavespeed").price_micros == 50_000


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[limits]\nnope = 1\n", "unknown setting 'nope'"),
        ("[limits]\njob_deadline = 'soon'\n", "job_deadline must be"),
        ("[providers.vtrix]\napi_key = 'x'\n", "VTRIX_API_KEY"),
        ('[models."x/y"]\nfree_quota = 1\n', "unknown model"),
        ("[stuff]\n", "unknown section"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_file_gets_one_clear_line(tmp_path, text, needle):
    f = tmp_path / "k.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"KONTEXT_CONFIG": str(f)})
    assert needle in info.value.user_message
