"""The checks the Pulumi CLI makes on `Pulumi.yaml` and `Pulumi.<stack>.yaml` before it runs the program.

`pulumi preview` and `pulumi up` load the project file, validate its `config:` declarations, merge the
project's defaults into the stack's configuration, and refuse the stack when a declared key is missing,
a `secret: true` key is written in clear, or a value is not of its declared type. None of this reaches the
program: the mock runtime never runs it, so it is ported here, as pure Python, from the CLI the docs name:

- loading the project: pulumi/pulumi@v3.259.0 sdk/go/common/workspace/loaders.go:108-147 (the JSON schema
  `project.json`:335-398 for the `config:` entries, then `RewriteConfigPathIntoStackConfigDir` and
  `RewriteShorthandConfigValues`, project.go:448-517, then `Project.Validate`, project.go:837-889);
- loading a stack file: loaders.go:172-229 (keys without a namespace get the project's, :61-89) and the
  config value representation, sdk/go/common/resource/config/object.go:403-419, 467-527;
- the stack check: pkg/workspace/config.go:255-366 (`mergeConfig`: missing keys :302-354, the message
  :30-64) and :66-157 (`validateStackConfigValues`: secrets :126-134, types :136-154, with
  project.go:760-831 `ValidateConfigValue`);
- `pulumi preview` and `pulumi up` run that check unless `--skip-config-validation` is given and print its
  error as `validating stack config: <message>` (pkg/cmd/pulumi/operations/preview.go:521-539,
  up.go:205-217).

The CLI stops at its first error; `stack_problems` lists every problem at once, each with the CLI's own
message (the first one is the message the CLI prints) and the `pulumi config set` command that fixes it.
The functions named after the CLI's (`validate_project`, `merge_config`, ...) behave as the Go ones do and
are tested with Pulumi's own test cases (tests/test_pulumi_cli_config.py).

Offline, a secret set with `pulumi config set --secret` is ciphertext nobody here can decrypt: such a value
is known to be secure, and its content is type-checked only when a `decrypt` function can read it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

#: The Pulumi CLI release these checks are read from.
PULUMI_CLI = "pulumi/pulumi@v3.259.0"

#: The secrets docs/deploying.md sets with `pulumi config set --secret` before `pulumi preview`: what the
#: offline preview takes as set on the real stack (encrypted there, unknown here). tests/test_pulumi_cli_config.py
#: holds the page to this list.
DEPLOYING_SECRETS: tuple[str, ...] = ("authClientSecret", "authCookieSecret", "databasePassword")

# project.go:50-54; the schema's `simpleConfigType` (project.json:335-344).
STRING, INTEGER, BOOLEAN, ARRAY, OBJECT = "string", "integer", "boolean", "array", "object"
CONFIG_TYPES = (STRING, INTEGER, BOOLEAN, ARRAY, OBJECT)
#: Attributes of a config type declaration (project.json:378-398, `additionalProperties: false`).
DECLARATION_ATTRIBUTES = ("type", "items", "description", "secret", "default", "value")


class _Absent:
    """A Go `nil`: an attribute not written, or written as YAML null (`default: ~` is no default)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


# ------------------------------------------------------------------------------------------- YAML


class _Yaml12Loader(yaml.SafeLoader):
    """Reads YAML as the CLI's yaml.v3 does into `any`: YAML 1.2 core scalars (`yes`, `on`, `0777` stay
    text), and a key written twice in one mapping is an error (yaml.v3 decode.go: "already defined")."""


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+.0123456789"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _construct_yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"mapping key {json.dumps(key) if isinstance(key, str) else key} already defined at "
                    f"line {seen[key] + 1}", key_node.start_mark)
        except TypeError:  # an unhashable key: PyYAML's own constructor refuses it below
            break
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_yaml12_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text: str | bytes) -> Any:
    """One YAML document, read as the CLI reads it (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _json_type(value: Any) -> str:
    # santhosh-tekuri/jsonschema@v5.0.0: the instance's JSON type in "expected X, but got Y".
    if value is None or value is ABSENT:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _go_type(value: Any) -> str:
    # The Go type a YAML value decodes into, as `%T` and SimplifyMarshalledProject's message print it.
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, list):
        return "[]interface {}"
    if value is None:
        return "<nil>"
    return type(value).__name__


# ------------------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class ItemsType:
    """`ProjectConfigItemsType` (project.go:277-280)."""

    type: str
    items: Optional["ItemsType"] = None


@dataclass(frozen=True)
class Declaration:
    """`ProjectConfigType` (project.go:282-304): one entry of the project's `config:`."""

    type: Optional[str] = None
    items: Optional[ItemsType] = None
    description: str = ""
    default: Any = ABSENT
    value: Any = ABSENT
    secret: bool = False

    @property
    def explicitly_typed(self) -> bool:
        return self.type is not None

    @property
    def type_name(self) -> str:
        return self.type or ""


