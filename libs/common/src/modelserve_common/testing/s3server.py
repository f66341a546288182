"""A real S3-compatible server for tests: moto's standalone server (``moto_server``) as a
subprocess on a free port, spoken to over HTTP with real signatures.

With ``enforce_auth=True`` the server checks signatures and IAM policies: :meth:`MotoS3Server.start`
then creates one user with an ``s3:*`` policy and an access key (the only unauthenticated calls
moto allows, ``INITIAL_NO_AUTH_ACTION_COUNT``), available as :attr:`MotoS3Server.credentials`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelserve_common.testing.launcher import free_port

REGION = "us-east-1"
_SETUP_CALLS = 3  # create_user, put_user_policy, create_access_key


class MotoS3Server:
    def __init__(self, enforce_auth: bool = False, port: int = 0) -> None:
        self.port = port or free_port()
        self.enforce_auth = enforce_auth
        self.credentials: dict[str, str] = {"access_key_id": "testing", "secret_access_key": "testing"}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoS3Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env["AWS_DEFAULT_REGION"] = REGION
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_CALLS)
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self._proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"moto_server did not listen on {self.port}") from None
                time.sleep(0.05)
        if self.enforce_auth:
            self._create_user()
        return self

    def _create_user(self) -> None:
        iam = self.client("iam", access_key_id="testing", secret_access_key="testing")
        iam.create_user(UserName="modelserve")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="modelserve", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="modelserve")["AccessKey"]
        self.credentials = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}

    def client(self, service: str = "s3", **creds: str) -> Any:
        import boto3

        c = creds or self.credentials
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=c["access_key_id"],
            aws_secret_access_key=c["secret_access_key"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
