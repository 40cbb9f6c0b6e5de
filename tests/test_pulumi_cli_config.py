"""The Pulumi CLI's own checks of the project and stack configuration (config/pulumi_project.py).

Part one ports Pulumi's own test cases for the functions ported, each citing the Go test it comes from
(pulumi/pulumi@v3.259.0: pkg/workspace/config_test.go, pkg/workspace/config_project_test.go,
sdk/go/common/workspace/project_test.go). Part two holds this project to them: both stacks with the secrets
docs/deploying.md sets pass, a stack that leaves out each setting the docs call optional passes, a stack
missing a required one gets the CLI's message, and `make preview` runs the check first.
"""

from __future__ import annotations

import base64
import dataclasses
import copy
import io
import re
import typing
from pathlib import Path

import pytest
import yaml

import config
from config import pulumi_project as cli
from config.loader import keys_of
from tests.conftest import REPO_ROOT, STACKS

PROJECT_NAME = "kubeflow-platform"


def load_project(text: str) -> cli.Project:
    return cli.load_project_document(cli.load_yaml(text))


def load_stack(project: cli.Project, text: str) -> dict:
    return cli.load_stack_document(project, cli.load_yaml(text))


def validate(stack_config: dict, project: cli.Project, decrypt=lambda text: None, stack: str = "dev"):
    """`ValidateStackConfigAndApplyProjectConfig` for the tests: the merged config and the CLI's error."""
    result = cli.merge_config(stack, project, stack_config, decrypt=decrypt)
    return result.config, result.first_error(stack)


def value_of(merged: dict, key: str) -> str:
    return merged[cli.parse_key(key)].text


def base64_decrypt(ciphertext: str) -> str:
    """config.Base64Crypter of the Go tests."""
    return base64.b64decode(ciphertext).decode()


# ------------------------------------------------------------------ pkg/workspace/config_project_test.go


def test_stack_config_is_inherited_from_project_config():
    # TestStackConfigIsInheritedFromProjectConfig (config_project_test.go:77-115)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  instanceSize: t3.micro\n  instanceCount: 20\n"
                           "  protect: true")
    merged, error = validate(load_stack(project, "config:\n  test:instanceSize: t4.large"), project)
    assert error is None
    assert len(merged) == 3
    assert value_of(merged, "test:instanceSize") == "t4.large"
    assert value_of(merged, "test:instanceCount") == "20"
    assert value_of(merged, "test:protect") == "true"


def test_namespaced_config_values_are_inherited_correctly():
    # TestNamespacedConfigValuesAreInheritedCorrectly (config_project_test.go:117-155)
    project = load_project('name: test\nruntime: dotnet\nconfig:\n  aws:region: us-west-1\n'
                           '  pulumi:disable-default-providers: ["*"]\n  instanceSize: t3.micro')
    merged, error = validate(load_stack(project, "config:\n  test:instanceSize: t4.large"), project)
    assert error is None
    assert len(merged) == 3
    assert value_of(merged, "test:instanceSize") == "t4.large"
    assert value_of(merged, "aws:region") == "us-west-1"
    assert value_of(merged, "pulumi:disable-default-providers") == '["*"]'


def test_loading_stack_config_without_namespacing_the_project():
    # TestLoadingStackConfigWithoutNamespacingTheProject (config_project_test.go:157-193)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  aws:region: us-west-1\n  instanceSize: t3.micro")
    merged, error = validate(load_stack(project, "config:\n  instanceSize: t4.large"), project)
    assert error is None
    assert len(merged) == 2
    assert value_of(merged, "test:instanceSize") == "t4.large"
    assert value_of(merged, "aws:region") == "us-west-1"


def test_untyped_project_config_values_are_not_validated():
    # TestUntypedProjectConfigValuesAreNotValidated (config_project_test.go:195-230)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  instanceSize: t3.micro\n  aws:region: us-west-1")
    merged, error = validate(load_stack(project, "config:\n  instanceSize: 9999\n  aws:region: 42"), project)
    assert error is None
    assert len(merged) == 2
    assert value_of(merged, "test:instanceSize") == "9999"
    assert value_of(merged, "aws:region") == "42"