@dataclass(frozen=True)
class Project:
    name: str
    config: Mapping[str, Declaration] = field(default_factory=dict)
    stack_config_dir: Optional[str] = None


class ProjectError(ValueError):
    """The CLI refuses the project file; `problems` are its messages (the first is what the CLI prints)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def find_closest_key(needle: str, haystack: Iterable[str], max_distance: int = 2) -> str:
    """project.go:649-689: the key within `max_distance` edits (case ignored), first alphabetically on ties."""
    match, closest = "", max_distance + 1
    for key in sorted(haystack):
        distance = _levenshtein(needle.lower(), key.lower())
        if distance == 0:
            return key
        if distance < closest:
            closest, match = distance, key
    return match


def _items_schema_problems(items: Any, where: str) -> list[str]:
    # project.json:345-377: `type` required, a simple type or nested items; `items` required for arrays.
    if not isinstance(items, Mapping):
        return [f"{where}: expected object, but got {_json_type(items)}"]
    problems = []
    if "type" not in items:
        problems.append(f"{where}: missing properties: 'type'")
    elif not (items["type"] in CONFIG_TYPES or isinstance(items["type"], Mapping)):
        problems.append(f"{where}/type: value must be one of " + ", ".join(f'"{t}"' for t in CONFIG_TYPES))
    elif items["type"] == ARRAY and "items" not in items:
        problems.append(f"{where}: missing properties: 'items'")
    if "items" in items:
        problems += _items_schema_problems(items["items"], f"{where}/items")
    return problems


def _entry_schema_problems(key: str, value: Any) -> list[str]:
    """project.json:318-333: a config entry is a string, an integer, a boolean, an array or a type
    declaration (project.json:378-398). One line per problem at `#/config/<key>`, in the schema validator's
    words (santhosh-tekuri/jsonschema@v5.0.0 schema.go:249, 275, 303, 344, 646); where the CLI lists every
    alternative of a failed `oneOf` on a line of its own, they are summed up in one."""
    where = f"#/config/{key}"
    if key == "secret":  # project.json:325-330 declares `config.secret` as a boolean property
        return [] if isinstance(value, bool) else [f"{where}: expected boolean, but got {_json_type(value)}"]
    if isinstance(value, (str, bool, list)) or (isinstance(value, int)) or (
            isinstance(value, float) and value.is_integer()):
        return []
    if not isinstance(value, Mapping):
        return [f"{where}: oneOf failed; expected string, integer, boolean, array or object, but got {_json_type(value)}"]
    problems = []
    for attribute in value:
        if attribute not in DECLARATION_ATTRIBUTES:
            problems.append(f"{where}: additionalProperties '{attribute}' not allowed")
    if "type" in value and value["type"] not in CONFIG_TYPES:
        problems.append(f"{where}/type: value must be one of " + ", ".join(f'"{t}"' for t in CONFIG_TYPES))
    if "items" in value:
        problems += _items_schema_problems(value["items"], f"{where}/items")
    if "description" in value and not isinstance(value["description"], str):
        problems.append(f"{where}/description: expected string, but got {_json_type(value['description'])}")
    if "secret" in value and not isinstance(value["secret"], bool):
        problems.append(f"{where}/secret: expected boolean, but got {_json_type(value['secret'])}")
    return problems


def validate_project_document(raw: Any) -> list[str]:
    """`ValidateProject` (project.go:569-647) for what the checks here concern: the name and `config:`."""
    if not isinstance(raw, Mapping):
        return [f"expected project to be an object, was '{_go_type(raw)}'"]
    for key in raw:
        if not isinstance(key, str):
            return [f"expected only string keys, got '%!s(int={key})'" if isinstance(key, int)
                    else f"expected only string keys, got '{key}'"]
    if "name" not in raw:
        closest = find_closest_key("name", raw)
        if closest:
            return [f"project is missing a 'name' attribute; found '{closest}' instead"]
        return ["project is missing a 'name' attribute"]
    if not isinstance(raw["name"], str) or not raw["name"]:
        return ["project is missing a non-empty string 'name' attribute"]
    config = raw.get("config")
    if config is None or isinstance(config, str):
        return []
    if not isinstance(config, Mapping):
        return [f"#/config: expected object or string or null, but got {_json_type(config)}"]
    return [problem for key, value in config.items() for problem in _entry_schema_problems(str(key), value)]


def _items(raw: Any) -> Optional[ItemsType]:
    if not isinstance(raw, Mapping):
        return None
    return ItemsType(type=raw.get("type") if isinstance(raw.get("type"), str) else "", items=_items(raw.get("items")))


def config_key_is_namespaced_by_project(project_name: str, key: str) -> bool:
    """project.go:833-835."""
    return ":" not in key or key.startswith(project_name + ":")


def rewrite_shorthand_config_values(project_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """project.go:469-517: `key: value` becomes `{default: value}` for the project's own keys and
    `{value: value}` for another namespace's (strings, integers, booleans and arrays only)."""
    rewritten = {}
    for key, value in config.items():
        if isinstance(value, (str, bool, int, list)) and not isinstance(value, float):
            attribute = "default" if config_key_is_namespaced_by_project(project_name, key) else "value"
            rewritten[key] = {attribute: value}
        else:
            rewritten[key] = value
    return rewritten


