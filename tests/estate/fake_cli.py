#!/usr/bin/env python3
"""A stand-in for `kubectl` and `aws` on PATH in tests: it answers read commands from recorded objects.

Installed as both names (fake_cli.install); which tool it plays is the name it was called by. Every call is
appended to $FAKE_CLI_LOG as one JSON array, so tests see exactly what was run. State:

- $FAKE_CLI_DIR/cluster.json: {"serves": [API groups beyond the built-in ones], "objects": [objects as
  `kubectl get -o json` prints them]}. `kubectl get <resource>[.<group>] [names] [-n ns | --all-namespaces]
  [-l k=v,...] [--ignore-not-found] [--show-managed-fields] -o json|name` answers like kubectl: one object
  for one name, a `List` otherwise; `-o name` prints `<resource>/<name>` lines; an unknown name is
  `Error from server (NotFound)` unless --ignore-not-found; an unserved group is kubectl's "the server
  doesn't have a resource type" (exit 1). managedFields are dropped unless --show-managed-fields.
- $FAKE_CLI_DIR/aws.json: {"<service> <operation>[ <value of its --name/--role-name/--bucket/--dns-name/
  --hosted-zone-id/--queue-name/--cluster-name>]": JSON answer}. No answer: get-role fails with NoSuchEntity,
  head-bucket with 404 and get-queue-url with NonExistentQueue, as the AWS CLI does (exit 254, the error text on
  stderr); anything else fails with exit 255.

Any verb but `get` (kubectl) or an operation not starting describe-/list-/get-/head- (aws) exits 99: a write.
"""

import json
import os
import sys

BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io", "networking.k8s.io",
                  "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io"}
KEY_FLAGS = ("--name", "--role-name", "--bucket", "--dns-name", "--hosted-zone-id", "--queue-name", "--cluster-name")


def _state(name):
    with open(os.path.join(os.environ["FAKE_CLI_DIR"], name)) as handle:
        return json.load(handle)


def _group(obj):
    api = obj.get("apiVersion", "")
    return api.rsplit("/", 1)[0] if "/" in api else ""


def _kind_matches(kind, resource):
    kind = kind.lower()
    return resource in (kind, kind + "s", kind + "es", kind[:-1] + "ies" if kind.endswith("y") else kind)


def _selected(obj, selector):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if key not in labels or ("=" in term and labels[key] != value):
            return False
    return True


def kubectl(args):
    if not args or args[0] != "get":
        sys.stderr.write(f"fake kubectl: refused a write: {args}\n")
        return 99
    args = args[1:]
    resource, names, namespace, every, selector, output, ignore, managed = args[0], [], "default", False, "", "", False, False
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "-n":
            namespace, i = args[i + 1], i + 2
        elif arg == "--all-namespaces":
            every, i = True, i + 1
        elif arg == "-l":
            selector, i = args[i + 1], i + 2
        elif arg == "-o":
            output, i = args[i + 1], i + 2
        elif arg == "--ignore-not-found":
            ignore, i = True, i + 1
        elif arg == "--show-managed-fields":
            managed, i = True, i + 1
        else:
            names.append(arg)
            i += 1
    plural, _, group = resource.partition(".")
    state = _state("cluster.json")
    if group and group not in BUILTIN_GROUPS and group not in state.get("serves", []):
        sys.stderr.write(f'error: the server doesn\'t have a resource type "{plural}"\n')
        return 1
    found = []
    for obj in state["objects"]:
        metadata = obj.get("metadata") or {}
        if not _kind_matches(obj.get("kind", ""), plural) or (group and _group(obj) != group):
            continue
        if metadata.get("namespace") and not every and metadata["namespace"] != namespace:
            continue
        if names and metadata.get("name") not in names:
            continue
        if selector and not _selected(obj, selector):
            continue
        obj = json.loads(json.dumps(obj))
        if not managed:
            obj.get("metadata", {}).pop("managedFields", None)
        found.append(obj)
    missing = [n for n in names if n not in {o["metadata"]["name"] for o in found}]
    if missing and not ignore:
        sys.stderr.write(f'Error from server (NotFound): {plural} "{missing[0]}" not found\n')
        return 1
    if output == "name":
        for obj in found:
            kind = obj["kind"].lower()
            sys.stdout.write(f"{kind}{'.' + _group(obj) if _group(obj) else ''}/{obj['metadata']['name']}\n")
        return 0
    if len(names) == 1:
        if found:
            json.dump(found[0], sys.stdout, indent=4)
        return 0
    json.dump({"apiVersion": "v1", "items": found, "kind": "List", "metadata": {"resourceVersion": ""}}, sys.stdout, indent=4)
    return 0


def aws(args):
    service, operation = args[0], args[1]
    if not operation.startswith(("describe-", "list-", "get-", "head-")):
        sys.stderr.write(f"fake aws: refused a write: {args}\n")
        return 99
    key = f"{service} {operation}"
    for flag in KEY_FLAGS:
        if flag in args:
            key += " " + args[args.index(flag) + 1]
            break
    answers = _state("aws.json")
    if key in answers:
        json.dump(answers[key], sys.stdout, indent=4)
        return 0
    if operation == "get-role":
        name = args[args.index("--role-name") + 1]
        sys.stderr.write(f"\nAn error occurred (NoSuchEntity) when calling the GetRole operation: The role with name {name} cannot be found.\n")
        return 254
    if operation == "head-bucket":
        sys.stderr.write("\nAn error occurred (404) when calling the HeadBucket operation: Not Found\n")
        return 254
    if operation == "get-queue-url":
        sys.stderr.write("\nAn error occurred (AWS.SimpleQueueService.NonExistentQueue) when calling the GetQueueUrl "
                         "operation: The specified queue does not exist.\n")
        return 254
    sys.stderr.write(f"fake aws: no recorded answer for {key!r}\n")
    return 255


def main():
    # The PATH wrappers name the tool (runpy sets argv[0] to this file's path).
    tool = os.environ.get("FAKE_CLI_TOOL") or os.path.basename(sys.argv[0])
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps([tool, *sys.argv[1:]]) + "\n")
    return kubectl(sys.argv[1:]) if tool == "kubectl" else aws(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
