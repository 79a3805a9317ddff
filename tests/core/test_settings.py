import os

import pytest

from flowcept_dist.core.settings import SettingsError, load_settings, render_settings_file


def test_defaults_need_no_file(base_env):
    s = load_settings()
    assert s.transport.type == "direct"
    assert s.store.type == "lmdb"
    assert s.store.lmdb_path == str(base_env / "lmdb")  # from the environment override


def test_file_then_env_then_argument(base_env, monkeypatch):
    path = base_env / "s.yaml"
    path.write_text("transport:\n  batch_size: 7\nredis:\n  port: 6390\n")
    monkeypatch.setenv("FLOWCEPT_SETTINGS_PATH", str(path))
    monkeypatch.setenv("FLOWCEPT_REDIS_PORT", "6391")
    s = load_settings()
    assert s.transport.batch_size == 7
    assert s.redis.port == 6391  # environment beats the file
    s2 = load_settings(overrides={"redis.port": 6392})
    assert s2.redis.port == 6392  # argument beats the environment


def test_unknown_key_in_file_names_key_and_allowed(base_env, monkeypatch):
    path = base_env / "s.yaml"
    path.write_text("redis:\n  prot: 1\n")
    monkeypatch.setenv("FLOWCEPT_SETTINGS_PATH", str(path))
    with pytest.raises(SettingsError) as err:
        load_settings()
    msg = str(err.value)
    assert "redis.prot" in msg and "port" in msg and str(path) in msg


@pytest.fixture
def fresh_reports(monkeypatch):
    """Forget which unknown variables this process already reported."""
    from flowcept_dist.core import settings as mod

    monkeypatch.setattr(mod, "_reported_env", set())


@pytest.mark.parametrize("name,nearest", [
    ("FLOWCEPT_TRANSPORT_BATCHSIZE", "FLOWCEPT_TRANSPORT_BATCH_SIZE"),  # a key that does not exist
    ("FLOWCEPT_REDSI_PORT", "FLOWCEPT_REDIS_PORT"),                    # a section that does not exist
    ("FLOWCEPT_STORE_MONGOURI", "FLOWCEPT_STORE_MONGO_URI"),
])
def test_unknown_env_variable_is_reported_once_with_the_nearest_one_and_ignored(base_env, monkeypatch, caplog,
                                                                                 fresh_reports, name, nearest):
    monkeypatch.setenv(name, "3")
    with caplog.at_level("WARNING", logger="flowcept_dist.core.settings"):
        s = load_settings()
        load_settings()
    assert s == load_settings(environ={k: v for k, v in os.environ.items() if k != name})  # ignored
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1, lines  # once per process, however many times settings are read
    assert f"did you mean {nearest}?" in lines[0] and "is not a setting and is ignored" in lines[0]


def test_unrelated_flowcept_variables_are_reported_without_a_guess_and_test_ones_not_at_all(
        base_env, monkeypatch, caplog, fresh_reports):
    monkeypatch.setenv("FLOWCEPT_TEST_MONGO_URI", "mongodb://x")  # the test suite's own: never reported
    monkeypatch.setenv("FLOWCEPT_SETTINGS_PATH", "")
    monkeypatch.setenv("FLOWCEPT_USE_WEBSERVER", "1")  # e.g. a variable of Flowcept itself
    with caplog.at_level("WARNING", logger="flowcept_dist.core.settings"):
        load_settings()
    text = caplog.text
    assert "FLOWCEPT_TEST_MONGO_URI" not in text and "FLOWCEPT_SETTINGS_PATH" not in text
    assert "FLOWCEPT_USE_WEBSERVER is not a setting" in text and "sections capture, telemetry" in text


def test_unknown_key_in_file_suggests_the_nearest(base_env):
    path = base_env / "s.yaml"
    path.write_text("transport:\n  batchsize: 5\n")
    with pytest.raises(SettingsError, match=r"transport.batchsize .*did you mean transport.batch_size\?"):
        load_settings(path=str(path))


@pytest.mark.parametrize("key,value,expect", [
    ("redis.port", 70000, "70000 is above the maximum 65535"),
    ("redis.port", 0, "below the minimum 1"),
    ("capture.max_value_bytes", 2**30, "above the maximum 16777216"),
    ("transport.max_queue", 10**9, "above the maximum"),
    ("kafka.message_max_bytes", 2 * 10**9, "above the maximum"),
    ("store.lmdb_map_size_gb", 10**7, "above the maximum 131072"),
])
def test_ports_and_sizes_are_bounded(base_env, key, value, expect):
    with pytest.raises(SettingsError, match=expect) as err:
        load_settings(overrides={key: value})
    assert key in str(err.value)


def test_env_bound_error_names_the_variable(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_REDIS_PORT", "99999")
    with pytest.raises(SettingsError, match="redis.port .environment FLOWCEPT_REDIS_PORT.: '99999' is above"):
        load_settings()


@pytest.mark.parametrize("text,where", [
    ("transport:\n  batch_size: [1, 2\nredis: {}\n", "line 3, column 6"),
    ("redis:\n  port: 1\n   host: x\n", "line 3, column 8"),
    ("store: {type: lmdb\n", "line 2, column 1"),
])
def test_yaml_errors_are_one_line_with_the_position(base_env, text, where):
    path = base_env / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(path=str(path))
    msg = str(err.value)
    assert "\n" not in msg and f"settings file {path} is not valid YAML: {where}: " in msg, msg


@pytest.mark.parametrize("key,value,expect", [
    ("transport.type", "kafkaa", "known: .*direct.*redis_streams"),
    ("transport.on_full", "explode", "allowed values: drop_oldest, drop_newest, block"),
    ("transport.batch_size", "ten", "not an integer"),
    ("transport.batch_size", 0, "below the minimum"),
    ("capture.enabled", "maybe", "allowed: true, false"),
    ("store.type", "sqlite", "known: .*lmdb"),
])
def test_bad_values_name_key_and_allowed_values(base_env, key, value, expect):
    with pytest.raises(SettingsError, match=expect) as err:
        load_settings(overrides={key: value})
    assert key in str(err.value)


def test_settings_path_env_pointing_nowhere(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_SETTINGS_PATH", str(base_env / "missing.yaml"))
    with pytest.raises(SettingsError, match="init-settings"):
        load_settings()


def test_rendered_file_loads_back_to_defaults(base_env, monkeypatch):
    path = base_env / "rendered.yaml"
    path.write_text(render_settings_file())
    for name in list(os.environ):
        if name.startswith("FLOWCEPT_"):
            monkeypatch.delenv(name)
    from_file = load_settings(path=str(path))
    defaults = load_settings(path="", environ={})
    assert from_file == defaults
    assert "FLOWCEPT_REDIS_PORT" in path.read_text()


def test_secrets_redacted(base_env):
    s = load_settings(overrides={"redis.password": "hunter2", "store.mongo_uri": "mongodb://bob:pw@db:27017"})
    shown = s.as_dict(redact=True)
    assert shown["redis"]["password"] == "***"
    assert "pw" not in shown["store"]["mongo_uri"] and "bob" in shown["store"]["mongo_uri"]
    assert "hunter2" not in repr(s)


def test_settings_read_at_construction_not_import(base_env, monkeypatch):
    import flowcept_dist  # noqa: F401  (already imported: must not have frozen anything)

    monkeypatch.setenv("FLOWCEPT_TRANSPORT_BATCH_SIZE", "11")
    assert load_settings().transport.batch_size == 11
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_BATCH_SIZE", "12")
    assert load_settings().transport.batch_size == 12
