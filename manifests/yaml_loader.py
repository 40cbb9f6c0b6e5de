"""PyYAML's safe loader, faster on what Kubernetes manifests are made of, with the same results.

Parsing the 10 MB upstream release with `yaml.CSafeLoader` is mostly Python, not libyaml: about a third is
building dicts and lists through the constructor's generic machinery (a generator per mapping, a memo
entry per node), a quarter is resolving the tag of every plain scalar, and a third is the cyclic garbage
collector re-walking the growing tree while it is built. `load_all` keeps libyaml's scanner, parser and
composer and replaces those three:

- plain maps, sequences and scalars are built by one tight recursive function; anything else (merge keys,
  `!!set`, `!!omap`, unknown tags, unhashable keys) makes the whole document go through PyYAML's own
  constructor, so the result and every error are PyYAML's;
- a plain scalar's tag is resolved from the implicit resolvers for its first character only, which is what
  PyYAML does when no path resolvers are registered (none are, on this loader);
- the collector is paused while the documents are built: the tree holds no cycles worth collecting.

`tests/manifests/test_yaml_loader.py` compares the results with `yaml.CSafeLoader`, types included.
"""

from __future__ import annotations

import gc
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
#: Scalar tags whose SafeConstructor method is a plain function of the node (no generator, no state).
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)
#: Mapping keys that make PyYAML rewrite the mapping (merge `<<`, value `=`).
_SPECIAL_KEY_TAGS = frozenset(("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"))


class _NotPlain(Exception):
    """The document needs PyYAML's own constructor."""


class SafeDocumentLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """`yaml.CSafeLoader` with a fast path for plain documents; see the module docstring."""

    # The shortcut in `resolve` is exact only without path resolvers and wildcard implicit resolvers.
    _shortcut = not _BaseLoader.yaml_path_resolvers and None not in _BaseLoader.yaml_implicit_resolvers

    def resolve(self, kind, value, implicit):  # noqa: ANN001 (PyYAML's signature)
        if kind is ScalarNode and implicit[0] and self._shortcut:
            for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                if regexp.match(value):
                    return tag
            return self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)

    def construct_document(self, node):  # noqa: ANN001
        try:
            return self._construct_plain(node)
        except (_NotPlain, TypeError, RecursionError):
            # TypeError: an unhashable key, which PyYAML's constructor reports properly. RecursionError:
            # nesting deeper than Python's stack, which PyYAML's constructor walks without recursing.
            return super().construct_document(node)

    def _construct_plain(self, root: Any) -> Any:
        constructors = self.yaml_constructors
        # Aliases are the same node object: they must give the same Python object, as with PyYAML.
        built: dict[int, Any] = {}

        def build(node: Any) -> Any:
            kind = node.__class__
            tag = node.tag
            if kind is ScalarNode:
                if tag == _STR:
                    return node.value
                if tag in _SCALAR_TAGS:
                    return constructors[tag](self, node)
                raise _NotPlain
            known = built.get(id(node))
            if known is not None:
                return known
            if kind is MappingNode and tag == _MAP:
                mapping: dict = {}
                built[id(node)] = mapping
                for key_node, value_node in node.value:
                    if key_node.tag in _SPECIAL_KEY_TAGS:
                        raise _NotPlain
                    mapping[build(key_node)] = build(value_node)
                return mapping
            if kind is SequenceNode and tag == _SEQ:
                sequence: list = []
                built[id(node)] = sequence
                sequence.extend([build(item) for item in node.value])
                return sequence
            raise _NotPlain

        return build(root)


def load_all(data: str | bytes) -> list[Any]:
    """Every document of a YAML stream, as `list(yaml.load_all(data, Loader=yaml.CSafeLoader))` gives them.

    Raises `yaml.YAMLError` exactly where PyYAML does.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        loader = SafeDocumentLoader(data)
        try:
            documents = []
            while loader.check_data():
                documents.append(loader.get_data())
            return documents
        finally:
            loader.dispose()
    finally:
        if collecting:
            gc.enable()