def test_untyped_project_config_values_with_only_default_or_only_value():
    # TestUntypedProjectConfigValuesWithOnlyDefaultOrOnlyValue (config_project_test.go:232-269)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  instanceSize:\n    default: t3.micro\n"
                           "  region:\n    value: us-west-1")
    merged, error = validate(load_stack(project, "config:\n  aws:answer: 42"), project)
    assert error is None
    assert len(merged) == 3
    assert value_of(merged, "test:instanceSize") == "t3.micro"
    assert value_of(merged, "test:region") == "us-west-1"
    assert value_of(merged, "aws:answer") == "42"


def test_untyped_stack_config_values_do_need_project_declaration():
    # TestUntypedStackConfigValuesDoNeedProjectDeclaration (config_project_test.go:271-304): a stack key the
    # project does not declare is accepted as it is.
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  createVpc: true")
    merged, error = validate(load_stack(project, "config:\n  instanceSize: 42"), project)
    assert error is None
    assert len(merged) == 2
    assert value_of(merged, "test:instanceSize") == "42"
    assert value_of(merged, "test:createVpc") == "true"


def test_untyped_project_config_object_values_passed_down_to_stack():
    # TestUntypedProjectConfigObjectValuesPassedDownToStack (config_project_test.go:306-345)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  instanceSize:\n    value:\n      hello: world\n"
                           "  aws:config:\n    value:\n      region: us-west-1")
    merged, error = validate(load_stack(project, "config:\n  aws:whatever: 42"), project)
    assert error is None
    assert len(merged) == 3
    assert value_of(merged, "test:instanceSize") == '{"hello":"world"}'
    assert value_of(merged, "aws:config") == '{"region":"us-west-1"}'
    assert value_of(merged, "aws:whatever") == "42"


def test_stack_config_errors_when_stack_value_is_not_correctly_typed():
    # TestStackConfigErrorsWhenStackValueIsNotCorrectlyTyped (config_project_test.go:347-381)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  values:\n    type: array\n    items:\n"
                           "      type: string\n    default: [value]")
    _, error = validate(load_stack(project, "config:\n  test:values: someValue\n"), project)
    assert error == "Stack 'dev' with configuration key 'values' must be of type 'array<string>'"


def test_stack_config_integer_type_is_correctly_validated():
    # TestStackConfigIntegerTypeIsCorrectlyValidated (config_project_test.go:383-436)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  importantNumber:\n    type: integer\n")
    assert validate(load_stack(project, "config:\n  test:importantNumber: 20\n"), project)[1] is None
    _, error = validate(load_stack(project, "config:\n  test:importantNumber: hello\n"), project)
    assert error == "Stack 'dev' with configuration key 'importantNumber' must be of type 'integer'"


def test_stack_config_errors_when_missing_stack_value_for_config_type_with_no_default():
    # TestStackConfigErrorsWhenMissingStackValueForConfigTypeWithNoDefault (config_project_test.go:438-468)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  values:\n    type: array\n    items:\n"
                           "      type: string")
    _, error = validate(load_stack(project, ""), project)
    assert error == "Stack 'dev' is missing configuration value 'values'"


def test_stack_config_errors_when_missing_two_stack_values_for_config_type_with_no_default():
    # TestStackConfigErrorsWhenMissingTwoStackValueForConfigTypeWithNoDefault (config_project_test.go:470-502)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  another:\n    type: string\n  values:\n"
                           "    type: array\n    items:\n      type: string")
    _, error = validate(load_stack(project, ""), project)
    assert error == "Stack 'dev' is missing configuration values 'another' and 'values'"


def test_stack_config_errors_when_missing_multiple_stack_values_for_config_type_with_no_default():
    # TestStackConfigErrorsWhenMissingMultipleStackValueForConfigTypeWithNoDefault (config_project_test.go:504-538)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  hello:\n    type: integer\n  values:\n"
                           "    type: array\n    items:\n      type: string\n  world:\n    type: string")
    _, error = validate(load_stack(project, ""), project)
    assert error == "Stack 'dev' is missing configuration values 'hello', 'values' and 'world'"


def test_stack_config_does_not_error_when_project_has_not_defined_config():
    # TestStackConfigDoesNotErrorWhenProjectHasNotDefinedConfig (config_project_test.go:540-569)
    project = load_project("name: test\nruntime: dotnet")
    assert validate(load_stack(project, "config:\n  hello: 21\n  world: 42\n  another: 42"), project)[1] is None