def load_project_document(raw: Any) -> Project:
    """`LoadProjectBytes` (loaders.go:108-147): schema, rewrites, then `Project.Validate`."""
    problems = validate_project_document(raw)
    if problems:
        raise ProjectError(problems)
    config = raw.get("config")
    stack_config_dir = raw.get("stackConfigDir")
    if isinstance(config, str):  # RewriteConfigPathIntoStackConfigDir, project.go:444-467
        if "stackConfigDir" in raw:
            raise ProjectError(["Should not use both config and stackConfigDir to define the stack directory. "
                                "Use only stackConfigDir instead."])
        stack_config_dir, config = config, None
    declarations = {}
    for key, entry in rewrite_shorthand_config_values(raw["name"], config or {}).items():
        entry = entry if isinstance(entry, Mapping) else {}
        declarations[key] = Declaration(
            type=entry.get("type"),
            items=_items(entry.get("items")),
            description=entry.get("description") or "",
            default=ABSENT if entry.get("default") is None else entry["default"],
            value=ABSENT if entry.get("value") is None else entry["value"],
            secret=bool(entry.get("secret", False)),
        )
    project = Project(name=raw["name"], config=declarations, stack_config_dir=stack_config_dir)
    problems = validate_project(project)
    if problems:
        raise ProjectError(problems)
    return project


def load_project(path: Path) -> Project:
    """`LoadProject` for a `Pulumi.yaml`; raises ProjectError with the CLI's messages."""
    try:
        raw = load_yaml(path.read_bytes())
    except yaml.YAMLError as error:
        raise ProjectError([f"could not unmarshal '{path.name}': {error}"]) from None
    return load_project_document(raw)


def infer_full_type_name(type_name: str, items: Optional[ItemsType]) -> str:
    """project.go:760-766."""
    if items is not None:
        return f"array<{infer_full_type_name(items.type, items.items)}>"
    return type_name


def validate_config_value(type_name: str, items: Optional[ItemsType], value: Any) -> bool:
    """`ValidateConfigValue`, project.go:768-831: strings; integers (whole floats and text that parses as
    one included); booleans (and the text "true"/"false"); objects; arrays item by item."""
    if type_name == STRING:
        return isinstance(value, str)
    if type_name == INTEGER:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return math.isfinite(value) and value == math.trunc(value)
        if isinstance(value, str):
            return _atoi(value) is not None
        return False
    if type_name == BOOLEAN:
        return value in ("true", "false") if isinstance(value, str) else isinstance(value, bool)
    if type_name == OBJECT:
        return isinstance(value, Mapping)
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_config_value(items.type, items.items, item) for item in value)


_ATOI = re.compile(r"^[+-]?[0-9]+$")


