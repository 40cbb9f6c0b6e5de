"""A stand-in for the `pulumi` CLI in the runbook test (docs/deploying.md): it checks each command against the
project and stack files instead of running a deployment.

- `stack select|init <stack>`: Pulumi.<stack>.yaml must exist (the project's stacks); remembered as current.
- `config set [--secret] [--path] <key> <value>`: the key (its first part with --path) must be declared in
  Pulumi.yaml or be a setting the program reads (config.settings_keys, config.SECRET_KEYS); a secret (declared
  `secret: true`, or one of the program's secret keys) must be set with --secret; the value must not be empty.
- `preview [--diff]`, `up`: the current stack's settings must load with the secrets set so far, as the
  program loads them (config.parse: every problem at once, a missing secret named with its command).

Calls go to $FAKE_CLI_LOG, state to $FAKE_CLI_DIR/pulumi-state.json. Run from the project directory.
"""

import json
import os
import sys
from pathlib import Path

import yaml


def _state_path() -> Path:
    return Path(os.environ["FAKE_CLI_DIR"]) / "pulumi-state.json"


def _state() -> dict:
    path = _state_path()
    return json.loads(path.read_text()) if path.exists() else {"stack": None, "secrets": {}, "config": {}}


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 255


def main(args: list[str]) -> int:
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(["pulumi", *args]) + "\n")
    project = yaml.safe_load(Path("Pulumi.yaml").read_text())
    declared = project.get("config") or {}
    state = _state()
    if args[:2] in (["stack", "select"], ["stack", "init"]):
        stack = args[2]
        if not Path(f"Pulumi.{stack}.yaml").is_file():
            return _fail(f"no stack file Pulumi.{stack}.yaml")
        state["stack"] = stack
    elif args[:2] == ["config", "set"]:
        flags = [a for a in args[2:] if a.startswith("--")]
        rest = [a for a in args[2:] if not a.startswith("--")]
        unknown = set(flags) - {"--secret", "--path"}
        if unknown or len(rest) != 2:
            return _fail(f"usage: pulumi config set [--secret] [--path] <key> <value> (got {args[2:]})")
        key, value = rest
        top = key.split(".")[0] if "--path" in flags else key
        sys.path.insert(0, os.getcwd())
        import config

        # The CLI takes any key of the project's namespace; one the program never reads would be a typo.
        if top not in declared and top not in config.settings_keys() and top not in config.SECRET_KEYS:
            return _fail(f"{top!r} is neither declared in Pulumi.yaml nor a setting the program reads")
        if ((declared.get(top) or {}).get("secret") or top in config.SECRET_KEYS) and "--secret" not in flags:
            return _fail(f"{key!r} is a secret: set it with --secret")
        if not value:
            return _fail(f"an empty value for {key!r}")
        if state["stack"] is None:
            return _fail("no stack selected")
        (state["secrets"] if "--secret" in flags else state["config"])[key] = True
    elif args and args[0] in ("preview", "up"):
        if state["stack"] is None:
            return _fail("no stack selected")
        sys.path.insert(0, os.getcwd())
        import config
        from tools.mock_runtime import PROJECT, stack_config

        raw = {k.split(":", 1)[1]: v for k, v in stack_config(state["stack"], Path.cwd()).items() if k.startswith(PROJECT + ":")}
        raw = {k: v for k, v in raw.items() if k not in config.SECRET_KEYS}
        try:
            config.parse(raw, config.Secrets(), set(state["secrets"]), state["stack"])
        except config.SettingsError as error:
            return _fail(str(error))
    else:
        return _fail(f"the runbook test does not know `pulumi {' '.join(args)}`")
    _state_path().write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