def test_stack_config_secret_is_correctly_validated():
    # TestStackConfigSecretIsCorrectlyValidated (config_project_test.go:571-630)
    project = load_project("name: test\nruntime: dotnet\nconfig:\n  importantNumber:\n    type: integer\n"
                           "    secret: true\n")
    encrypted = base64.b64encode(b"20").decode()
    valid = load_stack(project, f"config:\n  test:importantNumber:\n    secure: {encrypted}\n")
    assert validate(valid, project, decrypt=base64_decrypt)[1] is None
    _, error = validate(load_stack(project, "config:\n  test:importantNumber: 20\n"), project, decrypt=base64_decrypt)
    assert error == "Stack 'dev' with configuration key 'importantNumber' must be encrypted as it's secret"


def test_stack_config_uint64():
    # TestStackConfigUInt64 (config_project_test.go:705-735)
    project = load_project("name: test\nruntime: dotnet")
    merged, error = validate(load_stack(project, "config:\n  test:instanceSize: 18446744073709551615"), project)
    assert error is None
    assert len(merged) == 1
    assert value_of(merged, "test:instanceSize") == "18446744073709551615"


# TestEnvironmentMerge (config_project_test.go:632-703) merges Pulumi ESC environments into the stack; the
# project uses none, so the port leaves environments out.


# ---------------------------------------------------------------------------- pkg/workspace/config_test.go


def test_validate_stack_config_values_without_a_decrypter_checks_nothing():
    # TestValidateStackConfigValues "No Decrypter Returns Nil" (config_test.go:27-34)
    project = cli.Project(name="testProject", config={"k": cli.Declaration(type="integer")})
    config_map = {("testProject", "k"): cli.Value("not a number")}
    assert cli.merge_config("stackA", project, config_map, decrypt=None).first_error("stackA") is None


def test_validate_stack_config_values_with_an_empty_project():
    # TestValidateStackConfigValues "Empty Project With Decrypter Returns Nil" (config_test.go:36-44)
    project = cli.Project(name="testProject")
    assert cli.merge_config("stackA", project, {}, decrypt=lambda text: text).first_error("stackA") is None


def test_validate_stack_config_values_propagates_a_decrypt_error():
    # TestValidateStackConfigValues "Decrypt Error Is Propagated" (config_test.go:46-59)
    project = cli.Project(name="testProject", config={"someKey": cli.Declaration(type="string")})

    def failing(ciphertext: str) -> str:
        raise RuntimeError("decrypt failed")

    with pytest.raises(RuntimeError, match="decrypt failed"):
        cli.merge_config("stackA", project, {("testProject", "someKey"): cli.Value("someVal", secure=True)},
                         decrypt=failing)


def test_validate_stack_config_values_typed_config_validates():
    # TestValidateStackConfigValues "Typed Config Validates" (config_test.go:61-93): nested keys are paths.
    project = cli.Project(name="testProject", config={
        "testInt": cli.Declaration(type="integer"),
        "testNested1.float": cli.Declaration(type="integer"),
        "testNested2.bool": cli.Declaration(type="boolean"),
        "testSecret": cli.Declaration(type="string", secret=True),
    })
    config_map = {
        ("testProject", "testInt"): cli.Value("1"),
        ("testProject", "testNested1"): cli.value_from_yaml({"float": 1.0}),
        ("testProject", "testNested2"): cli.value_from_yaml({"bool": True}),
        ("testProject", "testSecret"): cli.Value("dGVzdFZhbHVl", secure=True),
    }
    assert cli.merge_config("stackA", project, config_map, decrypt=base64_decrypt).first_error("stackA") is None


def test_validate_stack_config_value_enforces_secrets():
    # TestValidateStackConfigValues "Secret Enforced" (config_test.go:95-107)
    error = cli.validate_stack_config_value("stack1", "proj:secretKey", cli.Declaration(secret=True),
                                            cli.Value("plain"), "plain")
    assert "must be encrypted" in error


def test_validate_stack_config_value_object_unmarshal_error():
    # TestValidateStackConfigValues "Object Unmarshal Error" (config_test.go:109-119)
    error = cli.validate_stack_config_value("stackX", "proj:objKey", cli.Declaration(),
                                            cli.Value("not-a-json", object=True), "not-a-json")
    assert "invalid character" in error


def test_validate_stack_config_value_type_mismatch():
    # TestValidateStackConfigValues "Type Mismatch" (config_test.go:121-135)
    error = cli.validate_stack_config_value("stackX", "proj:typeKey", cli.Declaration(type="number"),
                                            cli.Value("not-a-number"), "not-a-number")
    assert "must be of type" in error


# ---------------------------------------------------------------- sdk/go/common/workspace/project_test.go


