"""Each documented CLI failure: one line, the right exit status, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from tests.first_run.process import ROOT
from tests.support import free_port

BASE_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}


def gateway(
    *argv: str, env: dict[str, str] | None = None, cwd=ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        env={**BASE_ENV, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


FAILURES = [
    # (argv, env, exit status, text the one line holds)
    (["serve", "--port", "0"], {"REDIS_URL": "localhost:6379"}, 2, "REDIS_URL: scheme"),
    (["serve"], {"REDIS_URL": "redis://host:notaport/0"}, 2, "REDIS_URL: not a valid URL"),
    (["serve", "--port", "abc"], {}, 2, "argument --port: invalid int value"),
    (["serve", "--workers", "0"], {}, 2, "--workers: expected at least 1"),
    (
        ["serve"],
        {"GATEWAY_MAX_UPSTREAM_CONNECTIONS": "many"},
        2,
        "GATEWAY_MAX_UPSTREAM_CONNECTIONS",
    ),
    (["nonsense"], {}, 2, "unknown command 'nonsense' (see `gateway --help`)"),
    (["serv"], {}, 2, "unknown command 'serv' (did you mean 'serve'?)"),
    (["--demo", "serv"], {}, 2, "unknown command 'serv' (did you mean 'serve'?)"),
    (["keys", "lst"], {}, 2, "unknown command 'keys lst' (did you mean 'keys list'?)"),
    (["db", "upgrad"], {}, 2, "unknown command 'db upgrad' (did you mean 'db upgrade'?)"),
    (["serve", "extra"], {}, 2, "unrecognized arguments: extra"),
    (
        ["usage", "export", "--from", "yesterday", "--to", "2026-11-30"],
        {},
        2,
        "invalid time 'yesterday'",
    ),
    (
        ["usage", "export", "--from", "2026-11-30", "--to", "2026-11-01"],
        {},
        2,
        "'to' is before 'from'",
    ),
    (
        ["usage", "export", "--from", "2026-11-01", "--to", "2026-11-30"],
        {"REDIS_URL": "garbage"},
        2,
        "REDIS_URL: not a URL (no scheme)",
    ),
    (
        ["usage", "export", "--from", "2026-11-01", "--to", "2026-11-30"],
        {},
        1,
        "REDIS_URL is not set",
    ),
    (["usage", "export"], {}, 2, "the following arguments are required: --from, --to"),
    (["check"], {"REDIS_URL": "http://127.0.0.1:6379"}, 1, "REDIS_URL: scheme 'http'"),
    (["check"], {"REDIS_URL": "notaurl"}, 1, "REDIS_URL: not a URL (no scheme)"),
    (["keys", "list"], {}, 1, "no admin token: pass --token or set GATEWAY_ADMIN_TOKEN"),
    (["check"], {"GATEWAY_UPSTREAM_TRANSPORT": "curl"}, 1, "GATEWAY_UPSTREAM_TRANSPORT: expected"),
]


@pytest.mark.parametrize(
    "argv,env,status,text", FAILURES, ids=[" ".join(f[0]) + str(sorted(f[1])) for f in FAILURES]
)
def test_documented_failures_are_one_line(argv, env, status, text) -> None:
    result = gateway(*argv, env=env)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: error: ")
    assert text in lines[0]


def test_an_unreachable_store_is_one_line_and_exit_1() -> None:
    port = free_port()  # nothing listens there
    result = gateway(
        "usage", "export", "--from", "2026-11-01", "--to", "2026-11-30",
        env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("gateway: error: usage export: cannot read the store at")
    assert "Traceback" not in result.stderr


def test_an_unreachable_gateway_is_one_error_line_and_exit_1() -> None:
    port = free_port()  # nothing listens there
    result = gateway("keys", "list", "--url", f"http://127.0.0.1:{port}", "--token", "t" * 32)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"gateway: error: http://127.0.0.1:{port}: ConnectError")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_invalid_config_ends_with_one_error_line(tmp_path) -> None:
    result = gateway("check", "--config-dir", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[:-1] == [
        f"routes.yaml: file not found in {tmp_path}",
        f"tiers.yaml: file not found in {tmp_path}",
    ]
    assert lines[-1] == f"gateway: error: invalid config in {tmp_path}"


def test_malformed_gateway_keys_name_the_variable_not_an_empty_tier() -> None:
    result = gateway("check", env={"GATEWAY_KEYS": "garbage"})
    assert result.returncode == 1
    assert "GATEWAY_KEYS: entry 1: no '=' in it" in result.stderr
    assert "garbage" not in result.stderr  # the entry may be a key: never echoed
    assert "got tier ''" not in result.stderr


def test_check_warns_about_unset_and_unread_variables() -> None:
    result = gateway("check", env={"TOGTHER_API_KEY": "sk-typo"})
    assert result.returncode == 0, result.stderr
    assert "api_key_env TOGETHER_API_KEY is unset" in result.stderr
    assert "TOGTHER_API_KEY is set but no upstream in routes.yaml reads it" in result.stderr
    assert "tier free route image: usable none" in result.stderr
    assert "sk-typo" not in result.stderr + result.stdout


def test_check_says_which_tier_has_no_cached_response_fallback(tmp_path) -> None:
    """The shipped tiers all keep one (no warning); with one tier's cache section removed,
    `gateway check` names that tier and still passes."""
    import shutil

    import yaml

    shipped = gateway("check")
    assert shipped.returncode == 0, shipped.stderr
    assert "cached-response fallback" not in shipped.stderr
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    tiers = yaml.safe_load((ROOT / "tiers.yaml").read_text())
    del tiers["tiers"]["enterprise"]["cache"]
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    result = gateway("check", "--config-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "cached-response fallback" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: tier enterprise:"), warned


def test_check_names_a_bad_base_url_variable() -> None:
    result = gateway("check", env={"TOGETHER_BASE_URL": "api.together.xyz"})
    assert result.returncode == 1
    assert "TOGETHER_BASE_URL must start with http:// or https://" in result.stderr


def test_check_with_the_key_set_has_no_warning_for_it() -> None:
    keys = {"TOGETHER_API_KEY": "sk-x", "OPENAI_API_KEY": "sk-y", "RUNWAYML_API_SECRET": "k"}
    result = gateway("check", env=keys)
    assert result.returncode == 0
    assert "API_KEY is unset" not in result.stderr
    assert "usable none" not in result.stderr


def test_version_and_help() -> None:
    version = gateway("--version")
    assert version.returncode == 0 and version.stdout.startswith("gateway ")
    top = gateway("--help").stdout
    for sentence in (
        "Run the gateway (the default command).",
        "Validate routes.yaml, tiers.yaml and the environment they read.",
        "Print the JSON Schema of routes.yaml and tiers.yaml.",
    ):
        assert sentence in " ".join(top.split())
    serve = " ".join(gateway("serve", "--help").stdout.split())
    assert "port to listen on (default: 8080)" in serve
    assert "(default: 127.0.0.1)" in serve


def _parsers(parser, path=("gateway",)):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_command_and_option_has_help_text() -> None:
    from gateway.cli.parser import build_parser

    missing = []
    for name, parser in _parsers(build_parser()):
        if len((parser.description or "").split()) < 4:  # a sentence, not a pointer
            missing.append(f"{name}: description {parser.description!r}")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                one_liners = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [
                    f"{name} {c}: no one-line help" for c in action.choices if not one_liners.get(c)
                ]
            elif not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, "\n".join(missing)


def test_top_level_help_gives_each_command_a_one_line_description() -> None:
    from gateway.cli import COMMANDS

    top = gateway("--help", env={"COLUMNS": "200"}).stdout.splitlines()
    for command in COMMANDS:
        line = next((x.split() for x in top if x.split()[:1] == [command]), None)
        assert line is not None and len(line) > 3, (command, top)


def test_help_of_db_and_of_the_admin_clients() -> None:
    db = " ".join(gateway("db", "--help").stdout.split())
    assert "PostgreSQL usage ledger named by DATABASE_URL" in db
    assert "upgrade Apply pending ledger migrations" in db
    upgrade = " ".join(gateway("db", "upgrade", "--help").stdout.split())
    assert "GATEWAY_LEDGER_AUTO_MIGRATE" in upgrade
    secret = "t" * 40
    keys = " ".join(
        gateway("keys", "list", "--help", env={"GATEWAY_ADMIN_TOKEN": secret}).stdout.split()
    )
    assert "--url URL the running gateway's base URL (default: $GATEWAY_URL" in keys
    assert "--token TOKEN an admin token (default: $GATEWAY_ADMIN_TOKEN)" in keys
    assert secret not in keys


def test_global_options_anywhere(tmp_path) -> None:
    (tmp_path / "routes.yaml").write_text((ROOT / "routes.yaml").read_text())
    (tmp_path / "tiers.yaml").write_text((ROOT / "tiers.yaml").read_text())
    for argv in (
        ["--config-dir", str(tmp_path), "check"],
        ["check", "--config-dir", str(tmp_path)],
    ):
        result = gateway(*argv, cwd=tmp_path.parent)
        assert result.returncode == 0, result.stderr
    assert gateway("check", cwd=tmp_path.parent).returncode == 1  # no config there


@pytest.mark.parametrize(
    "command",
    [["serve"], ["check"], ["schema"], ["usage", "export"], ["models", "check"],
     ["db", "upgrade"], ["ledger", "ship"]],
)  # fmt: skip
def test_every_command_reading_the_config_takes_config_dir_after_it(command) -> None:
    from gateway.cli.parser import build_parser

    extra = ["--from", "2026-01-01", "--to", "2026-01-02"] if command[0] == "usage" else []
    args = build_parser().parse_args([*command, *extra, "--config-dir", "/some/dir"])
    assert args.config_dir == "/some/dir"


def test_schema_prints_both_files() -> None:
    import json

    document = json.loads(gateway("schema").stdout)
    assert set(document) == {"routes.yaml", "tiers.yaml"}
    assert "readiness" in document["tiers.yaml"]["properties"]["settings"]["properties"]


def test_serve_is_the_default_command(tmp_path) -> None:
    from tests.first_run.process import Shell

    port = free_port()
    command = f"{sys.executable} -m gateway --config-dir {ROOT} --demo --port {port}"
    shell = Shell(command, tmp_path, BASE_ENV, tmp_path / "default.log")
    try:
        assert shell.wait_for(f"http://127.0.0.1:{port}/readyz").status_code == 200
        assert shell.dev_key().startswith("sk-demo-")
    finally:
        shell.stop()