def _atoi(text: str) -> Optional[int]:
    # Go's strconv.Atoi: optional sign, decimal digits, within int64.
    if not _ATOI.match(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def validate_project(project: Project) -> list[str]:
    """`Project.Validate`, project.go:837-889, every problem (the CLI returns the first it meets)."""
    if not project.name:
        return ["project is missing a 'name' attribute"]
    problems = []
    for key, declaration in sorted(project.config.items()):
        if declaration.default is not ABSENT and declaration.value is not ABSENT:
            problems.append(f"project config '{key}' cannot have both a 'default' and 'value' attribute")
            continue
        if config_key_is_namespaced_by_project(project.name, key):
            if declaration.explicitly_typed and declaration.type_name == ARRAY and declaration.items is None:
                problems.append(f"The configuration key '{key}' declares an array but does not specify the "
                                "underlying type via the 'items' attribute")
            elif declaration.explicitly_typed and declaration.default is not ABSENT and not validate_config_value(
                    declaration.type_name, declaration.items, declaration.default):
                problems.append(f"The default value specified for configuration key '{key}' is not of the expected "
                                f"type '{infer_full_type_name(declaration.type_name, declaration.items)}'")
        elif declaration.explicitly_typed:
            problems.append(f"Configuration key '{key}' is not namespaced by the project and should not define a type")
        elif declaration.default is not ABSENT:
            problems.append(f"Configuration key '{key}' is not namespaced by the project and should not define a "
                            "default value. Did you mean to use the 'value' attribute instead of 'default'?")
        elif declaration.value is ABSENT:
            problems.append(f"Configuration key '{key}' is namespaced and must provide an attribute 'value'")
    return problems


# ------------------------------------------------------------------------------------ stack config


@dataclass(frozen=True)
class Value:
    """`config.Value` (sdk/go/common/resource/config/value.go:35-61): the text, and whether it is secure
    (`{secure: <ciphertext>}` as `pulumi config set --secret` writes it) or an object (JSON text)."""

    text: str
    secure: bool = False
    object: bool = False


def _go_json(value: Any) -> str:
    # encoding/json as Go writes what a YAML or JSON value decodes into: whole floats without ".0".
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_go_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _is_secure(value: Any) -> bool:
    # object.go:540-550: a mapping of the one key "secure" with a string.
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get("secure"), str)


def _contains_secure(value: Any) -> bool:
    if _is_secure(value):
        return True
    if isinstance(value, Mapping):
        return any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def value_from_yaml(raw: Any) -> Value:
    """A stack file entry as the CLI holds it (object.go:403-419, 467-527): scalars as text, `{secure: ...}`
    as a secure value, mappings and lists as object JSON; an empty entry is the empty string (loaders.go:379-410)."""
    if raw is None:
        return Value("")
    if _is_secure(raw):
        return Value(raw["secure"], secure=True)
    if isinstance(raw, str):
        return Value(raw)
    if isinstance(raw, (bool, int, float)):
        return Value(_go_json(raw))
    return Value(_go_json(raw), secure=_contains_secure(raw), object=True)


def create_config_value(raw: Any) -> Value:
    """config.go:170-193: a project `default`/`value` as the stack gets it; strings, integers and booleans as
    text (Go's %v), anything else as object JSON."""
    if isinstance(raw, bool):
        return Value("true" if raw else "false")
    if isinstance(raw, (str, int)):
        return Value(str(raw))
    return Value(_go_json(raw), object=True)


class ConfigKeyError(ValueError):
    pass


def parse_key(text: str) -> tuple[str, str]:
    """`config.ParseKey` (config/key.go:45-70): `<namespace>:<name>`, or the old `<namespace>:config:<name>`."""
    colons = text.count(":")
    if colons == 1:
        namespace, name = text.split(":")
        return namespace, name
    if colons == 2:
        namespace, module, name = text.split(":")
        if module == "config":
            return namespace, name
    raise ConfigKeyError(f"could not parse {text} as a configuration key "
                    "(configuration keys should be of the form `<namespace>:<name>`)")


def _parse_key_for_project(project_name: str, key: str) -> tuple[str, str]:
    # config.go:159-168
    return parse_key(key) if ":" in key else (project_name, key)


