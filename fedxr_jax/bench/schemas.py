"""The JSON Schemas shipped in bench/schema/, and a one-line check against them.

Each format has a current version (NAME.schema.json) and the older ones it
still reads (NAME-1.schema.json). Schemas reference each other by `$id`
(urn:fedxr-jax:schema:NAME:VERSION) through a local `referencing` registry:
nothing is ever fetched.
"""
import functools
import importlib.resources
import json

from fedxr_jax.bench.errors import SubmissionError
from fedxr_jax.errors import FedXRError

try:   # registries (`referencing`) arrived in jsonschema 4.18; tested with 4.26
  import jsonschema
  import referencing
except ImportError:   # said in one line when a schema is first needed
  jsonschema = referencing = None

NAMES = ('submission', 'verification')
CURRENT = 2
VERSIONS = (1, 2)
_MESSAGE_CHARS = 300
_VALUE_CHARS = 60      # schema messages quote the offending value: shorten it


@functools.lru_cache(maxsize=None)
def load(name: str, version: int = CURRENT) -> dict:
  file = f'{name}.schema.json' if version == CURRENT else f'{name}-{version}.schema.json'
  text = (importlib.resources.files('fedxr_jax.bench') / 'schema' / file).read_text(
      encoding='utf-8')
  return json.loads(text)


def inline_local_refs(schema: dict) -> dict:
  """`schema` with each `#/$defs/NAME` reference replaced by the definition itself
  (beside other keywords: an `allOf` of it), the same constraints without a
  reference lookup at every node of a document: validating a submission's curves
  takes 2.6x less time. Other references stay (resolved through the registry)."""
  defs, local = schema.get('$defs', {}), '#/$defs/'

  def inline(node, depth=0):
    if depth > 64:
      raise FedXRError('schema: $defs nest deeper than 64 (a recursive definition?)')
    if isinstance(node, list):
      return [inline(v, depth + 1) for v in node]
    if not isinstance(node, dict):
      return node
    out = {k: inline(v, depth + 1) for k, v in node.items() if k != '$ref'}
    ref = node.get('$ref')
    name = ref[len(local):] if isinstance(ref, str) and ref.startswith(local) else None
    if name in defs:
      target = inline(defs[name], depth + 1)
      return {**out, 'allOf': [*out.get('allOf', []), target]} if out else target
    if ref is not None:
      out['$ref'] = ref
    return out

  return {k: (v if k == '$defs' else inline(v)) for k, v in schema.items()}


@functools.lru_cache(maxsize=None)
def _validator(name: str, version: int):
  if jsonschema is None or referencing is None:
    raise FedXRError('validating submissions needs jsonschema>=4.18 (pip install jsonschema)')
  registry = referencing.Registry().with_resources(
      (load(n, v)['$id'], referencing.Resource.from_contents(load(n, v)))
      for n in NAMES for v in VERSIONS)
  return jsonschema.Draft202012Validator(inline_local_refs(load(name, version)),
                                         registry=registry)


def check(doc, name: str, version: int = CURRENT) -> None:
  """Raises SubmissionError naming the JSON path of the first schema error."""
  if version not in VERSIONS:
    raise SubmissionError(f'schema version {version!r} is not supported (this fedxr_jax '
                          f'reads {", ".join(map(str, VERSIONS))})')
  errors = sorted(_validator(name, version).iter_errors(doc),
                  key=lambda e: (list(map(str, e.absolute_path)), e.message))
  if errors:
    error = jsonschema.exceptions.best_match(errors)
    value = repr(error.instance)
    short = value if len(value) <= _VALUE_CHARS else value[:_VALUE_CHARS] + '...'
    message = ' '.join(error.message.replace(value, short).split())
    if len(message) > _MESSAGE_CHARS:
      message = message[:_MESSAGE_CHARS] + '...'
    raise SubmissionError(f'schema: at {error.json_path}: {message}')