def test_project_validation_for_name():
    # TestProjectValidationForName (project_test.go:64-76)
    assert cli.validate_project(cli.Project(name="")) == ["project is missing a 'name' attribute"]
    assert cli.validate_project(cli.Project(name="a project")) == []


def test_project_validation_succeeds_for_object_config_type():
    # TestProjectValidationSucceedsForObjectConfigType (project_test.go:93-106)
    project = cli.Project(name="test", config={"example": cli.Declaration(type="object", default={"hello": "world"})})
    assert cli.validate_project(project) == []


def test_project_validation_fails_for_incorrect_default_value_type():
    # TestProjectValidationFailsForIncorrectDefaultValueType (project_test.go:108-145)
    project = cli.Project(name="test", config={"instanceSize": cli.Declaration(type="integer", default="hello")})
    assert cli.validate_project(project) == [
        "The default value specified for configuration key 'instanceSize' is not of the expected type 'integer'"]
    nested = cli.ItemsType(type="array", items=cli.ItemsType(type="string"))
    project = cli.Project(name="test", config={"values": cli.Declaration(type="array", items=nested, default=["hello"])})
    assert cli.validate_project(project) == [
        "The default value specified for configuration key 'values' is not of the expected type 'array<array<string>>'"]


def test_project_validation_succeeds_for_correct_default_value_type():
    # TestProjectValidationSucceedsForCorrectDefaultValueType (project_test.go:147-196)
    assert cli.validate_project(cli.Project(name="test", config={
        "instanceSize": cli.Declaration(type="integer", default=1)})) == []
    nested = cli.ItemsType(type="array", items=cli.ItemsType(type="string"))
    assert cli.validate_project(cli.Project(name="test", config={
        "values": cli.Declaration(type="array", items=nested, default=[["hello"]])})) == []


@pytest.mark.parametrize(("document", "message"), [
    # TestProjectLoadJSON (project_test.go:198-295) and TestProjectLoadYAML (project_test.go:663-720)
    ('"hello  "', "expected project to be an object, was 'string'"),
    ("{}", "project is missing a 'name' attribute"),
    ('{"name": ""}', "project is missing a non-empty string 'name' attribute"),
    ("name:", "project is missing a non-empty string 'name' attribute"),
    ("4: hello", "expected only string keys, got '%!s(int=4)'"),
    # TestProjectLoadJSONInformativeErrors "a missing name attribute" (project_test.go:300-309)
    ('{"Name": "project", "runtime": "test"}', "project is missing a 'name' attribute; found 'Name' instead"),
])
def test_project_load_errors(document, message):
    with pytest.raises(cli.ProjectError) as refused:
        load_project(document)
    assert message in refused.value.problems[0]


def test_project_load_succeeds_with_null_optionals():
    # TestProjectLoadJSON "success" and "null optionals should work" (project_test.go:271-295)
    assert load_project('{"name": "project", "runtime": "test"}').name == "project"
    assert load_project("name: project\nruntime: test\ndescription:\nmain: null\nbackend:\n").config == {}


def test_project_loads_config_schemas():
    # TestProjectLoadsConfigSchemas (project_test.go:448-554)
    project = load_project("""
name: test
runtime: dotnet
config:
  integerSchemaFull:
    type: integer
    description: a very important value
    default: 1
  integerSchemaSimple: 20
  textSchemaFull:
    type: string
    default: t3.micro
  textSchemaSimple: t4.large
  booleanSchemaFull:
    type: boolean
    default: true
  booleanSchemaSimple: false
  simpleArrayOfStrings:
    type: array
    items:
      type: string
    default: [hello]
  arrayOfArrays:
    type: array
    items:
      type: array
      items:
        type: string
  secretString:
    type: string
    secret: true
  """)
    config_ = project.config
    assert len(config_) == 9
    assert (config_["integerSchemaFull"].type_name, config_["integerSchemaFull"].description,
            config_["integerSchemaFull"].default, config_["integerSchemaFull"].secret) == (
        "integer", "a very important value", 1, False)
    assert config_["integerSchemaFull"].items is None
    assert not config_["integerSchemaSimple"].explicitly_typed and config_["integerSchemaSimple"].default == 20
    assert config_["textSchemaFull"].type_name == "string" and config_["textSchemaFull"].default == "t3.micro"
    assert config_["textSchemaFull"].description == ""
    assert config_["textSchemaSimple"].type_name == "" and config_["textSchemaSimple"].default == "t4.large"
    assert config_["booleanSchemaFull"].default is True
    assert not config_["booleanSchemaSimple"].explicitly_typed and config_["booleanSchemaSimple"].default is False
    assert config_["simpleArrayOfStrings"].items == cli.ItemsType("string")
    assert config_["simpleArrayOfStrings"].default == ["hello"]
    assert config_["arrayOfArrays"].items == cli.ItemsType("array", cli.ItemsType("string"))
    secret = config_["secretString"]
    assert (secret.type_name, secret.description, secret.default, secret.secret, secret.items) == (
        "string", "", cli.ABSENT, True, None)


