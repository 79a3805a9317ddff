"""Redis connections built from settings (TLS and ACL users included), with errors that say what to fix.

A connection is ``redis.url`` when set (``redis://`` or ``rediss://`` for TLS, credentials in it), else
``redis.host``/``port``/``db`` with ``redis.username``/``password``; ``redis.ssl`` (or ``rediss://``)
turns TLS on, with ``redis.ssl_ca_certs`` (the CA the server's certificate must chain to),
``ssl_certfile``/``ssl_keyfile`` (a client certificate, for ``tls-auth-clients yes``),
``ssl_cert_reqs`` and ``ssl_check_hostname``. Messages name the server without its password.
"""

from __future__ import annotations

import re

_PIPELINE_CMD = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.S)


class ServiceUnavailable(RuntimeError):
    """A configured service cannot be reached. The message names it and the fix."""


def _tls(r) -> dict:
    return {"ssl_ca_certs": r.ssl_ca_certs, "ssl_certfile": r.ssl_certfile, "ssl_keyfile": r.ssl_keyfile,
            "ssl_cert_reqs": r.ssl_cert_reqs, "ssl_check_hostname": r.ssl_check_hostname and r.ssl_cert_reqs != "none"}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def redis_client(settings):
    try:
        import redis
    except ImportError:
        raise ServiceUnavailable("the redis package is missing: pip install 'flowcept-dist[redis]'") from None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    r = settings.redis
    # redis-py retries 10 times with backoff by default; our callers own their retry budgets
    common = {"socket_connect_timeout": min(r.socket_timeout_s, 3.0), "socket_timeout": r.socket_timeout_s,
              "health_check_interval": 30, "retry": Retry(NoBackoff(), 0)}
    if r.url:
        scheme = _scheme(r.url)
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"setting redis.url: {redis_where(settings)} is not a redis://, rediss:// or unix:// URL")
        if r.ssl and scheme != "rediss":
            raise ValueError("settings redis.ssl=true and redis.url use TLS differently: write the URL as rediss://... "
                             "(TLS) or set redis.ssl=false")
        try:
            return redis.Redis.from_url(r.url, **common, **(_tls(r) if scheme == "rediss" else {}))
        except ValueError as exc:
            raise ValueError(f"setting redis.url: {redis_where(settings)} is not a usable Redis URL "
                             f"({str(exc).replace(r.password or chr(0), '***')[:200]})") from None
    return redis.Redis(host=r.host, port=r.port, username=r.username, password=r.password, db=r.db,
                       ssl=r.ssl, **(_tls(r) if r.ssl else {}), **common)


def redis_where(settings) -> str:
    """The server, as a URL without its password: ``rediss://alice@host:6380/0``."""
    r = settings.redis
    if r.url:
        from flowcept_dist.core.settings import redact_value

        return str(redact_value(r.url))
    user = f"{r.username}@" if r.username else ""
    return f"{'rediss' if r.ssl else 'redis'}://{user}{r.host}:{r.port}/{r.db}"


def _tls_on(settings) -> bool:
    r = settings.redis
    return bool(r.ssl or (r.url and _scheme(r.url) == "rediss"))


def error_detail(settings, exc) -> str:
    """``Type: text`` of a Redis error for a message: without the command a pipeline's error quotes
    (the records being sent) and without the password; one line, at most 300 characters."""
    detail = f"{type(exc).__name__}: {_PIPELINE_CMD.sub('', str(exc))}"
    if settings.redis.password:
        detail = detail.replace(settings.redis.password, "***")
    return " ".join(detail.split())[:300]


def unreachable_message(settings, exc) -> str:
    """One line for a failed Redis call: what failed and the settings that fix it (never a password,
    never the records being sent)."""
    r = settings.redis
    where = redis_where(settings)
    detail = error_detail(settings, exc)
    text = str(exc).lower()
    name = type(exc).__name__
    if name == "AuthenticationError" or "wrongpass" in text or "invalid username-password" in text \
            or "authentication required" in text or "noauth" in text:
        return (f"Redis at {where} refused the login: it refused the credentials ({detail}); check redis.username "
                f"and redis.password "
                f"(FLOWCEPT_REDIS_USERNAME / FLOWCEPT_REDIS_PASSWORD, or the user:password in redis.url)")
    if name == "NoPermissionError" or "noperm" in text or "no permissions" in text:
        user = r.username or "default"
        return (f"Redis at {where}: ACL user {user!r} may not do this ({detail}); grant it the stream commands on "
                f"its keys, e.g. ACL SETUSER {user} ~{r.stream}* +@stream +@connection +info (docs/security.md)")
    if "ssl" in text or "certificate" in text or "tls" in text or "handshake" in text:
        return (f"Redis at {where}: the TLS connection failed ({detail}); check redis.ssl_ca_certs (the CA of the "
                f"server's certificate), redis.ssl_certfile / ssl_keyfile (if the server wants client certificates) "
                f"and that the host name is in the server's certificate (redis.ssl_check_hostname)")
    hint = ("" if _tls_on(settings) else
            "; if the server only speaks TLS (tls-port), set redis.ssl=true (FLOWCEPT_REDIS_SSL) or use rediss://")
    return (f"Redis at {where} is unreachable ({detail}); start it (redis-server --port {r.port}) or set "
            f"FLOWCEPT_REDIS_HOST / FLOWCEPT_REDIS_PORT (or FLOWCEPT_REDIS_URL){hint}")


def ping(settings) -> str:
    client = redis_client(settings)
    try:
        client.ping()
        try:
            version = client.info("server").get("redis_version", "?")
        except Exception:  # an ACL user without +info may still do everything flowcept_dist needs
            version = "?"
        return f"{redis_where(settings)} (Redis {version}{', TLS' if _tls_on(settings) else ''})"
    except Exception as exc:
        raise ServiceUnavailable(unreachable_message(settings, exc)) from None
    finally:
        client.close()