def load_stack_document(project: Project, raw: Any) -> dict[tuple[str, str], Value]:
    """`LoadProjectStackBytes` (loaders.go:172-229): the stack's config map; keys without a namespace are the
    project's (:61-89)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ProjectError([f"expected project to be an object, was '{_go_type(raw)}'"])
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise ProjectError([f"could not unmarshal map: config is {_go_type(config)}"])
    values = {}
    for key, entry in config.items():
        key = str(key)
        full = key if ":" in key else f"{project.name}:{key}"
        try:
            values[parse_key(full)] = value_from_yaml(entry)
        except ConfigKeyError as error:
            raise ProjectError([f"could not unmarshal map: {error}"]) from None
    return values


def _path(name: str) -> list[Any]:
    """A config key's name as a property path (`a.b`, `a[0]`, `a["b.c"]`), the forms
    resource.ParsePropertyPathStrict reads (sdk/go/common/resource/properties_path.go)."""
    parts: list[Any] = []
    for match in re.finditer(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|([^.\[\]]+)', name):
        quoted, index, plain = match.groups()
        parts.append(json.loads(f'"{quoted}"') if quoted is not None else int(index) if index is not None else plain)
    return parts


def get_value(config: Mapping[tuple[str, str], Value], key: tuple[str, str], path: bool = True) -> Optional[Value]:
    """`Map.Get` (config/map.go:149-182): with `path`, the name is a property path into an object value."""
    namespace, name = key
    if not path:
        return config.get(key)
    steps = _path(name)
    if not steps or not isinstance(steps[0], str):
        return None
    root = config.get((namespace, steps[0]))
    if root is None or len(steps) == 1:
        return root
    if not root.object:
        return None
    node: Any = json.loads(root.text)
    for step in steps[1:]:
        if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif isinstance(node, Mapping) and isinstance(step, str) and step in node:
            node = node[step]
        else:
            return None
    return value_from_yaml(node)


def missing_stack_configuration_keys_error(missing: Sequence[str], stack: str) -> str:
    """config.go:30-64, word for word: "Stack 'dev' is missing configuration values 'a', 'b' and 'c'"."""
    keys = sorted(missing) if len(missing) > 1 else list(missing)
    if len(keys) == 1:
        listed = f"'{keys[0]}'"
    else:
        listed = "".join(f"'{k}', " for k in keys[:-2]) + f"'{keys[-2]}' and '{keys[-1]}'"
    return f"Stack '{stack}' is missing configuration {'values' if len(keys) > 1 else 'value'} {listed}"


@dataclass(frozen=True)
class Problem:
    """One refusal of the CLI: the key, the CLI's message, and the command that fixes it."""

    key: str
    message: str
    fix: str


#: Decrypts a secure value's ciphertext; returns None when it cannot be read (offline).
Decrypt = Callable[[str], Optional[str]]


def validate_stack_config_value(stack: str, key: str, declaration: Declaration, value: Value,
                                decrypted: Optional[str]) -> Optional[str]:
    """config.go:119-157: a secret must be secure; then the content must be of the declared type
    (`decrypted` None: a secure value nobody here can read, not type-checked)."""
    if declaration.secret and not value.secure:
        return f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret"
    if decrypted is None:
        return None
    content: Any = decrypted
    if value.object:
        try:
            content = json.loads(decrypted)
        except ValueError as error:  # Go's encoding/json words it so
            position = getattr(error, "pos", 0)
            found = decrypted[position:position + 1] or " "
            return f"invalid character '{found}' looking for beginning of value"
    if not validate_config_value(declaration.type_name, declaration.items, content):
        return (f"Stack '{stack}' with configuration key '{key}' must be of type "
                f"'{infer_full_type_name(declaration.type_name, declaration.items)}'")
    return None


@dataclass
class MergeResult:
    """What `mergeConfig` leaves: the stack's config with the project's defaults and values applied, the
    missing keys' message (if any) and every value problem, in the CLI's order (sorted keys)."""

    config: dict[tuple[str, str], Value]
    missing: list[str]
    errors: list[tuple[str, str]]

    def first_error(self, stack: str) -> Optional[str]:
        """The error the CLI returns (config.go:351-363): the missing keys first, else the first bad value."""
        if self.missing:
            return missing_stack_configuration_keys_error(self.missing, stack)
        return self.errors[0][1] if self.errors else None