@pytest.mark.parametrize(("document", "message"), [
    # TestNamespacedProjectConfigShouldNotBeExplicitlyTyped (project_test.go:556-570)
    ("config:\n  aws:region:\n    type: string\n    value:\n      region: us-west-1",
     "Configuration key 'aws:region' is not namespaced by the project and should not define a type"),
    # TestProjectConfigCannotHaveBothValueAndDefault (project_test.go:572-586)
    ("config:\n  instanceSize:\n    type: string\n    default: t3.micro\n    value: t4.large",
     "project config 'instanceSize' cannot have both a 'default' and 'value' attribute"),
    # TestProjectConfigCannotBeTypedArrayWithoutItems (project_test.go:588-602)
    ("config:\n  instanceSize:\n    type: array\n    default: [t3.micro, t4.large]",
     "The configuration key 'instanceSize' declares an array but does not specify the underlying type via the "
     "'items' attribute"),
    # TestNamespacedProjectConfigShouldNotBeProvideDefault (project_test.go:604-618)
    ("config:\n  aws:region:\n    default: us-west-1",
     "Configuration key 'aws:region' is not namespaced by the project and should not define a default value. "
     "Did you mean to use the 'value' attribute instead of 'default'?"),
    # The schema (project.json:318-398, santhosh-tekuri/jsonschema@v5.0.0): what a declaration may hold.
    ("config:\n  instanceSize:\n    typ: string", "#/config/instanceSize: additionalProperties 'typ' not allowed"),
    ("config:\n  instanceSize:\n    type: number",
     '#/config/instanceSize/type: value must be one of "string", "integer", "boolean", "array", "object"'),
    ("config:\n  ratio: 1.5", "#/config/ratio: oneOf failed"),
    ("config:\n  empty:", "#/config/empty: oneOf failed"),
    ("config:\n  zones:\n    type: array\n    items:\n      type: array",
     "#/config/zones/items: missing properties: 'items'"),
    # TestDefningBothConfigAndStackConfigDirErrorsOut (project_test.go:633-644)
    ("config: ./some/path\nstackConfigDir: ./some/other/path", "Should not use both config and stackConfigDir"),
])
def test_project_config_declarations_refused(document, message):
    with pytest.raises(cli.ProjectError) as refused:
        load_project("name: test\nruntime: dotnet\n" + document)
    assert any(message in problem for problem in refused.value.problems)


def test_project_config_cannot_be_typed_array_without_items_when_built_in_code():
    # TestProjectConfigCannotBeTypedArrayWithoutItems (project_test.go:588-602), on a project built in code
    project = cli.Project(name="test", config={"instanceSize": cli.Declaration(type="array",
                                                                               default=["t3.micro", "t4.large"])})
    assert cli.validate_project(project) == [
        "The configuration key 'instanceSize' declares an array but does not specify the underlying type via the "
        "'items' attribute"]


def test_loading_config_is_rewritten_to_stack_config_dir():
    # TestLoadingConfigIsRewrittenToStackConfigDir (project_test.go:620-631) and
    # TestConfigObjectAndStackConfigDirSuccessfullyLoadProject (project_test.go:646-661)
    project = load_project("name: test\nruntime: dotnet\nconfig: ./some/path")
    assert project.stack_config_dir == "./some/path" and project.config == {}
    project = load_project("name: test\nruntime: dotnet\nstackConfigDir: ./some/other/path\nconfig:\n  value: hello\n")
    assert project.stack_config_dir == "./some/other/path" and len(project.config) == 1


# ------------------------------------------------------------------ what the port adds for this project


def test_a_declared_secret_with_a_default_is_refused_whenever_the_stack_leaves_it_out():
    # config.go:327-348 applies the default as a plain value, then :126-134 refuses it as not encrypted: an
    # optional secret cannot be declared with `secret: true`, a type and a default.
    project = load_project("name: test\nconfig:\n  token:\n    type: string\n    secret: true\n    default: ''\n")
    _, error = validate({}, project)
    assert error == "Stack 'dev' with configuration key 'token' must be encrypted as it's secret"


