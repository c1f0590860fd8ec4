"""``tokenprint batch``: send deferrable work to a gateway's Batch API without writing code —
submit a JSONL file, watch it (a progress bar), fetch its results, list the batches."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenprint.cli.common import JsonOpt, console, print_json
from tokenprint.errors import TokenprintError

batch_app = typer.Typer(help="Deferrable work through a gateway's Batch API: it runs when and "
                        "where the grid is cleanest, inside its window.", no_args_is_help=True)

GatewayOpt = Annotated[str, typer.Option(metavar="URL", help="The gateway's base URL.")]
KeyEnvOpt = Annotated[str, typer.Option(metavar="VAR", help="Environment variable holding the "
                                        "gateway's API key (none needed where it asks none).")]
DONE = ("completed", "failed", "expired", "cancelled")


def _client(gateway: str, key_env: str) -> Any:
    import httpx

    if not gateway.startswith(("http://", "https://")):
        raise TokenprintError(f"--gateway {gateway!r} is invalid; give a URL starting with "
                              "http:// or https://")
    key = os.environ.get(key_env, "")
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.rstrip("/"), headers=headers, timeout=60)


def _ok(r: Any, what: str) -> Any:
    """The JSON of a 2xx answer; one clear error otherwise."""
    if r.status_code >= 300:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:200]
        raise TokenprintError(f"{what}: HTTP {r.status_code}: {msg}")
    return r.json()


def _call(fn: Any, what: str) -> Any:
    import httpx

    try:
        return fn()
    except httpx.HTTPError as exc:
        raise TokenprintError(f"{what}: cannot reach the gateway ({exc})") from None


@batch_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="JSONL: one request a line (custom_id, method "
                                         "POST, url, body), as OpenAI's Batch API takes.")],
    gateway: GatewayOpt = "http://127.0.0.1:8080",
    endpoint: Annotated[str, typer.Option(help="/v1/chat/completions or /v1/completions.")]
    = "/v1/chat/completions",
    window: Annotated[str, typer.Option(help="Completion window, e.g. 24h.")] = "24h",
    api_key_env: KeyEnvOpt = "TOKENPRINT_API_KEY",
    as_json: JsonOpt = False,
) -> None:
    """Upload FILE and create a batch; prints its id and when it is scheduled to start."""
    if not file.is_file():
        raise TokenprintError(f"{str(file)!r} is not a file; give the JSONL of requests")
    with _client(gateway, api_key_env) as http:
        f = _ok(_call(lambda: http.post("/v1/files", data={"purpose": "batch"}, files={
            "file": (file.name, file.read_bytes(), "application/jsonl")}), "upload"), "upload")
        b = _ok(_call(lambda: http.post("/v1/batches", json={
            "input_file_id": f["id"], "endpoint": endpoint, "completion_window": window}),
            "create the batch"), "create the batch")
    if as_json:
        print_json(b)
        return
    tp = b.get("tokenprint") or {}
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(tp.get("scheduled_start", 0)))
    console.print(f"batch {b['id']}: {b['request_counts']['total']} lines, scheduled to start "
                  f"{start} ({tp.get('forecast', 'no forecast')})", highlight=False)
    console.print(f"watch it: tokenprint batch watch {b['id']} --gateway {gateway}",
                  style="dim", highlight=False)


@batch_app.command("watch")
def watch_batch(
    batch_id: Annotated[str, typer.Argument(help="The batch's id (it starts with batch_).")],
    gateway: GatewayOpt = "http://127.0.0.1:8080",
    api_key_env: KeyEnvOpt = "TOKENPRINT_API_KEY",
    every: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Follow a batch to its end with a progress bar (exit 1 unless it completed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with _client(gateway, api_key_env) as http, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=console) as bar:
        task = bar.add_task(batch_id, total=None)
        while True:
            b = _ok(_call(lambda: http.get(f"/v1/batches/{batch_id}"), "poll"), "poll")
            c = b["request_counts"]
            bar.update(task, total=c["total"], completed=c["completed"] + c["failed"],
                       description=f"{batch_id} {b['status']}")
            if b["status"] in DONE:
                break
            time.sleep(max(every, 0.1))
    tp = b.get("tokenprint") or {}
    console.print(f"{b['status']}: {c['completed']} answered, {c['failed']} failed"
                  + (f"; {tp['carbon_g']:.3g} g CO2e charged, {tp['saving_g']:.3g} g saved by "
                     "waiting" if "carbon_g" in tp else ""), highlight=False)
    if b["status"] != "completed":
        raise typer.Exit(1)


@batch_app.command("fetch")
def fetch(
    batch_id: Annotated[str, typer.Argument(help="The batch's id.")],
    out: Annotated[Path, typer.Option(help="Folder for output.jsonl and errors.jsonl.")]
    = Path("."),
    gateway: GatewayOpt = "http://127.0.0.1:8080",
    api_key_env: KeyEnvOpt = "TOKENPRINT_API_KEY",
) -> None:
    """Write a finished batch's output and error files."""
    from tokenprint.files import write_text_atomic

    with _client(gateway, api_key_env) as http:
        b = _ok(_call(lambda: http.get(f"/v1/batches/{batch_id}"), "fetch"), "fetch")
        if b["status"] not in DONE:
            raise TokenprintError(f"batch {batch_id} is {b['status']}; fetch it once it has "
                                  "ended (tokenprint batch watch waits for that)")
        out.mkdir(parents=True, exist_ok=True)
        for key, name in (("output_file_id", "output.jsonl"), ("error_file_id", "errors.jsonl")):
            if b.get(key):
                r = _call(lambda k=key: http.get(f"/v1/files/{b[k]}/content"), "fetch")
                if r.status_code >= 300:
                    _ok(r, "fetch")
                write_text_atomic(out / name, r.text)
                console.print(f"wrote {out / name} ({len(r.text.splitlines())} lines)")


@batch_app.command("list")
def list_batches(
    gateway: GatewayOpt = "http://127.0.0.1:8080",
    api_key_env: KeyEnvOpt = "TOKENPRINT_API_KEY",
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The gateway's batches, newest first."""
    with _client(gateway, api_key_env) as http:
        page = _ok(_call(lambda: http.get("/v1/batches", params={"limit": limit}), "list"),
                   "list")
    if as_json:
        print_json(page["data"])
        return
    for b in page["data"]:
        c = b["request_counts"]
        console.print(f"{b['id']}  {b['status']}  {c['completed']}/{c['total']} answered, "
                      f"{c['failed']} failed", highlight=False)
    if not page["data"]:
        console.print("no batches yet")


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.add_typer(batch_app, name="batch")