def merge_config(stack: str, project: Project, stack_config: Mapping[tuple[str, str], Value],
                 decrypt: Optional[Decrypt] = lambda ciphertext: None, validate: bool = True) -> MergeResult:
    """`mergeConfig` (config.go:255-366) without ESC environments; `decrypt=None` is the CLI without a
    decrypter, which skips the value checks (config.go:72-74)."""
    merged = dict(stack_config)
    missing: list[str] = []
    for key in sorted(project.config):
        declaration = project.config[key]
        full = _parse_key_for_project(project.name, key)
        found = get_value(merged, full) is not None
        has_default, has_value = declaration.default is not ABSENT, declaration.value is not ABSENT
        if not found and not has_value and not has_default and full[0] == project.name:
            missing.append(key)
            continue
        if not found and (has_value or has_default):
            merged[full] = create_config_value(declaration.default if has_default else declaration.value)
    errors: list[tuple[str, str]] = []
    if validate and not missing and decrypt is not None:
        for key in sorted(project.config):
            declaration = project.config[key]
            if not declaration.explicitly_typed:
                continue
            value = get_value(merged, _parse_key_for_project(project.name, key)) or Value("")
            decrypted = decrypt(value.text) if value.secure else value.text
            error = validate_stack_config_value(stack, key, declaration, value, decrypted)
            if error:
                errors.append((key, error))
    return MergeResult(config=merged, missing=missing if validate else [], errors=errors)


def _placeholder(declaration: Declaration) -> str:
    if declaration.type_name == BOOLEAN:
        return "<true|false>"
    if declaration.type_name == INTEGER:
        return "<integer>"
    return "<value>"


def fix_command(key: str, declaration: Declaration, fields: Sequence[str] = ()) -> str:
    """The `pulumi config set` command that gives `key` a value of its declared kind. `fields`: for a
    structured key (no `type`), the fields the program requires in it."""
    if declaration.secret:
        return f"pulumi config set --secret {key} {_placeholder(declaration)}"
    if declaration.type_name == ARRAY:
        items = declaration.items.type if declaration.items else "value"
        return f"pulumi config set --path '{key}[0]' <{items}>"
    if declaration.type_name in (STRING, INTEGER, BOOLEAN):
        return f"pulumi config set {key} {_placeholder(declaration)}"
    names = list(fields) or ["<field>"]
    return "; ".join(f"pulumi config set --path {key}.{name} <value>" for name in names)


def stack_problems(stack: str, project: Project, stack_config: Mapping[tuple[str, str], Value],
                   decrypt: Optional[Decrypt] = lambda ciphertext: None,
                   required_fields: Mapping[str, Sequence[str]] | None = None) -> list[Problem]:
    """Every refusal `pulumi preview`/`pulumi up` would make for this stack, all at once: first the missing
    keys (one message, as the CLI words it, and a fix per key), then each value that is not encrypted or not
    of its type, which the CLI reports one run at a time once the missing keys are set."""
    result = merge_config(stack, project, stack_config, decrypt=None)
    problems = []
    if result.missing:
        message = missing_stack_configuration_keys_error(result.missing, stack)
        for key in sorted(result.missing):
            fields = (required_fields or {}).get(key, ())
            problems.append(Problem(key, message, fix_command(key, project.config[key], fields)))
    if decrypt is None:
        return problems
    for key in sorted(project.config):
        declaration = project.config[key]
        value = get_value(result.config, _parse_key_for_project(project.name, key))
        if not declaration.explicitly_typed or value is None:
            continue
        decrypted = decrypt(value.text) if value.secure else value.text
        error = validate_stack_config_value(stack, key, declaration, value, decrypted)
        if error:
            problems.append(Problem(key, error, fix_command(key, declaration)))
    return problems


def with_secrets_set(stack_config: Mapping[tuple[str, str], Value], project_name: str,
                     secrets: Iterable[str]) -> dict[tuple[str, str], Value]:
    """The stack's config after `pulumi config set --secret <key>` for each of `secrets` that the stack file
    does not already hold: a secure value whose ciphertext is not known here. A key the file holds (in clear
    or encrypted) keeps the file's value, so a secret written in clear is still refused."""
    config = dict(stack_config)
    for key in secrets:
        full = (project_name, key)
        if full not in config:
            config[full] = Value("<ciphertext>", secure=True)
    return config


