"""The sync client's own transport over real TLS and a real CONNECT proxy: verification, proxies, keep-alive.

The emulator speaks plain HTTP; a TLS terminator in front of it (a certificate made for 127.0.0.1 here) gives the
client a real https origin, and a CONNECT proxy (records each tunnel it opens) stands for a corporate proxy. The
proxy tests run both clients through that same proxy: they read the proxy variables by the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from orga_ai import OrgaAI, OrgaAIConnectionError, OrgaAITimeoutError


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orga-ai test origin")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "origin.pem", directory / "origin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None = None) -> None:
    try:
        while data := await reader.read(65536):
            if record is not None:
                record += data
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Servers:
    """A TLS terminator in front of the emulator and a CONNECT proxy, on one event loop in a thread."""

    def __init__(self, emulator_port: int, cert: Path, key: Path) -> None:
        self.emulator_port = emulator_port
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(cert, key)
        self.tunnels: list[str] = []
        self.proxy_heads: list[bytes] = []
        self.proxy_password: str | None = None  # set: CONNECT without these Basic credentials gets a 407
        self.tls_connections = 0
        self.origin_bytes = bytearray()  # what the origin received, decrypted
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.tls_port = self.proxy_port = 0

    async def _terminate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tls_connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.emulator_port)
        await asyncio.gather(pipe(reader, up_writer, self.origin_bytes), pipe(up_reader, writer))

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.proxy_heads.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if self.proxy_password is not None:
            import base64

            expected = base64.b64encode(f"user:{self.proxy_password}".encode()).decode()
            if f"proxy-authorization: basic {expected}".lower().encode() not in head.lower():
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                writer.close()
                return
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            tls = await asyncio.start_server(self._terminate, "127.0.0.1", 0, ssl=self.tls)
            proxy = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
            self.tls_port = tls.sockets[0].getsockname()[1]
            self.proxy_port = proxy.sockets[0].getsockname()[1]
            self._servers = (tls, proxy)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()
        for server in self._servers:
            server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> Servers:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def servers(emulator: Any, tmp_path: Path) -> Iterator[tuple[Servers, Path]]:
    cert, key = make_certificate(tmp_path)
    port = int(emulator.base_url.rsplit(":", 1)[1])
    with Servers(port, cert, key) as running:
        yield running, cert


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


_ASYNC_CHILD = """
import asyncio, json, sys
from orga_ai import AsyncOrgaAI

async def run():
    async with AsyncOrgaAI(**json.loads(sys.argv[1])) as orga:
        user = orga.with_options(timeout=5) if sys.argv[3] == "clone" else orga
        return [len((await user.get_session_config()).ice_servers) for _ in range(int(sys.argv[2]))]

try:
    print(json.dumps({"ice": asyncio.run(run())}))
except Exception as exc:
    cause = exc.__cause__
    print(json.dumps({"error": type(exc).__name__, "str": str(exc), "repr": repr(exc),
                      "cause_str": str(cause), "cause_repr": repr(cause)}))
"""


class ChildCause(Exception):
    """What the child process's exception had as its cause, as text."""

    def __init__(self, text: str, shown: str) -> None:
        super().__init__(text)
        self.shown = shown

    def __repr__(self) -> str:
        return self.shown


