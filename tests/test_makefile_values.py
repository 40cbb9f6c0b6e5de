"""Caller's values reach the Makefile's commands through the environment, never pasted into a recipe's text."""

import re
import subprocess

from tests.conftest import REPO_ROOT

MAKEFILE = (REPO_ROOT / "Makefile").read_text()
#: Every caller's value the Makefile hands its commands: `export MAKEARG_<NAME> = ...$(<NAME>)...`.
PASSED = {name for name in re.findall(r"^export MAKEARG_\w+ = .*?\$\((\w+)\)", MAKEFILE, flags=re.M)}


def _recipe_lines() -> list[str]:
    return [line for line in MAKEFILE.splitlines() if line.startswith("\t")]


#: Where a recipe may name a caller's value: make tests it (is it set, is there a saved plan under it), the shell
#: never sees it. `diff_options` uses its first argument only in `$(wildcard ...)`.
_TESTED_ONLY = (r"\$\(if \$\(\w+\),", r"\$\(wildcard \$\(\w+\)/", r"\$\(call diff_options,\$\(\w+\),")


def _pasted(lines: list[str]) -> list[str]:
    """The recipe lines that put a caller's value into the shell's text."""
    found = []
    for line in lines:
        shell_text = line
        for pattern in _TESTED_ONLY:
            shell_text = re.sub(pattern, "", shell_text)
        found += [f"{name}: {line.strip()}" for name in sorted(PASSED) if re.search(rf"\$\({name}\)", shell_text)]
    return found


def test_the_makefile_passes_caller_values_through_the_environment():
    assert {"STACK", "URL", "FROM_SET", "FLEET_SET", "BENCH_ARGS"} <= PASSED
    assert re.search(r"^diff_options = \$\(if \$\(wildcard \$\(1\)/", MAKEFILE, flags=re.M)
    assert _pasted(_recipe_lines()) == []


def test_the_check_finds_a_value_pasted_into_a_recipe():
    assert _pasted(["\tpython -m tools.bench $(BENCH_ARGS)", "\tpython -m tools.preview $(if $(OUT),--out $(OUT))"]) == [
        "BENCH_ARGS: python -m tools.bench $(BENCH_ARGS)", "OUT: python -m tools.preview $(if $(OUT),--out $(OUT))"]


def test_a_hostile_bench_args_value_is_not_shell_code_in_the_recipe(tmp_path):
    canary = tmp_path / "ran"
    value = f"--smoke; touch {canary}"
    shown = subprocess.run(["make", "-n", "bench", f"BENCH_ARGS={value}"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=False, env={"PATH": "/usr/bin:/bin", "KUBEFLOW_MANIFESTS_DIR": str(tmp_path)})
    assert "$MAKEARG_BENCH_ARGS" in shown.stdout and value not in shown.stdout, shown.stdout + shown.stderr
    assert not canary.exists()
