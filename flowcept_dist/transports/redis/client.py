"""Redis connections built from settings, with errors that say what to fix."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A configured service cannot be reached. The message names it and the fix."""


def redis_client(settings):
    try:
        import redis
    except ImportError:
        raise ServiceUnavailable("the redis package is missing: pip install 'flowcept-dist[redis]'") from None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    r = settings.redis
    # redis-py retries 10 times with backoff by default; our callers own their retry budgets
    return redis.Redis(host=r.host, port=r.port, password=r.password, db=r.db,
                       socket_connect_timeout=min(r.socket_timeout_s, 3.0),
                       socket_timeout=r.socket_timeout_s, health_check_interval=30,
                       retry=Retry(NoBackoff(), 0))


def redis_where(settings) -> str:
    return f"redis://{settings.redis.host}:{settings.redis.port}/{settings.redis.db}"


def unreachable_message(settings, exc) -> str:
    return (f"Redis at {redis_where(settings)} is unreachable ({type(exc).__name__}: {exc}); start it "
            f"(redis-server --port {settings.redis.port}) or set FLOWCEPT_REDIS_HOST / FLOWCEPT_REDIS_PORT")


def ping(settings) -> str:
    client = redis_client(settings)
    try:
        client.ping()
        info = client.info("server")
        return f"{redis_where(settings)} (Redis {info.get('redis_version', '?')})"
    except Exception as exc:
        raise ServiceUnavailable(unreachable_message(settings, exc)) from None
    finally:
        client.close()
