"""Real Redis topologies for the rate-limit tests: a primary with a replica under three Sentinels, and a three-master
Redis Cluster. Every process is started here on free ports in a temporary directory and stopped on exit."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support import free_port, require_binary

SERVICE = "orga-limits"


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` (errors count as "not yet") until it holds; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


_TLS_PORTS: dict[int, str] = {}
"""Ports that speak TLS only -> the CA file that signed their certificate."""


def ask(port: int, command: Callable[[redis.Redis], Any], password: str | None = None) -> Any:
    """Run ``command`` on a fresh connection to the server (or Sentinel) on ``port``, then close it."""
    ca = _TLS_PORTS.get(port)
    tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": ca} if ca else {}
    with redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_timeout=2, socket_connect_timeout=2, **tls
    ) as connection:
        return command(connection)


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1 that it signed (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def server_args(self, port: int) -> list[str]:
        """redis-server flags: TLS only, on ``port``, replication over TLS too."""
        _TLS_PORTS[port] = str(self.ca)
        return [
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
            "--tls-replication", "yes",
        ]  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orga-tests-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    found = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    found.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(pem_key(key))
    return found


class Processes:
    """The processes of one topology; all are killed (and reaped) on :meth:`stop`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.binary = require_binary("redis-server")
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, config: str | None = None, name: str) -> subprocess.Popen[bytes]:
        command = [self.binary]
        if config is not None:
            path = self.directory / f"{name}.conf"
            path.write_text(config)
            command.append(str(path))
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [*command, *args, "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.running:
            process.wait(timeout=10)


def _server_args(port: int, password: str | None, tls: Certificates | None = None) -> list[str]:
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if tls is not None:
        args += tls.server_args(port)
    if password:
        args += ["--requirepass", password, "--masterauth", password]
    return args


@dataclass
class SentinelGroup:
    """A primary, its replica and three Sentinels (quorum 2) watching :data:`SERVICE`."""

    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    password: str | None
    primary: subprocess.Popen[bytes]
    processes: Processes = field(repr=False)
    tls: Certificates | None = None

    @property
    def uri(self) -> str:
        """The storage URI (over TLS, its query names the CA: append further parameters with ``&``)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        if self.tls is not None:
            return f"rediss+sentinel://{hosts}/{SERVICE}?ssl_ca_certs={self.tls.ca}"
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def master_port(self) -> int:
        """The primary's port according to the first Sentinel that answers."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                address = ask(port, lambda s: s.sentinel_get_master_addr_by_name(SERVICE), self.password)
                return int(address[1])
        raise RuntimeError("no Sentinel answers")

    def wait_replica_in_sync(self) -> None:
        """Until the replica has every write the primary acknowledged (so a failover now loses nothing)."""

        def synced() -> bool:
            info: dict[str, Any] = ask(self.primary_port, lambda r: r.info("replication"), self.password)
            replica = info.get("slave0")
            return isinstance(replica, dict) and replica.get("offset") == info["master_repl_offset"]

        _wait(synced, "the replica to catch up")

    def kill_primary(self) -> None:
        self.primary.send_signal(signal.SIGKILL)
        self.primary.wait(timeout=10)

    def wait_promoted(self, timeout: float = 30.0) -> None:
        """Until every Sentinel names the replica as the primary: a client may ask any of them, and the others learn
        of the failover from its leader only at their next hello."""

        def everywhere() -> bool:
            for port in self.sentinel_ports:
                try:
                    address = ask(port, lambda s: s.sentinel_get_master_addr_by_name(SERVICE), self.password)
                except redis.RedisError:
                    return False
                if int(address[1]) != self.replica_port:
                    return False
            return True

        _wait(everywhere, "every Sentinel to name the promoted replica", timeout)


@contextlib.contextmanager
def sentinel_group(
    directory: Path, *, password: str | None = None, tls: bool = False, down_after_ms: int = 1000
) -> Iterator[SentinelGroup]:
    """Start the group and wait until the Sentinels know the replica and each other (what a failover needs).
    ``tls``: every server and Sentinel speaks TLS only (replication and Sentinel links included).
    ``down_after_ms``: how long the primary must be silent before the Sentinels fail over."""
    processes = Processes(directory)
    certificates = make_certificates(directory) if tls else None
    try:
        primary_port, replica_port = free_port(), free_port()
        primary = processes.start(*_server_args(primary_port, password, certificates), name="primary")
        processes.start(
            *_server_args(replica_port, password, certificates),
            "--replicaof",
            "127.0.0.1",
            str(primary_port),
            name="replica",
        )

        def replica_linked() -> bool:
            info: dict[str, Any] = ask(replica_port, lambda r: r.info("replication"), password)
            return info.get("master_link_status") == "up"

        # Linked before the Sentinels start: their first look at the primary then lists the replica (the next
        # look would be 10 s later).
        _wait(replica_linked, "the replica to link to the primary")
        sentinel_ports = [free_port() for _ in range(3)]
        for index, port in enumerate(sentinel_ports):
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
                # Short so the test sees a failover within seconds; production keeps the defaults (30 s, 3 min).
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
                f"sentinel failover-timeout {SERVICE} 4000",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]
            if password:
                lines += [f"sentinel auth-pass {SERVICE} {password}", f"requirepass {password}"]
            if certificates is not None:
                _TLS_PORTS[port] = str(certificates.ca)
                lines[0] = f"port 0\ntls-port {port}"
                lines += [
                    f"tls-cert-file {certificates.cert}",
                    f"tls-key-file {certificates.key}",
                    f"tls-ca-cert-file {certificates.ca}",
                    "tls-auth-clients no",
                    "tls-replication yes",
                ]
            processes.start("--sentinel", config="\n".join(lines) + "\n", name=f"sentinel{index}")
        group = SentinelGroup(primary_port, replica_port, sentinel_ports, password, primary, processes, certificates)
        for port in sentinel_ports:
            _wait(lambda p=port: len(ask(p, lambda s: s.sentinel_slaves(SERVICE), password)) == 1, "the replica")
            _wait(lambda p=port: len(ask(p, lambda s: s.sentinel_sentinels(SERVICE), password)) == 2, "the Sentinels")
        yield group
    finally:
        processes.stop()


@contextlib.contextmanager
def redis_cluster(directory: Path, *, masters: int = 3) -> Iterator[str]:
    """A Redis Cluster of ``masters`` primaries (no replicas), slots spread by ``redis-cli --cluster create``;
    yields its ``redis+cluster://`` URI once every node reports the cluster healthy."""
    cli = require_binary("redis-cli")
    processes = Processes(directory)
    try:
        ports = [free_port() for _ in range(masters)]
        for port in ports:
            processes.start(
                *_server_args(port, None),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-port",
                str(free_port()),
                "--cluster-node-timeout",
                "2000",
                name=f"node{port}",
            )
        for port in ports:
            _wait(lambda p=port: bool(ask(p, lambda r: r.ping())), f"cluster node {port}")
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for port in ports:
            _wait(lambda p=port: ask(p, lambda r: r.cluster("info"))["cluster_state"] == "ok", "a healthy cluster")
        yield "redis+cluster://" + ",".join(nodes)
    finally:
        processes.stop()
