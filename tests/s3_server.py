"""A moto S3 server for the tests: real HTTP on 127.0.0.1, started once per session on first use.

It runs in its own process (`python -m moto.server`) with IAM authentication enforced, so
wrong credentials and missing permissions are refused the way AWS refuses them. Two users
exist: "dk" may do anything, "reader" may only read and list. Nothing here is skipped: when
moto or s3fs is missing, the tests that need them fail with the package to install.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

BUCKET = "dk-test"
REGION = "us-east-1"
_IAM_CALLS = 6  # the unauthenticated requests that create the two users below; every later one is checked
_lock = threading.Lock()
_server: S3Server | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self):
        try:
            import boto3  # noqa: F401
            import moto  # noqa: F401
            import s3fs  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f"the S3 tests need {e.name}: pip install s3fs 'moto[server]'") from e
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(_IAM_CALLS))
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - open while the server runs; the server logs every request: a pipe would fill and stall it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"moto server exited: {self.log.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start within 30 s") from None
                time.sleep(0.05)
        self.keys = {"dk": self._user("dk", ["*"]), "reader": self._user("reader", ["s3:Get*", "s3:List*"])}
        self.client("dk").create_bucket(Bucket=BUCKET)

    def _user(self, name: str, actions: list[str]) -> tuple[str, str]:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def options(self, user: str = "dk", secret: str | None = None) -> dict:
        """storage_options for s3fs as `user` (a wrong `secret` makes them wrong credentials)."""
        key, good = self.keys[user]
        return {
            "key": key,
            "secret": secret or good,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
        }

    def client(self, user: str = "dk"):
        import boto3

        key, secret = self.keys[user]
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )

    def objects(self, prefix: str) -> list[str]:
        """Every object key under `prefix` of the test bucket."""
        out, token = [], None
        while True:
            kw = {"Bucket": BUCKET, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def server() -> S3Server:
    """The session's server, started on first use and stopped at exit."""
    global _server
    with _lock:
        if _server is None:
            _server = S3Server()
            atexit.register(_server.stop)
        return _server


def store_spec(fmt: str) -> tuple[str, dict]:
    """(URL, connect options) of a new, empty store of `fmt` under a fresh prefix of the bucket."""
    s = server()
    return f"{fmt}://s3://{BUCKET}/{uuid.uuid4().hex}", {"storage_options": s.options()}