def test_untyped_declarations_are_required_but_never_type_checked():
    # config.go:101 checks secrets and types only for typed keys; config.go:319 requires every key without
    # `default` or `value`, typed or not.
    project = load_project("name: test\nconfig:\n  tenancy:\n    description: object\n  token:\n    secret: true\n")
    assert validate({}, project)[1] == "Stack 'dev' is missing configuration values 'tenancy' and 'token'"
    stack = load_stack(project, "config:\n  test:tenancy: not an object\n  test:token: in clear\n")
    assert validate(stack, project)[1] is None


@pytest.mark.parametrize(("yaml_value", "type_", "accepted"), [
    ("true", "boolean", True), ('"false"', "boolean", True), ("yes", "boolean", False), ("1", "boolean", False),
    ("3", "integer", True), ('"3"', "integer", True), ("3.0", "integer", True), ("3.5", "integer", False),
    ("three", "integer", False), ("", "integer", False), ("[a, b]", "array", True), ("[1, 2]", "array", False),
    ("a", "array", False), ("{a: 1}", "object", True), ("a", "object", False), ("3", "string", True),
    ("{a: 1}", "string", False),
])
def test_stack_values_are_checked_against_their_declared_type(yaml_value, type_, accepted):
    # config.go:136-154 with project.go:771-831; YAML read as yaml.v3 reads it (`yes` is text).
    items = "    items:\n      type: string\n" if type_ == "array" else ""
    project = load_project(f"name: test\nconfig:\n  key:\n    type: {type_}\n{items}")
    _, error = validate(load_stack(project, f"config:\n  test:key: {yaml_value}\n"), project)
    expected = f"array<string>" if type_ == "array" else type_
    assert error == (None if accepted else f"Stack 'dev' with configuration key 'key' must be of type '{expected}'")


def test_a_key_written_twice_in_a_stack_file_is_refused():
    with pytest.raises(yaml.YAMLError, match='mapping key "test:a" already defined at line 2'):
        cli.load_yaml("config:\n  test:a: 1\n  test:a: 2\n")


def test_every_problem_is_listed_at_once_with_its_fix():
    project = load_project("name: test\nconfig:\n  size:\n    type: integer\n  zones:\n    type: array\n"
                           "    items:\n      type: string\n  token:\n    type: string\n    secret: true\n"
                           "  flag:\n    type: boolean\n  network:\n    description: object\n")
    stack = load_stack(project, "config:\n  test:token: in-clear\n  test:flag: yes\n")
    problems = cli.stack_problems("dev", project, stack, required_fields={"network": ["vpcId"]})
    missing = "Stack 'dev' is missing configuration values 'network', 'size' and 'zones'"
    assert [(p.key, p.message, p.fix) for p in problems] == [
        ("network", missing, "pulumi config set --path network.vpcId <value>"),
        ("size", missing, "pulumi config set size <integer>"),
        ("zones", missing, "pulumi config set --path 'zones[0]' <string>"),
        ("flag", "Stack 'dev' with configuration key 'flag' must be of type 'boolean'",
         "pulumi config set flag <true|false>"),
        ("token", "Stack 'dev' with configuration key 'token' must be encrypted as it's secret",
         "pulumi config set --secret token <value>"),
    ]
    # The first is what the CLI itself prints.
    assert cli.merge_config("dev", project, stack).first_error("dev") == missing


# ----------------------------------------------------------------------- this project's files, held to it

OPTIONAL_SETTINGS = ("protect", "certificate", "identity", "gpu", "tenancy", "fleet", "recovery")
#: What config/ requires of a Kubeflow stack (stand-alone or a fleet's region).
REQUIRED_SETTINGS = ("aws", "cluster", "dns", "ingress", "artifacts", "kubeflow", "auth")
#: What the CLI requires of every stack, a fleet's global stack too (which has no Kubeflow settings).
CLI_REQUIRED_SETTINGS = ("aws",)


def _stack_text(stack: str) -> dict:
    return yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())