def _readable_stack_file(data: bytes) -> bool:
    """Whether the program's stack-file reader takes the file: one mapping, no key twice, nesting bounded.
    A file it refuses is left to it, whose messages name the line (the CLI would refuse it too)."""
    from manifests import yaml_loader

    try:
        documents = yaml_loader.load_all(data)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    return len(documents) <= 1 and (not documents or documents[0] is None or isinstance(documents[0], Mapping))


def check_stack_files(root: Path, stack: str, secrets_set: Iterable[str] = DEPLOYING_SECRETS,
                      required_fields: Mapping[str, Sequence[str]] | None = None) -> list[Problem]:
    """The CLI's checks for `Pulumi.yaml` and `Pulumi.<stack>.yaml` in `root`, with `secrets_set` set on the
    stack with `pulumi config set --secret` (the real stack file holds them encrypted)."""
    project_file = root / "Pulumi.yaml"
    try:
        project = load_project(project_file)
    except ProjectError as error:
        return [Problem("Pulumi.yaml", f"could not validate 'Pulumi.yaml': {problem}",
                        "fix the declaration in Pulumi.yaml") for problem in error.problems]
    stack_file = root / f"Pulumi.{stack}.yaml"
    data = stack_file.read_bytes() if stack_file.is_file() else b""
    if not _readable_stack_file(data):
        return []  # the program's own reader refuses it with the line and what to fix (tools.mock_runtime)
    try:
        stack_config = load_stack_document(project, load_yaml(data))
    except yaml.YAMLError as error:
        return [Problem(stack_file.name, f"could not unmarshal '{stack_file.name}': {error}",
                        f"fix {stack_file.name}; `pulumi config set` writes valid entries")]
    except ProjectError as error:
        return [Problem(stack_file.name, problem, f"fix {stack_file.name}; `pulumi config set` writes valid entries")
                for problem in error.problems]
    return stack_problems(stack, project, with_secrets_set(stack_config, project.name, secrets_set),
                          required_fields=required_fields)


def settings_required_fields() -> dict[str, list[str]]:
    """For each structured setting, the fields config/ requires in it (for the fix of a missing key): the
    program's settings dataclasses stay the one place that says what a setting holds."""
    import dataclasses
    import typing

    import config
    from config.loader import keys_of

    hints = typing.get_type_hints(config.Settings)
    required = {}
    for key, field_ in keys_of(config.Settings).items():
        hint = hints[field_.name]
        if dataclasses.is_dataclass(hint):
            required[key] = [name for name, f in keys_of(hint).items()
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return required


def preflight(root: Path, stack: str, secrets_set: Iterable[str], stream: Any) -> bool:
    """What `pulumi preview` checks before it runs the program: False, with every problem and its fix written
    to `stream`, when the CLI would refuse the stack."""
    problems = check_stack_files(root, stack, secrets_set, required_fields=settings_required_fields())
    if problems:
        print(render(problems), file=stream)
    return not problems


def render(problems: Sequence[Problem]) -> str:
    """The problems as `pulumi preview` prints the first (`error: validating stack config: ...`), each
    followed by its fix."""
    lines = [f"error: the Pulumi CLI ({PULUMI_CLI.split('@')[1]}) would refuse this stack before running the "
             f"program ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
    seen: set[str] = set()
    for problem in problems:
        if problem.message not in seen:
            seen.add(problem.message)
            prefix = "" if problem.message.startswith("could not") else "validating stack config: "
            lines.append(f"  - {prefix}{problem.message}")
        lines.append(f"      fix: {problem.fix}")
    return "\n".join(lines)


__all__ = [
    "ABSENT", "DEPLOYING_SECRETS", "Declaration", "ItemsType", "MergeResult", "PULUMI_CLI", "Problem", "Project",
    "ProjectError", "Value", "check_stack_files", "config_key_is_namespaced_by_project", "create_config_value",
    "find_closest_key", "fix_command", "get_value", "infer_full_type_name", "load_project", "load_project_document",
    "load_stack_document", "load_yaml", "merge_config", "missing_stack_configuration_keys_error", "parse_key",
    "preflight", "render", "rewrite_shorthand_config_values", "settings_required_fields", "stack_problems", "validate_config_value", "validate_project",
    "validate_project_document", "validate_stack_config_value", "value_from_yaml", "with_secrets_set",
]