def ice_counts(kind: str, times: int = 1, *, clone: bool = False, **options: Any) -> list[int]:
    """``times`` calls on one client of that kind (or its ``with_options`` copy, sharing its connections), closed
    afterwards: how many ICE servers each config had.

    The async client runs in a fresh process started with this environment (the proxy and ``SSL_CERT_FILE``
    variables as a deployment would set them: aiohttp reads the trust store once, when it is imported). Its error
    comes back as the same ``orga_ai`` error type, its text and its cause's text.
    """
    if kind == "sync":
        with OrgaAI(**options) as orga:
            user = orga.with_options(timeout=5) if clone else orga
            return [len(user.get_session_config().ice_servers) for _ in range(times)]
    child = subprocess.run(
        [sys.executable, "-c", _ASYNC_CHILD, json.dumps(options), str(times), "clone" if clone else "self"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(child.stdout)
    if "error" in result:
        import orga_ai

        error = getattr(orga_ai, result["error"])(result["str"])
        raise error from ChildCause(result["cause_str"], f"{result['cause_repr']} {result['repr']}")
    counts: list[int] = result["ice"]
    return counts


both_clients = pytest.mark.parametrize("kind", ["sync", "async"])


def test_an_untrusted_certificate_is_refused(servers: tuple[Servers, Path], emulator: Any) -> None:
    running, _ = servers
    origin = f"https://127.0.0.1:{running.tls_port}"
    with OrgaAI(api_key=emulator.api_key, base_url=origin, max_retries=0) as orga, pytest.raises(
        OrgaAIConnectionError
    ) as info:
        orga.get_session_config()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value.__cause__)
    assert emulator.requests() == []  # refused before a byte of HTTP left


def test_a_trusted_certificate_over_https_with_keep_alive(
    servers: tuple[Servers, Path], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, cert = servers
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the system trust store, pointed at our test anchor
    with OrgaAI(api_key=emulator.api_key, base_url=f"https://127.0.0.1:{running.tls_port}") as orga:
        for _ in range(3):
            assert orga.get_session_config().ice_servers
    assert running.tls_connections == 1  # six requests, one TLS connection: kept alive and reused


@both_clients
def test_https_proxy_from_the_environment_tunnels_and_no_proxy_bypasses_it(
    servers: tuple[Servers, Path], emulator: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    running, cert = servers
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{running.proxy_port}")
    origin = f"127.0.0.1:{running.tls_port}"
    assert all(ice_counts(kind, 2, api_key=emulator.api_key, base_url=f"https://{origin}"))
    assert running.tunnels == [origin]  # through the proxy, TLS end to end, one tunnel kept alive
    assert running.tls_connections == 1

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert ice_counts(kind, api_key=emulator.api_key, base_url=f"https://{origin}")[0]
    assert running.tunnels == [origin]  # bypassed: no new tunnel
    assert running.tls_connections == 2  # straight to the origin


@both_clients
def test_through_a_proxy_the_origin_certificate_is_still_verified(
    servers: tuple[Servers, Path], emulator: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    running, _ = servers
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{running.proxy_port}")
    origin = f"127.0.0.1:{running.tls_port}"
    with pytest.raises(OrgaAIConnectionError) as info:
        ice_counts(kind, api_key=emulator.api_key, base_url=f"https://{origin}", max_retries=0)
    assert running.tunnels == [origin]
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value.__cause__)
    assert emulator.requests() == []


def test_a_trusted_certificate_for_another_host_name_is_refused(
    servers: tuple[Servers, Path], emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate names 127.0.0.1 only: reached as ``localhost`` it must fail the host name check."""
    running, cert = servers
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with OrgaAI(
        api_key=emulator.api_key, base_url=f"https://localhost:{running.tls_port}", max_retries=0
    ) as orga, pytest.raises(OrgaAIConnectionError) as info:
        orga.get_session_config()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value.__cause__)
    assert "localhost" in str(info.value.__cause__)  # "Hostname mismatch, certificate is not valid for 'localhost'"
    assert emulator.requests() == []


@both_clients
def test_proxy_credentials_go_to_the_proxy_only_and_a_refused_tunnel_does_not_show_them(
    servers: tuple[Servers, Path], emulator: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    running, cert = servers
    running.proxy_password = "pr0xy-s3cret"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    origin = f"127.0.0.1:{running.tls_port}"

    monkeypatch.setenv("HTTPS_PROXY", f"http://user:wrong-pr0xy-pass@127.0.0.1:{running.proxy_port}")
    with pytest.raises(OrgaAIConnectionError, match="407") as info:
        ice_counts(kind, api_key=emulator.api_key, base_url=f"https://{origin}", max_retries=0)
    shown = f"{info.value!s} {info.value!r} {info.value.__cause__!s} {info.value.__cause__!r}"
    assert "wrong-pr0xy-pass" not in shown and "user:" not in shown
    assert emulator.requests() == []  # a refused tunnel is a connect failure: nothing reached the origin

    monkeypatch.setenv("HTTPS_PROXY", f"http://user:pr0xy-s3cret@127.0.0.1:{running.proxy_port}")
    assert ice_counts(kind, api_key=emulator.api_key, base_url=f"https://{origin}")[0]
    assert running.tunnels == [origin]
    assert len(emulator.requests()) == 2
    assert [head.lower().count(b"proxy-authorization") for head in running.proxy_heads] == [1, 1]  # CONNECTs only
    assert b"proxy-authorization" not in running.origin_bytes.lower()  # never inside the tunnel, to Orga
    assert b"pr0xy-s3cret" not in running.origin_bytes

    # A with_options() copy goes through the same proxy with the same credentials.
    assert ice_counts(kind, clone=True, api_key=emulator.api_key, base_url=f"https://{origin}")[0]
    assert running.tunnels == [origin, origin]
    assert [head.lower().count(b"proxy-authorization") for head in running.proxy_heads] == [1, 1, 1]


@both_clients
def test_a_proxy_that_never_answers_connect_is_a_connect_timeout_within_the_attempt(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers the CONNECT
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
        # aiohttp's whole-request timeout fires before its connect timeout: the async client calls it a read timeout
        # (ambiguous, so a token POST is not retried), the sync one a connect timeout.
        words = "timed out connecting" if kind == "sync" else "timed out"
        with pytest.raises(OrgaAITimeoutError, match=words):
            ice_counts(kind, api_key=emulator.api_key, base_url="https://127.0.0.1:9", max_retries=0, timeout=0.3)
    finally:
        listener.close()


@both_clients
def test_an_https_proxy_url_is_a_clear_connection_error(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(OrgaAIConnectionError, match="must be an http:// URL"):
        ice_counts(kind, api_key=emulator.api_key, base_url="https://127.0.0.1:9", max_retries=0)


@both_clients
@pytest.mark.parametrize("password", ["s3cr/et", "s3cr?et", "s3cr#et"])
def test_a_proxy_url_with_an_unescaped_password_is_refused_without_showing_it(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, password: str, kind: str
) -> None:
    """``/``, ``?`` or ``#`` in a password end the URL's authority: what follows must not surface as a "port"."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://bob:{password}@127.0.0.1:9")
    with pytest.raises(OrgaAIConnectionError, match="proxy") as info:
        ice_counts(kind, api_key=emulator.api_key, base_url="https://127.0.0.1:9", max_retries=0)
    shown = f"{info.value!s} {info.value!r} {info.value.__cause__!s} {info.value.__cause__!r}"
    assert "s3cr" not in shown and "bob" not in shown


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_never_reuses_its_parents_pooled_connections(emulator: Any) -> None:
    """A client used before a fork (a preloading server's workers, say): one kept-alive socket shared by two
    processes would interleave their requests and answers. Each process gets connections of its own."""
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0) as orga:
        assert orga.get_session_config().ice_servers  # leaves one idle connection in the pool
        parents = {call["client_port"] for call in emulator.requests()}
        emulator.clear_requests()
        pid = os.fork()
        if pid == 0:  # the child: one call, then out, whatever happens (never back into pytest)
            code = 1
            try:
                orga.get_session_config()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child = {call["client_port"] for call in emulator.requests()}
        assert len(child) == 1 and not child & parents  # the child opened its own connection
        emulator.clear_requests()
        assert orga.get_session_config().ice_servers  # and the parent's connection still works for the parent
        assert {call["client_port"] for call in emulator.requests()} == parents


def test_a_sync_call_loads_neither_httpx_nor_the_async_stack(emulator: Any) -> None:
    """A fresh interpreter makes one call: the sync path stays on the standard library (cold start, memory)."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from orga_ai import OrgaAI; "
        "OrgaAI().get_session_config(); "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "print(json.dumps(sorted(loaded & {'httpx', 'httpcore', 'asyncio', 'aiohttp', 'opentelemetry'})))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env.update(ORGA_API_KEY=emulator.api_key, ORGA_BASE_URL=emulator.base_url)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


TOKEN = json.dumps({"ephemeral_token": "eph_transport_0123456789", "token_type": "bearer"}).encode()
ICE = json.dumps({"iceServers": [{"urls": "stun:stun.example.com:3478"}]}).encode()


class FakeOrga(http.server.BaseHTTPRequestHandler):
    """Orga's two routes over HTTP/1.1 keep-alive; subclasses change how an answer goes out."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[FakeOrga]]  # each connection's handler, in order (set per server by ``running``)

    def setup(self) -> None:
        super().setup()
        self.handled = 0
        self.connections.append(self)

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.handled += 1
        self.answer(TOKEN)

    def do_GET(self) -> None:
        self.handled += 1
        self.answer(ICE)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def running(handler: type[FakeOrga]) -> Iterator[tuple[str, list[FakeOrga]]]:
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the base URL and the list of its connections."""
    connections: list[FakeOrga] = []
    bound = type(handler.__name__, (handler,), {"connections": connections})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", connections
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_chunked_answers_are_read_whole_and_the_connection_reused(emulator: Any) -> None:
    """An HTTP/1.1 server that streams its JSON in chunks: each body is read to its end, on one kept-alive
    connection (a response left half-read would have to close it)."""

    class Chunked(FakeOrga):
        def answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):
                part = body[i : i + 7]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    with running(Chunked) as (base, connections), OrgaAI(
        api_key=emulator.api_key, base_url=base, max_retries=0
    ) as orga:
        for _ in range(2):
            config = orga.get_session_config()
            assert config.ephemeral_token == "eph_transport_0123456789"
            assert config.ice_servers[0].urls == "stun:stun.example.com:3478"
    assert len(connections) == 1
    assert connections[0].handled == 4


def test_connection_close_answers_are_read_whole_and_never_pooled(emulator: Any) -> None:
    """``Connection: close`` (each answer, content-length or read to the end): every request on a new connection,
    each one closed by the client too (no socket left to the garbage collector)."""

    class Closing(FakeOrga):
        def answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if len(self.connections) % 2:  # a declared length, or none: the body ends with the connection
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    import gc

    with running(Closing) as (base, connections), OrgaAI(
        api_key=emulator.api_key, base_url=base, max_retries=0
    ) as orga:
        for _ in range(2):
            assert orga.get_session_config().ephemeral_token == "eph_transport_0123456789"
        gc.collect()  # an unclosed socket collected here is a ResourceWarning, an error in this suite
    assert [c.handled for c in connections] == [1, 1, 1, 1]


def test_threads_sharing_a_client_never_share_a_connection_at_once(emulator: Any) -> None:
    """Eight threads, one client: each request gets a whole connection (its own answer, never another's), and the
    pool opens no more connections than there are attempts at the same time."""
    import concurrent.futures

    class Numbered(FakeOrga):
        def do_GET(self) -> None:  # the ICE answer names the token it was asked with: a crossed answer shows
            self.handled += 1
            bearer = self.headers["Authorization"].removeprefix("Bearer ")
            self.answer(json.dumps({"iceServers": [{"urls": f"stun:{bearer}.example.com:3478"}]}).encode())

    with running(Numbered) as (base, connections), OrgaAI(
        api_key=emulator.api_key, base_url=base, max_retries=0
    ) as orga:

        def call(_: int) -> bool:
            token = f"eph_thread_{threading.get_ident()}_{os.urandom(4).hex()}"
            servers = orga.fetch_ice_servers(token)
            return servers[0].urls == f"stun:{token}.example.com:3478"

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(200)))
    assert answers == [True] * 200
    assert sum(c.handled for c in connections) == 200
    assert 1 <= len(connections) <= 8


def test_without_an_attempt_deadline_the_pool_still_bounds_each_read_by_its_timeout() -> None:
    """The client always sets the attempt's deadline; the pool used without one must not block for ever."""
    from orga_ai._transports.stdlib import SyncPool

    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    pool = SyncPool(max_idle=1, keepalive=30)
    raised: list[BaseException] = []

    def exchange() -> None:
        try:
            pool.exchange("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/", {}, b"", 0.3, 1000)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the assertion below
            raised.append(exc)

    thread = threading.Thread(target=exchange, daemon=True)
    thread.start()
    thread.join(10)
    try:
        assert not thread.is_alive(), "the read blocked past its timeout"
        assert len(raised) == 1 and isinstance(raised[0], TimeoutError)
    finally:
        pool.close()
        listener.close()


def test_a_pooled_connection_on_a_high_file_descriptor_is_reused(emulator: Any) -> None:
    """A busy process holds more than 1,024 files: the idle check must not use select(), whose sets stop there."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("cannot open 1,200 files here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    filler: list[int] = []
    try:
        while not filler or filler[-1] < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        with running(FakeOrga) as (base, connections), OrgaAI(
            api_key=emulator.api_key, base_url=base, max_retries=0
        ) as orga:
            assert orga.get_session_config().ice_servers
            assert orga.get_session_config().ice_servers
        assert [c.handled for c in connections] == [4]  # one socket, above fd 1,024, reused for all four requests
    finally:
        for fd in filler:
            os.close(fd)
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_idle_connection_the_server_drops_as_it_is_reused_is_replayed_on_a_new_one(emulator: Any) -> None:
    """The server closes a kept-alive connection just as the next request arrives (its idle timeout racing ours):
    nothing was answered, so a GET, or a POST carrying an Idempotency-Key, goes once more on a fresh connection,
    within the same attempt, without using a retry."""

    class DropsSecond(FakeOrga):
        def answer(self, body: bytes) -> None:
            if self.handled == 2 and self is self.connections[0]:
                self.close_connection = True  # closed without a byte of answer
                return
            super().answer(body)

    with running(DropsSecond) as (base, connections), OrgaAI(
        api_key=emulator.api_key, base_url=base, max_retries=0
    ) as orga:
        assert orga.get_session_config().ice_servers  # the GET of ICE servers met the dropped connection
        assert orga.fetch_ephemeral_token().value == "eph_transport_0123456789"
    assert [c.handled for c in connections] == [2, 2]


def test_a_body_cut_short_on_a_closing_connection_releases_its_socket_at_once(emulator: Any) -> None:
    """``Connection: close``, and the body stalls: the attempt times out and its socket is closed then, not when
    the error (which a caller may keep, with its traceback) is collected."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, bool] = {}

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: 100\r\n\r\n{\"ephemeral"
            )
            try:
                seen["closed"] = conn.recv(65536) == b""
            except OSError:
                seen["closed"] = False

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with OrgaAI(api_key=emulator.api_key, base_url=base, max_retries=0, timeout=0.5) as orga, pytest.raises(
            OrgaAITimeoutError
        ) as info:
            orga.fetch_ephemeral_token()
        thread.join(15)
        assert seen == {"closed": True}, "the client kept the socket open"
        assert info.value.__cause__ is not None  # the error, and what it refers to, is still alive here
    finally:
        listener.close()
