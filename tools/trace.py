"""Why a request would get a 404 or a 403, before deploying: one request traced hop by hop through the mesh.

    python -m tools.trace <stack|saved plan dir> <url> --as <email|anonymous> [--manifests path] [--kubeflow-version v]

A stack is evaluated now under the mock runtime (as `make preview` does, without writing anything), so the answer is
about the stack's current settings; a directory holding a plan.json (`build/dev`) is read as saved. Prints every hop
(Gateway, EnvoyFilter, auth proxy, token, DENY/ALLOW, route, Service, NetworkPolicy, PeerAuthentication, the
destination's policies) with the object that decided it. Exit 0 when the request reaches its backend, 1 when it does
not, 2 on an error (bad URL, unknown stack, a plan without the trace's settings).
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from typing import TextIO

import pulumi

from analysis import policies, trace

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def caller_for(spec: str) -> trace.Caller:
    if spec == "anonymous":
        return trace.anonymous()
    if _EMAIL.fullmatch(spec):
        return trace.browser(spec, f"{spec} (logged in through the auth proxy)")
    raise ValueError(f"--as {spec!r}: give the email of a logged-in user or `anonymous`")


def main(argv: list[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    from tools.diff import load_side

    parser = argparse.ArgumentParser(prog="python -m tools.trace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="stack name (evaluated now) or a directory with a saved plan.json")
    parser.add_argument("url", help="the URL a browser would open, like https://kubeflow.dev.ml.example.com/pipeline/")
    parser.add_argument("--as", dest="caller", default="anonymous", help="email of a logged-in user, or anonymous")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests instead of the stack's")
    parser.add_argument("--kubeflow-version", help="Kubeflow release of those manifests")
    args = parser.parse_args(argv)
    try:
        caller = caller_for(args.caller)
        plan, label = load_side(args.stack, manifests=args.manifests, kubeflow_version=args.kubeflow_version, stderr=stderr)
        model = trace.model_from_plan(plan)
        result = trace.trace_request(model, args.url, caller, args.method.upper())
    except (pulumi.RunError, ValueError, FileNotFoundError) as error:
        # TraceError and NotModelled are ValueErrors: the question cannot be answered, which is not a "no".
        print(f"error: {error}", file=stderr)
        return 2
    stdout.write(f"Trace over {label}\n")
    stdout.write(trace.render(result))
    return 0 if result.reached else 1


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except Exception:  # noqa: BLE001 - a crash must not read as "not reached"
        traceback.print_exc()
        status = 2
    sys.exit(status)
