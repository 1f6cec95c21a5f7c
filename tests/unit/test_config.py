import pytest

from app.core.config import ConfigError, describe, load_config
from app.core.secret_key import DEVELOPMENT_SECRET_KEY, check_secret_key


def test_defaults_match_the_local_stack():
    config = load_config({})
    assert config.database_url.endswith("@127.0.0.1:5433/quiz")
    assert (config.kafka_bootstrap_servers, config.kafka_topic, config.web_port) == (
        "127.0.0.1:9092", "quiz.events", 8000)


def test_environment_overrides_and_types():
    config = load_config({"WEB_PORT": "9000", "RELAY_POLL_INTERVAL_S": "0.5", "LOG_FORMAT": "JSON"})
    assert (config.web_port, config.relay_poll_interval_s, config.log_format) == (9000, 0.5, "json")


@pytest.mark.parametrize("name, value", [("WEB_PORT", "eighty"), ("LOG_FORMAT", "xml"), ("REDIS_URL", "  ")])
def test_a_malformed_value_names_its_variable(name, value):
    with pytest.raises(ConfigError) as error:
        load_config({name: value})
    assert str(error.value).startswith(f"{name}=") and "\n" not in str(error.value)


def test_redis_cluster_nodes_are_host_port_pairs_and_empty_means_one_redis():
    assert load_config({}).redis_cluster_nodes == ""
    assert load_config({"REDIS_CLUSTER_NODES": " a:7000, 10.0.0.2:7001 ,"}).redis_cluster_nodes \
        == "a:7000,10.0.0.2:7001"
    for value in ("a", "a:port", ":7000", "a:70000"):
        with pytest.raises(ConfigError) as error:
            load_config({"REDIS_CLUSTER_NODES": value})
        assert str(error.value).startswith("REDIS_CLUSTER_NODES=")


def test_every_setting_is_described():
    assert all(doc for _, _, doc in describe())


def test_the_configuration_page_lists_every_variable():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [env for env, _, _ in describe() if f"| `{env}` |" not in page]
    assert missing == []


@pytest.mark.parametrize("key", [DEVELOPMENT_SECRET_KEY, "x" * 31, "é" * 15])
def test_the_web_refuses_a_public_or_short_secret_key(key):
    with pytest.raises(ConfigError) as error:
        check_secret_key(load_config({"SECRET_KEY": key}))
    assert "SECRET_KEY" in str(error.value) and "\n" not in str(error.value)


def test_a_long_random_key_or_development_mode_passes_the_key_check():
    check_secret_key(load_config({"SECRET_KEY": "k" * 32}))
    check_secret_key(load_config({"SECRET_KEY": DEVELOPMENT_SECRET_KEY, "ALLOW_INSECURE_SECRET_KEY": "1"}))


def test_the_public_url_is_configured_or_the_bind_address():
    assert load_config({}).public_base_url() == "http://127.0.0.1:8000"
    assert load_config({"WEB_HOST": "0.0.0.0",
                        "WEB_PORT": "8001"}).public_base_url() == "http://127.0.0.1:8001"
    assert load_config({"WEB_HOST": "::1"}).public_base_url() == "http://[::1]:8000"
    configured = load_config({"PUBLIC_URL": " https://quiz.example.org/live/ ", "WEB_HOST": "0.0.0.0"})
    assert configured.public_base_url() == "https://quiz.example.org/live"
    for value in ("quiz.example.org", "ftp://quiz.example.org", "https://quiz.example.org/?a=1",
                  "https://user:pw@quiz.example.org", "https://"):
        with pytest.raises(ConfigError) as error:
            load_config({"PUBLIC_URL": value})
        assert str(error.value).startswith("PUBLIC_URL="), value