def _write(directory: Path, stack: str, document: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_bytes((REPO_ROOT / "Pulumi.yaml").read_bytes())
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def _without(document: dict, *keys: str) -> dict:
    document = copy.deepcopy(document)
    for key in keys:
        document["config"].pop(f"{PROJECT_NAME}:{key}", None)  # dev and prod are stand-alone: no fleet
    return document


def test_docs_deploying_md_sets_exactly_the_secrets_the_preview_takes_as_set():
    page = (REPO_ROOT / "docs" / "deploying.md").read_text()
    assert set(re.findall(r"pulumi config set --secret (\w+)", page)) == set(cli.DEPLOYING_SECRETS)


@pytest.mark.parametrize("stack", STACKS)
def test_both_stacks_pass_the_cli_check_with_the_secrets_deploying_md_sets(stack):
    assert cli.check_stack_files(REPO_ROOT, stack, cli.DEPLOYING_SECRETS) == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_files_without_their_secrets_get_the_cli_message_and_the_command(stack):
    problems = cli.check_stack_files(REPO_ROOT, stack, secrets_set=())
    assert [(p.message, p.fix) for p in problems] == [(
        f"Stack '{stack}' is missing configuration value 'authClientSecret'",
        "pulumi config set --secret authClientSecret <value>")]


def test_pulumi_yaml_requires_exactly_what_config_requires():
    """A setting has a `default` in Pulumi.yaml exactly when config/ has one or a fleet's global stack has none of it
    (the Kubeflow settings, `{}`: config/ requires their fields on every other stack), and the declared secrets are
    exactly those config/ requires of a stack whose other settings need none (no kubeflow.database, the
    authservice proxy, no static keys): the CLI requires nothing the program does not."""
    from config.fleet import KUBEFLOW_STACK_KEYS

    project = cli.load_project(REPO_ROOT / "Pulumi.yaml")
    for key, field_ in keys_of(config.Settings).items():
        has_default = field_.default is not dataclasses.MISSING or field_.default_factory is not dataclasses.MISSING
        assert (project.config[key].default is not cli.ABSENT) == (has_default or key in KUBEFLOW_STACK_KEYS), key
        if not has_default and key in KUBEFLOW_STACK_KEYS:
            assert project.config[key].default == {}, key
    raw = {key.split(":", 1)[1]: value for key, value in _stack_text("dev")["config"].items()}
    raw["auth"] = {**raw["auth"], "proxy": "authservice"}
    raw["kubeflow"] = {**raw["kubeflow"], "exclude": [*raw["kubeflow"]["exclude"], "authservice"]}
    del raw["kubeflow"]["database"]
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(), "dev")
    secrets_required = {line.split(":")[0] for line in refused.value.problems if line.split(":")[0] in config.SECRET_KEYS}
    declared_secrets = {key for key, declaration in project.config.items() if declaration.secret}
    assert secrets_required == declared_secrets == {"authClientSecret"}


@pytest.mark.parametrize("setting", OPTIONAL_SETTINGS)
@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_leaving_out_an_optional_setting_passes_the_cli_check(tmp_path, stack, setting):
    root = _write(tmp_path, stack, _without(_stack_text(stack), setting))
    assert cli.check_stack_files(root, stack, cli.DEPLOYING_SECRETS) == []


@pytest.mark.parametrize("setting", CLI_REQUIRED_SETTINGS)
def test_a_stack_missing_a_required_setting_gets_the_cli_message(tmp_path, setting):
    root = _write(tmp_path, "dev", _without(_stack_text("dev"), setting))
    problems = cli.check_stack_files(root, "dev", cli.DEPLOYING_SECRETS,
                                     required_fields=cli.settings_required_fields())
    assert [p.message for p in problems] == [f"Stack 'dev' is missing configuration value '{setting}'"]
    fields = cli.settings_required_fields()[setting] or ["<field>"]
    assert problems[0].fix == "; ".join(f"pulumi config set --path {setting}.{name} <value>" for name in fields)


@pytest.mark.parametrize("setting", sorted(set(REQUIRED_SETTINGS) - set(CLI_REQUIRED_SETTINGS)))
def test_a_kubeflow_stack_missing_a_kubeflow_setting_gets_each_required_field_from_config(tmp_path, setting):
    """The CLI accepts it (Pulumi.yaml defaults it to {} for the global stack's sake); config/ names every field the
    setting needs, with its key path, before anything is registered."""
    root = _write(tmp_path, "dev", _without(_stack_text("dev"), setting))
    assert cli.check_stack_files(root, "dev", cli.DEPLOYING_SECRETS) == []
    raw = {key.split(":", 1)[1]: value for key, value in _without(_stack_text("dev"), setting)["config"].items()}
    raw[setting] = {}  # the Pulumi.yaml default the engine hands the program
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(cli.DEPLOYING_SECRETS), "dev")
    # Each required field by name (ingress has none: its open NLB is refused instead), every problem under the setting.
    assert {f"{setting}.{name}: is required" for name in cli.settings_required_fields()[setting]} <= set(refused.value.problems)
    assert refused.value.problems and all(line.startswith(f"{setting}.") for line in refused.value.problems)


