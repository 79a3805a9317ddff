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


def test_unknown_env_key_is_an_error_but_other_tools_vars_are_not(base_env, monkeypatch):
    monkeypatch.setenv("FLOWCEPT_TEST_MONGO_URI", "mongodb://x")  # not ours: ignored
    load_settings()
    monkeypatch.setenv("FLOWCEPT_TRANSPORT_BATCHSIZE", "3")
    with pytest.raises(SettingsError, match="transport.batchsize.*FLOWCEPT_TRANSPORT_BATCHSIZE.*batch_size"):
        load_settings()


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
