"""Field checks shared by the settings areas. Each returns None when fine, else the message.

They encode the rules AWS and Kubernetes enforce, because the mock runtime used in tests and in the
offline preview accepts anything.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any, Optional
from urllib.parse import urlparse

from manifests.guardrails import whole_address_spaces

Check = Callable[[Any], Optional[str]]

# RFC 1123 host names as Route 53 and ACM accept them; a leading `*.` is a wildcard label.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REGION = re.compile(
    r"^(us|eu|ap|sa|ca|me|af|il|mx|cn)(-gov|-iso[bef]?)?-"
    r"(north|south|east|west|central|northeast|northwest|southeast|southwest)-\d$"
)
_ACCOUNT = re.compile(r"^\d{12}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")


def dns_name(value: str, *, wildcard: bool = False) -> Optional[str]:
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return f"{value!r} is not a valid DNS name (1 to 253 characters)"
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        return f"{value!r} is not a fully qualified DNS name (like kubeflow.example.com)"
    for label in labels:
        if not _DNS_LABEL.match(label):
            return (
                f"{value!r} is not a valid DNS name: label {label!r} must be lower-case letters, digits "
                "and hyphens, at most 63 characters, not starting or ending with a hyphen"
            )
    return None


def dns_names_with_wildcards(values: Iterable[str]) -> Optional[str]:
    for value in values:
        message = dns_name(value, wildcard=True)
        if message:
            return message
    return None


def dns_names(values: Iterable[str]) -> Optional[str]:
    for value in values:
        message = dns_name(value)
        if message:
            return message
    return None


def aws_region(value: str) -> Optional[str]:
    if not _REGION.match(value):
        return f"{value!r} is not an AWS region name (like us-east-1)"
    return None


def account_ids(values: Iterable[str]) -> Optional[str]:
    for value in values:
        if not _ACCOUNT.match(value):
            return f"{value!r} is not an AWS account id (12 digits)"
    return None


def arn(service: str, resource_prefix: str = "") -> Check:
    """An ARN of `service` whose resource part starts with `resource_prefix`."""

    def check(value: str) -> Optional[str]:
        parts = value.split(":", 5)
        example = f"arn:aws:{service}:<region>:<account-id>:{resource_prefix or '<resource>'}..."
        if len(parts) != 6 or parts[0] != "arn" or parts[1] not in ("aws", "aws-cn", "aws-us-gov"):
            return f"{value!r} is not an ARN ({example})"
        if parts[2] != service:
            return f"{value!r} is an ARN of service {parts[2]!r}, expected {service!r} ({example})"
        if parts[4] and not _ACCOUNT.match(parts[4]):
            return f"{value!r} has account {parts[4]!r}, expected 12 digits"
        if resource_prefix and not parts[5].startswith(resource_prefix):
            return f"{value!r} does not name a {resource_prefix.rstrip('/:')} ({example})"
        return None

    return check


def cidrs(values: Iterable[str]) -> Optional[str]:
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as error:
            return f"{value!r} is not a CIDR block ({error}); write it like 10.0.0.0/8"
        if network.prefixlen == 0:
            return f"{value!r} opens the load balancer to the whole internet; name your organisation's ranges"
        if network in networks:
            return f"{value!r} is listed twice"
        networks.append(network)
    # Judged by the addresses they cover, not one by one: 0.0.0.0/1 and 128.0.0.0/1 are the whole internet too.
    for whole in whole_address_spaces(values):
        return f"together they cover {whole}, the whole internet; name your organisation's ranges"
    return None


def security_groups(values: Iterable[str]) -> Optional[str]:
    for value in values:
        if not _SECURITY_GROUP.match(value):
            return f"{value!r} is not a security group id (sg- followed by 8 or 17 hex digits)"
    return None


def subnets(values: Iterable[str]) -> Optional[str]:
    for value in values:
        if not _SUBNET.match(value):
            return f"{value!r} is not a subnet id (subnet- followed by 8 or 17 hex digits)"
    return None


def dns1123_label(value: str) -> Optional[str]:
    if not _DNS1123_LABEL.match(value):
        return (
            f"{value!r} is not a valid Kubernetes name (DNS-1123 label: lower-case letters, digits and "
            "'-', at most 63 characters, starting and ending with a letter or digit)"
        )
    return None


def email(value: str) -> Optional[str]:
    if not _EMAIL.match(value):
        return f"{value!r} is not an email address"
    return None


def emails(values: Iterable[str]) -> Optional[str]:
    for value in values:
        message = email(value)
        if message:
            return message
    return None


def label_key(key: str) -> Optional[str]:
    prefix, _, name = key.rpartition("/")
    if prefix and dns_name(prefix) and not _DNS1123_LABEL.match(prefix):
        return f"label key {key!r} has an invalid prefix {prefix!r} (a DNS subdomain)"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key {key!r}: the name part must be 1 to 63 characters of letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit"
        )
    return None


def labels(values: dict[str, str]) -> Optional[str]:
    for key, value in values.items():
        message = label_key(key)
        if message:
            return message
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            return (
                f"label {key}={value!r}: values are at most 63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit"
            )
    return None


#: kubernetes/apimachinery@v0.31.0 pkg/api/validation/objectmeta.go:36 (TotalAnnotationSizeLimitB) and
#: :59-66: the API server refuses an object whose annotations' keys and values together exceed 256 KiB.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)


def annotation_keys(values: dict[str, str]) -> Optional[str]:
    for key in values:
        message = label_key(key)
        if message:
            return message.replace("label key", "annotation key")
    size = sum(len(key.encode()) + len(value.encode()) for key, value in values.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        return (
            f"keys and values total {size:,} bytes; Kubernetes refuses an object whose annotations exceed "
            f"{TOTAL_ANNOTATION_SIZE_LIMIT:,} bytes (256 KiB, TotalAnnotationSizeLimitB in kubernetes/apimachinery)"
        )
    return None


#: S3: "The object key name consists of a sequence of Unicode characters encoded in UTF-8, with a maximum
#: length of 1,024 bytes" (docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html); the prefix, the
#: "/" after it and at least one character of a name must fit.
S3_KEY_BYTES = 1024
# The same page's "safe characters" (letters, digits, ! - _ . * ' ( )) without "*", which is a wildcard in
# the IAM resource ARNs the prefix becomes (as "?" is); "$" would start an IAM policy variable.
_S3_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.'()-]+$")


def s3_key_prefix(value: str) -> Optional[str]:
    """A key prefix inside a bucket, as IAM grants it (`arn:aws:s3:::<bucket>/<prefix>/*`)."""
    cleaned = value.strip("/")
    if not cleaned:
        return f"{value!r} names no prefix; an empty prefix would grant the whole bucket"
    size = len(cleaned.encode())
    if size + 2 > S3_KEY_BYTES:
        return (f"is {size:,} bytes; S3 object keys are at most {S3_KEY_BYTES:,} bytes (UTF-8), so nothing could be "
                f"written under it (at most {S3_KEY_BYTES - 2:,})")
    for segment in cleaned.split("/"):
        if segment in ("", ".", ".."):
            return f"{value!r} has an empty, '.' or '..' part; S3 takes them literally, tools and readers do not"
        if not _S3_PREFIX_SEGMENT.match(segment):
            return (f"{value!r}: use letters, digits and ! - _ . ' ( ) between slashes (S3's safe key characters; "
                    "'*' and '?' are IAM wildcards and '$' starts an IAM policy variable)")
    return None


def non_negative_quantity(value: str) -> Optional[str]:
    # kubernetes/kubernetes pkg/apis/core/validation/validation.go, ValidateResourceQuotaSpec ->
    # ValidateResourceQuantityValue -> ValidateNonnegativeQuantity: quota amounts must not be negative.
    if value.startswith("-") and re.search(r"[1-9]", re.split(r"[eE]", value)[0]):
        return f"{value!r} is negative; Kubernetes refuses a negative resource quota"
    return None


def at_least(minimum: int) -> Check:
    def check(value: int) -> Optional[str]:
        if value < minimum:
            return f"{value} is below the minimum {minimum}"
        return None

    return check


def between(minimum: int, maximum: int) -> Check:
    def check(value: int) -> Optional[str]:
        if not minimum <= value <= maximum:
            return f"{value} is outside {minimum}..{maximum}"
        return None

    return check


def not_empty(value: Any) -> Optional[str]:
    if not value:
        return "must not be empty"
    return None


def https_url(value: str) -> Optional[str]:
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        return f"{value!r} is not an https URL (like https://login.example.com/oauth2)"
    if parsed.query or parsed.fragment:
        return f"{value!r} must not carry a query or fragment"
    return None


def unique(what: str) -> Check:
    def check(values: Iterable[Any]) -> Optional[str]:
        seen: set[Any] = set()
        for value in values:
            if value in seen:
                return f"{what} {value!r} is listed twice"
            seen.add(value)
        return None

    return check
