"""Who sent a request: the API key's name, team and project from ``gateway.toml``
(``[[api_key]]``), the OpenAI ``user`` field as a salted digest (never in clear), and up to eight
``k=v`` tags from an ``x-tokenprint-tags`` header. The ledger records them with every row, so an
organisation can report by team, project, key or tag."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenprint.files import atomic_path
from tokenprint.gateway.config import GatewayConfig, hash_key

MAX_TAGS = 8
TAG_KEY = re.compile(r"^[a-z0-9_.-]{1,32}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,64}$")
SALT_FILE = "user-salt"
MAX_PENDING_WHO = 100_000   # senders of requests in flight, kept until their record is written


class BadTags(ValueError):
    """An ``x-tokenprint-tags`` header the gateway refuses (400), with the reason."""


@dataclass(frozen=True)
class Who:
    """The sender of one request, as the ledger records it (None where unknown)."""

    key_name: str | None = None
    team: str | None = None
    project: str | None = None
    user_digest: str | None = None
    tags: str | None = None          # JSON object text
    batch_id: str | None = None      # a line of this batch, run by the gateway itself
    deferred_s: float | None = None  # how long the batch waited for cleaner hours

    def fields(self) -> dict[str, str | float | None]:
        """As keyword arguments of a ledger record."""
        return {"key_name": self.key_name, "team": self.team, "project": self.project,
                "user_digest": self.user_digest, "tags": self.tags,
                "batch_id": self.batch_id, "deferred_s": self.deferred_s}


NOBODY = Who()


@dataclass(frozen=True)
class KeyInfo:
    """A configured API key's labels (an unnamed ``api_keys_sha256`` entry has none)."""

    name: str | None = None
    team: str | None = None
    project: str | None = None


def user_salt(results_dir: str | Path, env: str = "TOKENPRINT_USER_SALT") -> bytes:
    """The salt of user digests: ``$TOKENPRINT_USER_SALT``, else a random one kept (owner-only)
    in the results folder, so digests stay stable across restarts and cannot be reversed by
    hashing guessed user names."""
    if os.environ.get(env):
        return os.environ[env].encode()
    path = Path(results_dir) / SALT_FILE
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32).encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(salt)
        tmp.chmod(0o600)
    return salt


class Accounts:
    """The gateway's keys and how a request names its sender."""

    def __init__(self, cfg: GatewayConfig, salt: bytes) -> None:
        self.keys: list[tuple[bytes, KeyInfo]] = [
            (bytes.fromhex(h), KeyInfo()) for h in cfg.api_keys_sha256]
        self.keys += [(bytes.fromhex(k.sha256), KeyInfo(k.name, k.team or None,
                                                        k.project or None))
                      for k in cfg.api_key]
        self.salt = salt

    def key(self, scope: Mapping[str, Any]) -> KeyInfo | None:
        """The configured key the request carries (an empty KeyInfo when no key is required),
        or None: the digest is compared with every key in constant time."""
        if not self.keys:
            return KeyInfo()
        header = ""
        for k, v in scope.get("headers") or []:
            if k == b"authorization":
                header = v.decode("latin-1")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        digest = bytes.fromhex(hash_key(token))
        found: KeyInfo | None = None
        for h, info in self.keys:
            if hmac.compare_digest(digest, h):
                found = info
        return found

    def who(self, key: KeyInfo, scope: Mapping[str, Any], body: dict[str, Any]) -> Who:
        """The sender: the key's labels, the salted user digest and the request's tags."""
        user = body.get("user")
        digest = (hashlib.sha256(self.salt + b"\0" + user.encode()).hexdigest()[:32]
                  if isinstance(user, str) and user else None)
        raw = ""
        for k, v in scope.get("headers") or []:
            if k == b"x-tokenprint-tags":
                raw = v.decode("latin-1")
        return Who(key.name, key.team, key.project, digest, parse_tags(raw))


def parse_tags(raw: str) -> str | None:
    """``team=search,env=prod`` → ``{"env": "prod", "team": "search"}`` (JSON text); at most
    eight pairs of lowercase keys and plain values, else BadTags naming what is wrong."""
    raw = raw.strip()
    if not raw:
        return None
    tags: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not TAG_KEY.match(key) or not TAG_VALUE.match(value):
            raise BadTags(f"x-tokenprint-tags entry {part.strip()!r} is invalid; give k=v pairs "
                          "separated by commas (keys: a-z 0-9 _ . -, up to 32; values: up to "
                          "64 of A-Z a-z 0-9 _ . : / @ + -)")
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise BadTags(f"x-tokenprint-tags has {len(tags)} pairs; at most {MAX_TAGS}")
    return json.dumps(tags, sort_keys=True)