def test_a_secret_in_clear_and_a_mistyped_setting_are_refused_with_their_fixes(tmp_path):
    document = _stack_text("dev")
    document["config"][f"{PROJECT_NAME}:authClientSecret"] = "in-clear"
    document["config"][f"{PROJECT_NAME}:protect"] = "yes"
    root = _write(tmp_path, "dev", document)
    problems = cli.check_stack_files(root, "dev", cli.DEPLOYING_SECRETS)
    assert [(p.message, p.fix) for p in problems] == [
        ("Stack 'dev' with configuration key 'authClientSecret' must be encrypted as it's secret",
         "pulumi config set --secret authClientSecret <value>"),
        ("Stack 'dev' with configuration key 'protect' must be of type 'boolean'",
         "pulumi config set protect <true|false>"),
    ]


def test_an_encrypted_secret_in_the_stack_file_counts_as_set(tmp_path):
    document = _stack_text("dev")
    document["config"][f"{PROJECT_NAME}:authClientSecret"] = {"secure": "v1:c2VjcmV0"}
    root = _write(tmp_path, "dev", document)
    assert cli.check_stack_files(root, "dev", secrets_set=()) == []


def _preview(program: Path, stack: str) -> tuple[int, str, str]:
    """`make preview` for `stack` of `program` as a user runs it: the secrets docs/deploying.md sets."""
    from tools.preview import preview

    stdout, stderr = io.StringIO(), io.StringIO()
    status = preview(stack, out=program / "build" / stack, stdout=stdout, stderr=stderr, root=program)
    return status, stdout.getvalue(), stderr.getvalue()


def test_preview_of_a_stack_with_only_the_required_settings_passes(tmp_path):
    """Every setting the docs call optional left out (and the one machine identity, which names a
    tenancy user): the CLI's check, the program's settings and the whole offline preview pass."""
    from tests.stack_files import copy_program, stack_document

    program = copy_program(tmp_path / "program")
    document = _without(stack_document("dev"), *OPTIONAL_SETTINGS)
    auth = document["config"][f"{PROJECT_NAME}:auth"]
    auth["extraIssuers"] = [issuer for issuer in auth["extraIssuers"] if "machineIdentity" not in issuer]
    (program / "Pulumi.minimal.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    status, stdout, stderr = _preview(program, "minimal")
    assert status == 0, stderr + stdout
    assert "Offline checks: passed" in stdout


def test_preview_stops_at_the_cli_check_before_running_the_program(tmp_path):
    from tests.stack_files import copy_program, stack_document

    program = copy_program(tmp_path / "program")
    document = _without(stack_document("dev"), "aws")
    document["config"][f"{PROJECT_NAME}:authClientSecret"] = "in-clear"
    (program / "Pulumi.broken.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    status, stdout, stderr = _preview(program, "broken")
    assert status == 1 and stdout == ""
    assert stderr.splitlines() == [
        "error: the Pulumi CLI (v3.259.0) would refuse this stack before running the program (2 problems):",
        "  - validating stack config: Stack 'broken' is missing configuration value 'aws'",
        "      fix: pulumi config set --path aws.region <value>",
        "  - validating stack config: Stack 'broken' with configuration key 'authClientSecret' must be encrypted as it's secret",
        "      fix: pulumi config set --secret authClientSecret <value>",
    ]


def test_the_settings_configuration_md_calls_required_are_the_ones_the_cli_requires():
    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", page, flags=re.MULTILINE)
    assert {key for key, default in rows if default.strip() == "required"} == set(REQUIRED_SETTINGS)
    assert {key for key, default in rows if default.strip() != "required"} == set(OPTIONAL_SETTINGS)
    project = cli.load_project(REPO_ROOT / "Pulumi.yaml")
    required = {key for key, declaration in project.config.items()
                if declaration.default is cli.ABSENT and declaration.value is cli.ABSENT}
    assert required == {*CLI_REQUIRED_SETTINGS, "authClientSecret"}
